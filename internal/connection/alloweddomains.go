package connection

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
	"taskjuice/internal/db"
)

// MaxAllowedDomains bounds one connection's extra allowed domains.
const MaxAllowedDomains = 50

// HostNotAllowedError is a request that would carry a connection's
// credential to an origin neither its app nor the connection allows. It is
// refused before anything is sent.
type HostNotAllowedError struct {
	// Host is the refused origin as people read it.
	Host string
	// Allowed are the origins the credential may go to, as people read them.
	Allowed []string
}

func (e *HostNotAllowedError) Error() string {
	return HostNotAllowedMessage(e.Host, e.Allowed)
}

// HostNotAllowedMessage is the sentence people see, at publish and at run
// time alike.
func HostNotAllowedMessage(host string, allowed []string) string {
	if len(allowed) == 0 {
		return fmt.Sprintf("This connection's credential may not be sent to %s: it has no allowed hosts", host)
	}
	return fmt.Sprintf("This connection's credential may not be sent to %s; allowed hosts: %s (an owner or admin can add more under the connection's Allowed domains)", host, strings.Join(allowed, ", "))
}

// domainHost is a host name: dot-separated labels of letters, digits and
// dashes. Wildcards are refused: a credential goes to exact hosts only.
var domainHost = regexp.MustCompile(`^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)

// ParseAllowedDomain reads one entry of a connection's allowed domains: a
// host ("uploads.example.com", https implied), a host and port, or an
// origin with its scheme ("http://intranet.example:8080"). It returns the
// normalized origin.
func ParseAllowedDomain(s string) (string, error) {
	s = strings.TrimSpace(s)
	raw := s
	if !strings.Contains(s, "://") {
		raw = "https://" + s
	}
	u, err := url.Parse(raw)
	bad := func(why string) error {
		return apperr.Invalid("allowedDomains", fmt.Sprintf("%q is not a host such as api.example.com: %s", s, why))
	}
	switch {
	case s == "":
		return "", bad("it is empty")
	case err != nil:
		return "", bad("it cannot be read")
	case u.Scheme != "http" && u.Scheme != "https":
		return "", bad("only http and https are allowed")
	case u.User != nil:
		return "", bad("it holds a user name")
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?"):
		return "", bad("give the host alone, without a path")
	case strings.Contains(u.Host, "*"):
		return "", bad("wildcards are not allowed; list each host")
	}
	host := strings.ToLower(u.Hostname())
	if net.ParseIP(host) == nil && !domainHost.MatchString(host) {
		return "", bad("it is not a host name")
	}
	if p := u.Port(); p != "" {
		var n int
		if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 1 || n > 65535 {
			return "", bad("the port must be 1–65535")
		}
	}
	o := catalog.Origin(u)
	if o == "" {
		return "", bad("it is not a host name")
	}
	return o, nil
}

// AllowedDomains returns the origins an owner or admin added to the
// connection, sorted.
func (s *Service) AllowedDomains(ctx context.Context, ws account.Workspace, id string) ([]string, error) {
	if _, err := s.Get(ctx, ws, id); err != nil {
		return nil, err
	}
	return s.allowedDomains(ctx, s.db.Read(), id)
}

func (s *Service) allowedDomains(ctx context.Context, q db.Querier, id string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT origin FROM connection_allowed_domains WHERE connection_id = $1 ORDER BY origin`, id)
	if err != nil {
		return nil, fmt.Errorf("read allowed domains: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			return nil, fmt.Errorf("scan allowed domain: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read allowed domains: %w", err)
	}
	return out, nil
}

// SetAllowedDomains replaces the connection's extra allowed domains and
// records the change in its health history, in one transaction. Who may do
// it (owners and admins) is the caller's check; the actor is recorded.
func (s *Service) SetAllowedDomains(ctx context.Context, ws account.Workspace, id string, entries []string, actor Actor) ([]string, error) {
	var want []string
	for _, e := range entries {
		if strings.TrimSpace(e) == "" {
			continue
		}
		o, err := ParseAllowedDomain(e)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(want, o) {
			want = append(want, o)
		}
	}
	if len(want) > MaxAllowedDomains {
		return nil, apperr.Invalid("allowedDomains", fmt.Sprintf("A connection allows at most %d extra domains", MaxAllowedDomains))
	}
	slices.Sort(want)
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		c, err := s.get(ctx, tx, ws.ID, id)
		if err != nil {
			return err
		}
		have, err := s.allowedDomains(ctx, tx, id)
		if err != nil {
			return err
		}
		var added, removed []string
		for _, o := range want {
			if !slices.Contains(have, o) {
				added = append(added, o)
			}
		}
		for _, o := range have {
			if !slices.Contains(want, o) {
				removed = append(removed, o)
			}
		}
		if len(added) == 0 && len(removed) == 0 {
			return nil
		}
		now := s.now()
		for _, o := range removed {
			if _, err := tx.ExecContext(ctx, `DELETE FROM connection_allowed_domains WHERE connection_id = $1 AND origin = $2`, id, o); err != nil {
				return fmt.Errorf("remove allowed domain: %w", err)
			}
		}
		for _, o := range added {
			if _, err := tx.ExecContext(ctx, `INSERT INTO connection_allowed_domains (connection_id, origin, added_by, added_at) VALUES ($1, $2, $3, $4)`,
				id, o, db.NullString(actor.UserID), now); err != nil {
				return fmt.Errorf("add allowed domain: %w", err)
			}
		}
		var parts []string
		detail := map[string]string{}
		if len(added) > 0 {
			parts = append(parts, "added "+strings.Join(displayAll(added), ", "))
			detail["allowedDomainsAdded"] = strings.Join(added, " ")
		}
		if len(removed) > 0 {
			parts = append(parts, "removed "+strings.Join(displayAll(removed), ", "))
			detail["allowedDomainsRemoved"] = strings.Join(removed, " ")
		}
		// The status does not change: the entry records who widened (or
		// narrowed) where the credential may go.
		return s.recordEvent(ctx, tx, id, c.Status, c.Status, "Allowed domains changed: "+strings.Join(parts, "; "), actor, detail)
	})
	if err != nil {
		return nil, err
	}
	return want, nil
}

func displayAll(origins []string) []string {
	out := make([]string, len(origins))
	for i, o := range origins {
		out[i] = catalog.DisplayOrigin(o)
	}
	return out
}

// hostPolicy is where one connection's credential may go.
type hostPolicy struct {
	allowed []string // origins: the app's, then the connection's
	trusted []string // host:port of the app's own origins (not widened ones)
}

func (s *Service) hostPolicy(ctx context.Context, app catalog.App, c Connection) (hostPolicy, error) {
	extra, err := s.allowedDomains(ctx, s.db.Read(), c.ID)
	if err != nil {
		return hostPolicy{}, err
	}
	return newHostPolicy(app, c, extra), nil
}

func newHostPolicy(app catalog.App, c Connection, extra []string) hostPolicy {
	p := hostPolicy{allowed: app.Origins(c.Metadata)}
	// Only origins the operator's catalog names outright are trusted to
	// sit on a private address (the built-in sandbox on loopback); one
	// filled from a connection's field or added on its page is not.
	for _, o := range app.Origins(nil) {
		if u, err := url.Parse(o); err == nil {
			port := u.Port()
			if port == "" {
				port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
			}
			p.trusted = append(p.trusted, net.JoinHostPort(u.Hostname(), port))
		}
	}
	for _, o := range extra {
		if !slices.Contains(p.allowed, o) {
			p.allowed = append(p.allowed, o)
		}
	}
	return p
}

// check refuses u unless its origin is allowed.
func (p hostPolicy) check(u *url.URL) error {
	o := catalog.Origin(u)
	if o != "" && slices.Contains(p.allowed, o) {
		return nil
	}
	host := o
	if host == "" {
		// Not http(s): name it without path or query, which may hold keys.
		host = u.Scheme + "://" + u.Host
	}
	return &HostNotAllowedError{Host: catalog.DisplayOrigin(host), Allowed: displayAll(p.allowed)}
}

// HostCheck answers, for the publish gate, whether a URL may be called with
// a connection of the workspace: nil when it may, or the refusal naming the
// allowed hosts. A connection that is not in the workspace (or whose app
// left the catalog) is the gate's other checks' business: it passes here.
func (s *Service) HostCheck(ctx context.Context, ws account.Workspace, cat *catalog.Catalog) (func(connID, rawURL string) error, error) {
	conns, err := s.List(ctx, ws, "")
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Read().QueryContext(ctx, `SELECT d.connection_id, d.origin FROM connection_allowed_domains d
		JOIN connections c ON c.id = d.connection_id WHERE c.workspace_id = $1 ORDER BY d.origin`, ws.ID)
	if err != nil {
		return nil, fmt.Errorf("read allowed domains: %w", err)
	}
	defer rows.Close()
	extra := map[string][]string{}
	for rows.Next() {
		var id, o string
		if err := rows.Scan(&id, &o); err != nil {
			return nil, fmt.Errorf("scan allowed domain: %w", err)
		}
		extra[id] = append(extra[id], o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read allowed domains: %w", err)
	}
	policies := map[string]hostPolicy{}
	for _, c := range conns {
		if app, ok := cat.App(c.AppKey); ok {
			policies[c.ID] = newHostPolicy(app, c, extra[c.ID])
		}
	}
	return func(connID, rawURL string) error {
		p, ok := policies[connID]
		if !ok {
			return nil
		}
		u, err := url.Parse(rawURL)
		if err != nil {
			return &HostNotAllowedError{Host: rawURL, Allowed: displayAll(p.allowed)}
		}
		return p.check(u)
	}, nil
}
