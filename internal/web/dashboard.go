package web

import (
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

type dashboardData struct {
	CanCreate bool
	Form      workspaceForm
}

type workspaceForm struct {
	Open       bool
	Name, Slug string
	NameError  string
	SlugError  string
	FormError  string
}

func (h *Handler) dashboard(w http.ResponseWriter, r *http.Request, p account.Principal) {
	var form workspaceForm
	if k, ok := keptForm(r); ok {
		form = workspaceForm{Open: true, Name: k.Values["name"], Slug: k.Values["slug"], NameError: k.Fields["name"], SlugError: k.Fields["slug"]}
		if form.NameError == "" && form.SlugError == "" {
			form.FormError = k.Error
		}
	}
	h.renderDashboard(w, r, p, http.StatusOK, form)
}

func (h *Handler) renderDashboard(w http.ResponseWriter, r *http.Request, p account.Principal, status int, form workspaceForm) {
	ws, err := h.accounts.Workspaces(r.Context(), p)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	h.render(w, r, status, "dashboard", view{
		Title: "Dashboard", P: &p, Workspaces: ws, Section: "dashboard",
		Data: dashboardData{CanCreate: p.Can(account.CapManageWorkspaces), Form: form},
	})
}

func (h *Handler) createWorkspace(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	if !p.Can(account.CapManageWorkspaces) {
		h.errorPage(w, r, &p, apperr.Forbidden("Only account owners and admins can create workspaces. Ask one of them to create it for you."))
		return
	}
	name, slug := r.PostForm.Get("name"), r.PostForm.Get("slug")
	ws, err := h.accounts.CreateWorkspace(r.Context(), p, name, slug)
	if err != nil {
		h.refuseForm(w, r, &p, "/dashboard", err, map[string]string{"name": name, "slug": slug})
		return
	}
	setFlash(w, "workspace-created")
	redirect(w, r, "/"+ws.Slug+"/")
}
