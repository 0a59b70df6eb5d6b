package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/trigger"
	"taskjuice/internal/workflow"
)

// TriggerStates is the poller's view of workflows' app triggers
// (trigger.Poller implements it).
type TriggerStates interface {
	State(ctx context.Context, workflowID string) (trigger.PollState, bool, error)
	Events(ctx context.Context, workflowID string, limit int) ([]trigger.Event, error)
}

// InstantTriggerStates is the listener's view of workflows' instant app
// triggers (trigger.Listener implements it).
type InstantTriggerStates interface {
	State(ctx context.Context, workflowID string) (trigger.InstantState, bool, error)
	Events(ctx context.Context, workflowID string, limit int) ([]trigger.Event, error)
}

// Poll states.
const (
	pollListening = "listening"
	pollHeld      = "held"
	pollFailing   = "failing"
	pollUnprimed  = "not-yet-primed"
)

// triggerView is a workflow's trigger as the API shows it. A live app
// trigger is either read by a poller (Poll) or pushed by the app (Instant);
// the other one is null.
type triggerView struct {
	WorkflowID string        `json:"workflowId"`
	Kind       workflow.Kind `json:"kind"`
	// Live is false when no version is published: the trigger shown is
	// the newest version's, and nothing listens to it.
	Live                     bool   `json:"live"`
	NodeID                   string `json:"nodeId"`
	App                      string `json:"app,omitempty"`
	AppName                  string `json:"appName,omitempty"`
	Trigger                  string `json:"trigger,omitempty"`
	TriggerName              string `json:"triggerName,omitempty"`
	ConnectionID             string `json:"connectionId,omitempty"`
	ClientProvidesConnection bool   `json:"clientProvidesConnection"`
	// AwaitingClient: the trigger is live, but the client has not yet
	// connected the app; nothing is polled until they do.
	AwaitingClient bool         `json:"awaitingClient"`
	Poll           *pollView    `json:"poll"`
	Instant        *instantView `json:"instant"`
	CheckedAt      time.Time    `json:"checkedAt"`
}

// pollView is where a polling app trigger stands.
type pollView struct {
	// State is listening, held (the connection needs reauthorization),
	// failing (the last polls failed; they are retried) or not-yet-primed
	// (the first poll, which records where the app stands, has not run).
	State             string     `json:"state"`
	ConnectionID      string     `json:"connectionId"`
	ConnectionPageURL string     `json:"connectionPageUrl,omitempty"`
	LastError         string     `json:"lastError,omitempty"`
	Failures          int        `json:"failures"`
	LastPollAt        *time.Time `json:"lastPollAt"`
	NextPollAt        *time.Time `json:"nextPollAt"`
	CursorAt          *time.Time `json:"cursorAt"`
	CursorAgeSeconds  *int64     `json:"cursorAgeSeconds"`
	RunsStarted       int64      `json:"runsStarted"`
}

// instantView is where an instant app trigger stands.
type instantView struct {
	// State is subscribing, subscribed, manual (the address is to be
	// pasted at the app) or failed (subscribing is retried).
	State          string     `json:"state"`
	ConnectionID   string     `json:"connectionId"`
	Address        string     `json:"address"`
	LastError      string     `json:"lastError,omitempty"`
	Failures       int        `json:"failures"`
	SubscribedAt   *time.Time `json:"subscribedAt"`
	LastEventAt    *time.Time `json:"lastEventAt"`
	NextAttemptAt  *time.Time `json:"nextAttemptAt"`
	EventsReceived int64      `json:"eventsReceived"`
	RunsStarted    int64      `json:"runsStarted"`
}

func instantViewOf(st trigger.InstantState) *instantView {
	return &instantView{State: st.State, ConnectionID: st.ConnectionID, Address: st.Address, LastError: st.LastError,
		Failures: st.Failures, SubscribedAt: st.SubscribedAt, LastEventAt: st.LastEventAt, NextAttemptAt: st.NextAttemptAt,
		EventsReceived: st.EventsReceived, RunsStarted: st.RunsStarted}
}

// triggerEvent is one item the trigger started a run for.
type triggerEvent struct {
	ItemID    string    `json:"itemId"`
	RunID     string    `json:"runId"`
	RunStatus string    `json:"runStatus"`
	At        time.Time `json:"at"`
}

// workflowByID resolves a workflow id of a staff route within the
// principal's account: another account's workflow is not found.
func (h *Handler) workflowByID(w http.ResponseWriter, r *http.Request, p account.Principal) (workflow.Workflow, account.Workspace, bool) {
	if err := staffOnly(p); err != nil {
		writeError(w, r, h.log, err)
		return workflow.Workflow{}, account.Workspace{}, false
	}
	fail := func(err error) (workflow.Workflow, account.Workspace, bool) {
		writeError(w, r, h.log, err)
		return workflow.Workflow{}, account.Workspace{}, false
	}
	live, _, err := h.workflows.Live(r.Context(), r.PathValue("id"))
	if err != nil {
		return fail(err)
	}
	ws, err := h.accounts.WorkspaceByID(r.Context(), p, live.WorkspaceID)
	if err != nil {
		return fail(err)
	}
	wf, err := h.workflows.Get(r.Context(), ws, live.WorkflowID)
	if err != nil {
		return fail(err)
	}
	return wf, ws, true
}

func (h *Handler) getTrigger(w http.ResponseWriter, r *http.Request, p account.Principal) {
	wf, ws, ok := h.workflowByID(w, r, p)
	if !ok {
		return
	}
	ctx := r.Context()
	v := triggerView{WorkflowID: wf.ID, CheckedAt: time.Now().UTC()}
	var t *workflow.Node
	live, isLive, err := h.workflows.Live(ctx, wf.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if isLive {
		v.Live, t = true, live.Graph.Trigger
	} else {
		versions, err := h.workflows.Versions(ctx, ws, wf.ID)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		if len(versions) > 0 {
			t = versions[0].Graph.Trigger
		}
	}
	if t == nil {
		writeJSON(w, http.StatusOK, map[string]any{"trigger": nil})
		return
	}
	v.Kind, v.NodeID = t.Kind, t.ID
	if t.Connection != nil {
		v.ConnectionID, v.ClientProvidesConnection = t.Connection.ID, t.Connection.ClientProvides
	}
	if v.ClientProvidesConnection {
		bound, ok, err := h.workflows.ClientConnection(ctx, wf.ID, t.ID)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		v.ConnectionID, v.AwaitingClient = bound, !ok && v.Live
	}
	if t.Kind == workflow.TriggerApp {
		if cfg, err := workflow.DecodeConfig(*t); err == nil {
			c := cfg.(*workflow.AppTriggerConfig)
			v.App, v.Trigger, v.AppName, v.TriggerName = c.App, c.Trigger, c.App, c.Trigger
			if app, ok := h.catalog.App(c.App); ok {
				v.AppName = app.Name
				if tr, ok := app.Trigger(c.Trigger); ok {
					v.TriggerName = tr.Name
				}
			}
		}
		if v.Live && h.instants != nil && trigger.CanListen(v.App, v.Trigger) {
			st, ok, err := h.instants.State(ctx, wf.ID)
			if err != nil {
				writeError(w, r, h.log, err)
				return
			}
			if ok {
				v.Instant = instantViewOf(st)
				v.ConnectionID = st.ConnectionID
			}
		} else if v.Live && h.triggers != nil {
			st, ok, err := h.triggers.State(ctx, wf.ID)
			if err != nil {
				writeError(w, r, h.log, err)
				return
			}
			if ok {
				v.Poll = h.pollView(ws, st, v.CheckedAt)
				v.ConnectionID = st.ConnectionID
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"trigger": v})
}

func (h *Handler) pollView(ws account.Workspace, st trigger.PollState, now time.Time) *pollView {
	pv := &pollView{ConnectionID: st.ConnectionID, LastError: st.LastError, Failures: st.Failures,
		LastPollAt: st.LastPollAt, CursorAt: st.CursorAt, RunsStarted: st.RunsStarted}
	switch {
	case st.Held:
		pv.State = pollHeld
		pv.ConnectionPageURL = h.baseURL + "/" + ws.Slug + "/connections/" + st.ConnectionID
	case st.Failures > 0:
		pv.State = pollFailing
	case !st.Primed:
		pv.State = pollUnprimed
	default:
		pv.State = pollListening
	}
	if !st.Held {
		next := st.NextPollAt
		pv.NextPollAt = &next
	}
	if st.CursorAt != nil {
		age := int64(max(now.Sub(*st.CursorAt), 0) / time.Second)
		pv.CursorAgeSeconds = &age
	}
	return pv
}

func (h *Handler) listTriggerEvents(w http.ResponseWriter, r *http.Request, p account.Principal) {
	limit := 50
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > trigger.MaxEvents {
			writeError(w, r, h.log, apperr.Invalid("limit", "limit must be 1–200"))
			return
		}
		limit = n
	}
	wf, _, ok := h.workflowByID(w, r, p)
	if !ok {
		return
	}
	out := []triggerEvent{}
	var list func(ctx context.Context, workflowID string, limit int) ([]trigger.Event, error)
	if h.triggers != nil {
		list = h.triggers.Events
	}
	if h.instants != nil && h.instantTrigger(r.Context(), wf.ID) {
		list = h.instants.Events
	}
	if list != nil {
		events, err := list(r.Context(), wf.ID, limit)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		for _, e := range events {
			out = append(out, triggerEvent{ItemID: e.ItemID, RunID: e.RunID, RunStatus: e.RunStatus, At: e.At})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
}

// instantTrigger reports whether the workflow's live trigger is an
// instant app trigger.
func (h *Handler) instantTrigger(ctx context.Context, workflowID string) bool {
	live, ok, err := h.workflows.Live(ctx, workflowID)
	if err != nil || !ok || live.Graph.Trigger == nil || live.Graph.Trigger.Kind != workflow.TriggerApp {
		return false
	}
	cfg, err := workflow.DecodeConfig(*live.Graph.Trigger)
	if err != nil {
		return false
	}
	c := cfg.(*workflow.AppTriggerConfig)
	return trigger.CanListen(c.App, c.Trigger)
}
