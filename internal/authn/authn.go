// Package authn answers "who is making this request" for the HTML pages and
// the JSON API alike: a session cookie set at sign-in, or an API token in
// the Authorization header.
package authn

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

// SessionCookie names the cookie holding the session token.
const SessionCookie = "tj_session"

// MFACookie names the cookie holding a sign-in that waits for its MFA
// code (the server keeps the state; the cookie only names it).
const MFACookie = "tj_mfa"

// Authenticator reads credentials from requests.
type Authenticator struct {
	accounts *account.Service
	secure   bool
	proxies  []netip.Prefix
}

// New returns an authenticator; secure marks cookies Secure (the public URL
// is https).
func New(accounts *account.Service, secure bool) *Authenticator {
	return &Authenticator{accounts: accounts, secure: secure}
}

// TrustProxies names the reverse proxies whose X-Forwarded-For is believed
// (see ClientIP).
func (a *Authenticator) TrustProxies(ranges []netip.Prefix) { a.proxies = ranges }

// MsgMFAHold refuses API requests of staff held at MFA enrollment.
const MsgMFAHold = "Your account requires multi-factor authentication. Turn it on at /account/security to continue."

// Session returns the principal of the request's session cookie.
func (a *Authenticator) Session(r *http.Request) (account.Principal, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return account.Principal{}, apperr.Unauthorized("Sign in to continue")
	}
	return a.accounts.SessionPrincipal(r.Context(), c.Value)
}

// Request returns the principal of an API request: the bearer token when an
// Authorization header is present (and then only it), else the session.
func (a *Authenticator) Request(r *http.Request) (account.Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return account.Principal{}, apperr.Unauthorized("Send the API token as: Authorization: Bearer <token>")
		}
		p, err := a.accounts.TokenPrincipal(r.Context(), strings.TrimSpace(tok))
		return held(p, err)
	}
	return held(a.Session(r))
}

// held refuses an API request of a staff member who must enroll in MFA
// first; the pages send them to the enrollment page instead.
func held(p account.Principal, err error) (account.Principal, error) {
	if err == nil && p.MFAHold {
		return account.Principal{}, apperr.Forbidden(MsgMFAHold)
	}
	return p, err
}

// StartSession checks the password. With MFA off it signs the person in
// and sets the session cookie (signedIn true); with MFA on it sets the
// cookie naming the sign-in waiting for its code (signedIn false).
func (a *Authenticator) StartSession(w http.ResponseWriter, r *http.Request, email, password string) (p account.Principal, signedIn bool, err error) {
	step, err := a.accounts.PasswordStep(r.Context(), email, password, a.ClientIP(r), r.UserAgent())
	if err != nil {
		return account.Principal{}, false, err
	}
	if step.MFAToken != "" {
		a.setCookie(w, r, MFACookie, step.MFAToken, step.MFAExpires)
		return account.Principal{}, false, nil
	}
	a.SetSession(w, r, step.Session)
	return step.Principal, true, nil
}

// PendingMFA returns the email of the sign-in waiting for its code.
func (a *Authenticator) PendingMFA(r *http.Request) (string, error) {
	c, err := r.Cookie(MFACookie)
	if err != nil || c.Value == "" {
		return "", apperr.Gone("signin_expired", account.MsgSigninExpired)
	}
	return a.accounts.MFAChallengeEmail(r.Context(), c.Value)
}

// FinishMFA checks the code of the waiting sign-in and, when right, signs
// the person in.
func (a *Authenticator) FinishMFA(w http.ResponseWriter, r *http.Request, code string) (account.Principal, error) {
	c, err := r.Cookie(MFACookie)
	if err != nil || c.Value == "" {
		return account.Principal{}, apperr.Gone("signin_expired", account.MsgSigninExpired)
	}
	sess, p, err := a.accounts.CompleteMFA(r.Context(), c.Value, code, a.ClientIP(r), r.UserAgent())
	if apperr.Is(err, apperr.KindGone) {
		a.clearCookie(w, r, MFACookie)
	}
	if err != nil {
		return account.Principal{}, err
	}
	a.clearCookie(w, r, MFACookie)
	a.SetSession(w, r, sess)
	return p, nil
}

// CancelMFA forgets the waiting sign-in.
func (a *Authenticator) CancelMFA(w http.ResponseWriter, r *http.Request) error {
	var err error
	if c, cerr := r.Cookie(MFACookie); cerr == nil && c.Value != "" {
		err = a.accounts.CancelMFAChallenge(r.Context(), c.Value)
	}
	a.clearCookie(w, r, MFACookie)
	return err
}

// SetSession sets the cookie of a session opened some other way than by
// password (an accepted invitation, a single-use sign-in link).
func (a *Authenticator) SetSession(w http.ResponseWriter, r *http.Request, sess account.Session) {
	a.setCookie(w, r, SessionCookie, sess.Token, sess.ExpiresAt)
}

func (a *Authenticator) setCookie(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Expires:  expires,
		HttpOnly: true,
		Secure:   a.secure || r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	})
}

func (a *Authenticator) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: a.secure || r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
}

// EndSession signs the person out and clears the cookie.
func (a *Authenticator) EndSession(w http.ResponseWriter, r *http.Request) error {
	var err error
	if c, cerr := r.Cookie(SessionCookie); cerr == nil && c.Value != "" {
		err = a.accounts.SignOut(r.Context(), c.Value)
	}
	a.clearCookie(w, r, SessionCookie)
	return err
}

// ClientIP is the address the request came from. X-Forwarded-For is read
// only when the request comes from a trusted proxy, and then from the
// right: each proxy appends the address it heard from, so the right-most
// address that is not itself a trusted proxy is the client (addresses to
// its left are whatever the client claimed).
func (a *Authenticator) ClientIP(r *http.Request) string {
	remote, ok := parseAddr(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	if !a.trusted(remote) {
		return remote.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	client := remote
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseAddr(strings.TrimSpace(hops[i]))
		if !ok {
			break
		}
		client = hop
		if !a.trusted(hop) {
			break
		}
	}
	return client.String()
}

func (a *Authenticator) trusted(addr netip.Addr) bool {
	for _, p := range a.proxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// parseAddr reads an address with or without a port.
func parseAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if addr, err := netip.ParseAddr(s); err == nil {
		return addr.Unmap(), true
	}
	return netip.Addr{}, false
}

// SessionBinding is a stable, non-secret value identifying the request's
// session, for binding a consent flow to the browser that started it. It is
// empty without a session.
func SessionBinding(r *http.Request) string {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("consent-binding:" + c.Value))
	return hex.EncodeToString(sum[:])
}
