package api

import (
	"net/http"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/portal"
)

// Client requests: the workspace's queue of apps its client is to connect,
// and the requests sent, as the "Client requests" page shows them.

// sentRequest is a dispatch with its progress.
type sentRequest struct {
	portal.Batch
	Connected int  `json:"connected"`
	Total     int  `json:"total"`
	Expired   bool `json:"expired"`
}

func (h *Handler) listClientRequests(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	queued, err := h.portal.Queued(r.Context(), ws)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	batches, err := h.portal.Sent(r.Context(), p, ws)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	now := time.Now()
	sent := make([]sentRequest, 0, len(batches))
	for _, b := range batches {
		x, y := b.Progress()
		sent = append(sent, sentRequest{Batch: b, Connected: x, Total: y, Expired: b.Expired(now)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"queued": nonNil(queued), "sent": sent})
}

// queueClientRequest adds a client-provided step's app to the queue; it
// sends nothing.
func (h *Handler) queueClientRequest(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.builder(w, r, p, "client requests")
	if !ok {
		return
	}
	var in struct {
		WorkflowID string `json:"workflowId"`
		NodeID     string `json:"nodeId"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	req, err := h.portal.Queue(r.Context(), p, ws, in.WorkflowID, in.NodeID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"request": req})
}

func (h *Handler) unqueueClientRequest(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.builder(w, r, p, "client requests")
	if !ok {
		return
	}
	if err := h.portal.Unqueue(r.Context(), p, ws, r.PathValue("id")); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sendClientRequests sends the queue to one of the workspace's clients: by
// email, or, on a server whose email is off, by a sign-in link returned
// once for staff to hand over.
func (h *Handler) sendClientRequests(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.builder(w, r, p, "client requests")
	if !ok {
		return
	}
	var in struct {
		ClientUserID string `json:"clientUserId"`
		Note         string `json:"note"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if h.byEmail() {
		b, err := h.portal.Dispatch(r.Context(), p, ws, in.ClientUserID, in.Note)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"batch": b})
		return
	}
	b, token, err := h.portal.DispatchByLink(r.Context(), p, ws, in.ClientUserID, in.Note)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"batch": b, "link": h.baseURL + portal.LinkPath(token)})
}
