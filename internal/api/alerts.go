package api

import (
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/notify"
	"taskjuice/internal/workflow"
)

// alertsBody is a change of failure alert settings; Inherit (on a
// workflow) gives it its workspace's default again.
type alertsBody struct {
	notify.AlertChange
	Inherit bool `json:"inherit"`
}

// getWorkspaceAlerts is the workspace's default failure alert settings.
func (h *Handler) getWorkspaceAlerts(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	h.writeAlerts(w, r, ws.ID, "", "")
}

func (h *Handler) putWorkspaceAlerts(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.builder(w, r, p, "workflows")
	if !ok {
		return
	}
	h.saveAlerts(w, r, ws.ID, "")
}

func (h *Handler) getWorkflowAlerts(w http.ResponseWriter, r *http.Request, _ account.Principal, ws account.Workspace, wf workflow.Workflow) {
	h.writeAlerts(w, r, ws.ID, wf.ID, "")
}

func (h *Handler) putWorkflowAlerts(w http.ResponseWriter, r *http.Request, _ account.Principal, ws account.Workspace, wf workflow.Workflow) {
	h.saveAlerts(w, r, ws.ID, wf.ID)
}

func (h *Handler) saveAlerts(w http.ResponseWriter, r *http.Request, workspaceID, workflowID string) {
	var in alertsBody
	if err := decode(w, r, &in); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if in.Inherit && workflowID != "" {
		if err := h.alerts.ClearAlerts(r.Context(), workspaceID, workflowID); err != nil {
			writeError(w, r, h.log, err)
			return
		}
		h.writeAlerts(w, r, workspaceID, workflowID, "")
		return
	}
	secret, err := h.alerts.SetAlerts(r.Context(), workspaceID, workflowID, in.AlertChange, h.chatTargets)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	h.writeAlerts(w, r, workspaceID, workflowID, secret)
}

// writeAlerts answers with the settings and, once, a new signing secret.
func (h *Handler) writeAlerts(w http.ResponseWriter, r *http.Request, workspaceID, workflowID, secret string) {
	a, err := h.alerts.Alerts(r.Context(), workspaceID, workflowID)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	body := map[string]any{"alerts": a}
	if secret != "" {
		body["webhookSecret"] = secret
	}
	writeJSON(w, http.StatusOK, body)
}

// listIncidents is the workspace's failure incidents, open ones first.
func (h *Handler) listIncidents(w http.ResponseWriter, r *http.Request, p account.Principal) {
	ws, ok := h.workspace(w, r, p)
	if !ok {
		return
	}
	list, err := h.alerts.Incidents(r.Context(), ws.ID, 100)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": nonNil(list)})
}
