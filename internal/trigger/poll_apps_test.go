package trigger

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
)

// fakeApp answers an app's API with a handler (speaking the app's
// documented shapes) through a connection whose status the test sets; fail
// makes the next requests answer "503", "429" (the app's own 429 body,
// Retry-After: 300) or "dead" (the credential refused for good).
type fakeApp struct {
	mu      sync.Mutex
	status  connection.Status
	fail    []string
	calls   int
	handler http.Handler
	// body429 is the app's own answer to too many requests.
	body429 string
	// fields are the connection's non-secret fields.
	fields map[string]string
}

func (f *fakeApp) FieldsOf(ctx context.Context, id string) (map[string]string, error) {
	return f.fields, nil
}

func (f *fakeApp) StatusOf(ctx context.Context, id string) (connection.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, nil
}

func (f *fakeApp) setStatus(s connection.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = s
}

func (f *fakeApp) failNext(kinds ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = append(f.fail, kinds...)
}

func (f *fakeApp) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeApp) Do(ctx context.Context, connID string, build func(ctx context.Context) (*http.Request, error)) (connection.Response, error) {
	req, err := build(ctx)
	if err != nil {
		return connection.Response{}, err
	}
	f.mu.Lock()
	f.calls++
	var kind string
	if len(f.fail) > 0 {
		kind, f.fail = f.fail[0], f.fail[1:]
	}
	switch kind {
	case "503":
		f.mu.Unlock()
		return connection.Response{Status: 503, Body: []byte(`{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}`)}, nil
	case "429":
		f.mu.Unlock()
		return connection.Response{Status: 429, Header: http.Header{"Retry-After": {"300"}}, Body: []byte(f.body429)}, nil
	case "dead":
		f.status = connection.StatusError
		f.mu.Unlock()
		return connection.Response{Status: 401}, connection.ErrNeedsReauth
	}
	f.mu.Unlock()
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	res := rec.Result()
	return connection.Response{Status: res.StatusCode, Header: res.Header, Body: rec.Body.Bytes()}, nil
}

// appFixture drives one app trigger through the real Poller.
type appFixture struct {
	d       *db.DB
	app     *fakeApp
	starter *fakeStarter
	clock   *clock
	wf      string
	poller  *Poller
}

func newAppFixture(t *testing.T, d *db.DB, app *fakeApp, appKey, trig string, inputs map[string]string, includeRecent bool) *appFixture {
	t.Helper()
	if app.status == "" {
		app.status = connection.StatusActive
	}
	f := &appFixture{d: d, app: app, starter: &fakeStarter{},
		clock: &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}, wf: newWorkflow(t, d)}
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: "http://sandbox.test/sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	f.poller = NewPoller(d, f.starter, app, app, cat, PollerOptions{Owner: "p1", Now: f.clock.Now, RecentItems: 3})
	if err := f.poller.Sync(context.Background(), PollTrigger{WorkflowID: f.wf, NodeID: "start", App: appKey, Trigger: trig,
		ConnectionID: "conn-1", Inputs: inputs, IncludeRecent: includeRecent}); err != nil {
		t.Fatal(err)
	}
	return f
}

// tick polls at the clock's time, then moves the clock past any back-off.
func (f *appFixture) tick(t *testing.T) int {
	t.Helper()
	n, err := f.poller.Tick(context.Background(), f.clock.Now())
	if err != nil {
		t.Fatalf("tick: %v", err)
	}
	f.clock.Set(f.clock.Now().Add(time.Minute))
	return n
}

func (f *appFixture) state(t *testing.T) PollState {
	t.Helper()
	s, ok, err := f.poller.State(context.Background(), f.wf)
	if err != nil || !ok {
		t.Fatalf("state: %v %v", ok, err)
	}
	return s
}

func (f *appFixture) cursor(t *testing.T) string {
	t.Helper()
	var c string
	if err := f.d.Read().QueryRowContext(context.Background(), `SELECT cursor_value FROM poll_triggers WHERE workflow_id = $1`, f.wf).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// started lists the item ids of the runs started, in order; a repeated id
// fails the test unless repeats are allowed (the engine starts it once).
func (f *appFixture) started(t *testing.T, allowRepeats bool) ([]string, []json.RawMessage) {
	t.Helper()
	var ids []string
	var payloads []json.RawMessage
	seen := map[string]bool{}
	for _, c := range f.starter.Calls() {
		if c.Source != SourcePoll || c.WorkflowID != f.wf {
			t.Fatalf("run started with source %q for %q", c.Source, c.WorkflowID)
		}
		id := strings.TrimPrefix(c.DedupKey, "poll:")
		if seen[id] {
			if allowRepeats {
				continue
			}
			t.Fatalf("item %s started twice", id)
		}
		seen[id] = true
		ids = append(ids, id)
		payloads = append(payloads, c.Payload)
	}
	return ids, payloads
}

// checkTransientAndHeld runs the failure paths every source shares: a 503
// and a 429 (Retry-After honoured) keep the cursor; a dead credential
// holds the trigger without calling the app, and the reconnect catches up.
// add makes n new items at the app and returns their run keys.
func checkTransientAndHeld(t *testing.T, f *appFixture, add func(n int) []string) {
	t.Helper()
	want := add(2)
	cur := f.cursor(t)
	f.app.failNext("503")
	if n := f.tick(t); n != 0 {
		t.Fatalf("503: %d runs", n)
	}
	if s := f.state(t); s.Failures != 1 || !strings.Contains(s.LastError, "HTTP 503") || s.Held || f.cursor(t) != cur {
		t.Fatalf("after a 503: %+v, cursor %q want %q", s, f.cursor(t), cur)
	}
	f.clock.Set(f.state(t).NextPollAt)
	f.app.failNext("429")
	f.tick(t)
	s := f.state(t)
	if s.Failures != 2 || !strings.Contains(s.LastError, "HTTP 429") || s.NextPollAt.Before(s.LastPollAt.Add(300*time.Second)) || f.cursor(t) != cur {
		t.Fatalf("after a 429 with Retry-After 300: %+v, cursor %q", s, f.cursor(t))
	}
	f.clock.Set(s.NextPollAt)
	f.app.failNext("dead")
	f.tick(t)
	if s := f.state(t); !s.Held || f.cursor(t) != cur {
		t.Fatalf("after a dead credential: %+v, want held", s)
	}
	gap := add(3)
	calls := f.app.Calls()
	for range 5 {
		f.tick(t)
	}
	if f.app.Calls() != calls || len(f.starter.Calls()) != 0 {
		t.Fatalf("held trigger called the app %d times, started %d runs", f.app.Calls()-calls, len(f.starter.Calls()))
	}
	f.app.setStatus(connection.StatusActive)
	f.clock.Set(f.state(t).NextPollAt)
	for range 3 {
		f.tick(t)
	}
	got, _ := f.started(t, false)
	if join(got) != join(append(want, gap...)) {
		t.Fatalf("caught up %v, want %v", got, append(want, gap...))
	}
	if s := f.state(t); s.Held || s.LastError != "" || s.Failures != 0 {
		t.Fatalf("after catching up: %+v", s)
	}
}
