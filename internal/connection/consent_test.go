package connection_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/apperr"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// authServer issues codes bound to a PKCE challenge and exchanges them
// once, checking the verifier.
type authServer struct {
	mu      sync.Mutex
	codes   map[string]string // code -> challenge
	account string
	srv     *httptest.Server
}

func newAuthServer(t *testing.T) *authServer {
	a := &authServer{codes: map[string]string{}, account: "acct-1"}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		a.mu.Lock()
		challenge, ok := a.codes[r.PostForm.Get("code")]
		delete(a.codes, r.PostForm.Get("code"))
		a.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != challenge {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at-1", "refresh_token": "rt-1", "token_type": "Bearer", "expires_in": 3600})
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *authServer) config() *oauth2.Config {
	return &oauth2.Config{ClientID: "taskjuice", ClientSecret: "s", RedirectURL: "http://localhost/callback",
		Endpoint: oauth2.Endpoint{AuthURL: a.srv.URL + "/authorize", TokenURL: a.srv.URL + "/token", AuthStyle: oauth2.AuthStyleInHeader}}
}

// approve plays the person on the consent screen: it returns the callback
// query the provider would redirect back with.
func (a *authServer) approve(t *testing.T, authURL string) url.Values {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" {
		t.Fatalf("authorization URL lacks PKCE S256 or state: %s", authURL)
	}
	a.mu.Lock()
	a.codes["code-1"] = q.Get("code_challenge")
	a.mu.Unlock()
	return url.Values{"state": {q.Get("state")}, "code": {"code-1"}}
}

func (f fixture) consentFuncs(a *authServer) (func(connection.Connection) (*oauth2.Config, error), connection.IdentifyFunc) {
	return func(connection.Connection) (*oauth2.Config, error) { return a.config(), nil },
		func(context.Context, connection.Connection, *oauth2.Token) (connection.ExternalAccount, error) {
			return connection.ExternalAccount{ID: a.account, Name: "Account " + a.account}, nil
		}
}

func (f fixture) begin(t *testing.T, a *authServer, reconnect string) (string, connection.Connection) {
	t.Helper()
	u, c, err := f.svc.BeginConsent(context.Background(), a.config(), connection.ConsentRequest{
		Workspace: f.acme, AppKey: "sandbox-chat", Label: "Chat", ReconnectID: reconnect,
		Actor: connection.Actor{Kind: connection.ActorUser, UserID: f.owner.User.ID}, SessionBinding: "session-1", ReturnTo: "/acme/connections",
	})
	if err != nil {
		t.Fatal(err)
	}
	return u, c
}

func TestConsentConnectsAndReconnects(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		a := newAuthServer(t)
		ctx := context.Background()
		cfgFor, identify := f.consentFuncs(a)

		authURL, pending := f.begin(t, a, "")
		if pending.Status != connection.StatusPending {
			t.Fatalf("before consent: got %s, want pending", pending.Status)
		}
		res, err := f.svc.CompleteConsent(ctx, a.approve(t, authURL), "session-1", cfgFor, identify)
		if err != nil {
			t.Fatalf("complete consent: %v", err)
		}
		c := res.Connection
		if c.ID != pending.ID || c.Status != connection.StatusActive || c.ExternalAccountID != "acct-1" || res.ReturnTo != "/acme/connections" {
			t.Fatalf("after consent: %+v", res)
		}
		var issued sql.NullTime
		if err := d.Read().QueryRowContext(ctx, `SELECT refresh_issued_at FROM connections WHERE id = $1`, c.ID).Scan(&issued); err != nil || !issued.Valid {
			t.Fatalf("refresh token issue time not recorded: %v", err)
		}

		// Break it, then reconnect as another account: same id, active,
		// one reauthorized signal, and the change of account noted.
		if _, err := f.svc.Transition(ctx, c.ID, connection.StatusError, "refresh rejected", connection.System, nil); err != nil {
			t.Fatal(err)
		}
		a.account = "acct-2"
		authURL, _ = f.begin(t, a, c.ID)
		res, err = f.svc.CompleteConsent(ctx, a.approve(t, authURL), "session-1", cfgFor, identify)
		if err != nil {
			t.Fatalf("reconnect: %v", err)
		}
		if res.Connection.ID != c.ID || res.Connection.Status != connection.StatusActive || !res.AccountChanged {
			t.Fatalf("after reconnect: %+v", res)
		}
		sigs := signals(t, f, c.ID)
		if len(sigs) != 2 || sigs[0].Kind != connection.SignalNeedsReauth || sigs[1].Kind != connection.SignalReauthorized {
			t.Fatalf("signals: got %+v, want needs_reauth then reauthorized", sigs)
		}
		h, _ := f.svc.History(ctx, f.acme, c.ID)
		last := h[len(h)-1]
		if last.Reason != "reconnected" || last.Detail["externalAccountChanged"] != "true" || last.Detail["previousExternalAccount"] != "Account acct-1" {
			t.Fatalf("reconnect history entry: %+v", last)
		}
	})
}

func TestConsentBadCallbacksChangeNothing(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		a := newAuthServer(t)
		ctx := context.Background()
		cfgFor, identify := f.consentFuncs(a)

		authURL, pending := f.begin(t, a, "")
		good := a.approve(t, authURL)
		cases := []struct {
			name    string
			query   url.Values
			session string
			code    string
		}{
			{"no state", url.Values{"code": {"code-1"}}, "session-1", "consent_state_missing"},
			{"forged state", url.Values{"state": {"forged"}, "code": {"code-1"}}, "session-1", "consent_state_invalid"},
			{"another session", good, "session-2", "consent_state_session"},
		}
		for _, tc := range cases {
			_, err := f.svc.CompleteConsent(ctx, tc.query, tc.session, cfgFor, identify)
			if e, ok := apperr.As(err); !ok || e.Code != tc.code || apperr.Status(err) != 400 {
				t.Errorf("%s: got %v, want 400 %s", tc.name, err, tc.code)
			}
		}
		// The good callback still works (the failures above did not spend it)…
		if _, err := f.svc.CompleteConsent(ctx, good, "session-1", cfgFor, identify); err != nil {
			t.Fatalf("good callback: %v", err)
		}
		// …once.
		if _, err := f.svc.CompleteConsent(ctx, good, "session-1", cfgFor, identify); !isCode(err, "consent_state_invalid") {
			t.Fatalf("reused state: got %v, want consent_state_invalid", err)
		}

		// Denied, missing code, or expired: the connection stays as it was.
		for _, tc := range []struct {
			name string
			edit func(url.Values)
			code string
		}{
			{"denied", func(q url.Values) { q.Del("code"); q.Set("error", "access_denied") }, "consent_denied"},
			{"missing code", func(q url.Values) { q.Del("code") }, "consent_code_missing"},
		} {
			authURL, c := f.begin(t, a, "")
			q := a.approve(t, authURL)
			tc.edit(q)
			if _, err := f.svc.CompleteConsent(ctx, q, "session-1", cfgFor, identify); !isCode(err, tc.code) {
				t.Errorf("%s: got %v, want %s", tc.name, err, tc.code)
			}
			got, _ := f.svc.Get(ctx, f.acme, c.ID)
			if got.Status != connection.StatusPending {
				t.Errorf("%s: status %s, want pending (unchanged)", tc.name, got.Status)
			}
		}
		authURL, _ = f.begin(t, a, "")
		q := a.approve(t, authURL)
		if _, err := d.Write().ExecContext(ctx, `UPDATE oauth_states SET expires_at = $1 WHERE used_at IS NULL`, time.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.CompleteConsent(ctx, q, "session-1", cfgFor, identify); !isCode(err, "consent_state_expired") {
			t.Fatalf("expired state: got %v, want consent_state_expired", err)
		}
		if got, _ := f.svc.Get(ctx, f.acme, pending.ID); got.Status != connection.StatusActive {
			t.Fatalf("first connection: %s, want active", got.Status)
		}
	})
}

func isCode(err error, code string) bool {
	e, ok := apperr.As(err)
	return ok && e.Code == code
}

func TestRevokeCallsTheApp(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		var got url.Values
		revoker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			got = r.PostForm
		}))
		defer revoker.Close()
		c := f.createOAuth(t, time.Now().Add(time.Hour))
		cfg := &oauth2.Config{ClientID: "taskjuice", ClientSecret: "s", Endpoint: oauth2.Endpoint{AuthStyle: oauth2.AuthStyleInHeader}}
		actor := connection.Actor{Kind: connection.ActorUser, UserID: f.owner.User.ID}
		if _, err := f.svc.Revoke(ctx, f.beta, c.ID, actor, cfg, revoker.URL, nil); !apperr.IsNotFound(err) {
			t.Fatalf("revoke from another workspace: got %v, want not found", err)
		}
		r, err := f.svc.Revoke(ctx, f.acme, c.ID, actor, cfg, revoker.URL, nil)
		if err != nil || r.Status != connection.StatusRevoked {
			t.Fatalf("revoke: %+v, %v", r, err)
		}
		if got.Get("token") != "r0" || got.Get("token_type_hint") != "refresh_token" {
			t.Fatalf("revocation request: got %v, want the refresh token", got)
		}
		h, _ := f.svc.History(ctx, f.acme, c.ID)
		if last := h[len(h)-1]; last.To != connection.StatusRevoked || last.Detail["providerRevocation"] != "revoked at the app" {
			t.Fatalf("history: %+v", last)
		}
		if _, err := f.svc.Revoke(ctx, f.acme, c.ID, actor, cfg, revoker.URL, nil); !apperr.Is(err, apperr.KindConflict) {
			t.Fatalf("second revoke: got %v, want conflict", err)
		}
		// Revoked is not an error: no needs_reauth signal.
		if s := signals(t, f, c.ID); len(s) != 0 {
			t.Fatalf("signals after revoke: %+v", s)
		}
	})
}
