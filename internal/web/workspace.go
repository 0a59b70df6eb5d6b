package web

import (
	"net/http"
	"strconv"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/engine"
)

type workspacePage func(w http.ResponseWriter, r *http.Request, v view)

// inWorkspace wraps a page inside a workspace: staff only (a client is sent
// to the portal), and the slug must name a workspace of the person's own
// account — any other slug is simply not found.
func (h *Handler) inWorkspace(section string, fn workspacePage) http.HandlerFunc {
	return h.staff(func(w http.ResponseWriter, r *http.Request, p account.Principal) {
		ws, err := h.accounts.WorkspaceBySlug(r.Context(), p, r.PathValue("workspaceSlug"))
		if apperr.IsNotFound(err) && h.redirectMoved(w, r, p) {
			return
		}
		if err != nil {
			err = apperr.Explain(err, "There is no workspace at this address in your account.")
			h.errorPage(w, r, &p, err)
			return
		}
		all, err := h.accounts.Workspaces(r.Context(), p)
		if err != nil {
			h.errorPage(w, r, &p, err)
			return
		}
		v := view{Title: ws.Name, P: &p, Workspace: &ws, Workspaces: all, Section: section}
		if h.Notify != nil {
			if v.Unread, v.Alerts, err = h.Notify.Unread(r.Context(), ws.ID, p.User.ID); err != nil {
				h.errorPage(w, r, &p, err)
				return
			}
			// The banner tops the runs area (the overview and the runs
			// pages); a broken connection whose alert was marked read keeps
			// a quieter reminder there and on the Connections page.
			if section == "overview" || section == "runs" || section == "connections" {
				banner, quiet, err := h.Notify.Reauth(r.Context(), ws.ID, p.User.ID)
				if err != nil {
					h.errorPage(w, r, &p, err)
					return
				}
				v.Reminders = quiet
				if section != "connections" {
					v.Banner = banner
				}
			}
		}
		fn(w, r, v)
	})
}

func (h *Handler) workspaceRedirect(w http.ResponseWriter, r *http.Request) {
	if err := account.ValidateSlug(r.PathValue("workspaceSlug")); err != nil {
		h.notFound(w, r)
		return
	}
	http.Redirect(w, r, "/"+r.PathValue("workspaceSlug")+"/", http.StatusMovedPermanently)
}

// redirectMoved sends a page asked for at a renamed workspace's old
// address to the same page at its current one, and reports whether it did.
// Only pages are redirected (GET and HEAD): a form posted to an old
// address is refused as any unknown address is.
func (h *Handler) redirectMoved(w http.ResponseWriter, r *http.Request, p account.Principal) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	old := r.PathValue("workspaceSlug")
	ws, err := h.accounts.MovedWorkspace(r.Context(), p, old)
	if err != nil {
		return false
	}
	to := "/" + ws.Slug + strings.TrimPrefix(r.URL.Path, "/"+old)
	if r.URL.RawQuery != "" {
		to += "?" + r.URL.RawQuery
	}
	http.Redirect(w, r, to, http.StatusMovedPermanently)
	return true
}

// renameWorkspace gives the workspace a new name and address (owners and
// admins); its old address redirects for a while.
func (h *Handler) renameWorkspace(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	ws, err := h.accounts.RenameWorkspace(r.Context(), *v.P, *v.Workspace, r.PostForm.Get("name"), r.PostForm.Get("slug"))
	if err != nil {
		h.refuse(w, r, v.P, "/"+v.Workspace.Slug+"/#rename", err)
		return
	}
	setFlash(w, "workspace-renamed")
	redirect(w, r, "/"+ws.Slug+"/")
}

// workspaceHomeData is the workspace's overview: its tiles, and how long
// it keeps finished runs.
type workspaceHomeData struct {
	Retention engine.Retention
	CanSet    bool
}

func (h *Handler) workspaceHome(w http.ResponseWriter, r *http.Request, v view) {
	ret, err := h.Engine.Retention(r.Context(), v.Workspace.ID)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	v.Data = workspaceHomeData{Retention: ret, CanSet: v.P.Can(account.CapManageWorkspaces)}
	h.render(w, r, http.StatusOK, "workspace", v)
}

// saveRetention sets how long the workspace keeps finished runs (owners
// and admins).
func (h *Handler) saveRetention(w http.ResponseWriter, r *http.Request, v view) {
	back := "/" + v.Workspace.Slug + "/"
	if !v.P.Can(account.CapManageWorkspaces) {
		h.errorPage(w, r, v.P, apperr.Forbidden("Tenant admin required"))
		return
	}
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	days, err1 := strconv.Atoi(strings.TrimSpace(r.PostForm.Get("days")))
	runs, err2 := strconv.Atoi(strings.TrimSpace(r.PostForm.Get("maxRuns")))
	if err1 != nil || err2 != nil {
		h.refuse(w, r, v.P, back, apperr.Invalid("days", engine.MsgRetention))
		return
	}
	if err := h.Engine.SetRetention(r.Context(), v.Workspace.ID, days, runs); err != nil {
		h.refuse(w, r, v.P, back, err)
		return
	}
	setFlash(w, "settings-saved")
	redirect(w, r, back)
}

type membersData struct {
	Members     []account.Member
	Invitations []account.Invitation
	Invite      inviteForm
}

// inviteForm is the "Invite client" dialog: one email field.
type inviteForm struct {
	Open         bool
	Email, Error string
}

func (h *Handler) members(w http.ResponseWriter, r *http.Request, v view) {
	var form inviteForm
	if k, ok := keptForm(r); ok {
		form = inviteForm{Open: true, Email: k.Values["email"], Error: k.Error}
	}
	h.renderMembers(w, r, v, http.StatusOK, form)
}

func (h *Handler) renderMembers(w http.ResponseWriter, r *http.Request, v view, status int, form inviteForm) {
	ctx := r.Context()
	members, err := h.accounts.Members(ctx, *v.P, *v.Workspace)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	inv, err := h.accounts.PendingInvitations(ctx, *v.P, *v.Workspace)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	v.Title = "Members · " + v.Workspace.Name
	v.Data = membersData{Members: members, Invitations: inv, Invite: form}
	h.render(w, r, status, "members", v)
}
