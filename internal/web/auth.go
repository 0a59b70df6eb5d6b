package web

import (
	"net/http"
	"net/url"
	"strconv"
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
	return h.signedInAs(false, false, fn)
}

// client wraps a page for clients only: staff go to the dashboard.
func (h *Handler) client(fn func(http.ResponseWriter, *http.Request, account.Principal)) http.HandlerFunc {
	return h.signedInAs(true, false, fn)
}

// signedInAs decides on every request which surface the person may see;
// anyone on the other surface is sent to their own landing page, and
// staff who must turn MFA on first to the Security page (unless the page
// is where they enroll).
func (h *Handler) signedInAs(forClients, enrolling bool, fn func(http.ResponseWriter, *http.Request, account.Principal)) http.HandlerFunc {
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
		if p.MFAHold && !enrolling {
			redirect(w, r, securityPage)
			return
		}
		fn(w, r.WithContext(account.WithActor(r.Context(), p.User.ID)), p)
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
	p, signedIn, err := h.auth.StartSession(w, r, email, r.PostForm.Get("password"))
	if err != nil {
		h.signinRefused(w, r, err, "signin", signinData{Email: email, Next: next})
		return
	}
	if !signedIn {
		to := "/signin/mfa"
		if next != "" {
			to += "?next=" + url.QueryEscape(next)
		}
		redirect(w, r, to)
		return
	}
	redirect(w, r, afterSignin(p, next))
}

// afterSignin is where a person goes once signed in: where they were
// going, unless that is on the other surface (a client never lands on a
// staff page, nor staff on the portal).
func afterSignin(p account.Principal, next string) string {
	if next == "" || (p.IsClient() != strings.HasPrefix(next, "/portal")) {
		return landing(p)
	}
	return next
}

// signinRefused shows a sign-in step again with why it was refused; a
// back-off also says when to retry.
func (h *Handler) signinRefused(w http.ResponseWriter, r *http.Request, err error, page string, d signinData) {
	e, ok := apperr.As(err)
	if !ok {
		h.errorPage(w, r, nil, err)
		return
	}
	if wait, ok := account.RetryAfter(err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())))
	}
	d.Error = e.Message
	h.render(w, r, apperr.Status(err), page, view{Title: "Sign in", Data: d})
}

// signinCode asks for the MFA code of a sign-in whose password was right.
func (h *Handler) signinCode(w http.ResponseWriter, r *http.Request) {
	email, err := h.auth.PendingMFA(r)
	if err != nil {
		redirect(w, r, "/signin")
		return
	}
	h.render(w, r, http.StatusOK, "signin_mfa", view{Title: "Sign in", Data: signinData{Email: email, Next: safeNext(r.URL.Query().Get("next"))}})
}

func (h *Handler) signinCodeSubmit(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, nil, errBadForm)
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	p, err := h.auth.FinishMFA(w, r, r.PostForm.Get("code"))
	if apperr.Is(err, apperr.KindGone) {
		h.signinRefused(w, r, err, "signin", signinData{Next: next})
		return
	}
	if err != nil {
		email, _ := h.auth.PendingMFA(r)
		h.signinRefused(w, r, err, "signin_mfa", signinData{Email: email, Next: next})
		return
	}
	redirect(w, r, afterSignin(p, next))
}

// signinCodeCancel goes back to the password step.
func (h *Handler) signinCodeCancel(w http.ResponseWriter, r *http.Request) {
	if err := h.auth.CancelMFA(w, r); err != nil {
		h.log.ErrorContext(r.Context(), "cancel mfa sign-in", "err", err)
	}
	redirect(w, r, "/signin")
}

func (h *Handler) signout(w http.ResponseWriter, r *http.Request) {
	if err := h.auth.EndSession(w, r); err != nil {
		h.log.ErrorContext(r.Context(), "sign out", "err", err)
	}
	setFlash(w, "signed-out")
	redirect(w, r, "/signin")
}
