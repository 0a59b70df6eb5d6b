package web

import (
	"net/http"
	"net/url"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

// landing is where a person belongs: the portal for clients, the dashboard
// for staff.
func landing(p account.Principal) string {
	if p.IsClient() {
		return "/portal"
	}
	return "/dashboard"
}

func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	p, err := h.auth.Session(r)
	if err != nil {
		redirect(w, r, "/signin")
		return
	}
	redirect(w, r, landing(p))
}

func (h *Handler) toSignin(w http.ResponseWriter, r *http.Request) {
	next := r.URL.RequestURI()
	if r.Method != http.MethodGet {
		next = ""
	}
	to := "/signin"
	if next != "" && next != "/" {
		to += "?next=" + url.QueryEscape(next)
	}
	redirect(w, r, to)
}

// staff wraps a page for staff only: no session goes to sign-in, a client
// goes back to the portal.
func (h *Handler) staff(fn func(http.ResponseWriter, *http.Request, account.Principal)) http.HandlerFunc {
	return h.signedIn(false, fn)
}

// client wraps a page for clients only: staff go to the dashboard.
func (h *Handler) client(fn func(http.ResponseWriter, *http.Request, account.Principal)) http.HandlerFunc {
	return h.signedIn(true, fn)
}

// signedIn decides on every request which surface the person may see;
// anyone on the other surface is sent to their own landing page.
func (h *Handler) signedIn(forClients bool, fn func(http.ResponseWriter, *http.Request, account.Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := h.auth.Session(r)
		if err != nil {
			if apperr.Is(err, apperr.KindUnauthorized) {
				h.toSignin(w, r)
				return
			}
			h.errorPage(w, r, nil, err)
			return
		}
		if p.IsClient() != forClients {
			redirect(w, r, landing(p))
			return
		}
		fn(w, r, p)
	}
}

type signinData struct {
	Email, Next, Error string
}

// safeNext accepts only a path on this site, so the sign-in form cannot be
// used to send people elsewhere.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return ""
	}
	return next
}

func (h *Handler) signinForm(w http.ResponseWriter, r *http.Request) {
	if p, err := h.auth.Session(r); err == nil {
		redirect(w, r, landing(p))
		return
	}
	h.render(w, r, http.StatusOK, "signin", view{Title: "Sign in", Data: signinData{Next: safeNext(r.URL.Query().Get("next"))}})
}

func (h *Handler) signin(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, nil, errBadForm)
		return
	}
	email, next := r.PostForm.Get("email"), safeNext(r.PostForm.Get("next"))
	p, err := h.auth.StartSession(w, r, email, r.PostForm.Get("password"))
	if err != nil {
		e, ok := apperr.As(err)
		if !ok {
			h.errorPage(w, r, nil, err)
			return
		}
		h.render(w, r, apperr.Status(err), "signin", view{Title: "Sign in", Data: signinData{Email: email, Next: next, Error: e.Message}})
		return
	}
	// A client never lands on a staff page, nor staff on the portal.
	if next == "" || (p.IsClient() != strings.HasPrefix(next, "/portal")) {
		next = landing(p)
	}
	redirect(w, r, next)
}

func (h *Handler) signout(w http.ResponseWriter, r *http.Request) {
	if err := h.auth.EndSession(w, r); err != nil {
		h.log.ErrorContext(r.Context(), "sign out", "err", err)
	}
	setFlash(w, "signed-out")
	redirect(w, r, "/signin")
}
