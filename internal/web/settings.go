package web

import (
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

type accountSettingsData struct {
	Account       account.Account
	Staff         []account.Member
	CanTransfer   bool
	NameError     string
	TransferError string
}

// requireAdmin is the account settings gate: owners and admins only, with
// the product's standard message.
func requireAdmin(p account.Principal) error {
	if !p.Can(account.CapManageWorkspaces) {
		return apperr.Forbidden(account.MsgAdminRequired)
	}
	return nil
}

func (h *Handler) accountSettings(w http.ResponseWriter, r *http.Request, p account.Principal) {
	h.renderAccountSettings(w, r, p, http.StatusOK, accountSettingsData{})
}

func (h *Handler) renderAccountSettings(w http.ResponseWriter, r *http.Request, p account.Principal, status int, d accountSettingsData) {
	if err := requireAdmin(p); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	a, err := h.accounts.Account(r.Context(), p.AccountID)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	staff, err := h.accounts.Staff(r.Context(), p)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	if d.Account.ID == "" {
		d.Account = a
	}
	d.Staff, d.CanTransfer = staff, p.Can(account.CapTransferOwnership)
	h.render(w, r, status, "account", view{Title: "Account settings", P: &p, Section: "account", Data: d})
}

func (h *Handler) saveAccountSettings(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := requireAdmin(p); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	name := r.PostForm.Get("name")
	if _, err := h.accounts.RenameAccount(r.Context(), p, name); err != nil {
		e, ok := apperr.As(err)
		if !ok {
			h.errorPage(w, r, &p, err)
			return
		}
		h.renderAccountSettings(w, r, p, apperr.Status(err), accountSettingsData{Account: account.Account{ID: p.AccountID, Name: name}, NameError: e.Message})
		return
	}
	setFlash(w, "account-saved")
	redirect(w, r, "/settings/account")
}

func (h *Handler) saveAlertSettings(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	if _, err := h.accounts.SetAlertEmails(r.Context(), p, r.PostForm.Get("alertEmails") == "on"); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	setFlash(w, "account-saved")
	redirect(w, r, "/settings/account")
}

func (h *Handler) transferOwnership(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	if err := h.accounts.TransferOwnership(r.Context(), p, r.PostForm.Get("userId")); err != nil {
		h.refuse(w, r, &p, "/settings/account", err)
		return
	}
	setFlash(w, "owner-transferred")
	redirect(w, r, "/settings/account")
}

type apiTokensData struct {
	Tokens    []account.APIToken
	NewSecret string
	NewName   string
	NameError string
	// Staff are every staff member's tokens, for owners and admins.
	Staff []account.StaffToken
}

func (h *Handler) apiTokens(w http.ResponseWriter, r *http.Request, p account.Principal) {
	h.renderAPITokens(w, r, p, http.StatusOK, apiTokensData{})
}

func (h *Handler) renderAPITokens(w http.ResponseWriter, r *http.Request, p account.Principal, status int, d apiTokensData) {
	toks, err := h.accounts.APITokens(r.Context(), p)
	if err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	d.Tokens = toks
	if p.Can(account.CapInviteTeammate) {
		if d.Staff, err = h.accounts.StaffTokens(r.Context(), p); err != nil {
			h.errorPage(w, r, &p, err)
			return
		}
	}
	h.render(w, r, status, "tokens", view{Title: "API tokens", P: &p, Section: "tokens", Data: d})
}

func (h *Handler) createAPIToken(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	name := r.PostForm.Get("name")
	secret, tok, err := h.accounts.CreateAPIToken(r.Context(), p, name)
	if err != nil {
		e, ok := apperr.As(err)
		if !ok {
			h.errorPage(w, r, &p, err)
			return
		}
		h.renderAPITokens(w, r, p, apperr.Status(err), apiTokensData{NewName: name, NameError: e.Message})
		return
	}
	// The secret is shown on this response only; it is never stored.
	h.renderAPITokens(w, r, p, http.StatusOK, apiTokensData{NewSecret: secret, NewName: tok.Name})
}

// revokeStaffToken is an owner or admin revoking a staff member's token.
func (h *Handler) revokeStaffToken(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := h.accounts.RevokeStaffToken(r.Context(), p, r.PathValue("id")); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	setFlash(w, "token-revoked")
	redirect(w, r, "/settings/api-tokens#staff")
}

func (h *Handler) revokeAPIToken(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := h.accounts.RevokeAPIToken(r.Context(), p, r.PathValue("id")); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	setFlash(w, "token-revoked")
	redirect(w, r, "/settings/api-tokens")
}
