package web

import (
	"encoding/base64"
	"html/template"
	"net/http"
	"strconv"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

// The Security page: a staff member's MFA (setup, backup codes, turning it
// off) and, for owners and admins, the account's requirement and roster.

const securityPage = "/account/security"

type securityData struct {
	Status account.MFAStatus
	// Setup is the secret of a setup waiting for its first code; never
	// filled once MFA is on.
	Setup *mfaSetupView
	// BackupCodes were just made, and are shown on this answer only.
	BackupCodes []string
	Held        bool
	CanManage   bool
	Policy      account.MFAPolicy
	Roster      []account.RosterEntry
	// Sessions are the person's signed-in sessions.
	Sessions []account.SessionInfo
}

type mfaSetupView struct {
	Key string
	QR  template.URL
}

// enrolling wraps the Security page and its actions: staff only, and
// reachable by staff held until they turn MFA on.
func (h *Handler) enrolling(fn func(http.ResponseWriter, *http.Request, account.Principal)) http.HandlerFunc {
	return h.signedInAs(false, true, fn)
}

func (h *Handler) security(w http.ResponseWriter, r *http.Request, p account.Principal) {
	h.renderSecurity(w, r, p, nil)
}

func (h *Handler) renderSecurity(w http.ResponseWriter, r *http.Request, p account.Principal, codes []string) {
	ctx := r.Context()
	d := securityData{BackupCodes: codes, Held: p.MFAHold, CanManage: p.Can(account.CapManageWorkspaces)}
	var err error
	if d.Status, err = h.accounts.MFAStatusOf(ctx, p); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	if d.Status.Pending {
		setup, ok, err := h.accounts.PendingMFASetup(ctx, p)
		if err != nil {
			h.errorPage(w, r, &p, err)
			return
		}
		if ok {
			d.Setup = &mfaSetupView{Key: spaced(setup.Key), QR: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(setup.QR))}
		}
	}
	if d.Policy, err = h.accounts.MFAPolicyOf(ctx, p); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	if d.CanManage {
		if d.Roster, err = h.accounts.MFARoster(ctx, p); err != nil {
			h.errorPage(w, r, &p, err)
			return
		}
	}
	if d.Sessions, err = h.accounts.Sessions(ctx, p.User.ID, sessionToken(r)); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	h.render(w, r, http.StatusOK, "security", view{Title: "Security", P: &p, Section: "security", Data: d})
}

// spaced groups a key in fours, as authenticator apps accept it typed.
func spaced(key string) string {
	var b strings.Builder
	for i, c := range key {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (h *Handler) setupMFA(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if _, err := h.accounts.BeginMFASetup(r.Context(), p); err != nil {
		h.refuse(w, r, &p, securityPage, err)
		return
	}
	redirect(w, r, securityPage+"#mfa")
}

func (h *Handler) enableMFA(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	codes, err := h.accounts.EnableMFA(r.Context(), p, r.PostForm.Get("code"))
	if err != nil {
		h.refuse(w, r, &p, securityPage+"#mfa", err)
		return
	}
	p.MFAHold = false
	h.renderSecurity(w, r, p, codes)
}

func (h *Handler) regenerateBackupCodes(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	codes, err := h.accounts.RegenerateBackupCodes(r.Context(), p, r.PostForm.Get("code"), h.auth.ClientIP(r))
	if err != nil {
		h.refuse(w, r, &p, securityPage+"#backup-codes", err)
		return
	}
	h.renderSecurity(w, r, p, codes)
}

func (h *Handler) disableMFA(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	if err := h.accounts.DisableMFA(r.Context(), p, r.PostForm.Get("code"), h.auth.ClientIP(r)); err != nil {
		h.refuse(w, r, &p, securityPage+"#turn-off", err)
		return
	}
	setFlash(w, "mfa-off")
	redirect(w, r, securityPage)
}

func (h *Handler) requireMFA(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := requireAdmin(p); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	required := r.PostForm.Get("required") == "on"
	days := 0
	if required {
		var err error
		if days, err = strconv.Atoi(strings.TrimSpace(r.PostForm.Get("graceDays"))); err != nil {
			h.refuse(w, r, &p, securityPage+"#require", apperr.Invalid("graceDays", "Grace period must be a whole number of days, such as 7"))
			return
		}
	}
	if err := h.accounts.SetMFAPolicy(r.Context(), p, required, days); err != nil {
		h.refuse(w, r, &p, securityPage+"#require", err)
		return
	}
	setFlash(w, "mfa-policy-saved")
	redirect(w, r, securityPage+"#require")
}
