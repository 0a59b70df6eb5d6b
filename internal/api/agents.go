package api

import (
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/agent"
	"taskjuice/internal/apperr"
	"taskjuice/internal/engine"
)

// builder resolves the workspace of a route that changes what the workspace
// runs (what names it in the refusal): it takes the write capability.
func (h *Handler) builder(w http.ResponseWriter, r *http.Request, p account.Principal, what string) (account.Workspace, bool) {
	ws, ok := h.workspace(w, r, p)
	if ok && !p.Can(account.CapWrite) {
		writeError(w, r, h.log, apperr.Forbidden("Your role cannot change "+what))
		return account.Workspace{}, false
	}
	return ws, ok
}

func (h *Handler) listAgents(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	list, err := h.agents.List(r.Context(), ws)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": nonNil(list)})
}

func (h *Handler) createAgent(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.builder(w, r, p, "agents")
	if !ok {
		return
	}
	var in agent.Spec
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	a, err := h.agents.Create(r.Context(), ws, in, p.User.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("Location", "/api/v1/workspaces/"+ws.Slug+"/agents/"+a.ID)
	writeJSON(w, http.StatusCreated, map[string]any{"agent": a})
}

func (h *Handler) getAgent(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	a, err := h.agents.Get(r.Context(), ws, r.PathValue("id"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agent": a})
}

func (h *Handler) updateAgent(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.builder(w, r, p, "agents")
	if !ok {
		return
	}
	var in agent.Spec
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	a, err := h.agents.Update(r.Context(), ws, r.PathValue("id"), in, p.User.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agent": a})
}

// startAgentRun starts an agent run; the body, if any, is its input.
func (h *Handler) startAgentRun(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	a, err := h.agents.Get(r.Context(), ws, r.PathValue("id"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	h.start(w, r, ws, a.ID, "api", "The agent's input is not valid JSON")
}

// agentDecision is the agent callback: the next tool call, or the answer,
// for an agent run waiting for one.
func (h *Handler) agentDecision(r *http.Request, w http.ResponseWriter, ws account.Workspace, id, actor string) error {
	var in engine.AgentDecision
	if err := decode(w, r, &in); err != nil {
		return err
	}
	return h.engine.SubmitAgentDecision(r.Context(), ws.ID, id, actor, in)
}
