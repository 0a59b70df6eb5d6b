package web

import (
	"context"
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/trigger"
	"taskjuice/internal/workflow"
)

// PollStates tells where a workflow's polling app trigger stands
// (trigger.Poller implements it).
type PollStates interface {
	State(ctx context.Context, workflowID string) (trigger.PollState, bool, error)
}

// InstantStates tells where a workflow's instant app trigger stands
// (trigger.Listener implements it).
type InstantStates interface {
	State(ctx context.Context, workflowID string) (trigger.InstantState, bool, error)
}

// pollData is the workflow page's card about its app trigger.
type pollData struct {
	trigger.PollState
	// Instant is set for a trigger the app pushes: its subscription's
	// state (nil while it is not live).
	Instant *trigger.InstantState
	// IsInstant is true when the trigger is pushed by the app.
	IsInstant bool
	// Registered is false when the trigger is not live (a draft, or not
	// published): nothing polls it.
	Registered     bool
	AppName        string
	TriggerName    string
	ConnectionID   string
	ConnectionName string
}

// pollInfo describes the app trigger of the newest version, with its
// poller's state when it is live.
func (h *Handler) pollInfo(r *http.Request, ws account.Workspace, wf workflow.Workflow, t *workflow.Node) (*pollData, error) {
	cfg, err := workflow.DecodeConfig(*t)
	if err != nil {
		return nil, nil // the editor shows what is wrong with it
	}
	c := cfg.(*workflow.AppTriggerConfig)
	d := &pollData{AppName: h.appName(c.App), TriggerName: c.Trigger}
	if app, ok := h.Catalog.App(c.App); ok {
		if tr, ok := app.Trigger(c.Trigger); ok {
			d.TriggerName = tr.Name
		}
	}
	if t.Connection != nil && t.Connection.ID != "" {
		d.ConnectionID = t.Connection.ID
		if conn, err := h.Connections.Get(r.Context(), ws, t.Connection.ID); err == nil {
			d.ConnectionName = conn.Label
		}
	}
	if trigger.CanListen(c.App, c.Trigger) {
		d.IsInstant = true
		if h.Instants == nil {
			return d, nil
		}
		st, ok, err := h.Instants.State(r.Context(), wf.ID)
		if err != nil {
			return nil, err
		}
		if ok {
			d.Instant, d.Registered = &st, true
			if st.ConnectionID != "" {
				d.ConnectionID = st.ConnectionID
			}
		}
		return d, nil
	}
	if h.Polls == nil {
		return d, nil
	}
	st, ok, err := h.Polls.State(r.Context(), wf.ID)
	if err != nil {
		return nil, err
	}
	if ok {
		d.PollState, d.Registered = st, true
		if st.ConnectionID != "" {
			d.ConnectionID = st.ConnectionID
		}
	}
	return d, nil
}
