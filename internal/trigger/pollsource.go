package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
)

// Item is one new thing at the app (a message, a row, a contact): its
// app-side id, which keys its run so it starts once, and the payload the
// run gets as $trigger.
type Item struct {
	ID      string
	Payload json.RawMessage
	// Cursor is where a poll resumes once this item's run is recorded,
	// for sources whose cursor is not the item's id ("" = the id).
	Cursor string
}

// AppAPI calls an app's API with a connection's credential;
// connection.AppClient implements it (token renewal, the 401 retry and the
// host check included).
type AppAPI interface {
	Do(ctx context.Context, connID string, build func(ctx context.Context) (*http.Request, error)) (connection.Response, error)
}

// pollCall is one poll of one trigger: its app's API through its connection.
type pollCall struct {
	api    AppAPI
	app    catalog.App
	conn   string
	inputs map[string]string
	// fields are the connection's non-secret fields (a subdomain), when
	// the poller can read them.
	fields map[string]string
}

// pollSource reads one kind of app trigger.
type pollSource interface {
	// latest returns up to n of the most recent items, oldest first, and
	// the cursor after the newest item there is (empty when there is none).
	latest(ctx context.Context, c pollCall, n int) (items []Item, cursor string, err error)
	// after returns items created after cursor ("" = from the start), in
	// the app's order, the cursor after the last one, and whether more wait.
	after(ctx context.Context, c pollCall, cursor string) (items []Item, next string, more bool, err error)
}

// pollSources are the app triggers TaskJuice can poll, by app and trigger
// key.
var pollSources = map[[2]string]pollSource{
	{catalog.SandboxKey, "new-message"}: chatMessages{},
}

// CanPoll reports whether TaskJuice can poll an app's trigger; it suits
// workflow.Checks.AppTrigger.
func CanPoll(app, trigger string) bool {
	_, ok := pollSources[[2]string{app, trigger}]
	return ok
}

// transientError is a failure worth retrying later (5xx, 429, a timeout);
// retryAfter is the app's own wish, if it said one.
type transientError struct {
	msg        string
	retryAfter time.Duration
}

func (e *transientError) Error() string { return e.msg }

// errHeld is what a poll returns when its connection needs reauthorization.
var errHeld = connection.ErrNeedsReauth

// call sends one GET and reads a 2xx JSON answer into out, classifying
// failures: ErrNeedsReauth (held), *transientError (back off), or another
// error (the app refused the request: back off and show it).
func (c pollCall) call(ctx context.Context, rawURL string, out any) error {
	_, err := c.exchange(ctx, http.MethodGet, rawURL, "", nil, out)
	return err
}

func parseRetryAfter(h string) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// chatMessages is Sandbox Chat's "New message in channel": its messages API
// read after the id of the last message seen (see internal/sandbox/doc.go).
type chatMessages struct{}

// chatPageSize is how many messages one request reads.
const chatPageSize = 100

type chatPage struct {
	Messages   []json.RawMessage `json:"messages"`
	HasMore    bool              `json:"has_more"`
	NextCursor string            `json:"next_cursor"`
}

func (chatMessages) endpoint(c pollCall) (string, error) {
	a, ok := c.app.Action("read-messages")
	if !ok {
		return "", fmt.Errorf("%s declares no read-messages action", c.app.Name)
	}
	ch := strings.TrimSpace(c.inputs["channel"])
	if ch == "" {
		return "", errors.New("the trigger names no channel")
	}
	return strings.ReplaceAll(a.URL, "{channel}", url.PathEscape(ch)), nil
}

func (s chatMessages) items(c pollCall, p chatPage) ([]Item, error) {
	out := make([]Item, 0, len(p.Messages))
	for _, raw := range p.Messages {
		var m struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(raw, &m); err != nil || m.ID == "" {
			return nil, fmt.Errorf("%s answered a message without an id", c.app.Name)
		}
		out = append(out, Item{ID: m.ID, Payload: raw})
	}
	return out, nil
}

func (s chatMessages) latest(ctx context.Context, c pollCall, n int) ([]Item, string, error) {
	base, err := s.endpoint(c)
	if err != nil {
		return nil, "", err
	}
	var p chatPage
	if err := c.call(ctx, base+"?limit="+strconv.Itoa(max(n, 1)), &p); err != nil {
		return nil, "", err
	}
	items, err := s.items(c, p)
	if err != nil {
		return nil, "", err
	}
	cursor := ""
	if len(items) > 0 {
		cursor = items[len(items)-1].ID
	}
	if n <= 0 {
		items = nil
	}
	return items, cursor, nil
}

func (s chatMessages) after(ctx context.Context, c pollCall, cursor string) ([]Item, string, bool, error) {
	base, err := s.endpoint(c)
	if err != nil {
		return nil, "", false, err
	}
	var p chatPage
	if err := c.call(ctx, base+"?limit="+strconv.Itoa(chatPageSize)+"&after="+url.QueryEscape(cursor), &p); err != nil {
		return nil, "", false, err
	}
	items, err := s.items(c, p)
	if err != nil {
		return nil, "", false, err
	}
	next := p.NextCursor
	if len(items) > 0 {
		next = items[len(items)-1].ID
	}
	if next == "" {
		next = cursor
	}
	return items, next, p.HasMore && len(items) > 0, nil
}
