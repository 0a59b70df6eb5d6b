package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"taskjuice/internal/workflow"
)

// StepTest is the result of testing one step on its own: the step's
// evaluated settings, its output or structured error, and the time taken.
// Testing a step creates no run.
type StepTest struct {
	Input      json.RawMessage `json:"input"`
	Output     any             `json:"output,omitempty"`
	Path       string          `json:"path,omitempty"`
	Error      *StepError      `json:"error,omitempty"`
	Console    string          `json:"console,omitempty"`
	DurationMS int64           `json:"durationMs"`
}

// ErrNeedsConfirm says a step with an effect outside TaskJuice was tested
// without the user's confirmation.
var ErrNeedsConfirm = errors.New("This step has an effect outside TaskJuice (it sends a request or acts in an app); confirm to test it for real")

// HasExternalEffect reports whether running the node acts outside
// TaskJuice: an app action, an HTTP request other than GET, an agent or
// an AI step.
func HasExternalEffect(n workflow.Node) bool {
	switch n.Kind {
	case workflow.NodeAction, workflow.NodeAgent, workflow.NodeAIGenerate, workflow.NodeAIExtract:
		return true
	case workflow.NodeHTTP:
		var cfg struct {
			Method string `json:"method"`
		}
		_ = json.Unmarshal(nonEmpty(n.Config), &cfg)
		m := strings.ToUpper(strings.TrimSpace(cfg.Method))
		return m != "" && m != "GET" && !strings.Contains(m, "{{")
	}
	return false
}

// TestStep evaluates one node's expressions against the samples in s and
// runs it through the same executor a run uses, without creating a run.
// Steps that start or wait on runs (call a workflow, an agent or AI step
// that books spend against a run) are not tested on their own. A step with
// an external effect needs confirm; without it ErrNeedsConfirm.
func (e *Engine) TestStep(ctx context.Context, run Run, node workflow.Node, s Scope, confirm bool) (StepTest, error) {
	if HasExternalEffect(node) && !confirm {
		return StepTest{}, ErrNeedsConfirm
	}
	start := time.Now()
	res := StepTest{}
	exec, ok := e.exec[node.Kind]
	if !ok || !testable(node.Kind) {
		res.Error = &StepError{Code: "NOT_SUPPORTED", Message: fmt.Sprintf("%s steps cannot be tested on their own; run the workflow to try them", node.Kind.Label())}
		return res, nil
	}
	cfg := node.Config
	if e.eval != nil && len(cfg) > 0 && templated(node.Kind) {
		var err error
		if cfg, err = e.eval(ctx, cfg, s); err != nil {
			res.Error = asStepError(err)
			res.DurationMS = time.Since(start).Milliseconds()
			return res, nil
		}
	}
	res.Input = nonEmpty(cfg)
	out, err := e.runTest(ctx, exec, Call{Run: run, Node: node, Entry: node.ID, Config: cfg, Input: nonEmpty(s.Input), IdempotencyKey: "test:" + run.WorkflowID + ":" + node.ID + ":" + start.Format(time.RFC3339Nano), Attempt: 1, Now: e.now(), Scope: s}, &res)
	res.DurationMS = time.Since(start).Milliseconds()
	if err != nil {
		res.Error = testError(err)
		return res, nil
	}
	res.Output, res.Path = out.Output, out.Path
	return res, nil
}

// testable names the kinds a test runs: those whose executor acts only
// through its call, writing nothing about runs.
func testable(k workflow.Kind) bool {
	switch k {
	case workflow.NodeAction, workflow.NodeHTTP, workflow.NodeBranch, workflow.NodeSwitch, workflow.NodeTransform,
		workflow.NodeFilter, workflow.NodeSort, workflow.NodeCode, workflow.NodeStopError, workflow.NodeRespond:
		return true
	}
	return false
}

// runTest runs the executor within the step timeout, turning a panic into
// an INTERNAL error.
func (e *Engine) runTest(ctx context.Context, exec Executor, c Call, res *StepTest) (out Outcome, err error) {
	defer func() {
		if p := recover(); p != nil {
			e.o.Log.Error("step test panicked", "workflow", c.Run.WorkflowID, "node", c.Node.ID, "panic", p)
			err = &StepError{Code: "INTERNAL", Message: "The step failed unexpectedly; the details are in the server log."}
		}
	}()
	var console strings.Builder
	c.Console = &console
	sctx, cancel := context.WithTimeout(ctx, e.o.StepTimeout)
	defer cancel()
	out, err = exec(sctx, c)
	res.Console = console.String()
	if err == nil && sctx.Err() != nil && ctx.Err() == nil {
		err = &StepError{Code: "TIMEOUT", Message: fmt.Sprintf("The step took longer than %s", e.o.StepTimeout)}
	}
	return out, err
}

// testError turns a test's failure into the structured error shown: a
// broken connection is reported, not held.
func testError(err error) *StepError {
	var re *ReauthError
	if errors.As(err, &re) {
		return &StepError{Code: "CONNECTION_NEEDS_REAUTH", Message: "The step's connection needs reauthorization: " + re.Reason}
	}
	return asStepError(err)
}

// Preview evaluates one setting's text (with its {{ expressions }})
// against sample data, as a run would: the editor shows the value as the
// user types. A failure is a *StepError.
func (e *Engine) Preview(ctx context.Context, text string, s Scope) (json.RawMessage, error) {
	b, err := json.Marshal(text)
	if err != nil || e.eval == nil {
		return b, err
	}
	return e.eval(ctx, b, s)
}
