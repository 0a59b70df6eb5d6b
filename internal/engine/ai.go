package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"taskjuice/internal/apperr"
	"taskjuice/internal/llm"
	"taskjuice/internal/spend"
	"taskjuice/internal/workflow"
)

// Models is what AI steps and model-driven agents need: a model call made
// under the workspace's spend cap, and the parameters of app actions given
// to a model as tools.
type Models interface {
	// Call sends req to the model m of the workspace's provider. ref names
	// the step attempt for the cap; a call the cap refuses is never sent
	// and its error matches spend.ErrCapReached.
	Call(ctx context.Context, workspaceID, ref string, m workflow.ModelRef, req llm.Request, call spend.Call) (llm.Response, error)
	// ToolSchema describes an app action as a model tool: a description and
	// a JSON Schema of its inputs.
	ToolSchema(app, action string) (description string, parameters json.RawMessage, ok bool)
}

// UseModels gives the engine its model gateway (AI steps and model-driven
// agents fail with a clear error without one).
func (e *Engine) UseModels(m Models) { e.models = m }

// SpendCapError says a model call was refused by the workspace's spend cap
// before it was sent: the run pauses (reason spend cap) until someone
// resumes it, once the cap is raised or the period has rolled over.
type SpendCapError struct{ Message string }

func (e *SpendCapError) Error() string { return e.Message }

// defaultModelTokens bounds a model answer when the step sets no limit.
const defaultModelTokens = 1024

// callModel makes one model call of a step and turns its failures into
// step errors.
func (e *Engine) callModel(ctx context.Context, c Call, m workflow.ModelRef, req llm.Request) (llm.Response, error) {
	if e.models == nil {
		return llm.Response{}, &StepError{Code: "NOT_SUPPORTED", Message: "This TaskJuice has no model gateway configured"}
	}
	if req.MaxTokens == 0 {
		req.MaxTokens = defaultModelTokens
	}
	// The ledger counts each attempt's call on its own: a retry after a
	// failed call is a call of its own at the provider.
	ref := fmt.Sprintf("%s#%d", c.IdempotencyKey, c.Attempt)
	resp, err := e.models.Call(ctx, c.Run.WorkspaceID, ref, m, req, spend.Call{RunID: c.Run.ID, StepKey: c.Entry})
	var le *llm.Error
	switch {
	case err == nil:
		fmt.Fprintf(c.Console, "model %s: %d prompt + %d completion tokens, %s\n", m.Name, resp.Usage.PromptTokens, resp.Usage.CompletionTokens, resp.Cost)
		return resp, nil
	case errors.Is(err, spend.ErrCapReached):
		fmt.Fprintf(c.Console, "model %s: refused by the spend cap, not sent\n", m.Name)
		return llm.Response{}, &SpendCapError{Message: err.Error()}
	case errors.As(err, &le):
		code := "MODEL_REFUSED"
		if le.Retryable {
			code = "MODEL_UNAVAILABLE"
		}
		return llm.Response{}, &StepError{Code: code, Message: le.Message, ProviderStatus: le.Status, Retryable: le.Retryable, Detail: le.Code}
	case apperr.IsNotFound(err):
		return llm.Response{}, &StepError{Code: "MODEL_PROVIDER_MISSING", Message: "The step's model provider no longer exists in this workspace"}
	}
	return llm.Response{}, err
}

// aiGenerate turns the prompt into text.
func (e *Engine) aiGenerate(ctx context.Context, c Call) (Outcome, error) {
	cfg, err := decode[workflow.AIGenerateConfig](c)
	if err != nil {
		return Outcome{}, err
	}
	var msgs []llm.Message
	if strings.TrimSpace(cfg.System) != "" {
		msgs = append(msgs, llm.Message{Role: "system", Content: cfg.System})
	}
	msgs = append(msgs, llm.Message{Role: "user", Content: cfg.Prompt})
	resp, err := e.callModel(ctx, c, cfg.Model, llm.Request{Messages: msgs, MaxTokens: cfg.MaxTokens})
	if err != nil {
		return Outcome{}, err
	}
	if resp.FinishReason == "length" {
		fmt.Fprintln(c.Console, "the answer was cut at the token limit")
	}
	return Outcome{Output: map[string]any{"text": resp.Content, "finishReason": resp.FinishReason}}, nil
}

// aiExtract reads the text into JSON that must match the step's schema; an
// answer that does not is a step error (AI_OUTPUT_INVALID).
func (e *Engine) aiExtract(ctx context.Context, c Call) (Outcome, error) {
	cfg, err := decode[workflow.AIExtractConfig](c)
	if err != nil {
		return Outcome{}, err
	}
	schema, err := workflow.CompileSchema(cfg.Schema)
	if err != nil {
		return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: "The step's schema is not a valid JSON Schema: " + err.Error()}
	}
	system := "Extract the requested data from the user's text. Answer with one JSON value that matches the given JSON Schema, and nothing else."
	if strings.TrimSpace(cfg.Instructions) != "" {
		system += "\n\n" + cfg.Instructions
	}
	resp, err := e.callModel(ctx, c, cfg.Model, llm.Request{
		Messages:       []llm.Message{{Role: "system", Content: system}, {Role: "user", Content: cfg.Text}},
		MaxTokens:      cfg.MaxTokens,
		ResponseFormat: &llm.ResponseFormat{Type: "json_schema", Name: "extraction", Schema: cfg.Schema},
	})
	if err != nil {
		return Outcome{}, err
	}
	out := strings.TrimSpace(resp.Content)
	if err := schema.Check([]byte(out)); err != nil {
		return Outcome{}, &StepError{Code: "AI_OUTPUT_INVALID", Message: "The model's answer does not match the step's schema: " + err.Error(),
			Detail: truncateText(out, 2000)}
	}
	return Outcome{Output: json.RawMessage(out)}, nil
}

// modelDecision is a model-driven agent's decision step: the model sees
// the instructions, the run's input and every earlier turn, and picks the
// next tool call or answers.
func (e *Engine) modelDecision(ctx context.Context, c Call, cfg workflow.AgentConfig, turn int) (Outcome, error) {
	if cfg.Model == nil {
		return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: "The agent has no model"}
	}
	if e.models == nil {
		return Outcome{}, &StepError{Code: "NOT_SUPPORTED", Message: "This TaskJuice has no model gateway configured"}
	}
	msgs := []llm.Message{{Role: "system", Content: cfg.Instructions}, {Role: "user", Content: "Input:\n" + string(nonEmpty(c.Run.TriggerPayload))}}
	for k := 1; k < turn; k++ {
		d, ok, err := e.decisionOf(ctx, c.Run.ID, c.Node.ID, k)
		if err != nil {
			return Outcome{}, err
		}
		if !ok || d.ToolCall == nil {
			continue
		}
		args, _ := json.Marshal(d.ToolCall.Input)
		id := d.CallID
		if id == "" {
			id = fmt.Sprintf("call_%d", k)
		}
		msgs = append(msgs, llm.Message{Role: "assistant", ToolCalls: []llm.ToolCall{{ID: id, Name: d.ToolCall.Tool, Arguments: args}}})
		result, _, err := e.lastStep(ctx, c.Run.ID, toolEntry(c.Node.ID, k))
		if err != nil {
			return Outcome{}, err
		}
		msgs = append(msgs, llm.Message{Role: "tool", ToolCallID: id, Content: truncateText(string(nonEmpty(result.Output)), 8000)})
	}
	var tools []llm.Tool
	for _, t := range cfg.Tools {
		desc, params, ok := e.models.ToolSchema(t.App, t.Action)
		if !ok {
			return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: fmt.Sprintf("The tool %q names an action that does not exist", t.Name)}
		}
		if t.Description != "" {
			desc = t.Description
		}
		tools = append(tools, llm.Tool{Name: t.Name, Description: desc, Parameters: params})
	}
	resp, err := e.callModel(ctx, c, *cfg.Model, llm.Request{Messages: msgs, Tools: tools, MaxTokens: cfg.MaxTokens})
	if err != nil {
		return Outcome{}, err
	}
	d := AgentDecision{Usage: &resp.Usage, Cost: resp.Cost.String()}
	switch {
	case len(resp.ToolCalls) > 0:
		tc := resp.ToolCalls[0]
		var input map[string]json.RawMessage
		if tc.Malformed || json.Unmarshal(tc.Arguments, &input) != nil {
			return Outcome{}, &StepError{Code: "AGENT_BAD_TOOL_CALL", Message: fmt.Sprintf("The model called %q with arguments that are not a JSON object", tc.Name),
				Detail: truncateText(string(tc.Arguments), 1000)}
		}
		if _, ok := cfg.Tool(tc.Name); !ok {
			return Outcome{}, &StepError{Code: "AGENT_UNKNOWN_TOOL", Message: fmt.Sprintf("The model called %q, which is not one of the agent's tools", tc.Name)}
		}
		d.ToolCall, d.CallID = &ToolCall{Tool: tc.Name, Input: input}, tc.ID
		fmt.Fprintf(c.Console, "turn %d: the model calls %s\n", turn, tc.Name)
	default:
		d.Answer = resp.Content
		fmt.Fprintf(c.Console, "turn %d: the model answers\n", turn)
	}
	return Outcome{Output: d}, nil
}

// decisionOf reads the decision a turn completed with.
func (e *Engine) decisionOf(ctx context.Context, runID, node string, turn int) (AgentDecision, bool, error) {
	s, ok, err := e.lastStep(ctx, runID, decisionEntry(node, turn))
	if err != nil || !ok || s.Status != StepCompleted {
		return AgentDecision{}, false, err
	}
	var d AgentDecision
	if json.Unmarshal(s.Output, &d) != nil {
		return AgentDecision{}, false, nil
	}
	return d, true, nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
