package trigger

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// fakeFreshdesk answers GET /api/v2/tickets like Freshdesk: updated_since,
// order_by created_at, order_type, per_page, page; a JSON array.
type fakeFreshdesk struct {
	t       *testing.T
	mu      sync.Mutex
	now     time.Time
	tickets []freshdeskTestTicket
}

type freshdeskTestTicket struct {
	id               int64
	created, updated time.Time
}

func (h *fakeFreshdesk) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := r.URL.Query()
	if r.Method != http.MethodGet || r.URL.Host != "acme.freshdesk.com" || r.URL.Path != "/api/v2/tickets" || q.Get("order_by") != "created_at" {
		h.t.Errorf("request %s %s, want GET https://acme.freshdesk.com/api/v2/tickets?order_by=created_at…", r.Method, r.URL)
		w.WriteHeader(400)
		_, _ = w.Write([]byte(`{"description":"Validation failed","errors":[{"field":"order_by","message":"It should be one of these values: 'created_at,due_by,updated_at,status'","code":"invalid_value"}]}`))
		return
	}
	var since time.Time
	if s := q.Get("updated_since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			h.t.Errorf("updated_since %q", s)
		}
		since = t
	}
	var found []freshdeskTestTicket
	for _, t := range h.tickets {
		if !t.updated.Before(since) {
			found = append(found, t)
		}
	}
	if q.Get("order_type") == "desc" {
		slices.Reverse(found)
	}
	per, _ := strconv.Atoi(q.Get("per_page"))
	page, _ := strconv.Atoi(q.Get("page"))
	page = max(page, 1)
	start := min((page-1)*per, len(found))
	end := min(start+per, len(found))
	out := []map[string]any{}
	for _, t := range found[start:end] {
		out = append(out, map[string]any{"id": t.id, "subject": fmt.Sprintf("Ticket %d", t.id), "status": 2, "priority": 1,
			"requester_id": 43012345678, "type": nil, "tags": []string{}, "fr_escalated": false, "spam": false,
			"created_at": t.created.UTC().Format(time.RFC3339), "updated_at": t.updated.UTC().Format(time.RFC3339)})
	}
	if end < len(found) {
		w.Header().Set("Link", fmt.Sprintf(`<https://acme.freshdesk.com/api/v2/tickets?page=%d&per_page=%d>; rel="next"`, page+1, per))
	}
	_ = json.NewEncoder(w).Encode(out)
}

// add opens n tickets, two per second, and returns their run keys.
func (h *fakeFreshdesk) add(n int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var keys []string
	for range n {
		if len(h.tickets)%2 == 0 {
			h.now = h.now.Add(time.Second)
		}
		id := int64(2001 + len(h.tickets))
		h.tickets = append(h.tickets, freshdeskTestTicket{id: id, created: h.now, updated: h.now})
		keys = append(keys, "freshdesk:new-ticket:"+strconv.FormatInt(id, 10))
	}
	return keys
}

// touch updates the oldest tickets: they come back in updated_since lists.
func (h *fakeFreshdesk) touch(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range min(n, len(h.tickets)) {
		h.tickets[i].updated = h.now
	}
}

func newFreshdeskFixture(t *testing.T, d *db.DB, includeRecent bool) (*appFixture, *fakeFreshdesk) {
	h := &fakeFreshdesk{t: t, now: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)}
	f := newAppFixture(t, d, &fakeApp{handler: h, fields: map[string]string{"subdomain": "acme"},
		body429: `{"message":"You have exceeded the limit of requests per hour"}`},
		"freshdesk", "new-ticket", nil, includeRecent)
	return f, h
}

func TestPollFreshdeskNewTickets(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, h := newFreshdeskFixture(t, d, false)
		h.add(5)
		if n := f.tick(t); n != 0 || !f.state(t).Primed {
			t.Fatalf("first poll started %d runs, want 0", n)
		}
		want := h.add(150)
		h.touch(3) // old tickets updated since: listed again, not new
		total := 0
		for range 4 {
			total += f.tick(t)
		}
		got, payloads := f.started(t, false)
		if total != 150 || join(got) != join(want) {
			t.Fatalf("%d runs, want 150 in order (%v…)", total, got[:min(3, len(got))])
		}
		var tk struct {
			ID      int64
			Subject string
		}
		if err := json.Unmarshal(payloads[0], &tk); err != nil || tk.ID != 2006 || tk.Subject != "Ticket 2006" {
			t.Fatalf("payload: %s", payloads[0])
		}
	})
}

func TestPollFreshdeskIncludeRecent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, h := newFreshdeskFixture(t, d, true)
		all := h.add(5)
		if n := f.tick(t); n != 3 {
			t.Fatalf("first poll with recent tickets started %d, want 3", n)
		}
		more := h.add(2)
		f.tick(t)
		if got, _ := f.started(t, false); join(got) != join(append(all[2:], more...)) {
			t.Fatalf("runs %v, want %v", got, append(all[2:], more...))
		}
	})
}

func TestPollFreshdeskFailures(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, h := newFreshdeskFixture(t, d, false)
		h.add(1)
		f.tick(t)
		checkTransientAndHeld(t, f, h.add)
	})
}
