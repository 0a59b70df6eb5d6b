package catalog

import (
	"bytes"
	"cmp"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
)

//go:embed apps/*.json
var builtinFS embed.FS

// ErrInvalid marks a definition that failed validation or a bad option.
var ErrInvalid = errors.New("invalid app catalog")

// SandboxKey is the key of the app backed by TaskJuice's built-in sandbox
// provider.
const SandboxKey = "sandbox-chat"

// sandboxClientID is the client the built-in sandbox provider registers for
// TaskJuice's Sandbox Chat.
const sandboxClientID = "taskjuice"

// SandboxClientID is the client id a built-in sandbox app uses at the
// sandbox provider: each app has its own registration, so the consent page
// names the app asking for access. sandbox-chat keeps "taskjuice"; another
// app sandbox-x uses "taskjuice-x".
func SandboxClientID(appKey string) string {
	if appKey == SandboxKey {
		return sandboxClientID
	}
	return sandboxClientID + "-" + strings.TrimPrefix(appKey, "sandbox-")
}

// SandboxClient is one client registration the sandbox provider needs.
type SandboxClient struct {
	ID   string
	Name string // the app's name, shown on the consent page
}

// SandboxClients lists the registrations of the built-in sandbox apps, for
// the sandbox provider to register.
func (c *Catalog) SandboxClients() []SandboxClient {
	var out []SandboxClient
	for _, a := range c.apps {
		if a.client != nil && a.client.sandbox {
			out = append(out, SandboxClient{ID: SandboxClientID(a.Key), Name: a.Name})
		}
	}
	return out
}

// Options configure Load.
type Options struct {
	// Getenv reads OAuth client credentials; nil means os.Getenv.
	Getenv func(string) string
	// GenericAppsFile is the path of a JSON array of extra OAuth 2.0 app
	// definitions written by an administrator; empty for none.
	GenericAppsFile string
	// SandboxURL is the base URL of the built-in sandbox provider, which
	// replaces the {sandbox} placeholder; empty leaves sandbox apps
	// unconfigured.
	SandboxURL string
}

// Catalog is the loaded, validated set of apps. It is immutable and safe
// for concurrent use.
type Catalog struct {
	apps  []App // sorted by name
	byKey map[string]int
}

// Apps returns every app, sorted by name.
func (c *Catalog) Apps() []App { return slices.Clone(c.apps) }

// App returns the app with the given key.
func (c *Catalog) App(key string) (App, bool) {
	i, ok := c.byKey[key]
	if !ok {
		return App{}, false
	}
	return c.apps[i], true
}

// ClientIDEnv is the environment variable holding the OAuth client id of
// the app with the given key, e.g. TASKJUICE_APP_GOOGLE_SHEETS_CLIENT_ID.
func ClientIDEnv(key string) string { return envPrefix(key) + "_CLIENT_ID" }

// ClientSecretEnv is the environment variable holding the OAuth client
// secret of the app with the given key.
func ClientSecretEnv(key string) string { return envPrefix(key) + "_CLIENT_SECRET" }

// SigningSecretEnv is the environment variable holding the app-wide secret
// the app signs its event deliveries with, e.g.
// TASKJUICE_APP_SLACK_SIGNING_SECRET (Slack's Events API).
func SigningSecretEnv(key string) string { return envPrefix(key) + "_SIGNING_SECRET" }

func envPrefix(key string) string {
	return "TASKJUICE_APP_" + strings.ReplaceAll(strings.ToUpper(key), "-", "_")
}

// Load reads the built-in apps and, if configured, the administrator's
// generic OAuth apps; validates all of them; expands {sandbox}; and reads
// client credentials from the environment. Every problem found is reported,
// each naming its file and field.
func Load(opts Options) (*Catalog, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	sandbox, err := sandboxBase(opts.SandboxURL)
	if err != nil {
		return nil, err
	}

	var apps []App
	var errs []error
	builtin := map[string]string{} // key -> name
	files, err := builtinFS.ReadDir("apps")
	if err != nil {
		return nil, fmt.Errorf("catalog: read built-in apps: %w", err)
	}
	for _, f := range files {
		name := "apps/" + f.Name()
		raw, err := builtinFS.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("catalog: %s: %w", name, err)
		}
		var a App
		if err := decodeStrict(raw, &a); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		a.Generic = false
		if want := strings.TrimSuffix(f.Name(), ".json"); a.Key != want {
			errs = append(errs, fmt.Errorf("%s: key: got %q, want %q (the file name)", name, a.Key, want))
		}
		if prev, dup := builtin[a.Key]; dup {
			errs = append(errs, fmt.Errorf("%s: key: %q is already used by %s", name, a.Key, prev))
			continue
		}
		builtin[a.Key] = a.Name
		if problems := validate(&a); len(problems) > 0 {
			errs = append(errs, prefixed(name, problems)...)
			continue
		}
		a.client = builtinClient(a, getenv, sandbox)
		a.client.signingSecret = strings.TrimSpace(getenv(SigningSecretEnv(a.Key)))
		apps = append(apps, a)
	}

	if opts.GenericAppsFile != "" {
		generic, gerrs := loadGeneric(opts.GenericAppsFile, builtin, getenv, sandbox)
		apps = append(apps, generic...)
		errs = append(errs, gerrs...)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("catalog: %w:\n%w", ErrInvalid, errors.Join(errs...))
	}

	for i := range apps {
		if sandbox != "" {
			expandSandbox(&apps[i], sandbox)
		}
	}
	slices.SortFunc(apps, func(a, b App) int {
		return cmp.Or(cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), cmp.Compare(a.Key, b.Key))
	})
	c := &Catalog{apps: apps, byKey: make(map[string]int, len(apps))}
	for i, a := range apps {
		c.byKey[a.Key] = i
	}
	return c, nil
}

// genericApp is one entry of the generic apps file: an app definition plus
// where its client credentials come from.
type genericApp struct {
	App
	// ClientID is not secret, so it may sit in the file.
	ClientID string `json:"clientId,omitempty"`
	// ClientSecretEnv names the environment variable holding the secret.
	ClientSecretEnv string `json:"clientSecretEnv,omitempty"`
	// ClientSecret is refused: a secret must not live in a config file
	// that gets copied, committed and backed up.
	ClientSecret json.RawMessage `json:"clientSecret,omitempty"`
}

func loadGeneric(file string, builtin map[string]string, getenv func(string) string, sandbox string) ([]App, []error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, []error{fmt.Errorf("generic apps file: %w", err)}
	}
	var entries []json.RawMessage
	if err := decodeStrict(raw, &entries); err != nil {
		return nil, []error{fmt.Errorf("%s: want a JSON array of app definitions: %w", file, err)}
	}
	var apps []App
	var errs []error
	seen := map[string]bool{}
	for i, entry := range entries {
		src := fmt.Sprintf("%s[%d]", file, i)
		var g genericApp
		if err := decodeStrict(entry, &g); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src, err))
			continue
		}
		if g.Key != "" {
			src = fmt.Sprintf("%s (%s)", src, g.Key)
		}
		var problems []error
		if len(g.ClientSecret) > 0 {
			problems = append(problems, fmt.Errorf("clientSecret: secrets are not read from this file; put the secret in an environment variable and name it in clientSecretEnv"))
		}
		if g.ClientSecretEnv != "" && !envNameRE.MatchString(g.ClientSecretEnv) {
			problems = append(problems, fmt.Errorf("clientSecretEnv: %q is not an environment variable name", g.ClientSecretEnv))
		}
		if g.Auth != AuthOAuth2 {
			problems = append(problems, fmt.Errorf("auth: got %q, want %q (generic apps are OAuth 2.0 apps)", g.Auth, AuthOAuth2))
		}
		if name, clash := builtin[g.Key]; clash {
			problems = append(problems, fmt.Errorf("key: %q clashes with the built-in app %s; choose another key", g.Key, name))
		} else if seen[g.Key] && g.Key != "" {
			problems = append(problems, fmt.Errorf("key: %q is defined twice in this file", g.Key))
		}
		seen[g.Key] = true
		a := g.App
		a.Generic = true
		problems = append(problems, validate(&a)...)
		if len(problems) > 0 {
			errs = append(errs, prefixed(src, problems)...)
			continue
		}
		a.client = genericClient(a, g.ClientID, g.ClientSecretEnv, getenv, sandbox)
		a.client.signingSecret = strings.TrimSpace(getenv(SigningSecretEnv(a.Key)))
		apps = append(apps, a)
	}
	return apps, errs
}

// builtinClient reads a built-in app's client registration.
func builtinClient(a App, getenv func(string) string, sandbox string) *clientConfig {
	if !a.IsOAuth() {
		return &clientConfig{configured: true}
	}
	if isSandboxApp(a) {
		// The sandbox provider registers each sandbox app as its own
		// client (SandboxClientID). Without a secret configured the client
		// is public: the flow is protected by PKCE alone, as for a native
		// app.
		c := &clientConfig{id: SandboxClientID(a.Key), secret: strings.TrimSpace(getenv(ClientSecretEnv(SandboxKey))), sandbox: true}
		if sandbox == "" {
			c.reason = a.Name + " is not configured: start the built-in sandbox provider and set its URL"
			return c
		}
		c.configured = true
		return c
	}
	return oauthClient(a, strings.TrimSpace(getenv(ClientIDEnv(a.Key))), ClientIDEnv(a.Key), ClientSecretEnv(a.Key), getenv, sandbox)
}

// isSandboxApp reports whether a built-in app is served by the built-in
// sandbox provider (sandbox-chat, sandbox-inbox): each has its own client
// registration (SandboxClientID); they share sandbox-chat's secret variable.
func isSandboxApp(a App) bool {
	return a.OAuth != nil && strings.HasPrefix(a.OAuth.AuthorizeURL, "{sandbox}/")
}

// genericClient reads an administrator-defined app's client registration:
// the id from the file or the environment, the secret from the environment
// only.
func genericClient(a App, fileID, secretEnv string, getenv func(string) string, sandbox string) *clientConfig {
	idEnv := ClientIDEnv(a.Key)
	id := strings.TrimSpace(fileID)
	if id != "" {
		idEnv = ""
	} else {
		id = strings.TrimSpace(getenv(idEnv))
	}
	if secretEnv == "" {
		secretEnv = ClientSecretEnv(a.Key)
	}
	return oauthClient(a, id, idEnv, secretEnv, getenv, sandbox)
}

func oauthClient(a App, id, idEnv, secretEnv string, getenv func(string) string, sandbox string) *clientConfig {
	c := &clientConfig{id: id, secret: strings.TrimSpace(getenv(secretEnv))}
	var missing []string
	if c.id == "" {
		missing = append(missing, idEnv)
	}
	if c.secret == "" {
		missing = append(missing, secretEnv)
	}
	switch {
	case len(missing) > 0:
		c.reason = a.Name + " is not configured: set " + strings.Join(missing, " and ")
	case usesSandbox(a) && sandbox == "":
		c.reason = a.Name + " is not configured: start the built-in sandbox provider and set its URL"
	default:
		c.configured = true
	}
	return c
}

// sandboxBase validates the sandbox URL and drops a trailing slash, so that
// "{sandbox}/oauth/token" expands to a clean URL.
func sandboxBase(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("catalog: %w: sandbox URL: got %q, want an absolute http or https URL", ErrInvalid, raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

const sandboxPlaceholder = "{sandbox}"

func usesSandbox(a App) bool {
	found := false
	eachURL(&a, func(s *string) {
		if strings.HasPrefix(*s, sandboxPlaceholder) {
			found = true
		}
	})
	return found
}

func expandSandbox(a *App, base string) {
	eachURL(a, func(s *string) {
		if rest, ok := strings.CutPrefix(*s, sandboxPlaceholder); ok {
			*s = base + rest
		}
	})
}

// eachURL visits every URL template of an app.
func eachURL(a *App, fn func(*string)) {
	if a.OAuth != nil {
		fn(&a.OAuth.AuthorizeURL)
		fn(&a.OAuth.TokenURL)
		if a.OAuth.RevokeURL != "" {
			fn(&a.OAuth.RevokeURL)
		}
	}
	if a.Identity != nil && a.Identity.URL != "" {
		fn(&a.Identity.URL)
	}
	for i := range a.Actions {
		fn(&a.Actions[i].URL)
	}
	for i := range a.APIHosts {
		fn(&a.APIHosts[i])
	}
}

// decodeStrict decodes one JSON value, refusing unknown fields (a typo such
// as "tokenUrl" must fail loudly, not leave the field empty) and trailing
// data.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("decode: unexpected data after the JSON value")
	}
	return nil
}

func prefixed(src string, problems []error) []error {
	out := make([]error, len(problems))
	for i, p := range problems {
		out[i] = fmt.Errorf("%s: %w", src, p)
	}
	return out
}
