package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

func init() {
	pollSources[[2]string{"freshdesk", "new-ticket"}] = freshdeskTickets{}
}

// connectionFields reads a connection's non-secret fields;
// connection.Service implements it. A poller whose ConnectionStatus does
// not cannot poll the apps whose address names a field (Freshdesk).
type connectionFields interface {
	FieldsOf(ctx context.Context, id string) (map[string]string, error)
}

// freshdeskTickets is Freshdesk's "New ticket": the tickets list filtered
// by updated_since (a new ticket was updated when it was created) and
// ordered by created_at. Freshdesk's ticket ids grow with creation, so a
// ticket is new when its id is above the last one seen. The cursor keeps
// that id, the updated_since it reads with and the page it is at: pages
// of one updated_since only grow (an older ticket updated since moves the
// later ones down a place, read again and skipped by id), so paging never
// skips a ticket.
type freshdeskTickets struct{}

const (
	freshdeskPageSize = 100
	// freshdeskSlack reads a little before the last ticket's creation, so
	// a ticket created in the same moment is not missed.
	freshdeskSlack = time.Minute
)

var freshdeskSubdomain = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)

type freshdeskCursor struct {
	ID    int64  `json:"id"`
	Since string `json:"since,omitempty"`
	Page  int    `json:"page,omitempty"`
}

func (c freshdeskCursor) String() string {
	b, _ := json.Marshal(c)
	return string(b)
}

func (freshdeskTickets) endpoint(c pollCall) (string, error) {
	sub := strings.ToLower(strings.TrimSpace(c.fields["subdomain"]))
	if !freshdeskSubdomain.MatchString(sub) {
		return "", errors.New("the connection names no Freshdesk subdomain")
	}
	a, ok := c.app.Action("create-ticket")
	if !ok {
		return "", fmt.Errorf("%s declares no create-ticket action", c.app.Name)
	}
	return strings.ReplaceAll(a.URL, "{subdomain}", sub), nil
}

type freshdeskTicket struct {
	ID        int64  `json:"id"`
	CreatedAt string `json:"created_at"`
}

func (s freshdeskTickets) list(ctx context.Context, c pollCall, v url.Values) ([]json.RawMessage, []freshdeskTicket, error) {
	base, err := s.endpoint(c)
	if err != nil {
		return nil, nil, err
	}
	var raws []json.RawMessage
	if _, err := c.fetch(ctx, http.MethodGet, base+"?"+v.Encode(), nil, &raws); err != nil {
		return nil, nil, err
	}
	tickets := make([]freshdeskTicket, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &tickets[i]); err != nil || tickets[i].ID == 0 {
			return nil, nil, errors.New("Freshdesk answered a ticket without an id")
		}
	}
	return raws, tickets, nil
}

func (s freshdeskTickets) latest(ctx context.Context, c pollCall, n int) ([]Item, string, error) {
	raws, tickets, err := s.list(ctx, c, url.Values{"order_by": {"created_at"}, "order_type": {"desc"},
		"per_page": {strconv.Itoa(max(min(n, freshdeskPageSize), 1))}})
	if err != nil {
		return nil, "", err
	}
	cur := freshdeskCursor{}
	var items []Item
	for i := len(tickets) - 1; i >= 0; i-- {
		if tickets[i].ID > cur.ID {
			cur = freshdeskCursor{ID: tickets[i].ID, Since: sinceOf(tickets[i].CreatedAt)}
		}
		items = append(items, Item{ID: strconv.FormatInt(tickets[i].ID, 10), Payload: raws[i]})
	}
	for i := range items {
		items[i].Cursor = cur.String()
	}
	if n <= 0 {
		items = nil
	}
	return items, cur.String(), nil
}

// sinceOf is the updated_since to read with after a ticket created at.
func sinceOf(createdAt string) string {
	t, err := time.Parse(time.RFC3339, createdAt)
	if err != nil {
		return ""
	}
	return t.Add(-freshdeskSlack).UTC().Format("2006-01-02T15:04:05Z")
}

func (s freshdeskTickets) after(ctx context.Context, c pollCall, cursor string) ([]Item, string, bool, error) {
	var cur freshdeskCursor
	if cursor != "" {
		if err := json.Unmarshal([]byte(cursor), &cur); err != nil {
			return nil, "", false, fmt.Errorf("the trigger's saved position %q is not a Freshdesk one", cursor)
		}
	}
	page := max(cur.Page, 1)
	v := url.Values{"order_by": {"created_at"}, "order_type": {"asc"}, "per_page": {strconv.Itoa(freshdeskPageSize)}, "page": {strconv.Itoa(page)}}
	if cur.Since != "" {
		v.Set("updated_since", cur.Since)
	}
	raws, tickets, err := s.list(ctx, c, v)
	if err != nil {
		return nil, "", false, err
	}
	next := cur
	lastCreated := ""
	var items []Item
	for i, t := range tickets {
		if t.ID <= next.ID {
			continue
		}
		next.ID, lastCreated = t.ID, t.CreatedAt
		items = append(items, Item{ID: strconv.FormatInt(t.ID, 10), Payload: raws[i], Cursor: next.String()})
	}
	if len(tickets) == freshdeskPageSize {
		next.Page = page + 1
		return items, next.String(), true, nil
	}
	// The last page: the next poll reads from the newest ticket's time.
	if lastCreated != "" {
		next.Since = sinceOf(lastCreated)
	}
	next.Page = 0
	return items, next.String(), false, nil
}
