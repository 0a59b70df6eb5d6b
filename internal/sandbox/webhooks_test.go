package sandbox_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/sandbox"
)

// receiver is a webhook endpoint that records what it was sent and answers
// with the status its script says (200 when the script is empty).
type receiver struct {
	mu       sync.Mutex
	got      []received
	statuses []int
	srv      *httptest.Server
}

type received struct {
	body []byte
	sig  string
	id   string
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	rc := &receiver{statuses: statuses}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		status := http.StatusOK
		if len(rc.statuses) > 0 {
			status, rc.statuses = rc.statuses[0], rc.statuses[1:]
		}
		if status == http.StatusOK {
			rc.got = append(rc.got, received{body: b, sig: r.Header.Get(sandbox.SignatureHeader), id: r.Header.Get("Sandbox-Event-Id")})
		}
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) received() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWebhookDeliveries: a client subscribes a URL to a channel; every
// message posted there (through the API, by a person, or emitted by the
// admin) is delivered once, in order, signed with the subscription's
// secret; a delivery answered 500 is retried; a deleted subscription gets
// nothing more; another channel's messages are not delivered.
func TestWebhookDeliveries(t *testing.T) {
	f := setup(t, func(o *sandbox.Options) { o.DeliveryBackoff = 20 * time.Millisecond })
	tok := f.connect(t, f.cfg, "Acme Chat")
	rc := newReceiver(t, http.StatusInternalServerError)

	var created struct {
		Webhook struct{ ID, URL, Channel string }
		Secret  string
	}
	res := f.call(t, "POST", "/api/webhooks", tok.AccessToken, `{"url":"`+rc.srv.URL+`/hook","channel":"general"}`, nil, &created)
	if res.StatusCode != http.StatusCreated || !strings.HasPrefix(created.Secret, "whsec_") || created.Webhook.ID == "" {
		t.Fatalf("create webhook: %d %+v", res.StatusCode, created)
	}
	var list struct{ Webhooks []map[string]any }
	f.call(t, "GET", "/api/webhooks", tok.AccessToken, "", nil, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0]["secret"] != nil {
		t.Fatalf("list: %+v (the secret is shown only at creation)", list.Webhooks)
	}
	for _, bad := range []string{`{"url":"ftp://x"}`, `{"url":"/relative"}`, `nope`} {
		if r := f.call(t, "POST", "/api/webhooks", tok.AccessToken, bad, nil, nil); r.StatusCode != http.StatusBadRequest {
			t.Errorf("create with %s: %d, want 400", bad, r.StatusCode)
		}
	}
	if r := f.call(t, "POST", "/api/webhooks", tok.AccessToken, `{"url":"https://x.example","channel":"nope"}`, nil, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("create for an unknown channel: %d, want 404", r.StatusCode)
	}

	// One through the API, three emitted by the admin, one elsewhere.
	if r := f.call(t, "POST", "/api/channels/general/messages", tok.AccessToken, `{"text":"first"}`, nil, nil); r.StatusCode != http.StatusCreated {
		t.Fatalf("post: %d", r.StatusCode)
	}
	if r := f.call(t, "POST", "/admin/emit", adminToken, `{"account":"Acme Chat","channel":"general","text":"lead","count":3}`, nil, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("emit: %d", r.StatusCode)
	}
	if _, err := f.p.Post("Acme Chat", "random", "elsewhere"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "four deliveries", func() bool { return len(rc.received()) == 4 })

	var texts []string
	seen := map[string]bool{}
	for _, d := range rc.received() {
		var ev sandbox.Event
		if err := json.Unmarshal(d.body, &ev); err != nil || ev.Type != "message.created" || ev.ID != d.id || seen[ev.ID] {
			t.Fatalf("delivery: %s (event id header %q): %v", d.body, d.id, err)
		}
		seen[ev.ID] = true
		texts = append(texts, ev.Data.Message.Text)
		ts, v1, ok := strings.Cut(d.sig, ",v1=")
		ts = strings.TrimPrefix(ts, "t=")
		if _, err := strconv.ParseInt(ts, 10, 64); !ok || err != nil || v1 != sandbox.Sign(created.Secret, ts, d.body) {
			t.Fatalf("signature %q does not verify under the subscription's secret", d.sig)
		}
	}
	if got := strings.Join(texts, "|"); got != "first|lead 1|lead 2|lead 3" {
		t.Fatalf("delivered in order: %s", got)
	}
	st := f.p.Stats()
	if st.DeliveriesSent != 4 || st.DeliveriesFailed != 1 || st.DeliveriesPending != 0 {
		t.Fatalf("stats: sent %d, failed %d, pending %d; want 4, 1 (the 500), 0", st.DeliveriesSent, st.DeliveriesFailed, st.DeliveriesPending)
	}

	// Deliveries made to fail by the admin are retried, then arrive.
	if r := f.call(t, "POST", "/admin/deliveries/fail", adminToken, `{"count":2}`, nil, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("fail deliveries: %d", r.StatusCode)
	}
	if _, err := f.p.Post("Acme Chat", "general", "after faults"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delivery after two faults", func() bool { return len(rc.received()) == 5 })
	if st := f.p.Stats(); st.DeliveriesFailed != 3 {
		t.Fatalf("failed attempts: %d, want 3", st.DeliveriesFailed)
	}

	// Deleted: nothing more.
	if r := f.call(t, "DELETE", "/api/webhooks/"+created.Webhook.ID, tok.AccessToken, "", nil, nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", r.StatusCode)
	}
	if _, err := f.p.Post("Acme Chat", "general", "after delete"); err != nil {
		t.Fatal(err)
	}
	if st := f.p.Stats(); st.DeliveriesPending != 0 {
		t.Fatalf("a deleted subscription got a delivery queued")
	}
	if r := f.call(t, "DELETE", "/api/webhooks/"+created.Webhook.ID, tok.AccessToken, "", nil, nil); r.StatusCode != http.StatusNotFound {
		t.Fatalf("delete again: %d, want 404", r.StatusCode)
	}
}

// TestWebhooksOfAnotherClientAreHidden: a client sees and deletes only its
// own subscriptions.
func TestWebhooksOfAnotherClientAreHidden(t *testing.T) {
	f := setup(t, nil)
	tok := f.connect(t, f.cfg, "Acme Chat")
	other := f.connect(t, f.cfg, "Other Team")
	var created struct{ Webhook struct{ ID string } }
	f.call(t, "POST", "/api/webhooks", tok.AccessToken, `{"url":"https://hooks.example/a"}`, nil, &created)
	var list struct{ Webhooks []any }
	f.call(t, "GET", "/api/webhooks", other.AccessToken, "", nil, &list)
	if len(list.Webhooks) != 0 {
		t.Fatalf("another account sees %d webhooks", len(list.Webhooks))
	}
	if r := f.call(t, "DELETE", "/api/webhooks/"+created.Webhook.ID, other.AccessToken, "", nil, nil); r.StatusCode != http.StatusNotFound {
		t.Fatalf("another account deletes: %d, want 404", r.StatusCode)
	}
}
