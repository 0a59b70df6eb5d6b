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
	h.renderDashboard(w, r, p, http.StatusOK, workspaceForm{})
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
		if _, ok := apperr.As(err); !ok {
			h.errorPage(w, r, &p, err)
			return
		}
		fields := apperr.Fields(err)
		form := workspaceForm{Open: true, Name: name, Slug: slug, NameError: fields["name"], SlugError: fields["slug"]}
		if form.NameError == "" && form.SlugError == "" {
			e, _ := apperr.As(err)
			form.FormError = e.Message
		}
		h.renderDashboard(w, r, p, apperr.Status(err), form)
		return
	}
	setFlash(w, "workspace-created")
	redirect(w, r, "/"+ws.Slug+"/")
}
