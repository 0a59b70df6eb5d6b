package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// Respond to Webhook: the step records the answer (status, headers, body)
// as its output; the webhook delivery that started the run, held open,
// reads it from there (WebhookResponse) and answers its caller with it.

// WebhookAnswer is what a Respond to Webhook step decided.
type WebhookAnswer struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    json.RawMessage   `json:"body,omitempty"`
}

func respondNode(_ context.Context, c Call) (Outcome, error) {
	var cfg struct {
		Status  any               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    json.RawMessage   `json:"body"`
	}
	if err := json.Unmarshal(nonEmpty(c.Config), &cfg); err != nil {
		return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: err.Error()}
	}
	status := 200
	switch v := cfg.Status.(type) {
	case nil:
	case float64:
		status = int(v)
	case string:
		if strings.TrimSpace(v) != "" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return Outcome{}, &StepError{Code: "RESPONSE_INVALID", Message: fmt.Sprintf("The status %q is not a number", v)}
			}
			status = n
		}
	default:
		return Outcome{}, &StepError{Code: "RESPONSE_INVALID", Message: "The status is not a number"}
	}
	if status < 200 || status > 599 {
		return Outcome{}, &StepError{Code: "RESPONSE_INVALID", Message: fmt.Sprintf("The status %d is not an HTTP status from 200 to 599", status)}
	}
	for name := range cfg.Headers {
		if !workflow.ResponseHeaderAllowed(name) {
			return Outcome{}, &StepError{Code: "RESPONSE_INVALID", Message: fmt.Sprintf("The header %q cannot be set", name)}
		}
	}
	fmt.Fprintf(c.Console, "answering the webhook with HTTP %d\n", status)
	return Outcome{Output: WebhookAnswer{Status: status, Headers: cfg.Headers, Body: cfg.Body}}, nil
}

// WebhookWait is how long a delivery to the workflow is held for its run's
// answer: the longest wait of its live version's Respond to Webhook steps
// (0: it has none, and answers 202 at once).
func (e *Engine) WebhookWait(ctx context.Context, workflowID string) (time.Duration, error) {
	live, ok, err := e.workflows.Live(ctx, workflowID)
	if err != nil || !ok {
		return 0, err
	}
	wait := 0
	for _, n := range live.Graph.Nodes {
		if n.Kind != workflow.NodeRespond {
			continue
		}
		if cfg, err := workflow.DecodeConfig(n); err == nil {
			wait = max(wait, cfg.(*workflow.RespondConfig).Wait())
		}
	}
	return time.Duration(wait) * time.Second, nil
}

// WebhookResponse is the answer of the run's Respond to Webhook step once
// it completed (nil before); done reports that the run ended, or is
// waiting or held, without one, so the caller gets 202.
func (e *Engine) WebhookResponse(ctx context.Context, runID string) (*WebhookAnswer, bool, error) {
	st, err := e.load(ctx, e.db.Read(), runID)
	if err != nil {
		return nil, false, err
	}
	g, err := e.workflows.GraphOf(ctx, st.VersionID)
	if err != nil {
		return nil, false, err
	}
	respond := map[string]bool{}
	for _, n := range g.Nodes {
		if n.Kind == workflow.NodeRespond {
			respond[n.ID] = true
		}
	}
	if len(respond) > 0 {
		ids := make([]string, 0, len(respond))
		for id := range respond {
			ids = append(ids, id)
		}
		out, err := db.Strings(ctx, e.db.Read(), `SELECT output FROM run_steps WHERE run_id = $1 AND status = 'completed' AND output IS NOT NULL
			AND node_id IN (`+placeholders(2, len(ids))+`) ORDER BY finished_at LIMIT 1`, append([]any{runID}, anySlice(ids)...)...)
		if err != nil {
			return nil, false, fmt.Errorf("read the webhook's answer: %w", err)
		}
		if len(out) == 1 {
			var a WebhookAnswer
			if err := json.Unmarshal([]byte(out[0]), &a); err == nil && a.Status != 0 {
				return &a, true, nil
			}
		}
	}
	switch st.Status {
	case StatusPending, StatusRunning:
		return nil, false, nil
	}
	return nil, true, nil
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
