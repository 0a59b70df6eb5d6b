// Package catalog declares the third-party apps TaskJuice can talk to: how
// each one authenticates, its OAuth endpoints and scopes, how to learn which
// external account a credential belongs to, how long its refresh tokens are
// known to live, and the actions and triggers it offers.
//
// The built-in apps are JSON files embedded in the binary (apps/*.json); an
// administrator may add standard OAuth 2.0 providers through a JSON file of
// the same shape (Options.GenericAppsFile). Load parses and validates both
// once, at start, and fills in OAuth client credentials from the environment.
// Everything here is plain data plus a few readers of it; nothing in this
// package talks to a provider.
//
// OAuth client credentials come from the environment: for the app with key
// k, TASKJUICE_APP_<K>_CLIENT_ID and TASKJUICE_APP_<K>_CLIENT_SECRET, where
// K is k upper-cased with '-' turned into '_' (TASKJUICE_APP_GOOGLE_SHEETS_…).
// A generic app may give its clientId in its file and name the variable
// holding its secret in clientSecretEnv; the secret itself is refused in the
// file. An OAuth app without credentials is still listed, and Configured
// says what to set.
//
// sandbox-chat talks to the built-in sandbox provider at Options.SandboxURL.
// Its client id is always "taskjuice" (another sandbox app's is
// SandboxClientID of its key); the secret is read from
// TASKJUICE_APP_SANDBOX_CHAT_CLIENT_SECRET and, when that is unset, it is a
// public client protected by PKCE alone, as the sandbox provider allows.
package catalog

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
)

// AuthKind says how an app authenticates. The app decides, never the user.
type AuthKind string

const (
	// AuthOAuth2 is the OAuth 2.0 authorization code flow.
	AuthOAuth2 AuthKind = "oauth2"
	// AuthAPIKey is a key the user pastes from the provider's settings.
	AuthAPIKey AuthKind = "apiKey"
)

// App is one app of the catalog. Apps returned by a Catalog share their
// slices and maps with it: treat them as read-only.
//
// The OAuth client secret is held behind an unexported pointer and App
// formats itself (fmt, slog) as a short summary, so printing or logging an
// App never shows the secret; ClientCredentials is the only way to read it.
type App struct {
	// Key identifies the app in stored connections and URLs, e.g. "google-sheets".
	Key string `json:"key"`
	// Name is what people see, e.g. "Google Sheets".
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Auth        AuthKind `json:"auth"`
	// Fields are what the connect dialog asks for besides the OAuth consent,
	// e.g. Freshdesk's subdomain and API key.
	Fields []Field `json:"fields,omitempty"`
	// APIKey says how an API-key app sends its key; nil for OAuth apps.
	APIKey *APIKeyAuth `json:"apiKey,omitempty"`
	// OAuth holds the endpoints and scopes; nil for API-key apps.
	OAuth *OAuth `json:"oauth,omitempty"`
	// APIHosts are the origins (scheme://host[:port], no path) the app's
	// credential may be sent to: its API base URLs. Templates may name
	// non-secret fields ("https://{subdomain}.freshdesk.com") or be
	// "{sandbox}". https unless an entry says http (localhost or the
	// sandbox only). Every action and identity URL must be on one of them.
	APIHosts []string `json:"apiHosts"`
	// Identity says how to read the external account a credential belongs
	// to, so a reconnect can tell whether the account changed.
	Identity *Identity `json:"identity,omitempty"`
	// RefreshLifetime is the known maximum life of the app's refresh tokens,
	// so TaskJuice can warn before a connection dies; nil when unknown.
	RefreshLifetime *RefreshLifetime `json:"refreshLifetime,omitempty"`
	// Errors says how the app reports failure, as its API documentation
	// describes it: by HTTP status alone, or also inside a 2xx answer (as
	// Slack's Web API does with {"ok": false, "error": "…"}). nil means by
	// HTTP status alone.
	Errors   *ErrorConvention `json:"errors,omitempty"`
	Actions  []Action         `json:"actions,omitempty"`
	Triggers []Trigger        `json:"triggers,omitempty"`
	// Generic is true for apps an administrator defined in configuration.
	// Load sets it; a definition file cannot.
	Generic bool `json:"generic,omitempty"`

	// client is a pointer so that even a reflective dump of a struct that
	// holds an App in an unexported field shows an address, not the secret.
	client *clientConfig
}

// clientConfig is the OAuth client registration read from the environment.
type clientConfig struct {
	id, secret string
	// signingSecret is the app-wide secret its event deliveries are
	// signed with (SigningSecretEnv); empty when unset.
	signingSecret string
	configured    bool
	reason        string
	// sandbox marks a built-in app's registration at the sandbox provider.
	sandbox bool
}

// Field is one input: an app-level connection field (a subdomain, an API key)
// or an input of an action or trigger.
type Field struct {
	// Name is the identifier used in URL and body templates: {name}.
	Name  string `json:"name"`
	Label string `json:"label"`
	Help  string `json:"help,omitempty"`
	// Type is a hint for forms and for typing template values; empty means
	// FieldString.
	Type FieldType `json:"type,omitempty"`
	// Pattern is a regular expression the whole value must match.
	Pattern  string `json:"pattern,omitempty"`
	Secret   bool   `json:"secret,omitempty"`
	Required bool   `json:"required,omitempty"`

	re *regexp.Regexp
}

// FieldType is the kind of value a Field holds.
type FieldType string

const (
	FieldString  FieldType = "string"
	FieldText    FieldType = "text" // multi-line string
	FieldNumber  FieldType = "number"
	FieldBoolean FieldType = "boolean"
	FieldJSON    FieldType = "json" // any JSON value, e.g. a row of cells
)

// Check reports whether value is acceptable for the field.
func (f Field) Check(value string) error {
	if value == "" {
		if f.Required {
			return fmt.Errorf("%s is required", f.Label)
		}
		return nil
	}
	if f.re != nil && !f.re.MatchString(value) {
		return fmt.Errorf("%s is not in the expected format", f.Label)
	}
	return nil
}

// APIKeyAuth says how an API-key app presents its key.
type APIKeyAuth struct {
	// Field names the secret Field that holds the key.
	Field string `json:"field"`
	// Scheme is "bearer" (Authorization: Bearer KEY), "basic" (the key as
	// the Basic user name, with BasicPassword) or "header" (the key alone in
	// Header).
	Scheme        string `json:"scheme"`
	Header        string `json:"header,omitempty"`
	BasicPassword string `json:"basicPassword,omitempty"`
}

// OAuth describes an app's OAuth 2.0 authorization code flow.
type OAuth struct {
	AuthorizeURL string `json:"authorizeURL"`
	TokenURL     string `json:"tokenURL"`
	// RevokeURL takes the token in a form POST (RFC 7009 style); empty when
	// the provider has no such endpoint.
	RevokeURL string  `json:"revokeURL,omitempty"`
	Scopes    []Scope `json:"scopes"`
	// PKCE is true when the provider accepts an S256 code challenge.
	PKCE bool `json:"pkce"`
	// AuthorizeParams are extra query parameters of the consent URL, e.g.
	// Google's access_type=offline, without which it issues no refresh token.
	AuthorizeParams map[string]string `json:"authorizeParams,omitempty"`
	// TokenAuthStyle is how the client authenticates to the token endpoint:
	// "header" (HTTP Basic, the RFC 6749 default, used when empty) or
	// "params" (client_id and client_secret in the form body). A public
	// client (no secret) always sends only client_id in the body.
	TokenAuthStyle TokenAuthStyle `json:"tokenAuthStyle,omitempty"`
}

// TokenAuthStyle is how client credentials reach the token endpoint.
type TokenAuthStyle string

const (
	TokenAuthHeader TokenAuthStyle = "header"
	TokenAuthParams TokenAuthStyle = "params"
)

// Scope is one OAuth scope and the permission it grants, in words a person
// understands.
type Scope struct {
	Scope string `json:"scope"`
	Label string `json:"label"`
}

// Action is something a workflow step can do with an app, described well
// enough for an HTTP executor: method, URL template, query and body template.
//
// Templates name inputs (or non-secret app fields, or the sandbox URL) in
// braces. In the URL each placeholder is replaced by its path-escaped value.
// In Query and Body, a string that is exactly one placeholder takes the
// input's typed value (number, boolean, JSON); a placeholder inside longer
// text is replaced as text; a key whose only placeholder names an empty
// optional input is left out.
type Action struct {
	Key         string  `json:"key"`
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Inputs      []Field `json:"inputs,omitempty"`
	Method      string  `json:"method"`
	URL         string  `json:"url"`
	// Query maps query parameter names to templates.
	Query map[string]string `json:"query,omitempty"`
	// Body is a JSON template of the request body; empty for no body.
	Body json.RawMessage `json:"body,omitempty"`
	// BodyEncoding is how Body is sent; empty means BodyJSON.
	BodyEncoding BodyEncoding `json:"bodyEncoding,omitempty"`
}

// BodyEncoding is how an action's rendered body goes on the wire.
type BodyEncoding string

const (
	// BodyJSON sends the rendered template as application/json.
	BodyJSON BodyEncoding = "json"
	// BodyForm sends a flat template as application/x-www-form-urlencoded.
	BodyForm BodyEncoding = "form"
	// BodyRFC822 builds an email from a flat template whose keys are header
	// names ("To", "Subject") plus "body" for the plain-text content, and
	// sends it as {"raw": base64url(message)}, the shape Gmail expects.
	BodyRFC822 BodyEncoding = "rfc822"
)

// Trigger is an event an app can start a workflow with.
type Trigger struct {
	Key         string      `json:"key"`
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Mode        TriggerMode `json:"mode"`
	Inputs      []Field     `json:"inputs,omitempty"`
	// Example is one event as the trigger gives it to a run ($trigger),
	// in the app's documented shape: the sample a step is built against
	// until a real event arrives or one is pasted.
	Example json.RawMessage `json:"example,omitempty"`
}

// TriggerMode is how TaskJuice learns of a trigger's events.
type TriggerMode string

const (
	// TriggerPoll means TaskJuice asks the provider for new items.
	TriggerPoll TriggerMode = "poll"
	// TriggerWebhook means the provider calls TaskJuice.
	TriggerWebhook TriggerMode = "webhook"
)

// IsOAuth reports whether the app connects through OAuth 2.0.
func (a App) IsOAuth() bool { return a.Auth == AuthOAuth2 }

// Scopes returns the human labels of the permissions the app asks for, in
// the order the consent screen should list them.
func (a App) Scopes() []string {
	if a.OAuth == nil {
		return nil
	}
	labels := make([]string, len(a.OAuth.Scopes))
	for i, s := range a.OAuth.Scopes {
		labels[i] = s.Label
	}
	return labels
}

// ScopeString returns the scopes as the space-separated "scope" parameter
// of an authorization request.
func (a App) ScopeString() string {
	if a.OAuth == nil {
		return ""
	}
	scopes := make([]string, len(a.OAuth.Scopes))
	for i, s := range a.OAuth.Scopes {
		scopes[i] = s.Scope
	}
	return strings.Join(scopes, " ")
}

// Action returns the app's action with the given key.
func (a App) Action(key string) (Action, bool) {
	for _, x := range a.Actions {
		if x.Key == key {
			return x, true
		}
	}
	return Action{}, false
}

// Trigger returns the app's trigger with the given key.
func (a App) Trigger(key string) (Trigger, bool) {
	for _, x := range a.Triggers {
		if x.Key == key {
			return x, true
		}
	}
	return Trigger{}, false
}

// Configured reports whether the app can be connected now, and if not, a
// reason an administrator can act on. API-key apps are always configured.
func (a App) Configured() (bool, string) {
	if a.client == nil {
		return false, a.Name + " is not configured"
	}
	return a.client.configured, a.client.reason
}

// ClientCredentials returns the OAuth client id and secret. The secret is
// empty for API-key apps and for public clients, which rely on PKCE alone.
func (a App) ClientCredentials() (id, secret string) {
	if a.client == nil {
		return "", ""
	}
	return a.client.id, a.client.secret
}

// SigningSecret returns the app-wide secret the app signs its event
// deliveries with (Slack's signing secret), read from SigningSecretEnv;
// empty when it is not set.
func (a App) SigningSecret() string {
	if a.client == nil {
		return ""
	}
	return a.client.signingSecret
}

// String is a short summary without credentials.
func (a App) String() string {
	return fmt.Sprintf("%s (%s, %s)", a.Key, a.Name, a.Auth)
}

// Format prints the summary for every verb, %+v and %#v included, so the
// unexported client secret never reaches a log line through fmt.
func (a App) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, a.String()) }

// LogValue keeps slog from dumping the struct.
func (a App) LogValue() slog.Value {
	ok, _ := a.Configured()
	return slog.GroupValue(
		slog.String("key", a.Key),
		slog.String("name", a.Name),
		slog.String("auth", string(a.Auth)),
		slog.Bool("generic", a.Generic),
		slog.Bool("configured", ok),
	)
}
