package sandbox_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"taskjuice/internal/sandbox"
)

// consentPage fetches the consent page of an authorization request.
func (f *fixture) consentPage(t *testing.T, cfg *oauth2.Config, opts ...oauth2.AuthCodeOption) (int, string) {
	t.Helper()
	opts = append(opts, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	resp, err := http.Get(cfg.AuthCodeURL("st4te", opts...))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The sandbox hosts several client apps; each consent page names the one
// asking, not another, with the provider as the host.
func TestConsentNamesTheAppAsking(t *testing.T) {
	f := setup(t, func(o *sandbox.Options) {
		o.Clients = append(o.Clients,
			sandbox.Client{ID: "chat", Name: "Sandbox Chat", RedirectURIs: []string{callbackOf(o)}},
			sandbox.Client{ID: "inbox", Name: "Sandbox Inbox", RedirectURIs: []string{callbackOf(o)}})
	})
	for _, tc := range []struct{ id, name, other string }{
		{"inbox", "Sandbox Inbox", "Sandbox Chat"},
		{"chat", "Sandbox Chat", "Sandbox Inbox"},
	} {
		cfg := *f.cfg
		cfg.ClientID, cfg.ClientSecret, cfg.Scopes = tc.id, "", []string{"channels:read"}
		status, page := f.consentPage(t, &cfg)
		if status != http.StatusOK {
			t.Fatalf("%s consent page: got %d, want 200", tc.name, status)
		}
		for _, want := range []string{"<title>Authorize " + tc.name + " · " + sandbox.HostName + "</title>",
			"<strong>" + tc.name + "</strong> wants to access your account", sandbox.HostName} {
			if !strings.Contains(page, want) {
				t.Errorf("%s consent page lacks %q", tc.name, want)
			}
		}
		if strings.Contains(page, tc.other) {
			t.Errorf("%s consent page names %q", tc.name, tc.other)
		}
	}
}

// callbackOf is the callback the fixture registers for its own clients.
func callbackOf(o *sandbox.Options) string { return o.Clients[0].RedirectURIs[0] }

// login_hint (OpenID Connect Core 3.1.2.1) suggests the account it names,
// by id or by name; an unknown hint changes nothing.
func TestConsentHonoursLoginHint(t *testing.T) {
	f := setup(t, nil)
	tok := f.connect(t, f.cfg, "Acme Test")
	var me struct {
		Account struct{ ID, Name string }
	}
	if r := f.call(t, "GET", "/api/me", tok.AccessToken, "", nil, &me); r.StatusCode != 200 || me.Account.ID == "" {
		t.Fatalf("GET /api/me: got %d %+v", r.StatusCode, me)
	}
	const suggested = "asked to sign in as <strong>Acme Test</strong>"
	for _, tc := range []struct {
		hint, value string
		hinted      bool
	}{
		{me.Account.ID, "Acme Test", true},
		{"acme test", "Acme Test", true},
		{"Nobody Here", sandbox.DefaultAccount, false},
		{"", sandbox.DefaultAccount, false},
	} {
		var opts []oauth2.AuthCodeOption
		if tc.hint != "" {
			opts = append(opts, oauth2.SetAuthURLParam("login_hint", tc.hint))
		}
		status, page := f.consentPage(t, f.cfg, opts...)
		if status != http.StatusOK {
			t.Fatalf("hint %q: got %d, want 200", tc.hint, status)
		}
		if want := `value="` + tc.value + `"`; !strings.Contains(page, want) {
			t.Errorf("hint %q: the account field lacks %s", tc.hint, want)
		}
		if got := strings.Contains(page, suggested); got != tc.hinted {
			t.Errorf("hint %q: says the app asked for the account: got %v, want %v", tc.hint, got, tc.hinted)
		}
	}
	// Twice is refused like any repeated parameter.
	u, _ := url.Parse(f.cfg.AuthCodeURL("st4te", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("login_hint", "a")))
	u.RawQuery += "&login_hint=b"
	resp, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("login_hint twice: got %d, want 400", resp.StatusCode)
	}
}
