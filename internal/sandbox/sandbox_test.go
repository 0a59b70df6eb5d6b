package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/sandbox"
)

const (
	clientID     = "taskjuice"
	clientSecret = "s3cret-for-tests"
	adminToken   = "admin-token-for-tests"
	allScopes    = "channels:read chat:write messages:read"
)

// fixture is a sandbox mounted under /sandbox on a test server, with a
// /callback endpoint standing in for the product's OAuth callback.
type fixture struct {
	p        *sandbox.Provider
	srv      *httptest.Server
	base     string // the sandbox root
	callback string
	cfg      *oauth2.Config
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func setup(t *testing.T, mod func(o *sandbox.Options)) *fixture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	origin := "http://" + ln.Addr().String()
	f := &fixture{base: origin + "/sandbox", callback: origin + "/callback"}
	o := sandbox.Options{
		BaseURL: f.base,
		Clients: []sandbox.Client{
			{ID: clientID, Secret: clientSecret, Name: "TaskJuice", RedirectURIs: []string{f.callback}},
			{ID: "public-app", Name: "Public App", RedirectURIs: []string{f.callback}},
		},
		AdminToken:  adminToken,
		TimeoutHold: 5 * time.Second,
	}
	if mod != nil {
		mod(&o)
	}
	f.p, err = sandbox.New(o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/sandbox/", http.StripPrefix("/sandbox", f.p.Handler()))
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.URL.Query())
	})
	f.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux}}
	f.srv.Start()
	t.Cleanup(func() {
		f.p.Close()
		f.srv.Close()
	})
	e := f.p.Endpoints()
	f.cfg = &oauth2.Config{
		ClientID: clientID, ClientSecret: clientSecret, RedirectURL: f.callback,
		Scopes:   strings.Fields(allScopes),
		Endpoint: oauth2.Endpoint{AuthURL: e.Authorize, TokenURL: e.Token, AuthStyle: oauth2.AuthStyleInHeader},
	}
	return f
}

func noFollow() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// connect runs consent (Allow) and the code exchange for cfg.
func (f *fixture) connect(t *testing.T, cfg *oauth2.Config, account string) *oauth2.Token {
	t.Helper()
	ctx := t.Context()
	verifier := oauth2.GenerateVerifier()
	loc, err := sandbox.Consent(ctx, nil, cfg.AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier)), account, true)
	if err != nil {
		t.Fatalf("consent: %v", err)
	}
	if got := loc.Query().Get("state"); got != "st4te" {
		t.Fatalf("state: got %q, want %q", got, "st4te")
	}
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func (f *fixture) refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	return f.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
}

func oauthErrorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// call makes an API request with a bearer token and decodes a JSON answer.
func (f *fixture) call(t *testing.T, method, path, token, body string, hdr map[string]string, out any) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, f.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp
}

func TestConsentFlowOverHTTP(t *testing.T) {
	f := setup(t, nil)
	ctx := t.Context()
	verifier := oauth2.GenerateVerifier()
	authURL := f.cfg.AuthCodeURL("xyz-state", oauth2.S256ChallengeOption(verifier))

	resp, err := http.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("consent page: got status %d, want 200", resp.StatusCode)
	}
	for _, want := range []string{"<strong>TaskJuice</strong> wants to access your account", sandbox.HostName, "Post messages in your channels", `name="account"`, `value="Sandbox Workspace"`, ">Allow<", ">Deny<"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatal("consent page has no request field")
	}
	css, err := http.Get(f.base + "/oauth/style.css")
	if err != nil {
		t.Fatal(err)
	}
	css.Body.Close()
	if css.StatusCode != http.StatusOK || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") {
		t.Errorf("style.css: got %d %q, want 200 text/css", css.StatusCode, css.Header.Get("Content-Type"))
	}

	// Allow, following the redirect to the callback like a browser would.
	resp, err = http.PostForm(f.base+"/oauth/authorize", url.Values{"request": {string(m[1])}, "account": {"Acme Test"}, "decision": {"allow"}})
	if err != nil {
		t.Fatal(err)
	}
	var cb url.Values
	if err := json.NewDecoder(resp.Body).Decode(&cb); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/callback" {
		t.Fatalf("landed on %s, want /callback", resp.Request.URL)
	}
	if got := cb.Get("state"); got != "xyz-state" {
		t.Errorf("state: got %q, want %q", got, "xyz-state")
	}
	tok, err := f.cfg.Exchange(ctx, cb.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenType != "Bearer" {
		t.Errorf("token: got access %q refresh %q type %q, want both tokens and Bearer", tok.AccessToken, tok.RefreshToken, tok.TokenType)
	}
	if tok.ExpiresIn != 3600 {
		t.Errorf("expires_in: got %d, want 3600", tok.ExpiresIn)
	}
	if got := tok.Extra("scope"); got != allScopes {
		t.Errorf("scope: got %v, want %q", got, allScopes)
	}

	var me struct {
		Account struct{ ID, Name string }
	}
	if r := f.call(t, "GET", "/api/me", tok.AccessToken, "", nil, &me); r.StatusCode != 200 {
		t.Fatalf("GET /api/me: got %d, want 200", r.StatusCode)
	}
	if me.Account.Name != "Acme Test" || me.Account.ID == "" {
		t.Errorf("account: got %+v, want name Acme Test and an id", me.Account)
	}
	grants := f.p.Grants()
	if len(grants) != 1 || grants[0].AccountName != "Acme Test" || grants[0].ClientID != clientID || grants[0].Revoked {
		t.Errorf("grants: got %+v, want one live grant of Acme Test for taskjuice", grants)
	}
}

func TestAuthorizeRejectsBadRequests(t *testing.T) {
	f := setup(t, nil)
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	good := url.Values{
		"client_id": {clientID}, "redirect_uri": {f.callback}, "response_type": {"code"}, "state": {"s"},
		"scope": {allScopes}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
	tests := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"unregistered redirect", map[string]string{"redirect_uri": "https://evil.example/cb"}, "is not registered"},
		{"redirect prefix only", map[string]string{"redirect_uri": f.callback + "/more"}, "is not registered"},
		{"unknown client", map[string]string{"client_id": "nobody"}, "No app is registered"},
		{"no PKCE", map[string]string{"code_challenge": ""}, "PKCE is required"},
		{"plain PKCE", map[string]string{"code_challenge_method": "plain"}, "must be S256"},
		{"unknown scope", map[string]string{"scope": "channels:read admin"}, "Unknown scope"},
		{"no scope", map[string]string{"scope": ""}, "scope is empty"},
		{"implicit", map[string]string{"response_type": "token"}, "response_type"},
		{"no state", map[string]string{"state": ""}, "no state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := url.Values{}
			for k, v := range good {
				q[k] = v
			}
			for k, v := range tt.set {
				q.Set(k, v)
			}
			resp, err := noFollow().Get(f.base + "/oauth/authorize?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status: got %d, want 400", resp.StatusCode)
			}
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("Location: got %q, want no redirect", loc)
			}
			if !strings.Contains(string(page), tt.want) {
				t.Errorf("error page: got %s, want it to contain %q", page, tt.want)
			}
		})
	}
}

func TestDenyRedirectsAccessDenied(t *testing.T) {
	f := setup(t, nil)
	authURL := f.cfg.AuthCodeURL("deny-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	loc, err := sandbox.Consent(t.Context(), nil, authURL, "", false)
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	if q.Get("error") != "access_denied" || q.Get("state") != "deny-state" || q.Get("code") != "" {
		t.Errorf("redirect query: got %v, want error=access_denied, state=deny-state and no code", q)
	}
	if got := len(f.p.Grants()); got != 0 {
		t.Errorf("grants after deny: got %d, want 0", got)
	}
}

func TestConsentFormIsSingleUse(t *testing.T) {
	f := setup(t, nil)
	resp, err := http.Get(f.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := regexp.MustCompile(`name="request" value="([^"]+)"`).FindSubmatch(page)[1]
	form := url.Values{"request": {string(id)}, "account": {"A"}, "decision": {"allow"}}
	for i, want := range []int{http.StatusFound, http.StatusBadRequest} {
		resp, err := noFollow().PostForm(f.base+"/oauth/authorize", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("post %d: got %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}

func TestExchangeFailures(t *testing.T) {
	f := setup(t, nil)
	ctx := t.Context()
	newCode := func(verifier string) string {
		loc, err := sandbox.Consent(ctx, nil, f.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "", true)
		if err != nil {
			t.Fatal(err)
		}
		return loc.Query().Get("code")
	}

	t.Run("wrong verifier", func(t *testing.T) {
		code := newCode(oauth2.GenerateVerifier())
		_, err := f.cfg.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
		if got := oauthErrorCode(err); got != "invalid_grant" {
			t.Errorf("got %q (%v), want invalid_grant", got, err)
		}
	})
	t.Run("reused code", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := newCode(v)
		if _, err := f.cfg.Exchange(ctx, code, oauth2.VerifierOption(v)); err != nil {
			t.Fatalf("first exchange: %v", err)
		}
		_, err := f.cfg.Exchange(ctx, code, oauth2.VerifierOption(v))
		if got := oauthErrorCode(err); got != "invalid_grant" {
			t.Errorf("second exchange: got %q (%v), want invalid_grant", got, err)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := newCode(v)
		bad := *f.cfg
		bad.ClientSecret = "wrong"
		_, err := bad.Exchange(ctx, code, oauth2.VerifierOption(v))
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 {
			t.Errorf("got %v, want 401 invalid_client", err)
		}
	})
	t.Run("expired code", func(t *testing.T) {
		c := &clock{t: time.Now()}
		f := setup(t, func(o *sandbox.Options) { o.Now = c.Now })
		v := oauth2.GenerateVerifier()
		loc, err := sandbox.Consent(ctx, nil, f.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), "", true)
		if err != nil {
			t.Fatal(err)
		}
		c.Advance(2 * time.Minute)
		_, err = f.cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(v))
		if got := oauthErrorCode(err); got != "invalid_grant" {
			t.Errorf("got %q (%v), want invalid_grant", got, err)
		}
	})
}

func TestPublicClientWithPKCE(t *testing.T) {
	f := setup(t, nil)
	cfg := *f.cfg
	cfg.ClientID, cfg.ClientSecret = "public-app", ""
	cfg.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	tok := f.connect(t, &cfg, "")
	if tok.AccessToken == "" {
		t.Fatal("got no access token")
	}
	// client_secret_post works for the confidential client too.
	post := *f.cfg
	post.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	if tok := f.connect(t, &post, ""); tok.RefreshToken == "" {
		t.Error("client_secret_post: got no refresh token")
	}
}

func TestRefreshRotates(t *testing.T) {
	f := setup(t, nil)
	ctx := t.Context()
	tok := f.connect(t, f.cfg, "")
	next, err := f.refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if next.RefreshToken == "" || next.RefreshToken == tok.RefreshToken || next.AccessToken == tok.AccessToken {
		t.Fatalf("refresh: got refresh %q access %q, want new ones", next.RefreshToken, next.AccessToken)
	}
	if got := next.Extra("scope"); got != allScopes {
		t.Errorf("scope after refresh: got %v, want %q", got, allScopes)
	}
	_, err = f.refresh(ctx, tok.RefreshToken)
	if got := oauthErrorCode(err); got != "invalid_grant" {
		t.Errorf("reused refresh token: got %q (%v), want invalid_grant", got, err)
	}
	if _, err := f.refresh(ctx, next.RefreshToken); err != nil {
		t.Errorf("refresh with the new token: %v", err)
	}
	// The old access token lives until it expires.
	if r := f.call(t, "GET", "/api/me", tok.AccessToken, "", nil, nil); r.StatusCode != 200 {
		t.Errorf("old access token: got %d, want 200", r.StatusCode)
	}
	st := f.p.Stats()
	g := f.p.Grants()[0].ID
	if st.Refreshes[g] != 2 || st.TokenRequests["refresh_token"] != 3 || st.TokenErrors["invalid_grant"] != 1 {
		t.Errorf("stats: got refreshes %v requests %v errors %v, want 2 refreshes of %s, 3 refresh requests, 1 invalid_grant", st.Refreshes, st.TokenRequests, st.TokenErrors, g)
	}
}

func TestRefreshBoundToClient(t *testing.T) {
	f := setup(t, nil)
	tok := f.connect(t, f.cfg, "")
	other := *f.cfg
	other.ClientID, other.ClientSecret = "public-app", ""
	other.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	_, err := other.TokenSource(t.Context(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if got := oauthErrorCode(err); got != "invalid_grant" {
		t.Errorf("refresh by another client: got %q (%v), want invalid_grant", got, err)
	}
}

func TestRevocation(t *testing.T) {
	ctx := t.Context()
	assertDead := func(t *testing.T, f *fixture, tok *oauth2.Token) {
		t.Helper()
		_, err := f.refresh(ctx, tok.RefreshToken)
		if got := oauthErrorCode(err); got != "invalid_grant" {
			t.Errorf("refresh: got %q (%v), want invalid_grant", got, err)
		}
		var body map[string]string
		r := f.call(t, "GET", "/api/me", tok.AccessToken, "", nil, &body)
		if r.StatusCode != 401 || body["error"] != "invalid_token" || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("API: got %d %v %q, want 401 invalid_token with WWW-Authenticate", r.StatusCode, body, r.Header.Get("WWW-Authenticate"))
		}
	}

	t.Run("grant", func(t *testing.T) {
		f := setup(t, nil)
		tok := f.connect(t, f.cfg, "")
		keep := f.connect(t, f.cfg, "Other Workspace")
		var g sandbox.Grant
		for _, x := range f.p.Grants() {
			if x.AccountName == sandbox.DefaultAccount {
				g = x
			}
		}
		if err := f.p.RevokeGrant(g.ID); err != nil {
			t.Fatal(err)
		}
		assertDead(t, f, tok)
		if _, err := f.refresh(ctx, keep.RefreshToken); err != nil {
			t.Errorf("another grant's refresh: %v", err)
		}
		if err := f.p.RevokeGrant("nope"); !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("unknown grant: got %v, want ErrNotFound", err)
		}
	})
	t.Run("account", func(t *testing.T) {
		f := setup(t, nil)
		a := f.connect(t, f.cfg, "Acme")
		b := f.connect(t, f.cfg, "acme")
		n, err := f.p.RevokeAccount("ACME")
		if err != nil || n != 2 {
			t.Fatalf("RevokeAccount: got %d, %v, want 2, nil", n, err)
		}
		assertDead(t, f, a)
		assertDead(t, f, b)
		for _, g := range f.p.Grants() {
			if !g.Revoked {
				t.Errorf("grant %s: got live, want revoked", g.ID)
			}
		}
	})
	t.Run("RFC 7009 endpoint", func(t *testing.T) {
		f := setup(t, nil)
		tok := f.connect(t, f.cfg, "")
		req, _ := http.NewRequestWithContext(ctx, "POST", f.p.Endpoints().Revoke, strings.NewReader(url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(clientID, clientSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("revoke: got %d, want 200", resp.StatusCode)
		}
		assertDead(t, f, tok)
	})
}

func TestInjectedFaults(t *testing.T) {
	ctx := t.Context()
	t.Run("500 three times", func(t *testing.T) {
		f := setup(t, nil)
		tok := f.connect(t, f.cfg, "")
		if err := f.p.FailNext(3, sandbox.Fault500, 0); err != nil {
			t.Fatal(err)
		}
		rt := tok.RefreshToken
		for i := range 3 {
			_, err := f.refresh(ctx, rt)
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.Response.StatusCode != 500 {
				t.Fatalf("attempt %d: got %v, want a 500", i+1, err)
			}
		}
		next, err := f.refresh(ctx, rt)
		if err != nil {
			t.Fatalf("attempt 4: got %v, want success with the untouched refresh token", err)
		}
		if next.RefreshToken == rt {
			t.Error("attempt 4: refresh token did not rotate")
		}
		st := f.p.Stats()
		if st.FailuresInjected != 3 || st.FailuresPending != 0 || st.TokenRequests["refresh_token"] != 4 || st.Refreshes[f.p.Grants()[0].ID] != 1 {
			t.Errorf("stats: got %+v, want 3 injected, 0 pending, 4 refresh requests, 1 refresh", st)
		}
	})
	t.Run("429 has Retry-After", func(t *testing.T) {
		f := setup(t, nil)
		tok := f.connect(t, f.cfg, "")
		f.p.FailNext(1, sandbox.Fault429, 1500*time.Millisecond)
		_, err := f.refresh(ctx, tok.RefreshToken)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.Response.StatusCode != 429 {
			t.Fatalf("got %v, want a 429", err)
		}
		if got := re.Response.Header.Get("Retry-After"); got != "2" {
			t.Errorf("Retry-After: got %q, want %q", got, "2")
		}
	})
	t.Run("timeout holds until the client gives up", func(t *testing.T) {
		f := setup(t, nil)
		tok := f.connect(t, f.cfg, "")
		f.p.FailNext(1, sandbox.FaultTimeout, 0)
		// The clock starts before the deadline is set, so the deadline
		// cannot pass before 200ms of it have; the upper bound only catches
		// a fault that never lets go, whatever the machine's load.
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err := f.refresh(cctx, tok.RefreshToken)
		if elapsed := time.Since(start); err == nil || elapsed < 200*time.Millisecond || elapsed > 30*time.Second {
			t.Fatalf("got %v after %v, want an error once the 200ms deadline passed", err, elapsed)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want context.DeadlineExceeded", err)
		}
		if _, err := f.refresh(ctx, tok.RefreshToken); err != nil {
			t.Errorf("after the fault: %v", err)
		}
	})
	t.Run("timeout answers 504 after the hold", func(t *testing.T) {
		f := setup(t, func(o *sandbox.Options) { o.TimeoutHold = 100 * time.Millisecond })
		tok := f.connect(t, f.cfg, "")
		f.p.FailNext(1, sandbox.FaultTimeout, 0)
		_, err := f.refresh(ctx, tok.RefreshToken)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.Response.StatusCode != 504 {
			t.Errorf("got %v, want a 504", err)
		}
	})
	t.Run("unknown kind", func(t *testing.T) {
		f := setup(t, nil)
		if err := f.p.FailNext(1, "teapot", 0); err == nil {
			t.Error("got nil, want an error")
		}
	})
}

func TestLifetimes(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	f := setup(t, func(o *sandbox.Options) { o.Now = c.Now })
	ctx := t.Context()
	tok := f.connect(t, f.cfg, "")
	if l, err := f.p.SetLifetimes(30*time.Second, 0); err != nil || l.AccessTTL != 30*time.Second || l.RefreshTTL != sandbox.DefaultRefreshTTL {
		t.Fatalf("SetLifetimes: got %+v, %v, want 30s and the default refresh TTL", l, err)
	}
	next, err := f.refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if next.ExpiresIn != 30 {
		t.Errorf("expires_in: got %d, want 30", next.ExpiresIn)
	}
	if r := f.call(t, "GET", "/api/me", next.AccessToken, "", nil, nil); r.StatusCode != 200 {
		t.Errorf("fresh token: got %d, want 200", r.StatusCode)
	}
	c.Advance(31 * time.Second)
	if r := f.call(t, "GET", "/api/me", next.AccessToken, "", nil, nil); r.StatusCode != 401 {
		t.Errorf("expired token: got %d, want 401", r.StatusCode)
	}
	if _, err := f.p.SetLifetimes(0, time.Minute); err != nil {
		t.Fatal(err)
	}
	last, err := f.refresh(ctx, next.RefreshToken)
	if err != nil {
		t.Fatalf("refresh after access expiry: %v", err)
	}
	c.Advance(2 * time.Minute)
	_, err = f.refresh(ctx, last.RefreshToken)
	if got := oauthErrorCode(err); got != "invalid_grant" {
		t.Errorf("expired refresh token: got %q (%v), want invalid_grant", got, err)
	}
	if _, err := f.p.SetLifetimes(-time.Second, 0); err == nil {
		t.Error("negative lifetime: got nil, want an error")
	}
}

type apiMessage struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	Text    string `json:"text"`
	App     string `json:"app"`
}

func TestChatAPI(t *testing.T) {
	f := setup(t, nil)
	tok := f.connect(t, f.cfg, "")
	at := tok.AccessToken

	var chans struct{ Channels []sandbox.Channel }
	if r := f.call(t, "GET", "/api/channels", at, "", nil, &chans); r.StatusCode != 200 {
		t.Fatalf("channels: got %d, want 200", r.StatusCode)
	}
	names := []string{}
	for _, c := range chans.Channels {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "general,random,clients" {
		t.Errorf("channels: got %v, want general, random, clients", names)
	}

	tests := []struct {
		name, body string
		hdr        map[string]string
		want       int
		wantErr    string
	}{
		{"post", `{"text":"hello"}`, nil, 201, ""},
		{"bad json", `{"text":`, nil, 400, "invalid_json"},
		{"not an object", `"hi"`, nil, 400, "invalid_json"},
		{"empty text", `{"text":"   "}`, nil, 400, "text_required"},
		{"first with key", `{"text":"once"}`, map[string]string{"Idempotency-Key": "k1"}, 201, ""},
		{"retry with key", `{"text":"once"}`, map[string]string{"Idempotency-Key": "k1"}, 200, ""},
		{"key reused for other text", `{"text":"twice"}`, map[string]string{"Idempotency-Key": "k1"}, 409, "idempotency_key_reused"},
	}
	var first, retry apiMessage
	for _, tt := range tests {
		var out struct {
			Error   string
			Message json.RawMessage
		}
		r := f.call(t, "POST", "/api/channels/general/messages", at, tt.body, tt.hdr, &out)
		if r.StatusCode != tt.want || out.Error != tt.wantErr {
			t.Errorf("%s: got %d %q, want %d %q", tt.name, r.StatusCode, out.Error, tt.want, tt.wantErr)
		}
		switch tt.name {
		case "first with key":
			_ = json.Unmarshal(out.Message, &first)
		case "retry with key":
			_ = json.Unmarshal(out.Message, &retry)
			if r.Header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("retry: got no Idempotent-Replayed header")
			}
		}
	}
	if first.ID == "" || retry.ID != first.ID {
		t.Errorf("idempotent retry: got message %q, want the first one %q", retry.ID, first.ID)
	}

	var list struct{ Messages []apiMessage }
	if r := f.call(t, "GET", "/api/channels/"+chans.Channels[0].ID+"/messages", at, "", nil, &list); r.StatusCode != 200 {
		t.Fatalf("messages: got %d, want 200", r.StatusCode)
	}
	if len(list.Messages) != 2 || list.Messages[0].Text != "hello" || list.Messages[1].Text != "once" || list.Messages[1].App != "TaskJuice" {
		t.Errorf("messages: got %+v, want hello then once, posted by TaskJuice", list.Messages)
	}
	if got := f.p.Stats().MessagesPosted; got != 2 {
		t.Errorf("messages posted: got %d, want 2", got)
	}
	if r := f.call(t, "GET", "/api/channels/nope/messages", at, "", nil, nil); r.StatusCode != 404 {
		t.Errorf("unknown channel: got %d, want 404", r.StatusCode)
	}
	if r := f.call(t, "GET", "/api/me", "", "", nil, nil); r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: got %d, want 401 with WWW-Authenticate", r.StatusCode)
	}
	if r := f.call(t, "GET", "/api/me", "made-up", "", nil, nil); r.StatusCode != 401 {
		t.Errorf("unknown token: got %d, want 401", r.StatusCode)
	}
}

func TestChatAPIScopes(t *testing.T) {
	f := setup(t, nil)
	cfg := *f.cfg
	cfg.Scopes = []string{"channels:read"}
	at := f.connect(t, &cfg, "").AccessToken
	tests := []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/api/me", "", 200},
		{"GET", "/api/channels", "", 200},
		{"POST", "/api/channels/general/messages", `{"text":"hi"}`, 403},
		{"GET", "/api/channels/general/messages", "", 403},
	}
	for _, tt := range tests {
		var out map[string]any
		r := f.call(t, tt.method, tt.path, at, tt.body, nil, &out)
		if r.StatusCode != tt.want {
			t.Errorf("%s %s: got %d, want %d", tt.method, tt.path, r.StatusCode, tt.want)
		}
		if tt.want == 403 && (out["error"] != "insufficient_scope" || !strings.Contains(r.Header.Get("WWW-Authenticate"), "insufficient_scope")) {
			t.Errorf("%s %s: got %v %q, want insufficient_scope", tt.method, tt.path, out, r.Header.Get("WWW-Authenticate"))
		}
	}
	// A refresh may narrow the scope but never widen it.
	tok := f.connect(t, &cfg, "")
	// (golang.org/x/oauth2 never sends scope on a refresh, so post by hand.)
	for _, tt := range []struct {
		scope string
		want  int
	}{{allScopes, 400}, {"channels:read", 200}} {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", f.p.Endpoints().Token, strings.NewReader(url.Values{
			"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "scope": {tt.scope},
		}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(clientID, clientSecret)
		var out map[string]any
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("refresh with scope %q: got %d %v, want %d", tt.scope, resp.StatusCode, out, tt.want)
		}
		if tt.want == 400 && out["error"] != "invalid_scope" {
			t.Errorf("widening refresh: got %v, want invalid_scope", out["error"])
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	f := setup(t, nil)
	ctx := t.Context()
	tok := f.connect(t, f.cfg, "")

	// Many racing refreshes of one refresh token: exactly one wins.
	const n = 16
	var wg sync.WaitGroup
	results := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := f.refresh(ctx, tok.RefreshToken)
			results <- err
		})
	}
	// Meanwhile other grants connect, refresh and post.
	for i := range 4 {
		wg.Go(func() {
			other := f.connect(t, f.cfg, fmt.Sprintf("Parallel %d", i))
			for range 3 {
				next, err := f.refresh(ctx, other.RefreshToken)
				if err != nil {
					t.Errorf("parallel refresh: %v", err)
					return
				}
				other = next
				f.call(t, "POST", "/api/channels/random/messages", other.AccessToken, `{"text":"hi"}`, nil, nil)
			}
			_ = f.p.Stats()
			_ = f.p.Grants()
		})
	}
	wg.Wait()
	close(results)
	ok, invalid := 0, 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case oauthErrorCode(err) == "invalid_grant":
			invalid++
		default:
			t.Errorf("racing refresh: %v", err)
		}
	}
	if ok != 1 || invalid != n-1 {
		t.Errorf("racing refreshes: got %d ok and %d invalid_grant, want 1 and %d", ok, invalid, n-1)
	}
	if got := f.p.Stats().MessagesPosted; got != 12 {
		t.Errorf("messages posted: got %d, want 12", got)
	}
}

func TestPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox.json")
	withState := func(o *sandbox.Options) { o.StatePath = path }
	f := setup(t, withState)
	tok := f.connect(t, f.cfg, "Persisted")
	revoked := f.connect(t, f.cfg, "Gone")
	if _, err := f.p.RevokeAccount("Gone"); err != nil {
		t.Fatal(err)
	}
	if r := f.call(t, "POST", "/api/channels/general/messages", tok.AccessToken, `{"text":"remember me"}`, map[string]string{"Idempotency-Key": "p1"}, nil); r.StatusCode != 201 {
		t.Fatalf("post: got %d, want 201", r.StatusCode)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode: got %v, want 0600", fi.Mode().Perm())
	}
	f.srv.Close()

	// A new provider on the same file.
	g := setup(t, withState)
	if r := g.call(t, "GET", "/api/me", tok.AccessToken, "", nil, nil); r.StatusCode != 200 {
		t.Errorf("old access token after reopen: got %d, want 200", r.StatusCode)
	}
	var list struct{ Messages []apiMessage }
	g.call(t, "GET", "/api/channels/general/messages", tok.AccessToken, "", nil, &list)
	if len(list.Messages) != 1 || list.Messages[0].Text != "remember me" {
		t.Errorf("messages after reopen: got %+v, want the one posted before", list.Messages)
	}
	if r := g.call(t, "POST", "/api/channels/general/messages", tok.AccessToken, `{"text":"remember me"}`, map[string]string{"Idempotency-Key": "p1"}, nil); r.StatusCode != 200 {
		t.Errorf("idempotent retry after reopen: got %d, want 200", r.StatusCode)
	}
	if _, err := g.refresh(t.Context(), tok.RefreshToken); err != nil {
		t.Errorf("refresh after reopen: %v", err)
	}
	_, err = g.refresh(t.Context(), revoked.RefreshToken)
	if got := oauthErrorCode(err); got != "invalid_grant" {
		t.Errorf("revoked grant after reopen: got %q (%v), want invalid_grant", got, err)
	}
	if n := len(g.p.Grants()); n != 2 {
		t.Errorf("grants after reopen: got %d, want 2", n)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		o    sandbox.Options
	}{
		{"no base URL", sandbox.Options{}},
		{"relative base URL", sandbox.Options{BaseURL: "/sandbox"}},
		{"client without redirect", sandbox.Options{BaseURL: "http://x", Clients: []sandbox.Client{{ID: "a"}}}},
		{"relative redirect", sandbox.Options{BaseURL: "http://x", Clients: []sandbox.Client{{ID: "a", RedirectURIs: []string{"/cb"}}}}},
		{"duplicate client", sandbox.Options{BaseURL: "http://x", Clients: []sandbox.Client{{ID: "a", RedirectURIs: []string{"http://x/cb"}}, {ID: "a", RedirectURIs: []string{"http://x/cb"}}}}},
	}
	for _, tt := range tests {
		if _, err := sandbox.New(tt.o); err == nil {
			t.Errorf("%s: got nil, want an error", tt.name)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o600)
	if _, err := sandbox.New(sandbox.Options{BaseURL: "http://x", StatePath: bad}); err == nil {
		t.Error("corrupt state file: got nil, want an error")
	}
}

func TestMetadata(t *testing.T) {
	f := setup(t, nil)
	var md map[string]any
	resp, err := http.Get(f.base + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	if md["token_endpoint"] != f.base+"/oauth/token" || md["issuer"] != f.base {
		t.Errorf("metadata: got %v, want endpoints under %s", md, f.base)
	}
}

// TestChatMessagesAfterCursor reads a channel as a polling trigger does:
// from a cursor, in the order messages were posted, page by page, each
// message once.
func TestChatMessagesAfterCursor(t *testing.T) {
	f := setup(t, nil)
	at := f.connect(t, f.cfg, "").AccessToken
	var posted []string
	for i := range 5 {
		m, err := f.p.Post(sandbox.DefaultAccount, "general", fmt.Sprintf("m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		posted = append(posted, m.ID)
	}
	if _, err := f.p.Post(sandbox.DefaultAccount, "nowhere", "x"); err == nil {
		t.Fatal("post to an unknown channel: got nil, want an error")
	}
	type page struct {
		Messages   []apiMessage
		HasMore    bool   `json:"has_more"`
		NextCursor string `json:"next_cursor"`
	}
	var seen []string
	cursor := ""
	for i := 0; ; i++ {
		var p page
		if r := f.call(t, "GET", "/api/channels/general/messages?limit=2&after="+cursor, at, "", nil, &p); r.StatusCode != 200 {
			t.Fatalf("page %d: got %d, want 200", i, r.StatusCode)
		}
		for _, m := range p.Messages {
			seen = append(seen, m.ID)
		}
		if p.NextCursor == "" || (len(p.Messages) > 0 && p.NextCursor != p.Messages[len(p.Messages)-1].ID) {
			t.Fatalf("page %d: next cursor %q", i, p.NextCursor)
		}
		cursor = p.NextCursor
		if !p.HasMore {
			break
		}
		if i > 5 {
			t.Fatal("pages never end")
		}
	}
	if strings.Join(seen, ",") != strings.Join(posted, ",") {
		t.Fatalf("read %v, want %v in order", seen, posted)
	}
	// Nothing new: an empty page that keeps the cursor.
	var p page
	f.call(t, "GET", "/api/channels/general/messages?after="+cursor, at, "", nil, &p)
	if len(p.Messages) != 0 || p.HasMore || p.NextCursor != cursor {
		t.Fatalf("caught up: got %+v", p)
	}
	// Without a cursor: the latest messages.
	f.call(t, "GET", "/api/channels/general/messages?limit=1", at, "", nil, &p)
	if len(p.Messages) != 1 || p.Messages[0].ID != posted[4] {
		t.Fatalf("latest: got %+v, want %s", p.Messages, posted[4])
	}
	var e struct{ Error string }
	if r := f.call(t, "GET", "/api/channels/general/messages?after=Mnope", at, "", nil, &e); r.StatusCode != 400 || e.Error != "invalid_cursor" {
		t.Fatalf("unknown cursor: got %d %q, want 400 invalid_cursor", r.StatusCode, e.Error)
	}
}
