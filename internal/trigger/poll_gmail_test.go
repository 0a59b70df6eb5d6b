package trigger

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// fakeGmail answers users.getProfile, users.history.list,
// users.messages.list (q: in:inbox, after:, from:) and users.messages.get
// like Gmail, for one mailbox whose clock the test moves.
type fakeGmail struct {
	t        *testing.T
	mu       sync.Mutex
	now      time.Time
	history  int
	messages []gmailTestMessage
	// expiredBelow makes history.list answer 404 for an older start.
	expiredBelow int
	historyCalls int
}

type gmailTestMessage struct {
	id, from, subject string
	history           int
	at                time.Time
	inbox             bool
}

func gmailJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (g *fakeGmail) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w.Header().Set("Date", g.now.UTC().Format(http.TimeFormat))
	q := r.URL.Query()
	path := strings.TrimPrefix(r.URL.Path, "/gmail/v1/users/me/")
	if r.Method != http.MethodGet || path == r.URL.Path {
		g.t.Errorf("request %s %s, want GET /gmail/v1/users/me/…", r.Method, r.URL.Path)
		gmailJSON(w, 400, map[string]any{"error": map[string]any{"code": 400, "message": "Bad request"}})
		return
	}
	switch {
	case path == "profile":
		gmailJSON(w, 200, map[string]any{"emailAddress": "ada@example.com", "messagesTotal": len(g.messages), "threadsTotal": len(g.messages), "historyId": strconv.Itoa(g.history)})
	case path == "history":
		g.historyCalls++
		start, err := strconv.Atoi(q.Get("startHistoryId"))
		if err != nil || q.Get("historyTypes") != "messageAdded" || q.Get("labelId") != "INBOX" {
			g.t.Errorf("history query %v", q)
		}
		if start < g.expiredBelow {
			gmailJSON(w, 404, map[string]any{"error": map[string]any{"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}})
			return
		}
		var records []map[string]any
		for _, m := range g.messages {
			if m.history > start && m.inbox {
				msg := map[string]any{"id": m.id, "threadId": m.id, "labelIds": []string{"INBOX", "UNREAD"}}
				records = append(records, map[string]any{"id": strconv.Itoa(m.history), "messages": []any{msg}, "messagesAdded": []any{map[string]any{"message": msg}}})
			}
		}
		off, _ := strconv.Atoi(q.Get("pageToken"))
		end := min(off+2, len(records)) // small pages
		body := map[string]any{"historyId": strconv.Itoa(g.history)}
		if end > off {
			body["history"] = records[off:end]
		}
		if end < len(records) {
			body["nextPageToken"] = strconv.Itoa(end)
		}
		gmailJSON(w, 200, body)
	case path == "messages":
		var found []gmailTestMessage
		for i := len(g.messages) - 1; i >= 0; i-- {
			if g.matches(g.messages[i], q.Get("q")) {
				found = append(found, g.messages[i])
			}
		}
		limit, _ := strconv.Atoi(q.Get("maxResults"))
		off, _ := strconv.Atoi(q.Get("pageToken"))
		end := min(off+limit, len(found))
		list := []map[string]string{}
		for _, m := range found[off:end] {
			list = append(list, map[string]string{"id": m.id, "threadId": m.id})
		}
		body := map[string]any{"messages": list, "resultSizeEstimate": len(found)}
		if end < len(found) {
			body["nextPageToken"] = strconv.Itoa(end)
		}
		gmailJSON(w, 200, body)
	case strings.HasPrefix(path, "messages/"):
		if q.Get("format") != "metadata" {
			g.t.Errorf("messages.get format %q, want metadata", q.Get("format"))
		}
		id := strings.TrimPrefix(path, "messages/")
		for _, m := range g.messages {
			if m.id == id {
				gmailJSON(w, 200, map[string]any{"id": m.id, "threadId": m.id, "labelIds": []string{"INBOX", "UNREAD"},
					"snippet": "Hello from " + m.from, "historyId": strconv.Itoa(m.history), "internalDate": strconv.FormatInt(m.at.UnixMilli(), 10),
					"sizeEstimate": 2048, "payload": map[string]any{"mimeType": "text/plain", "headers": []map[string]string{
						{"name": "From", "value": m.from}, {"name": "To", "value": "ada@example.com"},
						{"name": "Subject", "value": m.subject}, {"name": "Date", "value": m.at.Format(time.RFC1123Z)}}}})
				return
			}
		}
		gmailJSON(w, 404, map[string]any{"error": map[string]any{"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}})
	default:
		g.t.Errorf("unexpected path %s", r.URL.Path)
		gmailJSON(w, 404, map[string]any{"error": map[string]any{"code": 404, "message": "Not Found"}})
	}
}

// matches is the part of Gmail's search the trigger uses.
func (g *fakeGmail) matches(m gmailTestMessage, q string) bool {
	q = strings.NewReplacer("(", " ", ")", " ").Replace(q)
	for _, term := range strings.Fields(q) {
		k, v, _ := strings.Cut(term, ":")
		switch k {
		case "in":
			if v != "inbox" {
				g.t.Errorf("search term %q", term)
			}
			if !m.inbox {
				return false
			}
		case "after":
			s, _ := strconv.ParseInt(v, 10, 64)
			if m.at.Unix() <= s {
				return false
			}
		case "from":
			if !strings.Contains(m.from, v) {
				return false
			}
		default:
			g.t.Errorf("search term %q", term)
		}
	}
	return true
}

// add delivers n messages (from, in the inbox) a minute apart and returns
// the run keys of those in the inbox.
func (g *fakeGmail) add(n int) []string { return g.addFrom("newsletter@example.com", true, n) }

func (g *fakeGmail) addFrom(from string, inbox bool, n int) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var keys []string
	for range n {
		g.now = g.now.Add(time.Minute)
		g.history += 7
		id := fmt.Sprintf("18c%013x", 0x9a2b40000+len(g.messages))
		g.messages = append(g.messages, gmailTestMessage{id: id, from: from, subject: "Message " + id, history: g.history, at: g.now, inbox: inbox})
		if inbox {
			keys = append(keys, "gmail:new-email:"+id)
		}
	}
	return keys
}

func (g *fakeGmail) set(fn func(g *fakeGmail)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fn(g)
}

func newGmailFixture(t *testing.T, d *db.DB, query string, includeRecent bool) (*appFixture, *fakeGmail) {
	g := &fakeGmail{t: t, now: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC), history: 4211}
	inputs := map[string]string{}
	if query != "" {
		inputs["query"] = query
	}
	f := newAppFixture(t, d, &fakeApp{handler: g,
		body429: `{"error":{"code":429,"message":"User-rate limit exceeded.","status":"RESOURCE_EXHAUSTED"}}`},
		"gmail", "new-email", inputs, includeRecent)
	return f, g
}

func TestPollGmailNewEmail(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, g := newGmailFixture(t, d, "", false)
		g.add(3)
		if n := f.tick(t); n != 0 || !strings.Contains(f.cursor(t), `"h":"4232"`) {
			t.Fatalf("first poll: %d runs, cursor %s; want 0 and historyId 4232", n, f.cursor(t))
		}
		want := g.add(2)
		g.addFrom("ada@example.com", false, 1) // sent, not in the inbox
		want = append(want, g.add(3)...)
		total := 0
		for range 4 {
			total += f.tick(t)
		}
		got, payloads := f.started(t, false)
		if total != 5 || join(got) != join(want) {
			t.Fatalf("%d runs %v, want %v", total, got, want)
		}
		var m map[string]any
		if err := json.Unmarshal(payloads[0], &m); err != nil || "gmail:new-email:"+m["id"].(string) != want[0] ||
			m["from"] != "newsletter@example.com" || m["subject"] != "Message "+m["id"].(string) || m["internalDate"] == "" || m["snippet"] == "" {
			t.Fatalf("payload: %s", payloads[0])
		}
		if n := f.tick(t); n != 0 {
			t.Fatalf("poll with nothing new started %d", n)
		}
	})
}

func TestPollGmailIncludeRecent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, g := newGmailFixture(t, d, "", true)
		all := g.add(5)
		if n := f.tick(t); n != 3 {
			t.Fatalf("first poll with recent messages started %d, want 3", n)
		}
		more := g.add(1)
		f.tick(t)
		if got, _ := f.started(t, false); join(got) != join(append(all[2:], more...)) {
			t.Fatalf("runs %v, want %v", got, append(all[2:], more...))
		}
	})
}

func TestPollGmailQueryFilters(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, g := newGmailFixture(t, d, "from:billing@example.com", false)
		f.tick(t)
		g.add(2)
		want := g.addFrom("billing@example.com", true, 1)
		g.add(1)
		want = append(want, g.addFrom("billing@example.com", true, 1)...)
		for range 3 {
			f.tick(t)
		}
		if got, _ := f.started(t, false); join(got) != join(want) {
			t.Fatalf("runs %v, want only the billing ones %v", got, want)
		}
	})
}

// Gmail keeps history for a limited time: a poll after it is gone (404)
// searches the inbox since the last poll and starts from a fresh id.
func TestPollGmailExpiredHistoryFallsBackToSearch(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, g := newGmailFixture(t, d, "", false)
		g.add(2)
		g.set(func(g *fakeGmail) { g.now = g.now.Add(time.Hour) })
		f.tick(t)
		g.set(func(g *fakeGmail) { g.now = g.now.Add(24 * time.Hour) })
		want := g.add(4)
		g.set(func(g *fakeGmail) { g.expiredBelow = g.history })
		if n := f.tick(t); n != 4 {
			t.Fatalf("poll after the history expired started %d, want 4", n)
		}
		if !strings.Contains(f.cursor(t), fmt.Sprintf(`"h":"%d"`, g.history)) {
			t.Fatalf("cursor %s, want the fresh historyId %d", f.cursor(t), g.history)
		}
		want = append(want, g.add(1)...)
		calls := g.historyCalls
		if n := f.tick(t); n != 1 || g.historyCalls != calls+1 {
			t.Fatalf("poll from the fresh history id: %d runs, %d history calls", n, g.historyCalls-calls)
		}
		if got, _ := f.started(t, false); join(got) != join(want) {
			t.Fatalf("runs %v, want %v", got, want)
		}
	})
}

func TestPollGmailFailures(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, g := newGmailFixture(t, d, "", false)
		f.tick(t)
		checkTransientAndHeld(t, f, g.add)
	})
}
