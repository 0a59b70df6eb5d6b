// Package authn answers "who is making this request" for the HTML pages and
// the JSON API alike: a session cookie set at sign-in, or an API token in
// the Authorization header.
package authn

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
)

// SessionCookie names the cookie holding the session token.
const SessionCookie = "tj_session"

// Authenticator reads credentials from requests.
type Authenticator struct {
	accounts *account.Service
	secure   bool
}

// New returns an authenticator; secure marks cookies Secure (the public URL
// is https).
func New(accounts *account.Service, secure bool) *Authenticator {
	return &Authenticator{accounts: accounts, secure: secure}
}

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
		return a.accounts.TokenPrincipal(r.Context(), strings.TrimSpace(tok))
	}
	return a.Session(r)
}

// StartSession signs the person in: it checks the password and sets the
// session cookie.
func (a *Authenticator) StartSession(w http.ResponseWriter, r *http.Request, email, password string) (account.Principal, error) {
	sess, p, err := a.accounts.SignIn(r.Context(), email, password, ClientIP(r), r.UserAgent())
	if err != nil {
		return account.Principal{}, err
	}
	a.SetSession(w, r, sess)
	return p, nil
}

// SetSession sets the cookie of a session opened some other way than by
// password (an accepted invitation, a single-use sign-in link).
func (a *Authenticator) SetSession(w http.ResponseWriter, r *http.Request, sess account.Session) {
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookie,
		Value:    sess.Token,
		Path:     "/",
		Expires:  sess.ExpiresAt,
		HttpOnly: true,
		Secure:   a.secure || r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	})
}

// EndSession signs the person out and clears the cookie.
func (a *Authenticator) EndSession(w http.ResponseWriter, r *http.Request) error {
	var err error
	if c, cerr := r.Cookie(SessionCookie); cerr == nil && c.Value != "" {
		err = a.accounts.SignOut(r.Context(), c.Value)
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: a.secure || r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
	return err
}

// ClientIP is the address the request came from. Forwarded headers are not
// trusted: behind a proxy, every request counts against the proxy's address.
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
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
