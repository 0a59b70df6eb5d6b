package trigger

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// fakeGraph answers Microsoft Graph's inbox messages list: $filter
// (receivedDateTime ge, from/emailAddress/address eq), $orderby
// receivedDateTime asc|desc, $top, $select, @odata.nextLink.
type fakeGraph struct {
	t        *testing.T
	mu       sync.Mutex
	at       time.Time
	messages []graphTestMessage
}

type graphTestMessage struct {
	id, from string
	at       time.Time
}

func (g *fakeGraph) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	q := r.URL.Query()
	if r.Method != http.MethodGet || r.URL.Path != "/v1.0/me/mailFolders/inbox/messages" || q.Get("$select") == "" {
		g.t.Errorf("request %s %s, want GET /v1.0/me/mailFolders/inbox/messages with $select", r.Method, r.URL.String())
		w.WriteHeader(400)
		return
	}
	var since time.Time
	from := ""
	if f := q.Get("$filter"); f != "" {
		for i, part := range strings.Split(f, " and ") {
			switch {
			case i == 0 && strings.HasPrefix(part, "receivedDateTime ge "):
				t, err := time.Parse(time.RFC3339, strings.TrimPrefix(part, "receivedDateTime ge "))
				if err != nil {
					g.t.Errorf("filter %q", part)
				}
				since = t
			case strings.HasPrefix(part, "from/emailAddress/address eq '"):
				from = strings.TrimSuffix(strings.TrimPrefix(part, "from/emailAddress/address eq '"), "'")
			default:
				g.t.Errorf("filter %q", f)
			}
		}
	}
	var found []graphTestMessage
	for _, m := range g.messages {
		if !m.at.Before(since) && (from == "" || m.from == from) {
			found = append(found, m)
		}
	}
	switch q.Get("$orderby") {
	case "receivedDateTime asc":
	case "receivedDateTime desc":
		slices.Reverse(found)
	default:
		g.t.Errorf("$orderby %q", q.Get("$orderby"))
	}
	top, _ := strconv.Atoi(q.Get("$top"))
	skip, _ := strconv.Atoi(q.Get("$skip"))
	end := min(skip+top, len(found))
	value := []map[string]any{}
	for _, m := range found[skip:end] {
		value = append(value, map[string]any{"@odata.etag": `W/"CQAAABYAAAC"`, "id": m.id, "conversationId": "AAQkAGI2" + m.id[len(m.id)-4:],
			"subject": "Subject " + m.id, "bodyPreview": "Hi", "receivedDateTime": m.at.UTC().Format("2006-01-02T15:04:05Z"), "isRead": false,
			"from": map[string]any{"emailAddress": map[string]string{"name": "Sender", "address": m.from}}})
	}
	body := map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('me')/mailFolders('inbox')/messages", "value": value}
	if end < len(found) {
		body["@odata.nextLink"] = "https://graph.microsoft.com/v1.0/me/mailFolders/inbox/messages?$skip=" + strconv.Itoa(end)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// add delivers n messages, four per second, and returns their run keys.
func (g *fakeGraph) add(n int) []string { return g.addFrom("news@contoso.com", n) }

func (g *fakeGraph) addFrom(from string, n int) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var keys []string
	for range n {
		if len(g.messages)%4 == 0 {
			g.at = g.at.Add(time.Second)
		}
		id := fmt.Sprintf("AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OABGAAAAAAAiQ8W967B7TKBjgx9rVEURBwAiIsqMbYjsT5e-T7KzowPTAAAAAAEMAAAiIsqMbYjsT5e-T7KzowPTAAA%04d", len(g.messages))
		g.messages = append(g.messages, graphTestMessage{id: id, from: from, at: g.at})
		keys = append(keys, "microsoft-365:new-email:"+id)
	}
	return keys
}

func newGraphFixture(t *testing.T, d *db.DB, from string, includeRecent bool) (*appFixture, *fakeGraph) {
	g := &fakeGraph{t: t, at: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)}
	inputs := map[string]string{}
	if from != "" {
		inputs["from"] = from
	}
	f := newAppFixture(t, d, &fakeApp{handler: g,
		body429: `{"error":{"code":"TooManyRequests","message":"Please retry again later."}}`},
		"microsoft-365", "new-email", inputs, includeRecent)
	return f, g
}

func TestPollMicrosoft365NewEmail(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, g := newGraphFixture(t, d, "", false)
		g.add(3) // all received in the same second
		if n := f.tick(t); n != 0 || f.cursor(t) == "" {
			t.Fatalf("first poll: %d runs, cursor %q", n, f.cursor(t))
		}
		want := g.add(130) // pages of 50, seconds shared across pages
		total := 0
		for range 5 {
			total += f.tick(t)
		}
		got, payloads := f.started(t, false)
		if total != 130 || join(got) != join(want) {
			t.Fatalf("%d runs, want 130 in order", total)
		}
		var m struct{ ID, Subject string }
		if err := json.Unmarshal(payloads[0], &m); err != nil || "microsoft-365:new-email:"+m.ID != want[0] || m.Subject == "" {
			t.Fatalf("payload: %s", payloads[0])
		}
	})
}

func TestPollMicrosoft365FromAndRecent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, g := newGraphFixture(t, d, "billing@contoso.com", true)
		g.add(2)
		recent := g.addFrom("billing@contoso.com", 1)
		g.add(1)
		if n := f.tick(t); n != 1 {
			t.Fatalf("first poll with recent messages started %d, want 1", n)
		}
		g.add(2)
		more := g.addFrom("billing@contoso.com", 2)
		f.tick(t)
		if got, _ := f.started(t, false); join(got) != join(append(recent, more...)) {
			t.Fatalf("runs %v, want %v", got, append(recent, more...))
		}
	})
}

func TestPollMicrosoft365Failures(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, g := newGraphFixture(t, d, "", false)
		g.add(1)
		f.tick(t)
		checkTransientAndHeld(t, f, g.add)
	})
}
