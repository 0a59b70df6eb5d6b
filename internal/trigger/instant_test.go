package trigger

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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

// fakeHooks answers like Sandbox Chat's webhooks API (POST /api/webhooks,
// DELETE /api/webhooks/{id}) through a connection.
type fakeHooks struct {
	mu      sync.Mutex
	subs    map[string]string // id -> url
	secrets map[string]string // id -> secret
	deleted []string
	posted  []map[string]string
	n       int
	// fail answers the next calls: "503" or "dead".
	fail []string
}

func (f *fakeHooks) failNext(kinds ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = append(f.fail, kinds...)
}

func (f *fakeHooks) live() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for k, v := range f.subs {
		out[k] = v
	}
	return out
}

func (f *fakeHooks) Do(ctx context.Context, connID string, build func(ctx context.Context) (*http.Request, error)) (connection.Response, error) {
	req, err := build(ctx)
	if err != nil {
		return connection.Response{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.fail) > 0 {
		kind := f.fail[0]
		f.fail = f.fail[1:]
		if kind == "dead" {
			return connection.Response{Status: 401}, connection.ErrNeedsReauth
		}
		return connection.Response{Status: 503, Body: []byte(`{"error":"unavailable"}`)}, nil
	}
	if f.subs == nil {
		f.subs, f.secrets = map[string]string{}, map[string]string{}
	}
	switch {
	case req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/api/webhooks"):
		var body map[string]string
		b, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			return connection.Response{Status: 400}, nil
		}
		f.n++
		id := fmt.Sprintf("WH%d", f.n)
		f.subs[id] = body["url"]
		f.secrets[id] = fmt.Sprintf("whsec_test_%d", f.n)
		f.posted = append(f.posted, body)
		out, _ := json.Marshal(map[string]any{"webhook": map[string]string{"id": id, "url": body["url"]}, "secret": f.secrets[id]})
		return connection.Response{Status: 201, Body: out}, nil
	case req.Method == http.MethodDelete && strings.Contains(req.URL.Path, "/api/webhooks/"):
		id := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
		if _, ok := f.subs[id]; !ok {
			return connection.Response{Status: 404}, nil
		}
		delete(f.subs, id)
		f.deleted = append(f.deleted, id)
		return connection.Response{Status: 204}, nil
	}
	return connection.Response{Status: 404}, nil
}

type instantFixture struct {
	d        *db.DB
	hooks    *fakeHooks
	starter  *fakeStarter
	clock    *clock
	wf       string
	listener *Listener
	srv      *httptest.Server
	logs     *logBuffer
}

func newInstantFixture(t *testing.T, d *db.DB) *instantFixture {
	t.Helper()
	f := &instantFixture{d: d, hooks: &fakeHooks{}, starter: &fakeStarter{}, logs: &logBuffer{},
		clock: &clock{t: time.Now().UTC().Truncate(time.Second)}, wf: newWorkflow(t, d)}
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: "http://sandbox.test/sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	f.listener = NewListener(d, testKeyring(t), f.starter, f.hooks, cat, ListenerOptions{BaseURL: "https://tj.example", Now: f.clock.Now, Log: f.logs.logger()})
	f.srv = httptest.NewServer(f.listener)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *instantFixture) sync(t *testing.T, channel string) {
	t.Helper()
	if err := f.listener.Sync(context.Background(), InstantTrigger{WorkflowID: f.wf, NodeID: "start", App: catalog.SandboxKey,
		Trigger: "new-message-instant", ConnectionID: "conn-1", Inputs: map[string]string{"channel": channel}}); err != nil {
		t.Fatal(err)
	}
}

func (f *instantFixture) state(t *testing.T) InstantState {
	t.Helper()
	s, ok, err := f.listener.State(context.Background(), f.wf)
	if err != nil || !ok {
		t.Fatalf("state: %v %v", ok, err)
	}
	return s
}

// sub is the one live subscription at the fake app: its id, address and
// secret.
func (f *instantFixture) sub(t *testing.T) (id, addr, secret string) {
	t.Helper()
	live := f.hooks.live()
	if len(live) != 1 {
		t.Fatalf("got %d subscriptions at the app, want 1: %v", len(live), live)
	}
	for id, u := range live {
		f.hooks.mu.Lock()
		defer f.hooks.mu.Unlock()
		return id, u, f.hooks.secrets[id]
	}
	return "", "", ""
}

func chatEventBody(id, channel, msgID string) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "type": "message.created", "created": 1,
		"data": map[string]any{"channel": map[string]string{"id": "C-" + channel, "name": channel},
			"message": map[string]any{"id": msgID, "channel": "C-" + channel, "text": "text of " + msgID, "app": "x", "ts": "2026-01-01T00:00:00Z"}}})
	return b
}

func signChat(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// deliver posts body to the address's path on the test server.
func (f *instantFixture) deliver(t *testing.T, addr, sig string, body []byte) (int, string) {
	t.Helper()
	path := strings.TrimPrefix(addr, "https://tj.example")
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("Sandbox-Signature", sig)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestInstantSubscribesVerifiesAndStartsOneRunPerEvent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newInstantFixture(t, d)
		f.sync(t, "general")
		_, addr, secret := f.sub(t)
		if !strings.HasPrefix(addr, "https://tj.example/webhooks/triggers/") {
			t.Fatalf("subscribed address %q, want one under https://tj.example/webhooks/triggers/", addr)
		}
		if got := f.hooks.posted[0]["channel"]; got != "general" {
			t.Fatalf("subscribed channel %q, want general", got)
		}
		st := f.state(t)
		if st.State != InstantSubscribed || st.Address != addr || st.SubscribedAt == nil {
			t.Fatalf("state %+v, want subscribed at %s", st, addr)
		}

		body := chatEventBody("evt_1", "general", "M1")
		now := f.clock.Now()
		for _, c := range []struct{ name, sig string }{
			{"missing", ""},
			{"forged", signChat("whsec_wrong", now, body)},
			{"old", signChat(secret, now.Add(-6*time.Minute), body)},
			{"future", signChat(secret, now.Add(6*time.Minute), body)},
			{"garbled", "t=abc,v1=zz"},
		} {
			if code, _ := f.deliver(t, addr, c.sig, body); code != http.StatusUnauthorized {
				t.Fatalf("%s signature: got %d, want 401", c.name, code)
			}
		}
		if n := len(f.starter.Calls()); n != 0 {
			t.Fatalf("refused deliveries started %d runs, want 0", n)
		}
		if f.listener.Refused() != 5 {
			t.Fatalf("refused counter %d, want 5", f.listener.Refused())
		}
		if strings.Contains(f.logs.String(), secret) {
			t.Fatal("a log line carries the signing secret")
		}

		for range 2 { // the delivery and its redelivery
			code, resp := f.deliver(t, addr, signChat(secret, now.Add(-4*time.Minute), body), body)
			if code != http.StatusOK {
				t.Fatalf("signed delivery: got %d %s, want 200", code, resp)
			}
		}
		calls := f.starter.Calls()
		if len(calls) != 2 || calls[0].DedupKey != "instant:sandbox-chat:new-message-instant:evt_1" || calls[1].DedupKey != calls[0].DedupKey ||
			calls[0].Source != SourceInstant || calls[0].WorkflowID != f.wf {
			t.Fatalf("runs started: %+v, want two calls with the one dedup key of evt_1", calls)
		}
		var m map[string]any
		if err := json.Unmarshal(calls[0].Payload, &m); err != nil || m["id"] != "M1" || m["text"] != "text of M1" || m["channel_name"] != "general" {
			t.Fatalf("payload %s", calls[0].Payload)
		}
		// Another channel's event starts nothing.
		other := chatEventBody("evt_2", "random", "M2")
		if code, _ := f.deliver(t, addr, signChat(secret, now, other), other); code != http.StatusOK || len(f.starter.Calls()) != 2 {
			t.Fatalf("another channel's event: %d, %d calls", code, len(f.starter.Calls()))
		}
		if st := f.state(t); st.EventsReceived != 3 || st.LastEventAt == nil {
			t.Fatalf("state after deliveries: %+v", st)
		}
		if code, _ := f.deliver(t, "https://tj.example/webhooks/triggers/nope", signChat(secret, now, body), body); code != http.StatusNotFound {
			t.Fatalf("unknown address: got %d, want 404", code)
		}
	})
}

func TestInstantRemoveUnsubscribesAndRetriesATombstone(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newInstantFixture(t, d)
		ctx := context.Background()
		f.sync(t, "general")
		id, addr, secret := f.sub(t)

		// The connection is broken: the webhook cannot be deleted yet.
		f.hooks.failNext("dead")
		if err := f.listener.Remove(ctx, f.wf); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := f.listener.State(ctx, f.wf); ok {
			t.Fatal("a removed trigger still has a live state")
		}
		if len(f.hooks.live()) != 1 {
			t.Fatal("the webhook went although the app refused")
		}
		body := chatEventBody("evt_9", "general", "M9")
		if code, _ := f.deliver(t, addr, signChat(secret, f.clock.Now(), body), body); code != http.StatusGone {
			t.Fatalf("delivery to a removed trigger: got %d, want 410", code)
		}
		// Not due yet: nothing retried.
		if n, err := f.listener.Tick(ctx, f.clock.Now()); err != nil || n != 0 {
			t.Fatalf("tick before the backoff: %d %v", n, err)
		}
		f.hooks.failNext("503")
		f.clock.Set(f.clock.Now().Add(time.Minute))
		if n, err := f.listener.Tick(ctx, f.clock.Now()); err != nil || n != 1 {
			t.Fatalf("tick after the backoff: %d %v", n, err)
		}
		if len(f.hooks.live()) != 1 {
			t.Fatal("the webhook went although the app answered 503")
		}
		f.clock.Set(f.clock.Now().Add(time.Hour))
		if n, err := f.listener.Tick(ctx, f.clock.Now()); err != nil || n != 1 {
			t.Fatalf("tick after the second backoff: %d %v", n, err)
		}
		if len(f.hooks.live()) != 0 || len(f.hooks.deleted) != 1 || f.hooks.deleted[0] != id {
			t.Fatalf("after the retry: live %v, deleted %v; want %s deleted", f.hooks.live(), f.hooks.deleted, id)
		}
		var rows int
		if err := d.Read().QueryRowContext(ctx, `SELECT count(*) FROM instant_triggers`).Scan(&rows); err != nil || rows != 0 {
			t.Fatalf("rows left: %d %v", rows, err)
		}
		if code, _ := f.deliver(t, addr, signChat(secret, f.clock.Now(), body), body); code != http.StatusNotFound {
			t.Fatalf("delivery after the unsubscribe: got %d, want 404", code)
		}
		if len(f.starter.Calls()) != 0 {
			t.Fatal("a removed trigger started a run")
		}
	})
}

func TestInstantSyncKeepsOrReplacesTheSubscription(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newInstantFixture(t, d)
		ctx := context.Background()
		// The first subscribe fails: the trigger shows it, Tick retries.
		f.hooks.failNext("503")
		f.sync(t, "general")
		if st := f.state(t); st.State != InstantFailed || !strings.Contains(st.LastError, "503") {
			t.Fatalf("after a failed subscribe: %+v", st)
		}
		f.clock.Set(f.clock.Now().Add(time.Minute))
		if _, err := f.listener.Tick(ctx, f.clock.Now()); err != nil {
			t.Fatal(err)
		}
		id1, addr1, _ := f.sub(t)
		if st := f.state(t); st.State != InstantSubscribed || st.LastError != "" {
			t.Fatalf("after the retry: %+v", st)
		}
		f.sync(t, "general") // the same settings: kept
		if id, addr, _ := f.sub(t); id != id1 || addr != addr1 {
			t.Fatalf("re-sync of the same trigger replaced its subscription: %s %s", id, addr)
		}
		f.sync(t, "random") // changed: the old one goes, a new one comes
		id2, addr2, _ := f.sub(t)
		if id2 == id1 || addr2 == addr1 || len(f.hooks.deleted) != 1 || f.hooks.deleted[0] != id1 {
			t.Fatalf("changed settings: new %s at %s, deleted %v", id2, addr2, f.hooks.deleted)
		}
		if got := f.hooks.posted[len(f.hooks.posted)-1]["channel"]; got != "random" {
			t.Fatalf("subscribed channel %q, want random", got)
		}
	})
}

// sharedFake is an app that sends every subscriber's events to one
// app-wide address, signed with an app-wide secret (as Slack's Events API
// does): "X-Fake-Signature: <hex HMAC-SHA256 of the body>", routed by
// "team", with a "challenge" handshake.
type sharedFake struct{}

func (sharedFake) subscribe(ctx context.Context, c pollCall, a SubscribeArgs) (Subscription, error) {
	return Subscription{Route: "T1"}, nil
}

func (sharedFake) unsubscribe(ctx context.Context, c pollCall, s Subscription) error { return nil }

func (sharedFake) verify(d Delivery, secret string) error {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(d.Body)
	if !hmac.Equal([]byte(d.Header.Get("X-Fake-Signature")), []byte(hex.EncodeToString(mac.Sum(nil)))) {
		return fmt.Errorf("bad X-Fake-Signature")
	}
	return nil
}

type sharedFakeEvent struct {
	Team, ID, Challenge string
}

func (sharedFake) route(d Delivery) (string, error) {
	var ev sharedFakeEvent
	if err := json.Unmarshal(d.Body, &ev); err != nil {
		return "", err
	}
	return ev.Team, nil
}

func (sharedFake) parse(d Delivery, inputs map[string]string) ([]Item, *Reply, error) {
	var ev sharedFakeEvent
	if err := json.Unmarshal(d.Body, &ev); err != nil {
		return nil, nil, err
	}
	if ev.Challenge != "" {
		return nil, &Reply{Status: 200, ContentType: "text/plain", Body: []byte(ev.Challenge)}, nil
	}
	return []Item{{ID: ev.ID, Payload: d.Body}}, nil, nil
}

func TestInstantAppWideAddressRoutesBySubscription(t *testing.T) {
	instantSources[[2]string{catalog.SandboxKey, "shared-test"}] = sharedFake{}
	t.Cleanup(func() { delete(instantSources, [2]string{catalog.SandboxKey, "shared-test"}) })
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newInstantFixture(t, d)
		f.listener.o.SharedSecrets = func(app string) string {
			if app == catalog.SandboxKey {
				return "app-wide-secret"
			}
			return ""
		}
		if err := f.listener.Sync(context.Background(), InstantTrigger{WorkflowID: f.wf, NodeID: "start", App: catalog.SandboxKey,
			Trigger: "shared-test", ConnectionID: "conn-1", Inputs: map[string]string{}}); err != nil {
			t.Fatal(err)
		}
		st := f.state(t)
		if st.State != InstantSubscribed || st.Address != "https://tj.example/webhooks/apps/sandbox-chat" {
			t.Fatalf("state %+v, want subscribed at the app-wide address", st)
		}
		send := func(path string, ev sharedFakeEvent, secret string) (int, string) {
			body, _ := json.Marshal(ev)
			mac := hmac.New(sha256.New, []byte(secret))
			mac.Write(body)
			req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, bytes.NewReader(body))
			req.Header.Set("X-Fake-Signature", hex.EncodeToString(mac.Sum(nil)))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(b)
		}
		if code, _ := send("/webhooks/apps/sandbox-chat", sharedFakeEvent{Team: "T1", ID: "E1"}, "wrong"); code != http.StatusUnauthorized {
			t.Fatalf("forged app-wide delivery: got %d, want 401", code)
		}
		if code, body := send("/webhooks/apps/sandbox-chat", sharedFakeEvent{Challenge: "abc123"}, "app-wide-secret"); code != 200 || body != "abc123" {
			t.Fatalf("handshake: got %d %q, want 200 abc123", code, body)
		}
		if code, _ := send("/webhooks/apps/sandbox-chat", sharedFakeEvent{Team: "T2", ID: "E2"}, "app-wide-secret"); code != 200 || len(f.starter.Calls()) != 0 {
			t.Fatalf("another team's event: got %d and %d runs, want 200 and none", code, len(f.starter.Calls()))
		}
		if code, _ := send("/webhooks/apps/sandbox-chat", sharedFakeEvent{Team: "T1", ID: "E1"}, "app-wide-secret"); code != 200 {
			t.Fatalf("routed event: got %d, want 200", code)
		}
		if calls := f.starter.Calls(); len(calls) != 1 || calls[0].DedupKey != "instant:sandbox-chat:shared-test:E1" || calls[0].WorkflowID != f.wf {
			t.Fatalf("runs: %+v, want one for E1", calls)
		}
		if code, _ := send("/webhooks/apps/inbox", sharedFakeEvent{Team: "T1", ID: "E3"}, "app-wide-secret"); code != http.StatusNotFound {
			t.Fatalf("an app without an app-wide address: got %d, want 404", code)
		}
	})
}

func TestInstantDeliveryRefusesBadRequests(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := newInstantFixture(t, d)
		f.listener.o.MaxBody = 1024
		f.sync(t, "general")
		_, addr, secret := f.sub(t)
		path := strings.TrimPrefix(addr, "https://tj.example")
		res, err := http.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != http.MethodPost {
			t.Fatalf("GET: got %d Allow %q, want 405 Allow POST", res.StatusCode, res.Header.Get("Allow"))
		}
		big := bytes.Repeat([]byte("x"), 2048)
		if code, _ := f.deliver(t, addr, signChat(secret, f.clock.Now(), big), big); code != http.StatusRequestEntityTooLarge {
			t.Fatalf("large body: got %d, want 413", code)
		}
		junk := []byte(`{"id":`)
		if code, _ := f.deliver(t, addr, signChat(secret, f.clock.Now(), junk), junk); code != http.StatusBadRequest {
			t.Fatalf("signed but not an event: got %d, want 400", code)
		}
		if len(f.starter.Calls()) != 0 {
			t.Fatal("a bad request started a run")
		}
	})
}
