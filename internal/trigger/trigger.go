// Package trigger starts runs from outside events: webhooks (an HTTP request
// to a per-workflow token URL), schedules (a cron expression in a time
// zone) and polling app triggers (new items of an app, read through a
// connection). It owns the webhook_endpoints, schedule_state and
// poll_triggers tables. Runs themselves are recorded by the engine through
// the Starter interface, and the published trigger of a workflow comes from
// the Workflows interface; both are defined here, on the consumer's side.
package trigger

import (
	"context"
	"encoding/json"
	"net/http"
)

// Trigger sources passed to Starter.StartRun.
const (
	SourceWebhook  = "webhook"
	SourceSchedule = "schedule"
)

// Trigger kinds as Workflows.ActiveTrigger reports them.
const (
	KindWebhook  = "webhook"
	KindSchedule = "schedule"
)

// Starter records a run durably and returns its id (the engine implements
// it). A non-empty dedupKey makes the start idempotent: the same key returns
// the run started before.
type Starter interface {
	StartRun(ctx context.Context, workflowID string, payload json.RawMessage, source string, dedupKey string) (runID string, err error)
}

// Workflows finds a workflow's active trigger: the kind and the config of
// the trigger node of its live version. ok is false when the workflow has
// no live version (it is not published).
type Workflows interface {
	ActiveTrigger(ctx context.Context, workflowID string) (kind string, config json.RawMessage, ok bool, err error)
}

// writeError writes the product's JSON error shape:
// {"error":{"code":"...","message":"..."}}.
func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"Something went wrong."}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
