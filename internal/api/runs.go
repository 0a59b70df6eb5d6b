package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/engine"
)

// workspace resolves the {slug} of a staff route.
func (h *Handler) workspace(w http.ResponseWriter, r *http.Request, p account.Principal) (account.Workspace, bool) {
	if err := staffOnly(p); err != nil {
		writeError(w, r, h.log, err)
		return account.Workspace{}, false
	}
	ws, err := h.accounts.WorkspaceBySlug(r.Context(), p, r.PathValue("slug"))
	if err != nil {
		writeError(w, r, h.log, err)
		return account.Workspace{}, false
	}
	return ws, true
}

// startRun is the manual trigger: the body, if any, is the trigger payload.
func (h *Handler) startRun(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	wf, err := h.workflows.Get(r.Context(), ws, r.PathValue("id"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	h.start(w, r, ws, wf.ID, "manual", "The trigger payload is not valid JSON")
}

// start starts a run of a workflow or an agent with the body, if any, as
// its payload, and answers 202 with its id.
func (h *Handler) start(w http.ResponseWriter, r *http.Request, ws account.Workspace, workflowID, source, malformed string) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	payload, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, r, h.log, tooLargeErr)
		return
	}
	if len(payload) > 0 && !json.Valid(payload) {
		writeError(w, r, h.log, apperr.BadRequest("malformed_json", malformed))
		return
	}
	id, err := h.engine.StartRun(r.Context(), workflowID, payload, source, r.Header.Get("Idempotency-Key"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("Location", "/api/v1/workspaces/"+ws.Slug+"/runs/"+id)
	writeJSON(w, http.StatusAccepted, map[string]string{"runId": id})
}

func (h *Handler) listRuns(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	f, err := runsFilter(r)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	runs, err := h.engine.List(r.Context(), ws.ID, f)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	out := map[string]any{"runs": nonNil(runs)}
	if len(runs) == f.Limit {
		out["next"] = runs[len(runs)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

// runsFilter reads a runs list's filter, cursor and page size.
func runsFilter(r *http.Request) (engine.ListFilter, error) {
	q := r.URL.Query()
	if q.Get("reason") == "" {
		q.Set("reason", q.Get("pauseReason"))
	}
	f, err := engine.FilterFromQuery(q.Get)
	if err != nil {
		return f, err
	}
	f.Before, f.Limit = q.Get("before"), 50
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 200 {
			return f, apperr.Invalid("limit", "limit must be 1–200")
		}
		f.Limit = n
	}
	return f, nil
}

// clientRun is a run in the list across clients, with its workspace's slug.
type clientRun struct {
	engine.RunRow
	Client string `json:"client"`
}

// listAllRuns lists the runs of every workspace of the account (or of the
// one client given), newest first, with the runs list's filters.
func (h *Handler) listAllRuns(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := staffOnly(p); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	f, err := runsFilter(r)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	all, err := h.accounts.Workspaces(r.Context(), p)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	client := r.URL.Query().Get("client")
	slugs := map[string]string{}
	var ids []string
	for _, ws := range all {
		if client == "" || client == ws.Slug {
			slugs[ws.ID] = ws.Slug
			ids = append(ids, ws.ID)
		}
	}
	if client != "" && len(ids) == 0 {
		writeError(w, r, h.log, apperr.Invalid("client", "No client (workspace) of this account has the slug "+client))
		return
	}
	runs, err := h.engine.ListAcross(r.Context(), ids, f)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	out := make([]clientRun, len(runs))
	for i, run := range runs {
		out[i] = clientRun{RunRow: run, Client: slugs[run.WorkspaceID]}
	}
	res := map[string]any{"runs": out}
	if len(runs) == f.Limit {
		res["next"] = runs[len(runs)-1].ID
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *Handler) getRun(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	run, err := h.engine.Get(r.Context(), ws.ID, r.PathValue("id"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	steps, err := h.engine.Steps(r.Context(), ws.ID, run.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"run": run, "steps": nonNil(steps)})
}

// runAction is pause, resume, cancel, replay, retry from the failed step
// or decide on a run.
func (h *Handler) runAction(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	ctx, id, actor := r.Context(), r.PathValue("id"), p.User.ID
	var err error
	switch r.PathValue("action") {
	case "pause":
		err = h.engine.Pause(ctx, ws.ID, id, actor)
	case "resume":
		err = h.engine.Resume(ctx, ws.ID, id, actor, h.connectionStatus(ws))
	case "cancel":
		err = h.engine.Cancel(ctx, ws.ID, id, actor)
	case "replay":
		var newID string
		if newID, err = h.engine.Replay(ctx, ws.ID, id, actor); err == nil {
			writeJSON(w, http.StatusAccepted, map[string]string{"runId": newID})
			return
		}
	case "retry":
		var in struct {
			Version engine.RetryVersion `json:"version"`
		}
		if r.ContentLength != 0 {
			if err := decode(w, r, &in); err != nil {
				writeError(w, r, h.log, err)
				return
			}
		}
		if in.Version == "" {
			in.Version = engine.RetryOriginal
		}
		var newID string
		if newID, err = h.engine.RetryFailed(ctx, ws.ID, id, actor, in.Version); err == nil {
			writeJSON(w, http.StatusAccepted, map[string]string{"runId": newID})
			return
		}
	case "agent-decision":
		err = h.agentDecision(r, w, ws, id, actor)
	case "approve", "reject":
		var in struct {
			Comment string `json:"comment"`
		}
		if r.ContentLength != 0 {
			if err := decode(w, r, &in); err != nil {
				writeError(w, r, h.log, err)
				return
			}
		}
		err = h.engine.Decide(ctx, ws.ID, id, actor, r.PathValue("action") == "approve", in.Comment)
	default:
		writeError(w, r, h.log, errNoRoute)
		return
	}
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	run, err := h.engine.Get(ctx, ws.ID, id)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"run": run})
}

func (h *Handler) connectionStatus(ws account.Workspace) engine.ConnectionStatus {
	return func(ctx context.Context, id string) (string, error) {
		c, err := h.connections.Get(ctx, ws, id)
		return string(c.Status), err
	}
}

// resumeHeld resumes every run held for reauthorization on the connection.
func (h *Handler) resumeHeld(w http.ResponseWriter, r *http.Request, p account.Principal) {
	c, ws, ok := h.connection(w, r, p)
	if !ok {
		return
	}
	n, err := h.engine.ResumeHeld(r.Context(), ws.ID, c.ID, p.User.ID, h.connectionStatus(ws))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"resumed": n})
}
