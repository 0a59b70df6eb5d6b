package web

import (
	"encoding/json"
	"net/http"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

// deleteWorkspaceData is the confirmation of a workspace's deletion: what
// goes, named.
type deleteWorkspaceData struct {
	Contents    account.WorkspaceContents
	Connections []string // labels of the connections revoked at their apps
	Workflows   []string
	Confirm     string
	Error       string
}

// deleteWorkspacePage asks to confirm a workspace's deletion, naming what
// will go (owners and admins).
func (h *Handler) deleteWorkspacePage(w http.ResponseWriter, r *http.Request, v view) {
	ctx := r.Context()
	c, err := h.accounts.Contents(ctx, *v.P, *v.Workspace)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d := deleteWorkspaceData{Contents: c}
	conns, err := h.Connections.List(ctx, *v.Workspace, "")
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	for _, cn := range conns {
		if cn.Status != "revoked" {
			d.Connections = append(d.Connections, cn.Label+" ("+h.appName(cn.AppKey)+")")
		}
	}
	wfs, err := h.Workflows.List(ctx, *v.Workspace)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	for _, wf := range wfs {
		d.Workflows = append(d.Workflows, wf.Name)
	}
	if k, ok := keptForm(r); ok {
		d.Confirm, d.Error = k.Values["confirm"], k.Error
	}
	v.Title, v.Data = "Delete "+v.Workspace.Name, d
	h.render(w, r, http.StatusOK, "workspace_delete", v)
}

// deleteWorkspace deletes the workspace once its address is typed: its
// connections are revoked at their apps first.
func (h *Handler) deleteWorkspace(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	confirm := r.PostForm.Get("confirm")
	rep, err := h.Teardown.DeleteWorkspace(r.Context(), *v.P, *v.Workspace, confirm)
	if err != nil {
		h.refuseForm(w, r, v.P, "/"+v.Workspace.Slug+"/workspace/delete", err, map[string]string{"confirm": confirm})
		return
	}
	h.log.InfoContext(r.Context(), "workspace deleted", "workspace", v.Workspace.ID, "connections_revoked", len(rep.Revocations))
	setFlash(w, "workspace-deleted")
	redirect(w, r, "/dashboard")
}

// exportAccount downloads the account's data as a JSON archive (owners
// and admins); the export is recorded in the audit log.
func (h *Handler) exportAccount(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := requireAdmin(p); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	now := time.Now().UTC()
	a, err := h.Teardown.Export(r.Context(), p, now)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	body, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="taskjuice-export-`+now.Format("2006-01-02")+`.json"`)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(body, '\n'))
}

// deleteAccount deletes the account once its name is typed (the owner
// only); everyone is signed out with it.
func (h *Handler) deleteAccount(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	if err := account.MayDeleteAccount(p); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	confirm := r.PostForm.Get("confirm")
	if _, err := h.Teardown.DeleteAccount(r.Context(), p, confirm); err != nil {
		if apperr.Is(err, apperr.KindInvalid) {
			h.refuseForm(w, r, &p, "/settings/general#danger", err, map[string]string{"card": "danger", "confirm": confirm})
			return
		}
		h.errorPage(w, r, &p, err)
		return
	}
	_ = h.auth.EndSession(w, r)
	h.render(w, r, http.StatusOK, "account_deleted", view{Title: "Account deleted", Data: p.AccountName})
}
