package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/authn"
)

// Every form post answers with a redirect to a page that can be loaded
// again (post/redirect/get); what the action has to say travels across in
// a short-lived cookie read once by the next page.
//
// A success is a key into flashes, never free text. A refusal carries the
// domain's message for a person, signed with a key derived from the
// session it was written for, so no other site or session can make a page
// say something.

var flashes = map[string]string{
	"workspace-created":   "Workspace created",
	"account-saved":       "Account settings saved",
	"owner-transferred":   "Ownership transferred",
	"token-revoked":       "API token revoked",
	"signed-out":          "You are signed out",
	"connected":           "Connected.",
	"reconnected":         "Reconnected. Held work can be resumed.",
	"account-changed":     "Reconnected — to a different account than before. The runs it held are kept held so they do not run against another account's data: decide on the connection page.",
	"held-released":       "Released. The held runs go on as after a reconnect: agent runs and auto-resume workflows by themselves, the others with Resume.",
	"refreshed":           "Connection refreshed.",
	"revoked":             "Connection revoked.",
	"renamed":             "Label saved.",
	"domains-saved":       "Allowed domains saved.",
	"workflow-created":    "Workflow created.",
	"agent-created":       "Agent created and published.",
	"workflow-imported":   "Workflow imported as a draft.",
	"version-activated":   "Version activated. It is dispatching now.",
	"deactivated":         "Deactivated. Nothing is dispatching.",
	"settings-saved":      "Settings saved.",
	"webhook-rotated":     "New webhook URL. The old one no longer works.",
	"secret-saved":        "Webhook secret set. The previous one no longer works.",
	"run-started":         "Run started.",
	"workflow-published":  "Workflow published",
	"replayed":            "Replayed as this new run.",
	"session-ended":       "That session is signed out.",
	"retried":             "Retried from the failed step as this new run; the steps completed before it were kept, not run again.",
	"run-resume":          "Run resumed.",
	"run-pause":           "Run paused.",
	"run-cancel":          "Run cancelled.",
	"run-approve":         "Approved. The run goes on.",
	"run-reject":          "Rejected. The run goes on with the decision.",
	"trigger-saved":       "Trigger saved.",
	"step-added":          "Step added.",
	"step-saved":          "Step saved.",
	"step-moved":          "Step moved.",
	"step-duplicated":     "Step duplicated.",
	"step-deleted":        "Step deleted.",
	"spend-cap-saved":     "Spend cap saved.",
	"provider-saved":      "Model provider saved.",
	"provider-deleted":    "Model provider deleted.",
	"invitation-sent":     "Invitation sent.",
	"invitation-resent":   "Invitation sent again. The earlier link no longer works.",
	"invitation-revoked":  "Invitation revoked.",
	"teammate-invited":    "Invitation sent.",
	"workspace-deleted":   "Workspace deleted. Its connections were revoked at their apps.",
	"workspace-renamed":   "Workspace renamed. Its old address redirects here for 90 days.",
	"role-changed":        "Role changed.",
	"teammate-removed":    "Teammate removed. Their sessions and API tokens no longer work.",
	"welcome":             "Welcome to TaskJuice.",
	"request-queued":      "Added to the client request queue. Nothing is sent until you send the queue.",
	"requests-sent":       "Request sent to the client: one email with one sign-in link.",
	"request-resent":      "Request sent again with a new link. The earlier link no longer works.",
	"reconnect-requested": "The client was emailed a request to reconnect.",
	"resumed-one":         "1 held run resumed.",
	"resumed-all":         "Held runs resumed.",
	"resumed-none":        "No held runs were waiting on this connection.",
	"reconnect-emailed":   "We emailed you a link to reconnect. Open it to go through the app's sign-in.",
	"mfa-off":             "Multi-factor authentication is off.",
	"mfa-policy-saved":    "MFA requirement saved.",
}

const flashCookie = "tj_flash"

func setFlash(w http.ResponseWriter, key string) {
	writeFlash(w, key)
}

// setFlashError carries a refusal's message to the next page, where it
// shows as an error. Without a session there is nothing to sign with and
// the message is dropped; signed-out forms answer in place.
func setFlashError(w http.ResponseWriter, r *http.Request, msg string) {
	setKept(w, r, kept{Error: msg})
}

func setKept(w http.ResponseWriter, r *http.Request, k kept) {
	key := flashKey(r)
	if key == nil {
		return
	}
	b, _ := json.Marshal(k)
	if len(b) > keptMax {
		b, _ = json.Marshal(kept{Error: k.Error})
	}
	m := base64.RawURLEncoding.EncodeToString(b)
	writeFlash(w, "!"+m+"."+flashSign(key, m))
}

func writeFlash(w http.ResponseWriter, value string) {
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: value, Path: "/", MaxAge: 60, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// takeFlash reads and clears the flash: a success message or an error.
func takeFlash(w http.ResponseWriter, r *http.Request) (ok, failed string) {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return "", ""
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	if !strings.HasPrefix(c.Value, "!") {
		return flashes[c.Value], ""
	}
	k, valid := readKept(r)
	if !valid || k.Values != nil {
		return "", "" // a refused form shows its refusal beside what was typed
	}
	return "", k.Error
}

// readKept reads a refusal from the flash cookie, if it carries one signed
// for this request's session.
func readKept(r *http.Request) (kept, bool) {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return kept{}, false
	}
	signed, isErr := strings.CutPrefix(c.Value, "!")
	key := flashKey(r)
	if !isErr || key == nil {
		return kept{}, false
	}
	m, sig, _ := strings.Cut(signed, ".")
	if !hmac.Equal([]byte(sig), []byte(flashSign(key, m))) {
		return kept{}, false
	}
	var k kept
	if b, err := base64.RawURLEncoding.DecodeString(m); err != nil || json.Unmarshal(b, &k) != nil {
		return kept{}, false
	}
	return k, true
}

// kept is a refusal carried to the next page: its message and, for a form
// the person filled in, what they typed (never a secret) and the messages
// of the fields it concerns, so the page shows the form again as it was.
type kept struct {
	Page   string            `json:"p,omitempty"` // the page the form is on
	Error  string            `json:"e"`
	Fields map[string]string `json:"f,omitempty"`
	Values map[string]string `json:"v,omitempty"`
}

// keptMax bounds what a refused form carries in its cookie; past it only
// the message goes across.
const keptMax = 3000

// keptForm reads, without taking it, the refused form the request was
// sent back with (render takes the flash afterwards).
func keptForm(r *http.Request) (kept, bool) {
	k, ok := readKept(r)
	if !ok || k.Values == nil || k.Page != r.URL.Path {
		return kept{}, false
	}
	return k, true
}

// flashKey derives the signing key from the request's session cookie.
func flashKey(r *http.Request) []byte {
	c, err := r.Cookie(authn.SessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	k := sha256.Sum256([]byte("taskjuice flash\x00" + c.Value))
	return k[:]
}

func flashSign(key []byte, m string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(m))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// refuse answers a refused form post: a refusal meant for a person goes
// back to the page the form was on, as an error there; a missing page, a
// forbidden action and anything unexpected get the error page.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, p *account.Principal, back string, err error) {
	e, ok := h.sendsBack(w, r, p, err)
	if !ok {
		return
	}
	setFlashError(w, r, e.Message)
	redirect(w, r, back)
}

// refuseForm answers a refused form the person filled in: back to the
// page the form is on, which shows it again with what they typed (values,
// never a secret) and the refusal beside the field it concerns.
func (h *Handler) refuseForm(w http.ResponseWriter, r *http.Request, p *account.Principal, back string, err error, values map[string]string) {
	e, ok := h.sendsBack(w, r, p, err)
	if !ok {
		return
	}
	if values == nil {
		values = map[string]string{}
	}
	page, _, _ := strings.Cut(back, "#")
	page, _, _ = strings.Cut(page, "?")
	setKept(w, r, kept{Page: page, Error: e.Message, Fields: apperr.Fields(err), Values: values})
	redirect(w, r, back)
}

// sendsBack tells a refusal that goes back to its page from one that gets
// the error page, which it then shows.
func (h *Handler) sendsBack(w http.ResponseWriter, r *http.Request, p *account.Principal, err error) (*apperr.Error, bool) {
	e, ok := apperr.As(err)
	if ok && flashKey(r) != nil {
		switch e.Kind {
		case apperr.KindNotFound, apperr.KindForbidden, apperr.KindUnauthorized, apperr.KindTooLarge:
		default:
			return e, true
		}
	}
	h.errorPage(w, r, p, err)
	return nil, false
}
