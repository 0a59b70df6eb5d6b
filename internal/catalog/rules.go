package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Identity says how to learn which external account a credential belongs
// to: either GET URL with the credential and read the JSON reply, or read
// the token response itself (Slack's carries the team).
type Identity struct {
	// URL is called with GET and the credential; empty when
	// FromTokenResponse is set.
	URL               string `json:"url,omitempty"`
	FromTokenResponse bool   `json:"fromTokenResponse,omitempty"`
	// IDPath is a dotted path to the account's stable id, e.g. "team.id";
	// numeric segments index arrays.
	IDPath string `json:"idPath"`
	// NamePath is a dotted path to a display name; empty when the provider
	// offers none worth showing.
	NamePath string `json:"namePath,omitempty"`
}

// Extract reads the account id and display name from a JSON document (the
// identity URL's reply, or the token response). The name is empty when
// NamePath is empty or absent from the document.
func (i Identity) Extract(body []byte) (id, name string, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // keep large numeric ids exact
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return "", "", fmt.Errorf("identity: decode: %w", err)
	}
	v, ok := lookup(doc, i.IDPath)
	if !ok {
		return "", "", fmt.Errorf("identity: %q not found", i.IDPath)
	}
	if id = scalarString(v); id == "" {
		return "", "", fmt.Errorf("identity: %q is empty or not a scalar", i.IDPath)
	}
	if i.NamePath != "" {
		if v, ok := lookup(doc, i.NamePath); ok {
			name = scalarString(v)
		}
	}
	return id, name, nil
}

// RefreshLifetime is the known maximum life of an app's refresh tokens.
// Zero durations mean no known limit of that kind; an entry with only a
// Note records that the provider's tokens are known not to expire.
type RefreshLifetime struct {
	// Absolute is the life from issue, whatever the use.
	Absolute time.Duration
	// Inactivity is the life from the last use.
	Inactivity time.Duration
	// Note explains the figures, e.g. exceptions the numbers do not cover.
	Note string
}

type refreshLifetimeJSON struct {
	Absolute   string `json:"absolute,omitempty"`
	Inactivity string `json:"inactivity,omitempty"`
	Note       string `json:"note,omitempty"`
}

// UnmarshalJSON reads the durations as Go duration strings ("720h").
func (l *RefreshLifetime) UnmarshalJSON(b []byte) error {
	var raw refreshLifetimeJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("refreshLifetime: %w", err)
	}
	parse := func(field, s string) (time.Duration, error) {
		if s == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("refreshLifetime.%s: %w", field, err)
		}
		if d <= 0 {
			return 0, fmt.Errorf("refreshLifetime.%s: must be positive, got %q", field, s)
		}
		return d, nil
	}
	abs, err := parse("absolute", raw.Absolute)
	if err != nil {
		return err
	}
	idle, err := parse("inactivity", raw.Inactivity)
	if err != nil {
		return err
	}
	*l = RefreshLifetime{Absolute: abs, Inactivity: idle, Note: raw.Note}
	return nil
}

// MarshalJSON writes the durations back as Go duration strings.
func (l RefreshLifetime) MarshalJSON() ([]byte, error) {
	raw := refreshLifetimeJSON{Note: l.Note}
	if l.Absolute > 0 {
		raw.Absolute = l.Absolute.String()
	}
	if l.Inactivity > 0 {
		raw.Inactivity = l.Inactivity.String()
	}
	return json.Marshal(raw)
}

// ExpiresAt returns when a refresh token issued at issuedAt and last used
// at lastUsedAt is known to die at the latest, and false when no limit is
// known. A zero lastUsedAt counts as issuedAt.
func (l RefreshLifetime) ExpiresAt(issuedAt, lastUsedAt time.Time) (time.Time, bool) {
	var at time.Time
	if l.Absolute > 0 {
		at = issuedAt.Add(l.Absolute)
	}
	if l.Inactivity > 0 {
		if lastUsedAt.IsZero() {
			lastUsedAt = issuedAt
		}
		if idle := lastUsedAt.Add(l.Inactivity); at.IsZero() || idle.Before(at) {
			at = idle
		}
	}
	return at, !at.IsZero()
}

// lookup follows a dotted path through decoded JSON; numeric segments index
// arrays.
func lookup(doc any, path string) (any, bool) {
	if path == "" {
		return nil, false
	}
	v := doc
	for seg := range strings.SplitSeq(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			next, ok := x[seg]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// scalarString renders a JSON scalar as text; objects, arrays and null
// give "".
func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

var errPath = errors.New("must be a dotted path such as \"team.id\"")

// checkPath validates a dotted JSON path written in a definition.
func checkPath(p string) error {
	if p == "" || slices.Contains(strings.Split(p, "."), "") {
		return errPath
	}
	return nil
}
