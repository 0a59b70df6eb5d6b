package web

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/engine"
	"taskjuice/internal/trigger"
	"taskjuice/internal/workflow"
)

// PollStates tells where a workflow's polling app trigger stands and which
// items it started runs for (trigger.Poller implements it).
type PollStates interface {
	State(ctx context.Context, workflowID string) (trigger.PollState, bool, error)
	Events(ctx context.Context, workflowID string, limit int) ([]trigger.Event, error)
}

// recentEvents is how many of a trigger's events the workflow page shows.
const recentEvents = 10

// pollEvent is one item the trigger started a run for.
type pollEvent struct {
	trigger.Event
	Status engine.Status
}

// InstantStates tells where a workflow's instant app trigger stands
// (trigger.Listener implements it).
type InstantStates interface {
	State(ctx context.Context, workflowID string) (trigger.InstantState, bool, error)
	Events(ctx context.Context, workflowID string, limit int) ([]trigger.Event, error)
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
	// AwaitingClient is true while the workflow is live but the client has
	// not yet connected the app its trigger reads.
	AwaitingClient bool
	// CursorAge is how long ago the cursor last moved ("" before the
	// first poll).
	CursorAge string
	// Events are the newest items the trigger started runs for.
	Events []pollEvent
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
	if t.Connection != nil && t.Connection.ClientProvides {
		// The client's connection, once they connected it.
		bound, ok, err := h.Workflows.ClientConnection(r.Context(), wf.ID, t.ID)
		if err != nil {
			return nil, err
		}
		d.ConnectionID = bound
		d.AwaitingClient = !ok && wf.Status == workflow.StatusPublished
	} else if t.Connection != nil {
		d.ConnectionID = t.Connection.ID
	}
	if d.ConnectionID != "" {
		if conn, err := h.Connections.Get(r.Context(), ws, d.ConnectionID); err == nil {
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
		return d, d.addEvents(h.Instants.Events(r.Context(), wf.ID, recentEvents))
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
		if st.CursorAt != nil {
			d.CursorAge = age(time.Since(*st.CursorAt))
		}
	}
	return d, d.addEvents(h.Polls.Events(r.Context(), wf.ID, recentEvents))
}

// addEvents keeps the trigger's recent events for the page.
func (d *pollData) addEvents(events []trigger.Event, err error) error {
	if err != nil {
		return err
	}
	for _, e := range events {
		d.Events = append(d.Events, pollEvent{Event: e, Status: engine.Status(e.RunStatus)})
	}
	return nil
}

// age says a duration the way the page does: "just now", "5 min", "3 h",
// "2 days".
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}
