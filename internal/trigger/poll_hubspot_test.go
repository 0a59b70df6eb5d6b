package trigger

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// fakeHubSpot answers the CRM contacts search like HubSpot: filterGroups
// on createdate (GT/GTE, milliseconds), sorts on createdate, limit, after.
type fakeHubSpot struct {
	t        *testing.T
	mu       sync.Mutex
	contacts []hubspotTestContact
	next     int
	at       time.Time
}

type hubspotTestContact struct {
	id string
	ms int64
}

func (h *fakeHubSpot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/crm/v3/objects/contacts/search" || r.Header.Get("Content-Type") != "application/json" {
		h.t.Errorf("request %s %s (%s), want POST /crm/v3/objects/contacts/search JSON", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		w.WriteHeader(404)
		return
	}
	var q hubspotSearch
	if err := json.NewDecoder(r.Body).Decode(&q); err != nil || len(q.Sorts) != 1 || q.Sorts[0].PropertyName != "createdate" || q.Limit < 1 || q.Limit > 200 ||
		!slices.Equal(q.Properties, []string{"email", "firstname", "lastname", "createdate"}) {
		h.t.Errorf("search body %+v (%v)", q, err)
		w.WriteHeader(400)
		_, _ = w.Write([]byte(`{"status":"error","message":"Invalid input JSON","category":"VALIDATION_ERROR"}`))
		return
	}
	var found []hubspotTestContact
	for _, c := range h.contacts {
		keep := true
		for _, g := range q.FilterGroups {
			for _, f := range g.Filters {
				var v int64
				fmt.Sscan(f.Value, &v)
				if f.PropertyName != "createdate" || (f.Operator != "GT" && f.Operator != "GTE") {
					h.t.Errorf("filter %+v", f)
				}
				if (f.Operator == "GT" && c.ms <= v) || (f.Operator == "GTE" && c.ms < v) {
					keep = false
				}
			}
		}
		if keep {
			found = append(found, c)
		}
	}
	// HubSpot's order among equal createdates is its own: reverse ids.
	slices.SortStableFunc(found, func(a, b hubspotTestContact) int {
		if a.ms != b.ms {
			if q.Sorts[0].Direction == "DESCENDING" {
				return int(b.ms - a.ms)
			}
			return int(a.ms - b.ms)
		}
		return -compareStrings(a.id, b.id)
	})
	start := 0
	fmt.Sscan(q.After, &start)
	end := min(start+q.Limit, len(found))
	results := []map[string]any{}
	for _, c := range found[start:end] {
		created := time.UnixMilli(c.ms).UTC().Format("2006-01-02T15:04:05.000Z")
		results = append(results, map[string]any{
			"id": c.id, "createdAt": created, "updatedAt": created, "archived": false,
			"properties": map[string]any{"createdate": created, "email": "contact" + c.id + "@example.com", "firstname": "Ada", "lastname": "Lovelace", "hs_object_id": c.id, "lastmodifieddate": created},
		})
	}
	body := map[string]any{"total": len(found), "results": results}
	if end < len(found) {
		body["paging"] = map[string]any{"next": map[string]any{"after": fmt.Sprint(end)}}
	}
	_ = json.NewEncoder(w).Encode(body)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// add creates n contacts; every three share a creation millisecond. It
// returns their run keys in creation order (ties in id order).
func (h *fakeHubSpot) add(n int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var keys []string
	var batch []hubspotTestContact
	for i := range n {
		if i%3 == 0 {
			h.at = h.at.Add(time.Second)
		}
		h.next++
		c := hubspotTestContact{id: fmt.Sprint(51000 + h.next), ms: h.at.UnixMilli()}
		h.contacts = append(h.contacts, c)
		batch = append(batch, c)
	}
	// The expected order is HubSpot's: by createdate, its order in a tie.
	slices.SortStableFunc(batch, func(a, b hubspotTestContact) int {
		if a.ms != b.ms {
			return int(a.ms - b.ms)
		}
		return -compareStrings(a.id, b.id)
	})
	for _, c := range batch {
		keys = append(keys, "hubspot:new-contact:"+c.id)
	}
	return keys
}

func newHubSpotFixture(t *testing.T, d *db.DB, includeRecent bool) (*appFixture, *fakeHubSpot) {
	h := &fakeHubSpot{t: t, at: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	f := newAppFixture(t, d, &fakeApp{handler: h,
		body429: `{"status":"error","message":"You have reached your secondly limit.","errorType":"RATE_LIMIT","correlationId":"c033cdaa-2c40-4a64-ae48-b4cec88dad24","policyName":"SECONDLY"}`},
		"hubspot", "new-contact", nil, includeRecent)
	return f, h
}

func TestPollHubSpotNewContacts(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, h := newHubSpotFixture(t, d, false)
		h.add(5) // the newest two share a millisecond
		if n := f.tick(t); n != 0 || !f.state(t).Primed {
			t.Fatalf("first poll started %d runs, want 0 (it records the cursor)", n)
		}
		// More than two pages, with contacts sharing a createdate across
		// page boundaries.
		want := h.add(250)
		total := 0
		for range 5 {
			total += f.tick(t)
		}
		got, payloads := f.started(t, false)
		if total != 250 || join(got) != join(want) {
			t.Fatalf("%d runs %v…, want 250 %v…", total, got[:3], want[:3])
		}
		var c struct {
			ID         string
			Properties map[string]string
		}
		if err := json.Unmarshal(payloads[0], &c); err != nil || "hubspot:new-contact:"+c.ID != want[0] || c.Properties["email"] == "" {
			t.Fatalf("payload: %s", payloads[0])
		}
	})
}

// addSame creates n contacts in one creation millisecond and returns their
// run keys in HubSpot's order.
func (h *fakeHubSpot) addSame(n int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.at = h.at.Add(time.Second)
	var keys []string
	for range n {
		h.next++
		c := hubspotTestContact{id: fmt.Sprint(51000 + h.next), ms: h.at.UnixMilli()}
		h.contacts = append(h.contacts, c)
		keys = append(keys, "hubspot:new-contact:"+c.id)
	}
	slices.Reverse(keys) // the fake orders a tie by id, descending
	return keys
}

// More contacts in one millisecond than a page holds (a bulk import): the
// trigger reads on through them instead of stalling on a page it has seen.
func TestPollHubSpotMoreContactsInOneMillisecondThanAPage(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, h := newHubSpotFixture(t, d, false)
		h.add(1)
		f.tick(t)
		want := h.addSame(250)
		want = append(want, h.add(2)...)
		total := 0
		for range 6 {
			total += f.tick(t)
		}
		got, _ := f.started(t, false)
		if total != 252 || join(got) != join(want) {
			t.Fatalf("%d runs, want 252 (the 250 of one millisecond, then 2)", total)
		}
	})
}

func TestPollHubSpotIncludeRecent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, h := newHubSpotFixture(t, d, true)
		h.add(3)
		all := h.add(3)
		if n := f.tick(t); n != 3 {
			t.Fatalf("first poll with recent contacts started %d, want 3", n)
		}
		more := h.add(2)
		f.tick(t)
		// The three recent contacts share a creation millisecond: their
		// order among themselves is HubSpot's.
		got, _ := f.started(t, false)
		slices.Sort(got[:3])
		slices.Sort(all)
		if join(got) != join(append(all, more...)) {
			t.Fatalf("runs %v, want %v", got, append(all, more...))
		}
	})
}

func TestPollHubSpotFailures(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, h := newHubSpotFixture(t, d, false)
		h.add(1)
		f.tick(t)
		checkTransientAndHeld(t, f, h.add)
	})
}
