package catalog

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// checkAPIHosts validates an app's apiHosts: at least one origin, each an
// absolute origin without path, and every URL the credential goes to (the
// actions' and the identity's) on one of them, so the catalog itself can
// never send a credential where its app does not declare.
func checkAPIHosts(a *App, appVars map[string]bool) []error {
	var errs []error
	if len(a.APIHosts) == 0 {
		return []error{fmt.Errorf("apiHosts: required: list the origins the app's credential may be sent to, e.g. [\"https://api.example.com\"]")}
	}
	seen := map[string]bool{}
	for i, h := range a.APIHosts {
		field := fmt.Sprintf("apiHosts[%d]", i)
		if err := checkURL(h, appVars); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			continue
		}
		if templateOrigin(h) != h {
			errs = append(errs, fmt.Errorf("%s: got %q, want an origin such as https://api.example.com, without path, query or user", field, h))
			continue
		}
		if h != sandboxPlaceholder {
			u, _ := url.Parse(placeholderRE.ReplaceAllString(h, "x"))
			if u.User != nil || strings.Contains(u.Host, "@") {
				errs = append(errs, fmt.Errorf("%s: got %q, want an origin without user", field, h))
				continue
			}
		}
		if seen[strings.ToLower(h)] {
			errs = append(errs, fmt.Errorf("%s: %q is listed twice", field, h))
		}
		seen[strings.ToLower(h)] = true
	}
	onHost := func(field, tmpl string) {
		if tmpl != "" && !seen[strings.ToLower(templateOrigin(tmpl))] {
			errs = append(errs, fmt.Errorf("%s: %q is not on one of apiHosts (%s)", field, tmpl, strings.Join(a.APIHosts, ", ")))
		}
	}
	if a.Identity != nil {
		onHost("identity.url", a.Identity.URL)
	}
	for i, act := range a.Actions {
		onHost(fmt.Sprintf("actions[%d].url", i), act.URL)
	}
	return errs
}

// templateOrigin is the scheme://host[:port] part of a URL template, or
// "{sandbox}" for a sandbox template.
func templateOrigin(tmpl string) string {
	if strings.HasPrefix(tmpl, sandboxPlaceholder) {
		return sandboxPlaceholder
	}
	i := strings.Index(tmpl, "://")
	if i < 0 {
		return tmpl
	}
	if j := strings.IndexAny(tmpl[i+3:], "/?#"); j >= 0 {
		return tmpl[:i+3+j]
	}
	return tmpl
}

// hostLabel is what a placeholder may become inside a host: one DNS label,
// so that a field value cannot move the credential to another domain
// ("evil.com#", "x.evil.com").
var hostLabel = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)

// Origins returns the origins a connection of the app may send its
// credential to, with its non-secret fields (e.g. a subdomain) filled in.
// An entry whose field is missing or not a plain host label is left out.
// Each origin is normalized as Origin does.
func (a App) Origins(fields map[string]string) []string {
	var out []string
	for _, h := range a.APIHosts {
		ok := true
		filled := placeholderRE.ReplaceAllStringFunc(h, func(m string) string {
			v := strings.ToLower(fields[m[1:len(m)-1]])
			if !hostLabel.MatchString(v) {
				ok = false
			}
			return v
		})
		if !ok {
			continue
		}
		u, err := url.Parse(filled)
		if err != nil {
			continue
		}
		if o := Origin(u); o != "" && !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

// Origin is u's scheme://host[:port], lower-cased, without the scheme's
// default port; empty when u is not an absolute http or https URL.
func Origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if (scheme != "http" && scheme != "https") || host == "" {
		return ""
	}
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		return scheme + "://" + net.JoinHostPort(host, port)
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host
}

// DisplayOrigin is how people read an origin: the host alone for https on
// its default port, the whole origin otherwise.
func DisplayOrigin(origin string) string {
	if rest, ok := strings.CutPrefix(origin, "https://"); ok && !strings.Contains(strings.TrimPrefix(rest, "["), ":") {
		return rest
	}
	return origin
}
