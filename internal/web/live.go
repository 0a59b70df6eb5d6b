package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"taskjuice/internal/engine"
)

// Live updates. A workspace page opens one Server-Sent Events stream at
// /{workspaceSlug}/live (?run=ID on a run's page). The stream says when the
// person's alerts change (a connection broke or was fixed: banner, bell and
// runs list are stale) and when the watched run moves; the page then fetches
// itself again and swaps in its live regions. The stream reads the database
// (cheap lookups by key), so a change made by any process shows up. Pages
// fall back to polling when the stream cannot be opened.

// liveEvery is how often a stream looks for changes.
var liveEvery = time.Second

// liveMaxAge closes a stream after a while; the browser reconnects by
// itself, which keeps idle streams from piling up behind proxies.
const liveMaxAge = 10 * time.Minute

type drainKey struct{}

// WithDrain marks a server's base context with a channel that is closed
// when the server starts shutting down, so long-lived responses (event
// streams) end and let the shutdown finish.
func WithDrain(ctx context.Context, drain <-chan struct{}) context.Context {
	return context.WithValue(ctx, drainKey{}, drain)
}

func draining(ctx context.Context) <-chan struct{} {
	if ch, ok := ctx.Value(drainKey{}).(<-chan struct{}); ok {
		return ch
	}
	return nil
}

// runState is what a run page shows that can change.
type runState struct {
	ID        string        `json:"id"`
	Status    engine.Status `json:"status"`
	StepsDone int           `json:"stepsDone"`
	Reason    string        `json:"reason,omitempty"`
}

func (h *Handler) live(w http.ResponseWriter, r *http.Request, v view) {
	ctx := r.Context()
	uid := v.P.User.ID
	alerts := func() (string, error) {
		if h.Notify == nil {
			return "", nil
		}
		_, sig, err := h.Notify.Unread(ctx, v.Workspace.ID, uid)
		return sig, err
	}
	runID := r.URL.Query().Get("run")
	run := func() (runState, bool, error) {
		if runID == "" || h.Engine == nil {
			return runState{}, false, nil
		}
		got, err := h.Engine.Get(ctx, v.Workspace.ID, runID)
		if err != nil {
			return runState{}, false, err
		}
		return runState{ID: got.ID, Status: got.Status, StepsDone: got.StepsDone, Reason: string(got.PauseReason) + got.WaitReason}, true, nil
	}
	sig := v.Alerts
	cur, watching, err := run()
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, data any) bool {
		b, _ := json.Marshal(data)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The first events give the state the stream starts from; the page
	// compares them with what it shows.
	if !send("alerts", map[string]string{"signature": sig}) {
		return
	}
	if watching && !send("run", cur) {
		return
	}
	tick := time.NewTicker(liveEvery)
	defer tick.Stop()
	heartbeat := time.NewTicker(20 * time.Second)
	defer heartbeat.Stop()
	maxAge := time.NewTimer(liveMaxAge)
	defer maxAge.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-draining(ctx):
			return
		case <-maxAge.C:
			return
		case <-heartbeat.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-tick.C:
			if next, err := alerts(); err == nil && next != sig {
				sig = next
				if !send("alerts", map[string]string{"signature": sig}) {
					return
				}
			}
			if !watching {
				continue
			}
			next, _, err := run()
			if err != nil || next == cur {
				continue
			}
			cur = next
			if !send("run", cur) {
				return
			}
			// A finished run does not change again.
			watching = !cur.Status.Terminal()
		}
	}
}
