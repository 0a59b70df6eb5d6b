package catalog

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

var (
	keyRE         = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	fieldNameRE   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	placeholderRE = regexp.MustCompile(`\{([A-Za-z][A-Za-z0-9_]*)\}`)
)

// reservedAuthorizeParams are set by the consent flow itself; a definition
// overriding them would break it or weaken it.
var reservedAuthorizeParams = []string{
	"client_id", "redirect_uri", "response_type", "scope", "state",
	"code_challenge", "code_challenge_method",
}

// validate checks one definition and compiles its field patterns. Each
// problem names the field at fault, as a path into the JSON.
func validate(a *App) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}

	if !keyRE.MatchString(a.Key) {
		bad("key", "got %q, want lowercase letters, digits and dashes, starting with a letter or digit", a.Key)
	}
	if strings.TrimSpace(a.Name) == "" {
		bad("name", "required")
	}
	errs = append(errs, checkFields("fields", a.Fields)...)

	// Placeholders an app-level URL may use: never a secret field, so that
	// a key cannot end up in a URL, a proxy log or a browser's history.
	appVars := map[string]bool{"sandbox": true}
	for _, f := range a.Fields {
		if !f.Secret {
			appVars[f.Name] = true
		}
	}

	switch a.Auth {
	case AuthOAuth2:
		if a.APIKey != nil {
			bad("apiKey", "only for apps with auth %q", AuthAPIKey)
		}
		if a.OAuth == nil {
			bad("oauth", "required for auth %q", AuthOAuth2)
			break
		}
		o := a.OAuth
		for _, u := range []struct {
			field, value string
			required     bool
		}{
			{"oauth.authorizeURL", o.AuthorizeURL, true},
			{"oauth.tokenURL", o.TokenURL, true},
			{"oauth.revokeURL", o.RevokeURL, false},
		} {
			if u.value == "" {
				if u.required {
					bad(u.field, "required")
				}
				continue
			}
			if err := checkURL(u.value, appVars); err != nil {
				bad(u.field, "%v", err)
			}
		}
		if len(o.Scopes) == 0 {
			bad("oauth.scopes", "at least one scope is required")
		}
		seen := map[string]bool{}
		for i, s := range o.Scopes {
			switch {
			case strings.TrimSpace(s.Scope) == "" || strings.ContainsAny(s.Scope, " \t\n"):
				bad(fmt.Sprintf("oauth.scopes[%d].scope", i), "got %q, want one scope without spaces", s.Scope)
			case seen[s.Scope]:
				bad(fmt.Sprintf("oauth.scopes[%d].scope", i), "%q is listed twice", s.Scope)
			}
			seen[s.Scope] = true
			if strings.TrimSpace(s.Label) == "" {
				bad(fmt.Sprintf("oauth.scopes[%d].label", i), "required: say in plain words what %q allows", s.Scope)
			}
		}
		switch o.TokenAuthStyle {
		case "", TokenAuthHeader, TokenAuthParams:
		default:
			bad("oauth.tokenAuthStyle", "got %q, want %q or %q", o.TokenAuthStyle, TokenAuthHeader, TokenAuthParams)
		}
		for _, k := range slices.Sorted(maps.Keys(o.AuthorizeParams)) {
			if slices.Contains(reservedAuthorizeParams, k) {
				bad("oauth.authorizeParams."+k, "set by TaskJuice itself and cannot be overridden")
			}
		}
	case AuthAPIKey:
		if a.OAuth != nil {
			bad("oauth", "only for apps with auth %q", AuthOAuth2)
		}
		if a.APIKey == nil {
			bad("apiKey", "required for auth %q", AuthAPIKey)
			break
		}
		k := a.APIKey
		i := slices.IndexFunc(a.Fields, func(f Field) bool { return f.Name == k.Field })
		if i < 0 || !a.Fields[i].Secret || !a.Fields[i].Required {
			bad("apiKey.field", "got %q, want the name of a required secret field", k.Field)
		}
		switch k.Scheme {
		case "bearer", "basic":
		case "header":
			if k.Header == "" {
				bad("apiKey.header", "required for scheme \"header\"")
			}
		default:
			bad("apiKey.scheme", "got %q, want \"bearer\", \"basic\" or \"header\"", k.Scheme)
		}
	default:
		bad("auth", "got %q, want %q or %q", a.Auth, AuthOAuth2, AuthAPIKey)
	}

	if id := a.Identity; id != nil {
		switch {
		case id.FromTokenResponse && id.URL != "":
			bad("identity", "set either url or fromTokenResponse, not both")
		case id.FromTokenResponse && a.Auth != AuthOAuth2:
			bad("identity.fromTokenResponse", "only OAuth apps have a token response")
		case !id.FromTokenResponse && id.URL == "":
			bad("identity.url", "required unless fromTokenResponse is set")
		case id.URL != "":
			if err := checkURL(id.URL, appVars); err != nil {
				bad("identity.url", "%v", err)
			}
		}
		if err := checkPath(id.IDPath); err != nil {
			bad("identity.idPath", "%v", err)
		}
		if id.NamePath != "" {
			if err := checkPath(id.NamePath); err != nil {
				bad("identity.namePath", "%v", err)
			}
		}
	}

	if a.Errors != nil {
		errs = append(errs, checkErrors(*a.Errors)...)
	}

	errs = append(errs, checkAPIHosts(a, appVars)...)

	seen := map[string]bool{}
	for i, act := range a.Actions {
		where := fmt.Sprintf("actions[%d]", i)
		if act.Key != "" {
			where = fmt.Sprintf("actions[%d] (%s)", i, act.Key)
		}
		errs = append(errs, checkAction(where, act, appVars, seen)...)
		compilePatterns(a.Actions[i].Inputs)
	}
	seen = map[string]bool{}
	for i, t := range a.Triggers {
		where := fmt.Sprintf("triggers[%d]", i)
		if !keyRE.MatchString(t.Key) {
			bad(where+".key", "got %q, want lowercase letters, digits and dashes", t.Key)
		} else if seen[t.Key] {
			bad(where+".key", "%q is used twice in this app", t.Key)
		}
		seen[t.Key] = true
		if strings.TrimSpace(t.Name) == "" {
			bad(where+".name", "required")
		}
		if t.Mode != TriggerPoll && t.Mode != TriggerWebhook {
			bad(where+".mode", "got %q, want %q or %q", t.Mode, TriggerPoll, TriggerWebhook)
		}
		errs = append(errs, checkFields(where+".inputs", t.Inputs)...)
		compilePatterns(a.Triggers[i].Inputs)
		if len(t.Example) > 0 {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(t.Example, &obj); err != nil || obj == nil {
				bad(where+".example", "got %s, want a JSON object (a run's trigger payload is always one)", jsonKind(t.Example))
			}
		}
	}
	compilePatterns(a.Fields)
	return errs
}

func checkAction(where string, act Action, appVars map[string]bool, seen map[string]bool) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", where, field, fmt.Sprintf(format, args...)))
	}
	if !keyRE.MatchString(act.Key) {
		bad("key", "got %q, want lowercase letters, digits and dashes", act.Key)
	} else if seen[act.Key] {
		bad("key", "%q is used twice in this app", act.Key)
	}
	seen[act.Key] = true
	if strings.TrimSpace(act.Name) == "" {
		bad("name", "required")
	}
	errs = append(errs, checkFields(where+".inputs", act.Inputs)...)

	vars := map[string]bool{}
	for k := range appVars {
		vars[k] = true
	}
	for _, in := range act.Inputs {
		vars[in.Name] = true
	}
	used := map[string]bool{}
	collect := func(field, s string) {
		for _, m := range placeholderRE.FindAllStringSubmatch(s, -1) {
			if !vars[m[1]] {
				bad(field, "placeholder {%s} names no input or non-secret app field", m[1])
			}
			used[m[1]] = true
		}
	}

	switch act.Method {
	case "GET", "POST", "PUT", "PATCH", "DELETE":
	default:
		bad("method", "got %q, want GET, POST, PUT, PATCH or DELETE", act.Method)
	}
	if act.URL == "" {
		bad("url", "required")
	} else if err := checkURL(act.URL, vars); err != nil {
		bad("url", "%v", err)
	} else {
		collect("url", act.URL)
	}
	for _, k := range slices.Sorted(maps.Keys(act.Query)) {
		if k == "" {
			bad("query", "parameter names must not be empty")
		}
		collect("query."+k, act.Query[k])
	}

	enc := act.BodyEncoding
	switch enc {
	case "", BodyJSON, BodyForm, BodyRFC822:
	default:
		bad("bodyEncoding", "got %q, want %q, %q or %q", enc, BodyJSON, BodyForm, BodyRFC822)
	}
	if len(act.Body) > 0 {
		var body any
		if err := json.Unmarshal(act.Body, &body); err != nil {
			bad("body", "not valid JSON: %v", err)
		} else {
			if act.Method == "GET" || act.Method == "DELETE" {
				bad("body", "a %s request carries no body", act.Method)
			}
			if enc == BodyForm || enc == BodyRFC822 {
				if err := checkFlat(body); err != nil {
					bad("body", "%s encoding needs %v", enc, err)
				}
			}
			walkStrings(body, func(s string) { collect("body", s) })
		}
	} else if enc != "" {
		bad("bodyEncoding", "set without a body")
	}
	for _, in := range act.Inputs {
		if !used[in.Name] {
			bad("inputs", "input %q is not used by the url, query or body", in.Name)
		}
	}
	return errs
}

// checkFields validates a list of fields: names usable as placeholders,
// unique, labelled, of a known type, with a pattern that compiles.
func checkFields(where string, fields []Field) []error {
	var errs []error
	seen := map[string]bool{}
	for i, f := range fields {
		at := fmt.Sprintf("%s[%d]", where, i)
		switch {
		case !fieldNameRE.MatchString(f.Name):
			errs = append(errs, fmt.Errorf("%s.name: got %q, want letters, digits and underscores, starting with a letter", at, f.Name))
		case f.Name == "sandbox":
			errs = append(errs, fmt.Errorf("%s.name: %q is reserved for the sandbox URL", at, f.Name))
		case seen[f.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q is used twice", at, f.Name))
		}
		seen[f.Name] = true
		if strings.TrimSpace(f.Label) == "" {
			errs = append(errs, fmt.Errorf("%s.label: required", at))
		}
		switch f.Type {
		case "", FieldString, FieldText, FieldNumber, FieldBoolean, FieldJSON:
		default:
			errs = append(errs, fmt.Errorf("%s.type: got %q, want string, text, number, boolean or json", at, f.Type))
		}
		if f.Pattern != "" {
			if _, err := regexp.Compile(anchored(f.Pattern)); err != nil {
				errs = append(errs, fmt.Errorf("%s.pattern: %w", at, err))
			}
		}
	}
	return errs
}

// compilePatterns stores the compiled patterns; call after checkFields
// found them valid (an invalid pattern is skipped and already reported).
func compilePatterns(fields []Field) {
	for i := range fields {
		if fields[i].Pattern != "" {
			fields[i].re, _ = regexp.Compile(anchored(fields[i].Pattern))
		}
	}
}

// anchored makes a pattern match the whole value, which is what a person
// writing "[a-z0-9-]+" for a subdomain means.
func anchored(p string) string { return `^(?:` + p + `)$` }

// checkURL checks a URL template: every placeholder is known, and the URL
// is absolute https, or http only for a {sandbox} template or localhost
// (development providers).
func checkURL(tmpl string, vars map[string]bool) error {
	for _, m := range placeholderRE.FindAllStringSubmatch(tmpl, -1) {
		if !vars[m[1]] {
			return fmt.Errorf("placeholder {%s} names no input or non-secret app field", m[1])
		}
	}
	s := tmpl
	if rest, ok := strings.CutPrefix(tmpl, sandboxPlaceholder); ok {
		if rest != "" && rest[0] != '/' {
			return fmt.Errorf("got %q, want {sandbox} followed by a path", tmpl)
		}
		s = "http://sandbox.invalid" + rest
	} else if strings.Contains(tmpl, sandboxPlaceholder) {
		return fmt.Errorf("got %q, want {sandbox} only at the start", tmpl)
	}
	// Placeholders may stand for a host label (Freshdesk's subdomain), so
	// give them a value that parses anywhere.
	s = placeholderRE.ReplaceAllString(s, "x")
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("got %q, want an absolute URL: %w", tmpl, err)
	}
	if !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("got %q, want an absolute https URL", tmpl)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (strings.HasPrefix(tmpl, sandboxPlaceholder) || isLocalhost(u.Hostname())):
	default:
		return fmt.Errorf("got %q, want an https URL (http only for {sandbox} or localhost)", tmpl)
	}
	return nil
}

func isLocalhost(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkFlat reports whether a body template is an object of scalars, which
// is all a form or an email header block can carry.
func checkFlat(v any) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("a JSON object")
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		switch obj[k].(type) {
		case string, float64, bool:
		default:
			return fmt.Errorf("a flat object, but %q is not a string, number or boolean", k)
		}
	}
	return nil
}

// jsonKind names the kind of a valid JSON value other than an object, for
// messages.
func jsonKind(raw json.RawMessage) string {
	switch s := strings.TrimSpace(string(raw)); {
	case strings.HasPrefix(s, "["):
		return "an array"
	case strings.HasPrefix(s, `"`):
		return "a string"
	case s == "null":
		return "null"
	case s == "true" || s == "false":
		return "a boolean"
	}
	return "a number"
}

// walkStrings calls fn for every string in decoded JSON, keys excluded.
func walkStrings(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case []any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			walkStrings(x[k], fn)
		}
	}
}

// checkErrors validates an app's error convention: where it comes from,
// and a rule for failures inside 2xx answers that can match something.
func checkErrors(c ErrorConvention) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("errors.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Doc != "" {
		if u, err := url.Parse(c.Doc); err != nil || u.Scheme != "https" || u.Host == "" {
			bad("doc", "got %q, want the https URL of the app's documentation on errors", c.Doc)
		}
	}
	if strings.TrimSpace(c.Note) == "" {
		bad("note", "required: say in a sentence how the app reports failure")
	}
	r := c.InBody
	if r == nil {
		return errs
	}
	if err := checkPath(r.Field); err != nil {
		bad("inBody.field", "%v", err)
	}
	switch r.Equals.(type) {
	case bool, string, float64:
	default:
		bad("inBody.equals", "got %v, want a JSON boolean, string or number", r.Equals)
	}
	if err := checkPath(r.CodeField); err != nil {
		bad("inBody.codeField", "%v", err)
	}
	if r.MessageField != "" {
		if err := checkPath(r.MessageField); err != nil {
			bad("inBody.messageField", "%v", err)
		}
	}
	for _, list := range []struct {
		name  string
		codes []string
	}{{"credentialCodes", r.CredentialCodes}, {"retryableCodes", r.RetryableCodes}} {
		seen := map[string]bool{}
		for _, code := range list.codes {
			switch {
			case strings.TrimSpace(code) == "":
				bad("inBody."+list.name, "an error code is empty")
			case seen[code]:
				bad("inBody."+list.name, "%q is listed twice", code)
			}
			seen[code] = true
		}
	}
	for _, code := range r.CredentialCodes {
		if slices.Contains(r.RetryableCodes, code) {
			bad("inBody.retryableCodes", "%q is also a credential code; a code is one or the other", code)
		}
	}
	return errs
}
