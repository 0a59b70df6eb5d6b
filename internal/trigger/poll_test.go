package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// fakeChat answers like Sandbox Chat's messages API (after, limit,
// has_more, next_cursor) through a connection whose status the test sets.
type fakeChat struct {
	mu       sync.Mutex
	messages []string // ids, in posting order
	status   connection.Status
	calls    int
	// fail answers the next requests with these outcomes: "503", "429"
	// (Retry-After: 300), "dead" (the credential is refused for good).
	fail []string
}

func (f *fakeChat) post(n int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for range n {
		id := fmt.Sprintf("M%05d", len(f.messages)+1)
		f.messages = append(f.messages, id)
		ids = append(ids, id)
	}
	return ids
}

func (f *fakeChat) setStatus(s connection.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = s
}

func (f *fakeChat) failNext(kinds ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = append(f.fail, kinds...)
}

func (f *fakeChat) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeChat) StatusOf(ctx context.Context, id string) (connection.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, nil
}

func (f *fakeChat) Do(ctx context.Context, connID string, build func(ctx context.Context) (*http.Request, error)) (connection.Response, error) {
	req, err := build(ctx)
	if err != nil {
		return connection.Response{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.fail) > 0 {
		kind := f.fail[0]
		f.fail = f.fail[1:]
		switch kind {
		case "503":
			return connection.Response{Status: 503, Body: []byte(`{"error":"unavailable"}`)}, nil
		case "429":
			return connection.Response{Status: 429, Header: http.Header{"Retry-After": {"300"}}}, nil
		case "dead":
			f.status = connection.StatusError
			return connection.Response{Status: 401}, connection.ErrNeedsReauth
		}
	}
	if !strings.HasSuffix(req.URL.Path, "/api/channels/general/messages") {
		return connection.Response{Status: 404, Body: []byte(`{"error":"channel_not_found","message":"No such channel."}`)}, nil
	}
	q := req.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	var page []string
	more := false
	if q.Has("after") {
		start := 0
		if a := q.Get("after"); a != "" {
			start = slices.Index(f.messages, a) + 1
		}
		end := min(start+limit, len(f.messages))
		page, more = f.messages[start:end], end < len(f.messages)
	} else {
		page = f.messages[max(len(f.messages)-limit, 0):]
	}
	msgs := []map[string]string{}
	for _, id := range page {
		msgs = append(msgs, map[string]string{"id": id, "text": "text of " + id})
	}
	next := q.Get("after")
	if len(page) > 0 {
		next = page[len(page)-1]
	}
	body, _ := json.Marshal(map[string]any{"messages": msgs, "has_more": more, "next_cursor": next})
	return connection.Response{Status: 200, Body: body}, nil
}

type pollFixture struct {
	d       *db.DB
	chat    *fakeChat
	starter *fakeStarter
	clock   *clock
	wf      string
	poller  *Poller
}

func newPollFixture(t *testing.T, d *db.DB, includeRecent bool) *pollFixture {
	t.Helper()
	f := &pollFixture{d: d, chat: &fakeChat{status: connection.StatusActive}, starter: &fakeStarter{},
		clock: &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}, wf: newWorkflow(t, d)}
	f.poller = f.newPoller("p1")
	if err := f.poller.Sync(context.Background(), PollTrigger{WorkflowID: f.wf, NodeID: "start", App: catalog.SandboxKey, Trigger: "new-message",
		ConnectionID: "conn-1", Inputs: map[string]string{"channel": "general"}, IncludeRecent: includeRecent}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *pollFixture) newPoller(owner string) *Poller {
	cat, _ := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: "http://sandbox.test/sandbox"})
	return NewPoller(f.d, f.starter, f.chat, f.chat, cat, PollerOptions{Owner: owner, Now: f.clock.Now, RecentItems: 3})
}

// tick polls at the clock's time, then moves the clock a minute on.
func (f *pollFixture) tick(t *testing.T) int {
	t.Helper()
	n, err := f.poller.Tick(context.Background(), f.clock.Now())
	if err != nil {
		t.Fatalf("tick: %v", err)
	}
	f.clock.Set(f.clock.Now().Add(time.Minute))
	return n
}

// started lists the item ids of the runs started, in order, from their
// dedup keys; it fails the test if an item started twice.
func (f *pollFixture) started(t *testing.T) []string {
	t.Helper()
	var ids []string
	seen := map[string]bool{}
	for _, c := range f.starter.Calls() {
		if c.Source != SourcePoll || c.WorkflowID != f.wf {
			t.Fatalf("run started with source %q for %q", c.Source, c.WorkflowID)
		}
		id := c.DedupKey[strings.LastIndex(c.DedupKey, ":")+1:]
		if seen[id] {
			t.Fatalf("item %s started twice", id)
		}
		seen[id] = true
		var m struct{ ID, Text string }
		if err := json.Unmarshal(c.Payload, &m); err != nil || m.ID != id || m.Text != "text of "+id {
			t.Fatalf("payload of %s: %s", id, c.Payload)
		}
		ids = append(ids, id)
	}
	return ids
}

func (f *pollFixture) state(t *testing.T) PollState {
	t.Helper()
	s, ok, err := f.poller.State(context.Background(), f.wf)
	if err != nil || !ok {
		t.Fatalf("state: %v %v", ok, err)
	}
	return s
}

func join(ids []string) string { return strings.Join(ids, ",") }

func TestPollFirstPollRecordsCursorThenStartsNewItemsInOrder(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newPollFixture(t, d, false)
		f.chat.post(3)
		if n := f.tick(t); n != 0 || len(f.starter.Calls()) != 0 {
			t.Fatalf("first poll started %d runs, want 0 (it records the cursor)", n)
		}
		if s := f.state(t); !s.Primed || s.LastPollAt == nil || s.Held {
			t.Fatalf("after the first poll: %+v", s)
		}
		want := f.chat.post(250) // more than two pages
		if n := f.tick(t); n != 250 {
			t.Fatalf("second poll started %d runs, want 250", n)
		}
		if got := f.started(t); join(got) != join(want) {
			t.Fatalf("runs in order %v…, want %v…", got[:3], want[:3])
		}
		// Nothing new: nothing starts; not due before the interval.
		calls := f.chat.Calls()
		if n, err := f.poller.Tick(context.Background(), f.clock.Now().Add(-30*time.Second)); err != nil || n != 0 || f.chat.Calls() != calls {
			t.Fatalf("poll before the interval: %d runs, %d calls, %v", n, f.chat.Calls()-calls, err)
		}
		if n := f.tick(t); n != 0 {
			t.Fatalf("poll with nothing new started %d", n)
		}
		if s := f.state(t); s.RunsStarted != 250 {
			t.Fatalf("runs started: %d", s.RunsStarted)
		}
	})
}

func TestPollIncludeRecentItems(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newPollFixture(t, d, true)
		all := f.chat.post(5)
		if n := f.tick(t); n != 3 {
			t.Fatalf("first poll with recent items started %d, want 3", n)
		}
		more := f.chat.post(2)
		f.tick(t)
		if got, want := join(f.started(t)), join(append(all[2:], more...)); got != want {
			t.Fatalf("runs %s, want %s", got, want)
		}
	})
}

// A poll that read items again (a process died after their runs were
// recorded but before the cursor was saved, or two processes overlapped)
// starts no second run, and two pollers share the work without repeats.
func TestPollRedeliveryAndOverlapStartNothingTwice(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newPollFixture(t, d, false)
		f.tick(t)
		first := f.chat.post(4)
		f.tick(t)
		// Back to before the four: they are read again.
		if _, err := d.Write().ExecContext(context.Background(), `UPDATE poll_triggers SET cursor_value = '' WHERE workflow_id = $1`, f.wf); err != nil {
			t.Fatal(err)
		}
		f.tick(t)
		calls := f.starter.Calls()
		if len(calls) != 8 {
			t.Fatalf("start calls: %d, want 8 (4, then the same 4 again)", len(calls))
		}
		for i := range 4 {
			if calls[i].DedupKey != calls[i+4].DedupKey {
				t.Fatalf("re-read item %s keyed %q, first %q", first[i], calls[i+4].DedupKey, calls[i].DedupKey)
			}
		}
		runs := map[string]bool{}
		for _, c := range calls {
			id, _ := f.starter.StartRun(context.Background(), c.WorkflowID, c.Payload, c.Source, c.DedupKey)
			runs[id] = true
		}
		if len(runs) != 4 {
			t.Fatalf("distinct runs: %d, want 4", len(runs))
		}

		// Two pollers tick at once, many times: each item is started once.
		f2 := &pollFixture{d: d, chat: f.chat, starter: &fakeStarter{}, clock: f.clock, wf: f.wf}
		f.starter = f2.starter
		a, b := f2.newPoller("a"), f2.newPoller("b")
		want := f.chat.post(30)
		var wg sync.WaitGroup
		for _, p := range []*Poller{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					if _, err := p.Tick(context.Background(), f.clock.Now()); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		if got := join(f2.started(t)); got != join(want) {
			t.Fatalf("two pollers started %s, want %s", got, join(want))
		}
	})
}

// A broken connection holds the trigger: no call to the app however often
// the poller ticks; after the reconnect every item of the gap starts one
// run, in order.
func TestPollHeldWhileBrokenCatchesUpAfterReconnect(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newPollFixture(t, d, false)
		f.tick(t)
		before := f.chat.post(2)
		// The app refuses the credential for good mid-life.
		f.chat.failNext("dead")
		f.tick(t)
		if s := f.state(t); !s.Held {
			t.Fatalf("after a dead credential: %+v, want held", s)
		}
		gap := f.chat.post(20)
		calls := f.chat.Calls()
		for range 10 {
			f.tick(t)
		}
		if f.chat.Calls() != calls || len(f.starter.Calls()) != 0 {
			t.Fatalf("held trigger called the app %d times, started %d runs", f.chat.Calls()-calls, len(f.starter.Calls()))
		}
		f.chat.setStatus(connection.StatusActive)
		if n := f.tick(t); n != 22 {
			t.Fatalf("after reconnect: %d runs, want 22", n)
		}
		if got := join(f.started(t)); got != join(append(before, gap...)) {
			t.Fatalf("caught up %s, want %s", got, join(append(before, gap...)))
		}
		if s := f.state(t); s.Held || s.LastError != "" {
			t.Fatalf("after catching up: %+v", s)
		}

		// A connection already broken when the poll comes is not called.
		f.chat.setStatus(connection.StatusRevoked)
		calls = f.chat.Calls()
		f.tick(t)
		if s := f.state(t); !s.Held || f.chat.Calls() != calls || !strings.Contains(s.LastError, "revoked") {
			t.Fatalf("revoked connection: %+v, %d calls", s, f.chat.Calls()-calls)
		}
	})
}

// Transient failures back off and keep the cursor; nothing is skipped.
func TestPollTransientFailuresKeepTheCursor(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newPollFixture(t, d, false)
		f.tick(t)
		want := f.chat.post(3)
		f.chat.failNext("503")
		if n := f.tick(t); n != 0 {
			t.Fatalf("503: %d runs", n)
		}
		s := f.state(t)
		if s.Failures != 1 || !strings.Contains(s.LastError, "HTTP 503") || s.Held {
			t.Fatalf("after a 503: %+v", s)
		}
		f.chat.failNext("429")
		f.tick(t)
		s = f.state(t)
		if s.Failures != 2 || s.NextPollAt.Before(s.LastPollAt.Add(300*time.Second)) {
			t.Fatalf("after a 429 with Retry-After 300: next poll %v, last %v", s.NextPollAt, s.LastPollAt)
		}
		// Before Retry-After: not polled.
		if n := f.tick(t); n != 0 || f.state(t).Failures != 2 {
			t.Fatal("polled before Retry-After passed")
		}
		f.clock.Set(s.NextPollAt)
		// The engine fails to record the second run: the first stays, the
		// cursor stops after it.
		f.starter = &fakeStarter{}
		f.poller = NewPoller(d, &failAfter{s: f.starter, n: 1}, f.chat, f.chat, f.poller.apps, PollerOptions{Owner: "p1", Now: f.clock.Now})
		if n, err := f.poller.Tick(context.Background(), f.clock.Now()); n != 1 || err != nil {
			t.Fatalf("poll with a failing engine: %d runs, %v", n, err)
		}
		f.poller = NewPoller(d, f.starter, f.chat, f.chat, f.poller.apps, PollerOptions{Owner: "p1", Now: f.clock.Now})
		f.clock.Set(f.state(t).NextPollAt)
		f.tick(t)
		got := f.started(t)
		// The failed attempt was recorded by the fake too: drop it.
		if join(slices.Compact(got)) != join(want) {
			t.Fatalf("runs %v, want %v", got, want)
		}
		if s := f.state(t); s.Failures != 0 || s.LastError != "" {
			t.Fatalf("after recovering: %+v", s)
		}
	})
}

// failAfter passes n starts through, then fails.
type failAfter struct {
	s *fakeStarter
	n int
}

func (f *failAfter) StartRun(ctx context.Context, workflowID string, payload json.RawMessage, source, dedupKey string) (string, error) {
	if f.n <= 0 {
		return "", errors.New("database is down")
	}
	f.n--
	return f.s.StartRun(ctx, workflowID, payload, source, dedupKey)
}

func TestPollSyncKeepsOrResetsTheCursor(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		f := newPollFixture(t, d, false)
		f.tick(t)
		same := PollTrigger{WorkflowID: f.wf, NodeID: "start", App: catalog.SandboxKey, Trigger: "new-message",
			ConnectionID: "conn-1", Inputs: map[string]string{"channel": "general"}, Interval: 2 * time.Minute}
		if err := f.poller.Sync(ctx, same); err != nil {
			t.Fatal(err)
		}
		if !f.state(t).Primed {
			t.Fatal("re-syncing the same trigger forgot its cursor")
		}
		other := same
		other.ConnectionID = "conn-2"
		if err := f.poller.Sync(ctx, other); err != nil {
			t.Fatal(err)
		}
		if s := f.state(t); s.Primed || s.ConnectionID != "conn-2" {
			t.Fatalf("another connection: %+v, want a fresh start", s)
		}
		if err := f.poller.Sync(ctx, PollTrigger{WorkflowID: f.wf, App: "stripe", Trigger: "new-charge"}); err == nil {
			t.Fatal("syncing a trigger TaskJuice cannot poll: got nil")
		}
		if err := f.poller.Remove(ctx, f.wf); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := f.poller.State(ctx, f.wf); ok || err != nil {
			t.Fatalf("after remove: %v %v", ok, err)
		}
	})
}

func TestPollCursorAtMovesOnlyWithTheCursor(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newPollFixture(t, d, false)
		if s := f.state(t); s.CursorAt != nil {
			t.Fatalf("cursor time before the first poll: %v", s.CursorAt)
		}
		primedAt := f.clock.Now()
		f.tick(t)
		if s := f.state(t); s.CursorAt == nil || !s.CursorAt.Equal(primedAt) {
			t.Fatalf("cursor time after priming: %v, want %v", s.CursorAt, primedAt)
		}
		f.tick(t) // nothing new
		if s := f.state(t); !s.CursorAt.Equal(primedAt) {
			t.Fatalf("cursor time moved without items: %v", s.CursorAt)
		}
		f.chat.post(2)
		movedAt := f.clock.Now()
		f.tick(t)
		if s := f.state(t); !s.CursorAt.Equal(movedAt) {
			t.Fatalf("cursor time after new items: %v, want %v", s.CursorAt, movedAt)
		}
		// A re-publish with other settings starts afresh.
		if err := f.poller.Sync(context.Background(), PollTrigger{WorkflowID: f.wf, NodeID: "start", App: catalog.SandboxKey, Trigger: "new-message",
			ConnectionID: "conn-1", Inputs: map[string]string{"channel": "random"}}); err != nil {
			t.Fatal(err)
		}
		if s := f.state(t); s.CursorAt != nil {
			t.Fatalf("cursor time after new settings: %v", s.CursorAt)
		}
	})
}

func TestItemOfDedupKey(t *testing.T) {
	for key, want := range map[string]string{"poll:sandbox-chat:new-message:M1": "M1", "poll:a:b:x:y": "x:y", "odd": "odd"} {
		if got := itemOf(key); got != want {
			t.Errorf("itemOf(%q) = %q, want %q", key, got, want)
		}
	}
}
