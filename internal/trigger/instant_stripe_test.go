package trigger

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeStripe answers like Stripe's webhook endpoints API: POST
// /v1/webhook_endpoints (form-encoded) → 200 with the endpoint and its
// secret, DELETE /v1/webhook_endpoints/{id} → {"deleted":true}, or 404
// resource_missing once it is gone.
type fakeStripe struct {
	mu        sync.Mutex
	endpoints map[string]url.Values
}

func (f *fakeStripe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer sk_test_123" {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"message":"Invalid API Key provided: sk_test_***","type":"invalid_request_error"}}`)
		return
	}
	switch {
	case r.Method == "POST" && r.URL.Path == "/v1/webhook_endpoints":
		if r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		_ = r.ParseForm()
		if r.PostForm.Get("url") == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"code":"parameter_missing","message":"Missing required param: url.","param":"url","type":"invalid_request_error"}}`)
			return
		}
		id := fmt.Sprintf("we_1Mr5jULkdIwHu7ix1ibLTM0x%d", len(f.endpoints))
		f.endpoints[id] = r.PostForm
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": id, "object": "webhook_endpoint", "api_version": nil, "application": nil, "created": 1680122196,
			"description": nil, "enabled_events": r.PostForm["enabled_events[]"], "livemode": false, "metadata": map[string]any{},
			"secret": "whsec_wRNftLajMZNeslQOP6vEPm4iVx5NlZ6z", "status": "enabled", "url": r.PostForm.Get("url"),
		})
	case r.Method == "DELETE" && strings.HasPrefix(r.URL.Path, "/v1/webhook_endpoints/"):
		id := strings.TrimPrefix(r.URL.Path, "/v1/webhook_endpoints/")
		if _, ok := f.endpoints[id]; !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"code":"resource_missing","message":"No such webhook endpoint: '`+id+`'","param":"id","type":"invalid_request_error"}}`)
			return
		}
		delete(f.endpoints, id)
		_, _ = io.WriteString(w, `{"id":"`+id+`","object":"webhook_endpoint","deleted":true}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"message":"Unrecognized request URL","type":"invalid_request_error"}}`)
	}
}

func TestStripeSubscribeAndUnsubscribe(t *testing.T) {
	st := &fakeStripe{endpoints: map[string]url.Values{}}
	srv := httptest.NewServer(st)
	defer srv.Close()
	c := pollCall{api: bearerAPI{"sk_test_123"}, app: appAt(t, "stripe", srv), conn: "conn-1"}
	ctx := context.Background()
	for trigger, event := range map[string]string{"payment-succeeded": "payment_intent.succeeded", "new-customer": "customer.created"} {
		src := source(t, "stripe", trigger)
		sub, err := src.subscribe(ctx, c, SubscribeArgs{DeliveryURL: "https://tj.example/webhooks/triggers/tok", Secret: "ignored"})
		if err != nil {
			t.Fatalf("%s subscribe: %v", trigger, err)
		}
		if !strings.HasPrefix(sub.ID, "we_") || sub.Secret != "whsec_wRNftLajMZNeslQOP6vEPm4iVx5NlZ6z" || sub.Route != "" || sub.Manual {
			t.Errorf("%s subscription: got %+v, want the endpoint id and Stripe's secret", trigger, sub)
		}
		form := st.endpoints[sub.ID]
		if form.Get("url") != "https://tj.example/webhooks/triggers/tok" || len(form["enabled_events[]"]) != 1 || form["enabled_events[]"][0] != event {
			t.Errorf("%s form sent: got %v", trigger, form)
		}
		if err := src.unsubscribe(ctx, c, sub); err != nil {
			t.Errorf("%s unsubscribe: %v", trigger, err)
		}
		if _, ok := st.endpoints[sub.ID]; ok {
			t.Errorf("%s: endpoint still there after unsubscribe", trigger)
		}
		if err := src.unsubscribe(ctx, c, sub); err != nil {
			t.Errorf("%s unsubscribe of an endpoint already gone: %v", trigger, err)
		}
	}
	src := source(t, "stripe", "new-customer")
	if err := src.unsubscribe(ctx, c, Subscription{ID: "we_1/../../v1/customers"}); err == nil {
		t.Error("unsubscribe of a malformed id: got no error")
	}
	c.api = bearerAPI{"sk_test_wrong"}
	if _, err := src.subscribe(ctx, c, SubscribeArgs{DeliveryURL: "https://tj.example/x"}); err == nil || !strings.Contains(err.Error(), "Invalid API Key") {
		t.Errorf("subscribe with a refused key: got %v, want Stripe's message", err)
	}
}

func stripeSign(secret string, t int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "%d.", t)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func TestStripeVerify(t *testing.T) {
	src := source(t, "stripe", "payment-succeeded")
	const secret = "whsec_test_secret"
	body := []byte(`{"id":"evt_1","type":"payment_intent.succeeded"}`)
	now := time.Unix(1700000000, 0)
	ts := now.Add(-2 * time.Minute).Unix()
	good := stripeSign(secret, ts, body)
	del := func(h string, b []byte, at time.Time) Delivery {
		return Delivery{Header: http.Header{"Stripe-Signature": {h}}, Body: b, Now: at}
	}
	for name, h := range map[string]string{
		"one v1":              fmt.Sprintf("t=%d,v1=%s", ts, good),
		"v1 among others":     fmt.Sprintf("t=%d,v1=%s,v1=%s,v0=%s", ts, strings.Repeat("ab", 32), good, strings.Repeat("cd", 32)),
		"a rolled secret too": fmt.Sprintf("t=%d,v1=%s,v1=%s", ts, stripeSign("whsec_old", ts, body), good),
	} {
		if err := src.verify(del(h, body, now), secret); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, d := range map[string]Delivery{
		"wrong secret":          del(fmt.Sprintf("t=%d,v1=%s", ts, stripeSign("whsec_other", ts, body)), body, now),
		"tampered body":         del(fmt.Sprintf("t=%d,v1=%s", ts, good), []byte(`{"id":"evt_2"}`), now),
		"old timestamp":         del(fmt.Sprintf("t=%d,v1=%s", ts, good), body, now.Add(4*time.Minute)),
		"timestamp moved":       del(fmt.Sprintf("t=%d,v1=%s", ts+1, good), body, now),
		"v0 only":               del(fmt.Sprintf("t=%d,v0=%s", ts, good), body, now),
		"no timestamp":          del("v1="+good, body, now),
		"missing header":        {Header: http.Header{}, Body: body, Now: now},
		"not a signature":       del("garbage", body, now),
		"secret without whsec_": del(fmt.Sprintf("t=%d,v1=%s", ts, stripeSign("test_secret", ts, body)), body, now),
	} {
		if err := src.verify(d, secret); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
	if err := src.verify(del(fmt.Sprintf("t=%d,v1=%s", ts, good), body, now), ""); err == nil {
		t.Error("no secret kept: got no error")
	}
}

// From Stripe's API reference (trimmed).
const stripePaymentSucceeded = `{
  "id": "evt_3MtwBwLkdIwHu7ix28a3tqPa",
  "object": "event",
  "api_version": "2022-11-15",
  "created": 1680064028,
  "data": {
    "object": {
      "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
      "object": "payment_intent",
      "amount": 2000,
      "amount_received": 2000,
      "currency": "usd",
      "customer": "cus_NffrFeUfNV2Hib",
      "status": "succeeded"
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {"id": "req_nRU9xLLEwKgBkq", "idempotency_key": "a0f3b1c2"},
  "type": "payment_intent.succeeded"
}`

const stripeCustomerCreated = `{
  "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
  "object": "event",
  "api_version": "2019-02-19",
  "created": 1686089970,
  "data": {
    "object": {
      "id": "cus_NffrFeUfNV2Hib",
      "object": "customer",
      "email": "jennyrosen@example.com",
      "name": "Jenny Rosen",
      "created": 1680893993
    }
  },
  "livemode": false,
  "type": "customer.created"
}`

func TestStripeParse(t *testing.T) {
	pay, cust := source(t, "stripe", "payment-succeeded"), source(t, "stripe", "new-customer")
	d := func(body string) Delivery {
		return Delivery{Header: http.Header{}, Body: []byte(body), Now: time.Now()}
	}
	items, reply, err := pay.parse(d(stripePaymentSucceeded), nil)
	if err != nil || reply != nil || len(items) != 1 || items[0].ID != "evt_3MtwBwLkdIwHu7ix28a3tqPa" {
		t.Fatalf("payment succeeded: got %v, %v, %v", items, reply, err)
	}
	var p map[string]any
	_ = json.Unmarshal(items[0].Payload, &p)
	if p["id"] != "pi_3MtwBwLkdIwHu7ix28a3tqPa" || p["amount"] != float64(2000) || p["event_id"] != "evt_3MtwBwLkdIwHu7ix28a3tqPa" || p["event_type"] != "payment_intent.succeeded" {
		t.Errorf("payment payload: got %s", items[0].Payload)
	}
	if items, _, err := cust.parse(d(stripePaymentSucceeded), nil); err != nil || len(items) != 0 {
		t.Errorf("payment at the customer trigger: got %v, %v, want nothing", items, err)
	}
	items, _, err = cust.parse(d(stripeCustomerCreated), nil)
	if err != nil || len(items) != 1 || items[0].ID != "evt_1NG8Du2eZvKYlo2CUI79vXWy" || !strings.Contains(string(items[0].Payload), `"email":"jennyrosen@example.com"`) {
		t.Errorf("customer created: got %v, %v", items, err)
	}
	for name, body := range map[string]string{
		"not JSON":       `nope`,
		"no id":          `{"type":"customer.created","data":{"object":{"id":"cus_1"}}}`,
		"no data.object": `{"id":"evt_1","type":"customer.created","data":{}}`,
	} {
		if _, _, err := cust.parse(d(body), nil); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
}
