package trigger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
)

func init() {
	instantSources[[2]string{catalog.SandboxKey, "new-message-instant"}] = chatWebhooks{}
}

// chatWebhooks is Sandbox Chat's "New message in channel (instant)": a
// webhook subscription created through its API (POST /api/webhooks), and
// deliveries signed "Sandbox-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
// "<t>.<body>">" (see internal/sandbox/doc.go).
type chatWebhooks struct{}

// chatSignatureTolerance is how far a delivery's signed time may be from
// now, either way.
const chatSignatureTolerance = 5 * time.Minute

// endpoint is the webhooks API next to the app's channels API.
func (chatWebhooks) endpoint(c pollCall) (string, error) {
	a, ok := c.app.Action("list-channels")
	if !ok || !strings.HasSuffix(a.URL, "/channels") {
		return "", fmt.Errorf("%s declares no channels API", c.app.Name)
	}
	return strings.TrimSuffix(a.URL, "/channels") + "/webhooks", nil
}

// send calls the webhooks API and classifies failures like a poll does.
func (chatWebhooks) send(ctx context.Context, c pollCall, method, rawURL string, body []byte) (connection.Response, error) {
	res, err := c.api.Do(ctx, c.conn, func(ctx context.Context) (*http.Request, error) {
		var r *http.Request
		var err error
		if body != nil {
			r, err = http.NewRequestWithContext(ctx, method, rawURL, bytes.NewReader(body))
			if r != nil {
				r.Header.Set("Content-Type", "application/json")
			}
		} else {
			r, err = http.NewRequestWithContext(ctx, method, rawURL, nil)
		}
		return r, err
	})
	if errors.Is(err, connection.ErrNeedsReauth) {
		return res, errHeld
	}
	var host *connection.HostNotAllowedError
	if errors.As(err, &host) {
		return res, err
	}
	if err != nil {
		return res, &transientError{msg: fmt.Sprintf("%s could not be reached: %v", c.app.Name, err)}
	}
	switch {
	case res.Status == http.StatusTooManyRequests:
		return res, &transientError{msg: fmt.Sprintf("%s asked to slow down (HTTP 429)", c.app.Name), retryAfter: parseRetryAfter(res.Header.Get("Retry-After"))}
	case res.Status >= 500:
		return res, &transientError{msg: fmt.Sprintf("%s answered HTTP %d", c.app.Name, res.Status)}
	}
	return res, nil
}

func (s chatWebhooks) subscribe(ctx context.Context, c pollCall, a SubscribeArgs) (Subscription, error) {
	base, err := s.endpoint(c)
	if err != nil {
		return Subscription{}, err
	}
	ch := strings.TrimSpace(c.inputs["channel"])
	if ch == "" {
		return Subscription{}, errors.New("the trigger names no channel")
	}
	body, _ := json.Marshal(map[string]string{"url": a.DeliveryURL, "channel": ch})
	res, err := s.send(ctx, c, http.MethodPost, base, body)
	if err != nil {
		return Subscription{}, err
	}
	if res.Status/100 != 2 {
		var e struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(res.Body, &e)
		if e.Message != "" {
			return Subscription{}, fmt.Errorf("%s refused the subscription (HTTP %d): %s", c.app.Name, res.Status, e.Message)
		}
		return Subscription{}, fmt.Errorf("%s refused the subscription (HTTP %d)", c.app.Name, res.Status)
	}
	var out struct {
		Webhook struct {
			ID string `json:"id"`
		} `json:"webhook"`
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(res.Body, &out); err != nil || out.Webhook.ID == "" || out.Secret == "" {
		return Subscription{}, fmt.Errorf("%s answered the subscription without its id or secret", c.app.Name)
	}
	return Subscription{ID: out.Webhook.ID, Secret: out.Secret}, nil
}

func (s chatWebhooks) unsubscribe(ctx context.Context, c pollCall, sub Subscription) error {
	base, err := s.endpoint(c)
	if err != nil {
		return err
	}
	res, err := s.send(ctx, c, http.MethodDelete, base+"/"+url.PathEscape(sub.ID), nil)
	if err != nil {
		return err
	}
	if res.Status/100 != 2 && res.Status != http.StatusNotFound { // gone already
		return fmt.Errorf("%s refused to delete the webhook (HTTP %d)", c.app.Name, res.Status)
	}
	return nil
}

func (chatWebhooks) verify(d Delivery, secret string) error {
	if secret == "" {
		return errNoSecret
	}
	return verifyTimestamped(d, "Sandbox-Signature", secret, chatSignatureTolerance)
}

// chatEvent is a delivery's body.
type chatEvent struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data struct {
		Channel struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"channel"`
		Message map[string]any `json:"message"`
	} `json:"data"`
}

// parse gives a message.created event as the message, as the polling
// trigger gives it, plus the channel's name and the event's id.
func (chatWebhooks) parse(d Delivery, inputs map[string]string) ([]Item, *Reply, error) {
	var ev chatEvent
	if err := json.Unmarshal(d.Body, &ev); err != nil {
		return nil, nil, errors.New("the body is not a Sandbox Chat event")
	}
	if ev.ID == "" {
		ev.ID = d.Header.Get("Sandbox-Event-Id")
	}
	if ev.Type != "message.created" {
		return nil, nil, nil
	}
	if ev.ID == "" || ev.Data.Message == nil {
		return nil, nil, errors.New("the event has no id or no message")
	}
	if ch := strings.TrimPrefix(strings.TrimSpace(inputs["channel"]), "#"); ch != "" && ch != ev.Data.Channel.ID && !strings.EqualFold(ch, ev.Data.Channel.Name) {
		return nil, nil, nil
	}
	m := ev.Data.Message
	m["channel_name"] = ev.Data.Channel.Name
	m["event_id"] = ev.ID
	payload, err := json.Marshal(m)
	if err != nil {
		return nil, nil, err
	}
	return []Item{{ID: ev.ID, Payload: payload}}, nil, nil
}
