package api

import (
	"net/http"
	"strings"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/llm"
)

var errNoModels = apperr.NotFound("Model providers and spend are not available on this server")

// modelsWorkspace resolves the workspace of a model-provider or spend
// route; with write set it takes the write capability.
func (h *Handler) modelsWorkspace(w http.ResponseWriter, r *http.Request, p account.Principal, write bool) (account.Workspace, bool) {
	var ws account.Workspace
	var ok bool
	if write {
		ws, ok = h.builder(w, r, p, "model providers")
	} else {
		ws, ok = h.workspace(w, r, p)
	}
	if ok && (h.models == nil || h.spend == nil) {
		writeError(w, r, h.log, errNoModels)
		return account.Workspace{}, false
	}
	return ws, ok
}

func (h *Handler) listModelProviders(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.modelsWorkspace(w, r, p, false)
	if !ok {
		return
	}
	list, err := h.models.List(r.Context(), ws.ID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": nonNil(list)})
}

func (h *Handler) createModelProvider(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.modelsWorkspace(w, r, p, true)
	if !ok {
		return
	}
	var in llm.ProviderInput
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	mp, err := h.models.Create(r.Context(), ws.ID, in)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("Location", "/api/v1/workspaces/"+ws.Slug+"/model-providers/"+mp.ID)
	writeJSON(w, http.StatusCreated, map[string]any{"provider": mp})
}

func (h *Handler) getModelProvider(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.modelsWorkspace(w, r, p, false)
	if !ok {
		return
	}
	mp, err := h.models.Get(r.Context(), ws.ID, r.PathValue("id"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"provider": mp})
}

func (h *Handler) updateModelProvider(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.modelsWorkspace(w, r, p, true)
	if !ok {
		return
	}
	var in llm.ProviderInput
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	mp, err := h.models.Update(r.Context(), ws.ID, r.PathValue("id"), in)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"provider": mp})
}

func (h *Handler) deleteModelProvider(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.modelsWorkspace(w, r, p, true)
	if !ok {
		return
	}
	if err := h.models.Delete(r.Context(), ws.ID, r.PathValue("id")); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) getSpend(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.modelsWorkspace(w, r, p, false)
	if !ok {
		return
	}
	sum, err := h.spend.Summary(r.Context(), ws.ID, time.Now())
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"spend": sum})
}

// setSpendCap sets the workspace's hard cap: owners and admins only.
func (h *Handler) setSpendCap(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.modelsWorkspace(w, r, p, false)
	if !ok {
		return
	}
	if !p.Can(account.CapManageWorkspaces) {
		writeError(w, r, h.log, apperr.Forbidden(account.MsgAdminRequired))
		return
	}
	var in struct {
		CapUSD *llm.USD `json:"capUsd"`
	}
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if in.CapUSD == nil || strings.TrimSpace(string(*in.CapUSD)) == "" {
		writeError(w, r, h.log, apperr.Invalid("capUsd", "Give the cap in US dollars, such as \"5.00\"; 0 removes it"))
		return
	}
	limit, err := llm.ParseMoney(string(*in.CapUSD))
	if err != nil {
		writeError(w, r, h.log, apperr.Invalid("capUsd", "The cap "+llm.AmountProblem(err)))
		return
	}
	if err := h.spend.SetCap(r.Context(), ws.ID, limit); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	sum, err := h.spend.Summary(r.Context(), ws.ID, time.Now())
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"spend": sum})
}
