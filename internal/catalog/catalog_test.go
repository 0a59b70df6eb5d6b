package catalog_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/catalog"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func load(t *testing.T, opts catalog.Options) *catalog.Catalog {
	t.Helper()
	if opts.Getenv == nil {
		opts.Getenv = env(nil)
	}
	c, err := catalog.Load(opts)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return c
}

func mustApp(t *testing.T, c *catalog.Catalog, key string) catalog.App {
	t.Helper()
	a, ok := c.App(key)
	if !ok {
		t.Fatalf("app %q: got missing, want present", key)
	}
	return a
}

func TestBuiltinApps(t *testing.T) {
	c := load(t, catalog.Options{})
	want := map[string]catalog.AuthKind{
		"slack":         catalog.AuthOAuth2,
		"github":        catalog.AuthOAuth2,
		"google-sheets": catalog.AuthOAuth2,
		"gmail":         catalog.AuthOAuth2,
		"hubspot":       catalog.AuthOAuth2,
		"microsoft-365": catalog.AuthOAuth2,
		"stripe":        catalog.AuthAPIKey,
		"freshdesk":     catalog.AuthAPIKey,
		"sandbox-chat":  catalog.AuthOAuth2,
		"sandbox-inbox": catalog.AuthOAuth2,
	}
	for key, auth := range want {
		t.Run(key, func(t *testing.T) {
			a := mustApp(t, c, key)
			if a.Auth != auth {
				t.Errorf("auth: got %q, want %q", a.Auth, auth)
			}
			if a.IsOAuth() != (auth == catalog.AuthOAuth2) {
				t.Errorf("IsOAuth: got %v, want %v", a.IsOAuth(), auth == catalog.AuthOAuth2)
			}
			if a.Generic {
				t.Errorf("generic: got true, want false for a built-in app")
			}
			if a.Name == "" || a.Description == "" {
				t.Errorf("name, description: got %q, %q, want both set", a.Name, a.Description)
			}
			if a.Identity == nil {
				t.Errorf("identity: got nil, want a way to read the external account")
			}
			if len(a.Actions) == 0 || len(a.Triggers) == 0 {
				t.Errorf("actions, triggers: got %d, %d, want at least one of each", len(a.Actions), len(a.Triggers))
			}
			if a.IsOAuth() && (a.OAuth == nil || len(a.OAuth.Scopes) == 0) {
				t.Errorf("oauth: got %+v, want endpoints and scopes", a.OAuth)
			}
		})
	}
	if got := len(c.Apps()); got != len(want) {
		t.Errorf("apps: got %d, want %d", got, len(want))
	}
	names := []string{}
	for _, a := range c.Apps() {
		names = append(names, strings.ToLower(a.Name))
	}
	if !slices.IsSorted(names) {
		t.Errorf("apps order: got %v, want sorted by name", names)
	}
	if _, ok := c.App("nope"); ok {
		t.Errorf("App(nope): got present, want missing")
	}
}

func TestRequiredActions(t *testing.T) {
	c := load(t, catalog.Options{})
	for _, tc := range []struct {
		app, action, method, url string
	}{
		{"slack", "send-message", "POST", "https://slack.com/api/chat.postMessage"},
		{"github", "create-issue", "POST", "https://api.github.com/repos/{owner}/{repo}/issues"},
		{"hubspot", "create-contact", "POST", "https://api.hubapi.com/crm/v3/objects/contacts"},
		{"sandbox-chat", "post-message", "POST", "{sandbox}/api/channels/{channel}/messages"},
		{"sandbox-chat", "list-channels", "GET", "{sandbox}/api/channels"},
		{"sandbox-chat", "read-messages", "GET", "{sandbox}/api/channels/{channel}/messages"},
	} {
		a := mustApp(t, c, tc.app)
		act, ok := a.Action(tc.action)
		if !ok {
			t.Errorf("%s/%s: got missing, want present", tc.app, tc.action)
			continue
		}
		if act.Method != tc.method || act.URL != tc.url {
			t.Errorf("%s/%s: got %s %s, want %s %s", tc.app, tc.action, act.Method, act.URL, tc.method, tc.url)
		}
	}
	post, _ := mustApp(t, c, "sandbox-chat").Action("post-message")
	var body map[string]any
	if err := json.Unmarshal(post.Body, &body); err != nil || body["text"] != "{text}" || len(body) != 1 {
		t.Errorf("sandbox post-message body: got %s (%v), want {\"text\": \"{text}\"}", post.Body, err)
	}
}

func TestConfigured(t *testing.T) {
	for _, tc := range []struct {
		name       string
		env        map[string]string
		sandbox    string
		app        string
		ok         bool
		reason     string
		id, secret string
	}{
		{
			name: "oauth without credentials", app: "slack",
			reason: "Slack is not configured: set TASKJUICE_APP_SLACK_CLIENT_ID and TASKJUICE_APP_SLACK_CLIENT_SECRET",
		},
		{
			name: "oauth without secret", app: "slack",
			env:    map[string]string{"TASKJUICE_APP_SLACK_CLIENT_ID": "123.456"},
			reason: "Slack is not configured: set TASKJUICE_APP_SLACK_CLIENT_SECRET", id: "123.456",
		},
		{
			name: "oauth configured", app: "slack", ok: true,
			env: map[string]string{"TASKJUICE_APP_SLACK_CLIENT_ID": "123.456", "TASKJUICE_APP_SLACK_CLIENT_SECRET": "shh"},
			id:  "123.456", secret: "shh",
		},
		{
			name: "dashed key", app: "google-sheets",
			reason: "Google Sheets is not configured: set TASKJUICE_APP_GOOGLE_SHEETS_CLIENT_ID and TASKJUICE_APP_GOOGLE_SHEETS_CLIENT_SECRET",
		},
		{
			name: "digits in key", app: "microsoft-365", ok: true,
			env: map[string]string{"TASKJUICE_APP_MICROSOFT_365_CLIENT_ID": "m-id", "TASKJUICE_APP_MICROSOFT_365_CLIENT_SECRET": "m-secret"},
			id:  "m-id", secret: "m-secret",
		},
		{name: "api key app", app: "stripe", ok: true},
		{name: "api key app with subdomain", app: "freshdesk", ok: true},
		{
			name: "sandbox without URL", app: "sandbox-chat", id: "taskjuice",
			reason: "Sandbox Chat is not configured: start the built-in sandbox provider and set its URL",
		},
		{name: "sandbox as public client", app: "sandbox-chat", sandbox: "http://127.0.0.1:8081", ok: true, id: "taskjuice"},
		{
			name: "sandbox with secret", app: "sandbox-chat", sandbox: "http://127.0.0.1:8081", ok: true,
			env: map[string]string{"TASKJUICE_APP_SANDBOX_CHAT_CLIENT_SECRET": "sb"},
			id:  "taskjuice", secret: "sb",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := load(t, catalog.Options{Getenv: env(tc.env), SandboxURL: tc.sandbox})
			a := mustApp(t, c, tc.app)
			ok, reason := a.Configured()
			if ok != tc.ok || reason != tc.reason {
				t.Errorf("Configured: got (%v, %q), want (%v, %q)", ok, reason, tc.ok, tc.reason)
			}
			id, secret := a.ClientCredentials()
			if id != tc.id || secret != tc.secret {
				t.Errorf("ClientCredentials: got (%q, %q), want (%q, %q)", id, secret, tc.id, tc.secret)
			}
		})
	}
	if got, want := catalog.ClientIDEnv("google-sheets"), "TASKJUICE_APP_GOOGLE_SHEETS_CLIENT_ID"; got != want {
		t.Errorf("ClientIDEnv: got %q, want %q", got, want)
	}
	if got, want := catalog.ClientSecretEnv("sandbox-chat"), "TASKJUICE_APP_SANDBOX_CHAT_CLIENT_SECRET"; got != want {
		t.Errorf("ClientSecretEnv: got %q, want %q", got, want)
	}
}

const acme = `{
  "key": "acme-crm",
  "name": "Acme CRM",
  "description": "Acme's customer database.",
  "auth": "oauth2",
  "apiHosts": ["https://api.acme.example"],
  "oauth": {
    "authorizeURL": "https://login.acme.example/oauth2/authorize",
    "tokenURL": "https://login.acme.example/oauth2/token",
    "scopes": [{"scope": "contacts.write", "label": "Create and change your contacts"}]
  },
  "identity": {"url": "https://api.acme.example/me", "idPath": "id", "namePath": "name"},
  "refreshLifetime": {"absolute": "2160h"},
  "actions": [{
    "key": "create-contact", "name": "Create contact", "description": "Add a contact.",
    "method": "POST", "url": "https://api.acme.example/contacts",
    "inputs": [{"name": "email", "label": "Email", "required": true}],
    "body": {"email": "{email}"}
  }]
}`

func genericFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "apps.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// withJSON returns acme with edits applied: each key of set replaces a
// top-level member (nil deletes it).
func withJSON(t *testing.T, base string, set map[string]any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(base), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGenericApps(t *testing.T) {
	t.Run("valid, credentials from env", func(t *testing.T) {
		file := genericFile(t, "["+acme+"]")
		c := load(t, catalog.Options{GenericAppsFile: file, Getenv: env(map[string]string{
			"TASKJUICE_APP_ACME_CRM_CLIENT_ID":     "acme-id",
			"TASKJUICE_APP_ACME_CRM_CLIENT_SECRET": "acme-secret",
		})})
		a := mustApp(t, c, "acme-crm")
		if !a.Generic {
			t.Errorf("generic: got false, want true")
		}
		if ok, reason := a.Configured(); !ok {
			t.Errorf("Configured: got (false, %q), want true", reason)
		}
		if id, secret := a.ClientCredentials(); id != "acme-id" || secret != "acme-secret" {
			t.Errorf("ClientCredentials: got (%q, %q), want (acme-id, acme-secret)", id, secret)
		}
		if got, want := a.RefreshLifetime.Absolute, 90*24*time.Hour; got != want {
			t.Errorf("refresh lifetime: got %v, want %v", got, want)
		}
		if got := len(c.Apps()); got != 11 {
			t.Errorf("apps: got %d, want 11 (10 built-in + 1 generic)", got)
		}
	})
	t.Run("client id in file, secret env named in file", func(t *testing.T) {
		def := withJSON(t, acme, map[string]any{"clientId": "file-id", "clientSecretEnv": "ACME_SECRET"})
		file := genericFile(t, "["+def+"]")
		a := mustApp(t, load(t, catalog.Options{GenericAppsFile: file}), "acme-crm")
		ok, reason := a.Configured()
		if want := "Acme CRM is not configured: set ACME_SECRET"; ok || reason != want {
			t.Errorf("Configured: got (%v, %q), want (false, %q)", ok, reason, want)
		}
		a = mustApp(t, load(t, catalog.Options{GenericAppsFile: file, Getenv: env(map[string]string{"ACME_SECRET": "s"})}), "acme-crm")
		if id, secret := a.ClientCredentials(); id != "file-id" || secret != "s" {
			t.Errorf("ClientCredentials: got (%q, %q), want (file-id, s)", id, secret)
		}
	})

	for _, tc := range []struct {
		name    string
		content string
		want    []string // substrings of the error
	}{
		{
			name:    "key clash with built-in",
			content: "[" + withJSON(t, acme, map[string]any{"key": "slack"}) + "]",
			want:    []string{"[0] (slack): key:", `"slack" clashes with the built-in app Slack`},
		},
		{
			name:    "key twice in file",
			content: "[" + acme + "," + acme + "]",
			want:    []string{"[1] (acme-crm): key:", "defined twice"},
		},
		{
			name: "missing token URL",
			content: "[" + withJSON(t, acme, map[string]any{"oauth": map[string]any{
				"authorizeURL": "https://login.acme.example/oauth2/authorize",
				"scopes":       []any{map[string]any{"scope": "a", "label": "A"}},
			}}) + "]",
			want: []string{"apps.json[0] (acme-crm): oauth.tokenURL: required"},
		},
		{
			name:    "secret in file",
			content: "[" + withJSON(t, acme, map[string]any{"clientSecret": "oops"}) + "]",
			want:    []string{"clientSecret: secrets are not read from this file"},
		},
		{
			name:    "api key app",
			content: "[" + withJSON(t, acme, map[string]any{"auth": "apiKey"}) + "]",
			want:    []string{`auth: got "apiKey", want "oauth2"`},
		},
		{
			name:    "bad key",
			content: "[" + withJSON(t, acme, map[string]any{"key": "Acme CRM"}) + "]",
			want:    []string{`key: got "Acme CRM"`},
		},
		{
			name:    "no name",
			content: "[" + withJSON(t, acme, map[string]any{"name": nil}) + "]",
			want:    []string{"name: required"},
		},
		{
			name:    "unknown auth kind",
			content: "[" + withJSON(t, acme, map[string]any{"auth": "saml"}) + "]",
			want:    []string{`auth: got "saml"`},
		},
		{
			name: "plain http token URL",
			content: "[" + withJSON(t, acme, map[string]any{"oauth": map[string]any{
				"authorizeURL": "https://login.acme.example/a", "tokenURL": "http://login.acme.example/t",
				"scopes": []any{map[string]any{"scope": "a", "label": "A"}},
			}}) + "]",
			want: []string{"oauth.tokenURL:", "want an https URL"},
		},
		{
			name: "relative authorize URL",
			content: "[" + withJSON(t, acme, map[string]any{"oauth": map[string]any{
				"authorizeURL": "/authorize", "tokenURL": "https://login.acme.example/t",
				"scopes": []any{map[string]any{"scope": "a", "label": "A"}},
			}}) + "]",
			want: []string{"oauth.authorizeURL:", "absolute"},
		},
		{
			name: "no scopes, unlabelled scope",
			content: "[" + withJSON(t, acme, map[string]any{"oauth": map[string]any{
				"authorizeURL": "https://a.example/a", "tokenURL": "https://a.example/t",
				"scopes": []any{map[string]any{"scope": "read"}},
			}}) + "]",
			want: []string{"oauth.scopes[0].label: required"},
		},
		{
			name: "duplicate action key, unused input, bad pattern",
			content: "[" + withJSON(t, acme, map[string]any{"actions": []any{
				map[string]any{"key": "a", "name": "A", "method": "GET", "url": "https://a.example/x"},
				map[string]any{"key": "a", "name": "B", "method": "GET", "url": "https://a.example/y",
					"inputs": []any{map[string]any{"name": "id", "label": "ID", "pattern": "[a-"}}},
			}}) + "]",
			want: []string{`actions[1] (a).key: "a" is used twice`, `actions[1] (a).inputs[0].pattern:`, `input "id" is not used`},
		},
		{
			name: "unknown placeholder",
			content: "[" + withJSON(t, acme, map[string]any{"actions": []any{
				map[string]any{"key": "a", "name": "A", "method": "GET", "url": "https://a.example/items/{item}"},
			}}) + "]",
			want: []string{"actions[0] (a).url: placeholder {item} names no input"},
		},
		{
			name:    "bad duration",
			content: "[" + withJSON(t, acme, map[string]any{"refreshLifetime": map[string]any{"inactivity": "90 days"}}) + "]",
			want:    []string{"refreshLifetime.inactivity:"},
		},
		{
			name:    "misspelt field",
			content: "[" + withJSON(t, acme, map[string]any{"refreshLifespan": map[string]any{"absolute": "1h"}}) + "]",
			want:    []string{`unknown field "refreshLifespan"`},
		},
		{
			name: "reserved authorize parameter",
			content: "[" + withJSON(t, acme, map[string]any{"oauth": map[string]any{
				"authorizeURL": "https://a.example/a", "tokenURL": "https://a.example/t",
				"authorizeParams": map[string]any{"redirect_uri": "https://evil.example/cb"},
				"scopes":          []any{map[string]any{"scope": "a", "label": "A"}},
			}}) + "]",
			want: []string{"oauth.authorizeParams.redirect_uri: set by TaskJuice itself"},
		},
		{
			name:    "no apiHosts",
			content: "[" + withJSON(t, acme, map[string]any{"apiHosts": nil}) + "]",
			want:    []string{"apiHosts: required"},
		},
		{
			name:    "apiHosts with a path, an action elsewhere",
			content: "[" + withJSON(t, acme, map[string]any{"apiHosts": []any{"https://api.acme.example/v1"}}) + "]",
			want:    []string{`apiHosts[0]: got "https://api.acme.example/v1", want an origin`, `actions[0].url: "https://api.acme.example/contacts" is not on one of apiHosts`},
		},
		{
			name:    "plain http API host",
			content: "[" + withJSON(t, acme, map[string]any{"apiHosts": []any{"http://api.acme.example"}}) + "]",
			want:    []string{`apiHosts[0]: got "http://api.acme.example", want an https URL`},
		},
		{
			name:    "errors without a note, doc not https",
			content: "[" + withJSON(t, acme, map[string]any{"errors": map[string]any{"doc": "http://docs.acme.example/errors"}}) + "]",
			want:    []string{`errors.doc: got "http://docs.acme.example/errors", want the https URL`, "errors.note: required"},
		},
		{
			name: "errors.inBody that cannot match",
			content: "[" + withJSON(t, acme, map[string]any{"errors": map[string]any{"note": "Acme says ok false", "inBody": map[string]any{
				"field": "", "equals": map[string]any{}, "codeField": "error..code", "messageField": ".msg",
				"credentialCodes": []any{"invalid_auth", "", "invalid_auth"}, "retryableCodes": []any{"invalid_auth"},
			}}}) + "]",
			want: []string{
				"errors.inBody.field: must be a dotted path", "errors.inBody.equals: got map[], want a JSON boolean, string or number",
				"errors.inBody.codeField: must be a dotted path", "errors.inBody.messageField: must be a dotted path",
				"errors.inBody.credentialCodes: an error code is empty", `errors.inBody.credentialCodes: "invalid_auth" is listed twice`,
				`errors.inBody.retryableCodes: "invalid_auth" is also a credential code`,
			},
		},
		{
			name:    "errors with a misspelt field",
			content: "[" + withJSON(t, acme, map[string]any{"errors": map[string]any{"note": "n", "inBody": map[string]any{"field": "ok", "equals": false, "codeField": "error", "deadCodes": []any{"x"}}}}) + "]",
			want:    []string{`unknown field "deadCodes"`},
		},
		{
			name:    "not an array",
			content: acme,
			want:    []string{"want a JSON array"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := genericFile(t, tc.content)
			_, err := catalog.Load(catalog.Options{Getenv: env(nil), GenericAppsFile: file})
			if err == nil {
				t.Fatalf("load: got no error, want one containing %q", tc.want)
			}
			if !errors.Is(err, catalog.ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid): got false, want true (err: %v)", err)
			}
			for _, w := range append(tc.want, file) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error: got %q, want it to contain %q", err, w)
				}
			}
		})
	}

	t.Run("localhost and sandbox templates", func(t *testing.T) {
		local := withJSON(t, acme, map[string]any{"key": "local-idp", "name": "Local IdP", "oauth": map[string]any{
			"authorizeURL": "http://localhost:8080/realms/dev/auth", "tokenURL": "http://127.0.0.1:8080/realms/dev/token",
			"scopes": []any{map[string]any{"scope": "openid", "label": "Know who you are"}},
		}})
		sb := withJSON(t, acme, map[string]any{"key": "sandbox-crm", "name": "Sandbox CRM", "oauth": map[string]any{
			"authorizeURL": "{sandbox}/oauth/authorize", "tokenURL": "{sandbox}/oauth/token",
			"scopes": []any{map[string]any{"scope": "contacts", "label": "Your contacts"}},
		}})
		file := genericFile(t, "["+local+","+sb+"]")
		c := load(t, catalog.Options{GenericAppsFile: file, Getenv: env(map[string]string{
			"TASKJUICE_APP_SANDBOX_CRM_CLIENT_ID": "i", "TASKJUICE_APP_SANDBOX_CRM_CLIENT_SECRET": "s",
		})})
		mustApp(t, c, "local-idp")
		ok, reason := mustApp(t, c, "sandbox-crm").Configured()
		if want := "Sandbox CRM is not configured: start the built-in sandbox provider and set its URL"; ok || reason != want {
			t.Errorf("Configured without sandbox URL: got (%v, %q), want (false, %q)", ok, reason, want)
		}
		a := mustApp(t, load(t, catalog.Options{GenericAppsFile: file, SandboxURL: "http://127.0.0.1:9", Getenv: env(map[string]string{
			"TASKJUICE_APP_SANDBOX_CRM_CLIENT_ID": "i", "TASKJUICE_APP_SANDBOX_CRM_CLIENT_SECRET": "s",
		})}), "sandbox-crm")
		if ok, _ := a.Configured(); !ok || a.OAuth.TokenURL != "http://127.0.0.1:9/oauth/token" {
			t.Errorf("with sandbox URL: got configured=%v token URL %q, want true and http://127.0.0.1:9/oauth/token", ok, a.OAuth.TokenURL)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		_, err := catalog.Load(catalog.Options{GenericAppsFile: filepath.Join(t.TempDir(), "none.json")})
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("load: got %v, want an error wrapping os.ErrNotExist", err)
		}
	})
}

func TestSandboxExpansion(t *testing.T) {
	c := load(t, catalog.Options{SandboxURL: "http://127.0.0.1:8081/"})
	a := mustApp(t, c, "sandbox-chat")
	post, _ := a.Action("post-message")
	for _, tc := range []struct{ name, got, want string }{
		{"authorize", a.OAuth.AuthorizeURL, "http://127.0.0.1:8081/oauth/authorize"},
		{"token", a.OAuth.TokenURL, "http://127.0.0.1:8081/oauth/token"},
		{"revoke", a.OAuth.RevokeURL, "http://127.0.0.1:8081/oauth/revoke"},
		{"identity", a.Identity.URL, "http://127.0.0.1:8081/api/me"},
		{"post-message", post.URL, "http://127.0.0.1:8081/api/channels/{channel}/messages"},
		{"identity id path", a.Identity.IDPath, "account.id"},
		{"identity name path", a.Identity.NamePath, "account.name"},
		{"scopes", a.ScopeString(), "channels:read chat:write messages:read"},
		{"labels", strings.Join(a.Scopes(), "|"), "Read your channels|Post messages as you|Read messages"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if !a.OAuth.PKCE {
		t.Errorf("pkce: got false, want true")
	}
	if got, want := a.RefreshLifetime.Absolute, 30*24*time.Hour; got != want {
		t.Errorf("refresh lifetime: got %v, want %v", got, want)
	}

	// Without a sandbox URL the templates stay as written.
	a = mustApp(t, load(t, catalog.Options{}), "sandbox-chat")
	if got, want := a.OAuth.TokenURL, "{sandbox}/oauth/token"; got != want {
		t.Errorf("unexpanded token URL: got %q, want %q", got, want)
	}

	for _, bad := range []string{"ftp://sandbox", "127.0.0.1:8081", "/sandbox"} {
		if _, err := catalog.Load(catalog.Options{Getenv: env(nil), SandboxURL: bad}); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("sandbox URL %q: got %v, want ErrInvalid", bad, err)
		}
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	const secret = "SECRET-d41d8cd98f00b204"
	c := load(t, catalog.Options{
		SandboxURL: "http://127.0.0.1:8081",
		Getenv: env(map[string]string{
			"TASKJUICE_APP_SLACK_CLIENT_ID":            "slack-id",
			"TASKJUICE_APP_SLACK_CLIENT_SECRET":        secret,
			"TASKJUICE_APP_SANDBOX_CHAT_CLIENT_SECRET": secret,
		}),
	})
	for _, key := range []string{"slack", "sandbox-chat"} {
		a := mustApp(t, c, key)
		if _, s := a.ClientCredentials(); s != secret {
			t.Fatalf("%s ClientCredentials secret: got %q, want %q", key, s, secret)
		}
		type holder struct {
			Exported   catalog.App
			unexported catalog.App
		}
		outputs := map[string]string{
			"%v":                  fmt.Sprintf("%v", a),
			"%+v":                 fmt.Sprintf("%+v", a),
			"%#v":                 fmt.Sprintf("%#v", a),
			"%s":                  fmt.Sprintf("%s", a),
			"%d":                  fmt.Sprintf("%d", a),
			"%x":                  fmt.Sprintf("%x", a),
			"pointer %+v":         fmt.Sprintf("%+v", &a),
			"slice %+v":           fmt.Sprintf("%+v", c.Apps()),
			"holder %+v":          fmt.Sprintf("%+v", holder{a, a}),
			"holder %#v":          fmt.Sprintf("%#v", holder{a, a}),
			"map %+v":             fmt.Sprintf("%+v", map[string]catalog.App{key: a}),
			"String":              a.String(),
			"slog.String (GoVal)": fmt.Sprint(slog.AnyValue(a).Resolve()),
		}
		if b, err := json.Marshal(a); err != nil {
			t.Fatal(err)
		} else {
			outputs["json"] = string(b)
		}
		if b, err := json.Marshal(c.Apps()); err != nil {
			t.Fatal(err)
		} else {
			outputs["json apps"] = string(b)
		}
		for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
			"slog text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
			"slog json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		} {
			var buf bytes.Buffer
			slog.New(h(&buf)).Info("app", "app", a, "ptr", &a, "apps", c.Apps())
			outputs[name] = buf.String()
		}
		for name, out := range outputs {
			if strings.Contains(out, secret) {
				t.Errorf("%s %s: got output containing the secret: %s", key, name, out)
			}
			if !strings.Contains(out, key) && !strings.HasPrefix(name, "%x") {
				t.Errorf("%s %s: got %q, want it to name the app", key, name, out)
			}
		}
	}
}

// Every built-in app says how it reports failure, with the page of its
// documentation that says so (the sandbox's is its package); only Slack
// reports failures inside a 2xx answer.
func TestBuiltinErrorConventions(t *testing.T) {
	c := load(t, catalog.Options{SandboxURL: "http://127.0.0.1:9"})
	for _, a := range c.Apps() {
		if a.Errors == nil || a.Errors.Note == "" {
			t.Errorf("%s: errors: got %+v, want a convention with a note", a.Key, a.Errors)
			continue
		}
		if a.Errors.Doc == "" && !strings.HasPrefix(a.Key, "sandbox-") {
			t.Errorf("%s: errors.doc: empty, want the app's documentation", a.Key)
		}
		if got, want := a.Errors.InBody != nil, a.Key == "slack"; got != want {
			t.Errorf("%s: errors.inBody set: got %v, want %v", a.Key, got, want)
		}
	}
}

func TestBodyErrorRule(t *testing.T) {
	c := load(t, catalog.Options{})
	slack := mustApp(t, c, "slack")
	for _, tc := range []struct {
		status     int
		body       string
		failed     bool
		code       string
		credential bool
		retryable  bool
	}{
		{200, `{"ok":false,"error":"invalid_auth"}`, true, "invalid_auth", true, false},
		{200, `{"ok":false,"error":"token_revoked"}`, true, "token_revoked", true, false},
		{200, `{"ok":false,"error":"account_inactive"}`, true, "account_inactive", true, false},
		{200, `{"ok":false,"error":"token_expired"}`, true, "token_expired", true, false},
		{200, `{"ok":false,"error":"not_authed"}`, true, "not_authed", true, false},
		{200, `{"ok":false,"error":"ratelimited"}`, true, "ratelimited", false, true},
		{200, `{"ok":false,"error":"internal_error"}`, true, "internal_error", false, true},
		{200, `{"ok":false,"error":"channel_not_found"}`, true, "channel_not_found", false, false},
		{200, `{"ok":false}`, true, "", false, false},
		{200, `{"ok":true,"channel":"C1","ts":"1.2"}`, false, "", false, false},
		{200, `{"ok":true,"error":"invalid_auth"}`, false, "", false, false},
		{200, `{"ok":"false","error":"invalid_auth"}`, false, "", false, false},
		{200, `{"error":"invalid_auth"}`, false, "", false, false},
		{200, `not json`, false, "", false, false},
		{200, ``, false, "", false, false},
		// Not a 2xx: judged by its status, not by this rule.
		{500, `{"ok":false,"error":"channel_not_found"}`, false, "", false, false},
	} {
		f, failed := slack.BodyFailure(tc.status, []byte(tc.body))
		if failed != tc.failed || f.Code != tc.code || f.Credential != tc.credential || f.Retryable != tc.retryable {
			t.Errorf("BodyFailure(%d, %s): got (%+v, %v), want code %q credential %v retryable %v failed %v",
				tc.status, tc.body, f, failed, tc.code, tc.credential, tc.retryable, tc.failed)
		}
	}
	// An app without a rule reads every 2xx as a success.
	if f, failed := mustApp(t, c, "github").BodyFailure(200, []byte(`{"ok":false,"error":"x"}`)); failed {
		t.Errorf("github BodyFailure: got %+v, want none", f)
	}
	if _, failed := (catalog.BodyError{}).Match([]byte(`{"ok":false}`)); failed {
		t.Error("zero rule Match: got a failure, want none")
	}
	rule := catalog.BodyError{Field: "status", Equals: "error", CodeField: "error.code", MessageField: "error.message"}
	f, failed := rule.Match([]byte(`{"status":"error","error":{"code":"E42","message":"Quota exceeded"}}`))
	if !failed || f.Code != "E42" || f.Message != "Quota exceeded" {
		t.Errorf("nested rule: got (%+v, %v), want E42 with its message", f, failed)
	}
}

func TestIdentityExtract(t *testing.T) {
	c := load(t, catalog.Options{})
	for _, tc := range []struct {
		app, body, id, name, err string
	}{
		{"slack", `{"ok":true,"access_token":"xoxb-1","team":{"id":"T024BE7LD","name":"Acme Agency"}}`, "T024BE7LD", "Acme Agency", ""},
		{"github", `{"login":"octocat","id":9007199254740993}`, "9007199254740993", "octocat", ""},
		{"stripe", `{"id":"acct_1","settings":{"dashboard":{"display_name":"Acme"}}}`, "acct_1", "Acme", ""},
		{"hubspot", `{"portalId":62515,"uiDomain":"app.hubspot.com"}`, "62515", "", ""},
		{"sandbox-chat", `{"account":{"id":"acct-1","name":"Sandbox Workspace"}}`, "acct-1", "Sandbox Workspace", ""},
		{"github", `{"login":"octocat"}`, "", "", `"id" not found`},
		{"github", `{"id":{"x":1}}`, "", "", "not a scalar"},
		{"github", `[`, "", "", "decode"},
	} {
		id, name, err := mustApp(t, c, tc.app).Identity.Extract([]byte(tc.body))
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if id != tc.id || name != tc.name || (tc.err == "") != (err == nil) || !strings.Contains(gotErr, tc.err) {
			t.Errorf("%s Extract(%s): got (%q, %q, %v), want (%q, %q, error containing %q)", tc.app, tc.body, id, name, err, tc.id, tc.name, tc.err)
		}
	}
}

func TestRefreshLifetime(t *testing.T) {
	c := load(t, catalog.Options{})
	day := 24 * time.Hour
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		app      string
		lastUsed time.Time
		want     time.Time
		known    bool
	}{
		{"gmail", issued.Add(10 * day), issued.Add(190 * day), true},
		{"google-sheets", time.Time{}, issued.Add(180 * day), true},
		{"microsoft-365", issued.Add(5 * day), issued.Add(95 * day), true},
		{"sandbox-chat", issued.Add(29 * day), issued.Add(30 * day), true},
		{"hubspot", issued, time.Time{}, false},
		{"slack", issued, time.Time{}, false},
	} {
		l := mustApp(t, c, tc.app).RefreshLifetime
		if l == nil {
			t.Errorf("%s refreshLifetime: got nil, want a declared lifetime", tc.app)
			continue
		}
		got, known := l.ExpiresAt(issued, tc.lastUsed)
		if !got.Equal(tc.want) || known != tc.known {
			t.Errorf("%s ExpiresAt: got (%v, %v), want (%v, %v)", tc.app, got, known, tc.want, tc.known)
		}
	}
	// Both limits: the earlier wins.
	both := catalog.RefreshLifetime{Absolute: 30 * day, Inactivity: 7 * day}
	if got, _ := both.ExpiresAt(issued, issued.Add(25*day)); !got.Equal(issued.Add(30 * day)) {
		t.Errorf("absolute before inactivity: got %v, want %v", got, issued.Add(30*day))
	}
	if got, _ := both.ExpiresAt(issued, issued.Add(2*day)); !got.Equal(issued.Add(9 * day)) {
		t.Errorf("inactivity before absolute: got %v, want %v", got, issued.Add(9*day))
	}

	b, err := json.Marshal(both)
	if err != nil {
		t.Fatal(err)
	}
	var back catalog.RefreshLifetime
	if err := json.Unmarshal(b, &back); err != nil || back != both {
		t.Errorf("JSON round trip of %s: got %+v (%v), want %+v", b, back, err, both)
	}
}

func TestFieldCheck(t *testing.T) {
	c := load(t, catalog.Options{})
	fd := mustApp(t, c, "freshdesk")
	var subdomain catalog.Field
	for _, f := range fd.Fields {
		if f.Name == "subdomain" {
			subdomain = f
		}
	}
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"acme", true},
		{"acme-support2", true},
		{"", false},
		{"acme.freshdesk.com", false},
		{"Acme", false},
		{"-acme", false},
	} {
		if err := subdomain.Check(tc.value); (err == nil) != tc.ok {
			t.Errorf("subdomain Check(%q): got %v, want ok=%v", tc.value, err, tc.ok)
		}
	}
	if fd.APIKey == nil || fd.APIKey.Scheme != "basic" || fd.APIKey.BasicPassword != "X" {
		t.Errorf("freshdesk apiKey: got %+v, want basic auth with password X", fd.APIKey)
	}
	create, _ := fd.Action("create-ticket")
	if got, want := create.URL, "https://{subdomain}.freshdesk.com/api/v2/tickets"; got != want {
		t.Errorf("freshdesk create-ticket URL: got %q, want %q", got, want)
	}

	stripe := mustApp(t, c, "stripe")
	key := stripe.Fields[0]
	if !key.Secret || key.Check("sk_test_4eC39HqLyjWDarjtT1zdp7dc") != nil || key.Check("pk_test_abc") == nil {
		t.Errorf("stripe key field: got %+v, want a secret field accepting sk_ keys and refusing pk_ keys", key)
	}
}

// Every built-in app declares where its credential may go, and those are
// its documented API hosts; a field fills a host label but cannot move the
// credential to another domain.
func TestAPIHosts(t *testing.T) {
	c := load(t, catalog.Options{SandboxURL: "http://127.0.0.1:8081/sandbox"})
	for key, want := range map[string]string{
		"slack":         "https://slack.com",
		"github":        "https://api.github.com",
		"google-sheets": "https://sheets.googleapis.com https://openidconnect.googleapis.com",
		"gmail":         "https://gmail.googleapis.com https://openidconnect.googleapis.com",
		"hubspot":       "https://api.hubapi.com",
		"microsoft-365": "https://graph.microsoft.com",
		"stripe":        "https://api.stripe.com",
		"sandbox-chat":  "http://127.0.0.1:8081",
		"sandbox-inbox": "http://127.0.0.1:8081",
	} {
		if got := strings.Join(mustApp(t, c, key).Origins(nil), " "); got != want {
			t.Errorf("%s origins: got %q, want %q", key, got, want)
		}
	}
	fd := mustApp(t, c, "freshdesk")
	for sub, want := range map[string]string{
		"acme": "https://acme.freshdesk.com", "ACME": "https://acme.freshdesk.com",
		"": "", "evil.com#": "", "x.evil": "", "a/b": "",
	} {
		if got := strings.Join(fd.Origins(map[string]string{"subdomain": sub}), " "); got != want {
			t.Errorf("freshdesk origins with subdomain %q: got %q, want %q", sub, got, want)
		}
	}
	for raw, want := range map[string]string{
		"https://API.GitHub.com:443/user": "https://api.github.com",
		"http://localhost:80/x":           "http://localhost",
		"http://127.0.0.1:8081/sandbox":   "http://127.0.0.1:8081",
		"https://[::1]/x":                 "https://[::1]",
		"ftp://example.com/":              "",
	} {
		u, _ := url.Parse(raw)
		if got := catalog.Origin(u); got != want {
			t.Errorf("Origin(%s): got %q, want %q", raw, got, want)
		}
	}
	if got := catalog.DisplayOrigin("https://api.github.com"); got != "api.github.com" {
		t.Errorf("DisplayOrigin: got %q, want api.github.com", got)
	}
	if got := catalog.DisplayOrigin("http://127.0.0.1:8081"); got != "http://127.0.0.1:8081" {
		t.Errorf("DisplayOrigin: got %q, want http://127.0.0.1:8081", got)
	}
}

// Each built-in sandbox app is its own client of the sandbox provider,
// named after the app for its consent page.
func TestSandboxClients(t *testing.T) {
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: "http://127.0.0.1:8081"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range cat.SandboxClients() {
		got[c.ID] = c.Name
	}
	want := map[string]string{"taskjuice": "Sandbox Chat", "taskjuice-inbox": "Sandbox Inbox"}
	if len(got) != len(want) {
		t.Fatalf("sandbox clients: got %v, want %v", got, want)
	}
	for id, name := range want {
		if got[id] != name {
			t.Errorf("sandbox client %q: got %q, want %q", id, got[id], name)
		}
	}
	for key, id := range map[string]string{"sandbox-chat": "taskjuice", "sandbox-inbox": "taskjuice-inbox"} {
		a, _ := cat.App(key)
		if gotID, _ := a.ClientCredentials(); gotID != id {
			t.Errorf("%s client id: got %q, want %q", key, gotID, id)
		}
	}
}

func TestSigningSecretFromEnvironment(t *testing.T) {
	c := load(t, catalog.Options{Getenv: env(map[string]string{"TASKJUICE_APP_SLACK_SIGNING_SECRET": " 8f742231b10e8888abcd99yyyzzz85a5 "})})
	slack := mustApp(t, c, "slack")
	if got := slack.SigningSecret(); got != "8f742231b10e8888abcd99yyyzzz85a5" {
		t.Errorf("slack SigningSecret: got %q, want the trimmed variable", got)
	}
	if got := catalog.SigningSecretEnv("slack"); got != "TASKJUICE_APP_SLACK_SIGNING_SECRET" {
		t.Errorf("SigningSecretEnv: got %q", got)
	}
	for _, s := range []string{fmt.Sprintf("%+v", slack), fmt.Sprintf("%#v", slack), slack.String()} {
		if strings.Contains(s, "8f742231") {
			t.Errorf("the signing secret is printed: %s", s)
		}
	}
	if got := mustApp(t, c, "github").SigningSecret(); got != "" {
		t.Errorf("github SigningSecret: got %q, want empty", got)
	}
	if got := mustApp(t, load(t, catalog.Options{}), "slack").SigningSecret(); got != "" {
		t.Errorf("unset SigningSecret: got %q, want empty", got)
	}
}

func TestGitHubCanCreateRepositoryWebhooks(t *testing.T) {
	gh := mustApp(t, load(t, catalog.Options{}), "github")
	scopes := strings.Fields(strings.ReplaceAll(gh.ScopeString(), ",", " "))
	if !slices.Contains(scopes, "admin:repo_hook") && !slices.Contains(scopes, "write:repo_hook") {
		t.Errorf("github scopes %q: want admin:repo_hook or write:repo_hook for its webhook triggers", gh.ScopeString())
	}
	for _, k := range []string{"new-issue", "new-pull-request"} {
		tr, ok := gh.Trigger(k)
		if !ok || tr.Mode != catalog.TriggerWebhook {
			t.Errorf("github %s: got %+v, want mode webhook", k, tr)
		}
	}
}

// Every built-in trigger carries an example event, and an example is a
// JSON object: it stands for a run's trigger payload, which always is one.
func TestTriggerExamples(t *testing.T) {
	for _, a := range load(t, catalog.Options{}).Apps() {
		for _, tr := range a.Triggers {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(tr.Example, &obj); err != nil || len(obj) == 0 {
				t.Errorf("%s %s example: got %q, want a JSON object with the event's fields", a.Key, tr.Key, tr.Example)
			}
		}
	}

	withExample := func(example any) string {
		tr := map[string]any{"key": "new-contact", "name": "New contact", "mode": "poll", "example": example}
		return "[" + withJSON(t, acme, map[string]any{"triggers": []any{tr}}) + "]"
	}
	file := genericFile(t, withExample(map[string]any{"id": "c-1", "email": "ada@example.com"}))
	tr, ok := mustApp(t, load(t, catalog.Options{GenericAppsFile: file}), "acme-crm").Trigger("new-contact")
	if !ok || string(tr.Example) != `{"email":"ada@example.com","id":"c-1"}` {
		t.Errorf("generic trigger example: got %q (found %v), want the object from the file", tr.Example, ok)
	}

	for _, tc := range []struct {
		name    string
		example any
		want    string
	}{
		{"array", []any{map[string]any{"id": "c-1"}}, "triggers[0].example: got an array, want a JSON object"},
		{"string", `{"id": "c-1"}`, "triggers[0].example: got a string, want a JSON object"},
		{"number", 42, "triggers[0].example: got a number, want a JSON object"},
		{"boolean", true, "triggers[0].example: got a boolean, want a JSON object"},
		{"null", json.RawMessage("null"), "triggers[0].example: got null, want a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := genericFile(t, withExample(tc.example))
			_, err := catalog.Load(catalog.Options{Getenv: env(nil), GenericAppsFile: file})
			if !errors.Is(err, catalog.ErrInvalid) || !strings.Contains(err.Error(), "apps.json[0] (acme-crm): "+tc.want) {
				t.Errorf("load: got %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}
