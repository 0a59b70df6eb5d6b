package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"taskjuice/internal/workflow"
)

// The node execution contract. The engine evaluates a node's config (its
// {{ expressions }}) against the run's data, then calls the node's
// executor with it. The executor returns the node's output and which path
// to take, or an error:
//
//   - a *StepError: a structured failure (retryable or not);
//   - a *ReauthError: the node's connection needs reauthorization; the run
//     is held ("Paused for reauth") at this step instead of failing;
//   - anything else: an unexpected failure, recorded as INTERNAL.
//
// Each effect gets one idempotency key, naming the run and the frontier
// entry (the node, within its loop iteration or agent turn): every attempt
// of it sends the same key — retries after a timeout, after a crash, after
// Resume — so the app can tell it is the same effect. A replay is a new run
// and so gets new keys. It is sent to apps as Idempotency-Key where they
// honour it.

// Call is one execution of one node.
type Call struct {
	Run  Run
	Node workflow.Node
	// Entry is the frontier entry being run: the node id, or the node id
	// within a loop iteration or an agent's turn.
	Entry          string
	Config         json.RawMessage // evaluated
	Input          json.RawMessage // the previous step's output
	IdempotencyKey string
	Console        *strings.Builder
	// Attempt numbers the tries of this effect (1, 2, …); internal
	// bookkeeping that must tell attempts apart (the spend ledger) uses it.
	Attempt int
	// Now is when the step started, on the engine's clock.
	Now time.Time
	// Scope is the run's data as expressions see it (for a Code step,
	// whose settings are not evaluated as templates).
	Scope Scope
}

// Outcome is what a node produced.
type Outcome struct {
	Output any
	// Path selects the outgoing path: "" (the only one), "true"/"false",
	// a switch case or "default".
	Path string
	// WaitUntil parks the run (status waiting) until then (a Delay).
	WaitUntil *time.Time
	// WaitFor parks the run until an event arrives (an approval); it names
	// what it waits for.
	WaitFor string
}

// ReauthError says a node's connection needs reauthorization.
type ReauthError struct {
	ConnectionID string
	Reason       string
}

func (e *ReauthError) Error() string { return "connection needs reauthorization: " + e.Reason }

// Executor runs one kind of node.
type Executor func(ctx context.Context, c Call) (Outcome, error)

// Scope is the data expressions see: $trigger, $steps (each { data, meta }
// by node id), $input and $meta.
type Scope struct {
	Trigger json.RawMessage
	Steps   map[string]StepData
	Input   json.RawMessage
	Meta    map[string]any
}

// StepData is one completed step as expressions see it.
type StepData struct {
	Data json.RawMessage `json:"data"`
	Meta map[string]any  `json:"meta"`
}

// Evaluator renders a node's config: every {{ expression }} inside its
// strings, against the scope. A failure is a *StepError (codes
// EXPRESSION_*).
type Evaluator func(ctx context.Context, config json.RawMessage, s Scope) (json.RawMessage, error)

func asStepError(err error) *StepError {
	var se *StepError
	if errors.As(err, &se) {
		return se
	}
	return &StepError{Code: "INTERNAL", Message: "The step failed unexpectedly; the details are in the server log.", Retryable: false}
}
