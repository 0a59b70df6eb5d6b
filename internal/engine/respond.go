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

// WebhookResponse reads where a run started by a webhook delivery stands
// for its caller: wait is how long the delivery may be held (the longest
// wait of the run's Respond to Webhook steps; 0 when it has none), a is the
// answer once such a step completed (nil before), and done says the run
// ended, or is waiting or held, without one, so the caller gets 202. The
// run's graph comes from the engine's cache: a delivery costs a read of
// the run, and one of its steps while a Respond step may answer.
func (e *Engine) WebhookResponse(ctx context.Context, runID string) (a *WebhookAnswer, wait time.Duration, done bool, err error) {
	st, err := e.load(ctx, e.db.Read(), runID)
	if err != nil {
		return nil, 0, false, err
	}
	g, err := e.graph(ctx, st.VersionID)
	if err != nil {
		return nil, 0, false, err
	}
	var ids []string
	secs := 0
	for _, n := range g.Nodes {
		if n.Kind != workflow.NodeRespond {
			continue
		}
		ids = append(ids, n.ID)
		if cfg, err := workflow.DecodeConfig(n); err == nil {
			secs = max(secs, cfg.(*workflow.RespondConfig).Wait())
		}
	}
	if len(ids) == 0 {
		return nil, 0, true, nil
	}
	wait = time.Duration(secs) * time.Second
	out, err := db.Strings(ctx, e.db.Read(), `SELECT output FROM run_steps WHERE run_id = $1 AND status = 'completed' AND output IS NOT NULL
		AND node_id IN (`+placeholders(2, len(ids))+`) ORDER BY finished_at LIMIT 1`, append([]any{runID}, anySlice(ids)...)...)
	if err != nil {
		return nil, wait, false, fmt.Errorf("read the webhook's answer: %w", err)
	}
	if len(out) == 1 {
		var ans WebhookAnswer
		if err := json.Unmarshal([]byte(out[0]), &ans); err == nil && ans.Status != 0 {
			return &ans, wait, true, nil
		}
	}
	switch st.Status {
	case StatusPending, StatusRunning:
		return nil, wait, false, nil
	}
	return nil, wait, true, nil
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
