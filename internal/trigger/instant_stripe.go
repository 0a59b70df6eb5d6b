package trigger

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Stripe's webhook endpoints (https://docs.stripe.com/api/webhook_endpoints
// and https://docs.stripe.com/webhooks#verify-manually): publishing creates
// an endpoint for one event type; Stripe generates its signing secret
// (whsec_…) and signs each delivery in Stripe-Signature.
func init() {
	instantSources[[2]string{"stripe", "payment-succeeded"}] = stripeEndpoint{event: "payment_intent.succeeded"}
	instantSources[[2]string{"stripe", "new-customer"}] = stripeEndpoint{event: "customer.created"}
}

// stripeEndpoint is one Stripe trigger: the event type it is enabled for.
type stripeEndpoint struct {
	event string
}

// stripeTolerance is how far a delivery's signed timestamp may be from its
// arrival, as Stripe's libraries judge it.
const stripeTolerance = 300 * time.Second

func (s stripeEndpoint) subscribe(ctx context.Context, c pollCall, a SubscribeArgs) (Subscription, error) {
	base, err := c.apiBase()
	if err != nil {
		return Subscription{}, err
	}
	form := url.Values{}
	form.Set("url", a.DeliveryURL)
	form.Add("enabled_events[]", s.event)
	form.Set("description", "TaskJuice trigger")
	var we struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if err := c.send(ctx, "POST", base+"/v1/webhook_endpoints", "application/x-www-form-urlencoded", []byte(form.Encode()), &we); err != nil {
		return Subscription{}, err
	}
	if we.ID == "" || we.Secret == "" {
		return Subscription{}, errors.New("Stripe created the webhook endpoint but answered no id or signing secret")
	}
	return Subscription{ID: we.ID, Secret: we.Secret}, nil
}

func (s stripeEndpoint) unsubscribe(ctx context.Context, c pollCall, sub Subscription) error {
	if sub.ID == "" {
		return nil
	}
	if !strings.HasPrefix(sub.ID, "we_") || strings.ContainsAny(sub.ID, "/?#%") {
		return fmt.Errorf("%q is not a Stripe webhook endpoint id", sub.ID)
	}
	base, err := c.apiBase()
	if err != nil {
		return err
	}
	return c.send(ctx, "DELETE", base+"/v1/webhook_endpoints/"+sub.ID, "", nil, nil, 404)
}

// verify checks Stripe-Signature ("t=<unix>,v1=<hex>[,v1=…][,v0=…]"): one
// v1 must be the hex HMAC-SHA256 of "<t>.<body>" keyed with the whole
// whsec_… secret, and t within five minutes of the arrival.
func (stripeEndpoint) verify(d Delivery, secret string) error {
	if secret == "" {
		return errors.New("no signing secret is kept for this webhook endpoint")
	}
	h := d.Header.Get("Stripe-Signature")
	if h == "" {
		return errors.New("the delivery carries no Stripe-Signature header")
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("Stripe-Signature carries no timestamp")
	}
	if len(sigs) == 0 {
		return errors.New("Stripe-Signature carries no v1 signature")
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(d.Body)
	want := m.Sum(nil)
	match := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			match = true
		}
	}
	if !match {
		return errors.New("no Stripe-Signature v1 signature matches")
	}
	if age := d.Now.Sub(time.Unix(t, 0)); age > stripeTolerance || age < -stripeTolerance {
		return errors.New("the Stripe-Signature timestamp is more than five minutes away")
	}
	return nil
}

// parse: an event of the trigger's type is one item keyed by the event id
// (evt_…, the same on Stripe's retries); its payload is the event's
// data.object with event_id and event_type added.
func (s stripeEndpoint) parse(d Delivery, inputs map[string]string) ([]Item, *Reply, error) {
	var ev struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		Data struct {
			Object json.RawMessage `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(d.Body, &ev); err != nil {
		return nil, nil, errors.New("the Stripe delivery is not a JSON event")
	}
	if ev.Type != s.event {
		return nil, nil, nil
	}
	if ev.ID == "" {
		return nil, nil, errors.New("the Stripe event carries no id")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(ev.Data.Object, &obj); err != nil || obj == nil {
		return nil, nil, fmt.Errorf("the Stripe %s event carries no data.object", ev.Type)
	}
	obj["event_id"], _ = json.Marshal(ev.ID)
	obj["event_type"], _ = json.Marshal(ev.Type)
	payload, err := json.Marshal(obj)
	if err != nil {
		return nil, nil, err
	}
	return []Item{{ID: ev.ID, Payload: payload}}, nil, nil
}
