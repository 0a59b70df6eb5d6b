package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
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
		return errNoSecret
	}
	return verifyTimestamped(d, "Stripe-Signature", secret, stripeTolerance)
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
