package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

func init() {
	pollSources[[2]string{"microsoft-365", "new-email"}] = outlookMessages{}
}

// outlookMessages is Microsoft 365's "New email": the inbox read through
// Microsoft Graph by receivedDateTime, ascending. The cursor is
// "<receivedDateTime>|<ids>", the ids being the messages seen received in
// that very second: the filter asks for receivedDateTime ge that time and
// skips those ids, so messages of the same second are neither lost nor
// repeated. Paging moves the cursor itself (keyset); @odata.nextLink only
// says more wait.
type outlookMessages struct{}

const (
	graphInboxURL    = "https://graph.microsoft.com/v1.0/me/mailFolders/inbox/messages"
	outlookPageSize  = 50
	outlookSelect    = "id,conversationId,subject,bodyPreview,from,toRecipients,ccRecipients,receivedDateTime,isRead,webLink,internetMessageId"
	outlookTimestamp = "2006-01-02T15:04:05Z"
)

type outlookPage struct {
	Value    []json.RawMessage `json:"value"`
	NextLink string            `json:"@odata.nextLink"`
}

type outlookCursor struct {
	at  string // receivedDateTime, UTC, seconds
	ids []string
}

func parseOutlookCursor(s string) (outlookCursor, error) {
	if s == "" {
		return outlookCursor{}, nil
	}
	at, ids, _ := strings.Cut(s, "|")
	if _, err := time.Parse(outlookTimestamp, at); err != nil {
		return outlookCursor{}, fmt.Errorf("the trigger's saved position %q is not a Microsoft 365 one", s)
	}
	c := outlookCursor{at: at}
	if ids != "" {
		c.ids = strings.Split(ids, ",")
	}
	return c, nil
}

func (c outlookCursor) String() string {
	if c.at == "" {
		return ""
	}
	return c.at + "|" + strings.Join(c.ids, ",")
}

func (outlookMessages) base(c pollCall) string {
	if a, ok := c.app.Action("send-email"); ok {
		if i := strings.Index(a.URL, "/v1.0/"); i > 0 {
			return a.URL[:i] + "/v1.0/me/mailFolders/inbox/messages"
		}
	}
	return graphInboxURL
}

// fromFilter is the optional sender filter, quoted for OData.
func (outlookMessages) fromFilter(c pollCall) (string, error) {
	from := strings.TrimSpace(c.inputs["from"])
	if from == "" {
		return "", nil
	}
	if !strings.Contains(from, "@") || strings.ContainsAny(from, " \t\r\n") {
		return "", fmt.Errorf("%q is not an email address", from)
	}
	return "from/emailAddress/address eq '" + strings.ReplaceAll(from, "'", "''") + "'", nil
}

func (s outlookMessages) read(ctx context.Context, c pollCall, filter, order string, top int) (outlookPage, error) {
	v := url.Values{"$orderby": {"receivedDateTime " + order}, "$top": {strconv.Itoa(top)}, "$select": {outlookSelect}}
	if filter != "" {
		v.Set("$filter", filter)
	}
	var p outlookPage
	// Graph reads "+" in a query as itself: spaces go as %20.
	_, err := c.fetch(ctx, http.MethodGet, s.base(c)+"?"+strings.ReplaceAll(v.Encode(), "+", "%20"), nil, &p)
	return p, err
}

func (s outlookMessages) items(p outlookPage, cur outlookCursor) ([]Item, outlookCursor, error) {
	var out []Item
	for _, raw := range p.Value {
		var m struct {
			ID       string `json:"id"`
			Received string `json:"receivedDateTime"`
		}
		if err := json.Unmarshal(raw, &m); err != nil || m.ID == "" {
			return nil, cur, errors.New("Microsoft 365 answered a message without an id")
		}
		t, err := time.Parse(time.RFC3339, m.Received)
		if err != nil {
			return nil, cur, fmt.Errorf("Microsoft 365 answered message %s without a receivedDateTime", m.ID)
		}
		at := t.UTC().Format(outlookTimestamp)
		if cur.at != "" && (at < cur.at || (at == cur.at && slices.Contains(cur.ids, m.ID))) {
			continue
		}
		if at == cur.at {
			cur = outlookCursor{at: at, ids: append(slices.Clone(cur.ids), m.ID)}
		} else {
			cur = outlookCursor{at: at, ids: []string{m.ID}}
		}
		out = append(out, Item{ID: m.ID, Payload: raw, Cursor: cur.String()})
	}
	return out, cur, nil
}

func (s outlookMessages) latest(ctx context.Context, c pollCall, n int) ([]Item, string, error) {
	from, err := s.fromFilter(c)
	if err != nil {
		return nil, "", err
	}
	p, err := s.read(ctx, c, from, "desc", max(min(n, outlookPageSize), 1))
	if err != nil {
		return nil, "", err
	}
	slices.Reverse(p.Value)
	items, cur, err := s.items(p, outlookCursor{})
	if err != nil {
		return nil, "", err
	}
	if cur.at != "" {
		// Other messages of the newest second are seen too, not new.
		filter := "receivedDateTime ge " + cur.at
		if from != "" {
			filter += " and " + from
		}
		same, err := s.read(ctx, c, filter, "asc", outlookPageSize)
		if err != nil {
			return nil, "", err
		}
		same.Value = slices.DeleteFunc(same.Value, func(raw json.RawMessage) bool {
			at, ok := outlookReceived(raw)
			return !ok || at != cur.at
		})
		if _, all, err := s.items(same, outlookCursor{at: cur.at}); err == nil && len(all.ids) > 0 {
			cur = outlookCursor{at: cur.at, ids: all.ids}
		}
	}
	if n <= 0 {
		items = nil
	}
	// An empty inbox leaves the cursor empty: every message to come is new.
	return items, cur.String(), nil
}

func (s outlookMessages) after(ctx context.Context, c pollCall, cursor string) ([]Item, string, bool, error) {
	cur, err := parseOutlookCursor(cursor)
	if err != nil {
		return nil, "", false, err
	}
	from, err := s.fromFilter(c)
	if err != nil {
		return nil, "", false, err
	}
	var filters []string
	if cur.at != "" {
		// The sorted property comes first in the filter, as Graph asks.
		filters = append(filters, "receivedDateTime ge "+cur.at)
	}
	if from != "" {
		filters = append(filters, from)
	}
	p, err := s.read(ctx, c, strings.Join(filters, " and "), "asc", outlookPageSize)
	if err != nil {
		return nil, "", false, err
	}
	items, next, err := s.items(p, cur)
	if err != nil {
		return nil, "", false, err
	}
	return items, next.String(), len(items) > 0 && p.NextLink != "", nil
}

// outlookReceived is a message's receivedDateTime in the cursor's form.
func outlookReceived(raw json.RawMessage) (string, bool) {
	var m struct {
		Received string `json:"receivedDateTime"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return "", false
	}
	t, err := time.Parse(time.RFC3339, m.Received)
	if err != nil {
		return "", false
	}
	return t.UTC().Format(outlookTimestamp), true
}
