package web

import (
	"net/http"
	"strconv"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

type generalSettingsData struct {
	Account     account.Account
	Admins      []account.Member
	CanTransfer bool
	// Values and Fields are a refused form's values and the field its
	// refusal concerns (shown beside that field).
	Values    map[string]string
	Fields    map[string]string
	Card      string
	Error     string
	Timezones []string
}

// commonTimezones are offered in the time zone field; any IANA name is
// accepted.
var commonTimezones = []string{"UTC", "Europe/London", "Europe/Dublin", "Europe/Lisbon", "Europe/Paris", "Europe/Berlin", "Europe/Madrid",
	"Europe/Rome", "Europe/Amsterdam", "Europe/Stockholm", "Europe/Warsaw", "Europe/Athens", "Europe/Istanbul", "Africa/Lagos",
	"Africa/Johannesburg", "Asia/Dubai", "Asia/Kolkata", "Asia/Singapore", "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland",
	"America/Sao_Paulo", "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Toronto", "America/Mexico_City"}

// requireAdmin is the account settings gate: owners and admins only, with
// the product's standard message.
func requireAdmin(p account.Principal) error {
	if !p.Can(account.CapManageWorkspaces) {
		return apperr.Forbidden(account.MsgAdminRequired)
	}
	return nil
}

// generalSettings is the account's General settings page: the cards
// "Identity", "Defaults" and "Danger zone".
func (h *Handler) generalSettings(w http.ResponseWriter, r *http.Request, p account.Principal) {
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
	d := generalSettingsData{Account: a, CanTransfer: p.Can(account.CapTransferOwnership), Timezones: commonTimezones}
	for _, m := range staff {
		if m.Role == account.RoleAdmin {
			d.Admins = append(d.Admins, m)
		}
	}
	if k, ok := keptForm(r); ok {
		d.Values, d.Fields, d.Card, d.Error = k.Values, k.Fields, k.Values["card"], k.Error
	}
	h.render(w, r, http.StatusOK, "general", view{Title: "General settings", P: &p, Section: "account", Data: d})
}

// saveGeneralSettings saves one card of the General settings: "identity"
// (name, contact and support email) or "defaults" (time zone, audit
// retention, alert emails).
func (h *Handler) saveGeneralSettings(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := requireAdmin(p); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	f := r.PostForm
	card := f.Get("card")
	var c account.SettingsChange
	values := map[string]string{"card": card}
	text := func(field string) *string {
		v := f.Get(field)
		values[field] = v
		return &v
	}
	switch card {
	case "defaults":
		c.DefaultTimezone = text("defaultTimezone")
		days, err := strconv.Atoi(strings.TrimSpace(*text("auditRetentionDays")))
		if err != nil {
			h.refuseForm(w, r, &p, "/settings/general#defaults", apperr.Invalid("auditRetentionDays", "Enter the number of days to keep audit entries, e.g. 365"), values)
			return
		}
		on := f.Get("alertEmails") == "on"
		c.AuditRetentionDays, c.AlertEmails = &days, &on
	case "identity", "":
		// A form without a card is the older one-field form: the name.
		c.Name = text("name")
		if card == "identity" {
			c.ContactEmail, c.SupportEmail = text("contactEmail"), text("supportEmail")
		}
	default:
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	if _, err := h.accounts.UpdateSettings(r.Context(), p, c); err != nil {
		h.refuseForm(w, r, &p, "/settings/general#"+card, err, values)
		return
	}
	setFlash(w, "account-saved")
	redirect(w, r, "/settings/general")
}

func (h *Handler) saveAlertSettings(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	on := r.PostForm.Get("alertEmails") == "on"
	if _, err := h.accounts.UpdateSettings(r.Context(), p, account.SettingsChange{AlertEmails: &on}); err != nil {
		h.errorPage(w, r, &p, err)
		return
	}
	setFlash(w, "account-saved")
	redirect(w, r, "/settings/general")
}

func (h *Handler) transferOwnership(w http.ResponseWriter, r *http.Request, p account.Principal) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, &p, errBadForm)
		return
	}
	if err := h.accounts.TransferOwnership(r.Context(), p, r.PostForm.Get("userId")); err != nil {
		h.refuse(w, r, &p, "/settings/general#danger", err)
		return
	}
	setFlash(w, "owner-transferred")
	redirect(w, r, "/settings/general")
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
