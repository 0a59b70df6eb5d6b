package trigger

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"taskjuice/internal/catalog"
)

// Slack's Events API (https://api.slack.com/apis/events-api): the Request
// URL belongs to the Slack app, not to a workspace's install, so every
// workspace's events arrive at the one app-wide address
// <base>/webhooks/apps/slack, signed with the Slack app's signing secret
// (TASKJUICE_APP_SLACK_SIGNING_SECRET), and are routed to triggers by the
// workspace's team id. The Slack app's Event Subscriptions must name that
// Request URL and subscribe the bot events message.channels and
// channel_created; subscribing a trigger creates nothing at Slack.
func init() {
	instantSources[[2]string{"slack", "new-message"}] = slackEvents{event: "message"}
	instantSources[[2]string{"slack", "new-channel"}] = slackEvents{event: "channel_created"}
}

// slackEvents is one Slack trigger: the inner event type it starts on.
type slackEvents struct {
	event string
}

// slackTolerance is how far X-Slack-Request-Timestamp may be from a
// delivery's arrival.
const slackTolerance = 5 * time.Minute

// SharedSecret is the app-wide secret an app signs its deliveries to its
// app-wide address with (Slack's signing secret, from
// catalog.SigningSecretEnv); empty when the app has no app-wide address or
// the secret is not configured. Never log or show it.
func SharedSecret(apps *catalog.Catalog, app string) string {
	if apps == nil {
		return ""
	}
	a, ok := apps.App(app)
	if !ok {
		return ""
	}
	return a.SigningSecret()
}

// IsShared reports whether an app trigger's deliveries arrive at the app's
// app-wide address (POST /webhooks/apps/{app}) rather than the trigger's
// own.
func IsShared(app, trigger string) bool {
	s, ok := instantSources[[2]string{app, trigger}]
	if !ok {
		return false
	}
	_, ok = s.(sharedInstantSource)
	return ok
}

func (slackEvents) subscribe(ctx context.Context, c pollCall, a SubscribeArgs) (Subscription, error) {
	if a.Account == "" {
		return Subscription{}, errors.New("the Slack connection names no workspace (team id); reconnect Slack")
	}
	return Subscription{Route: a.Account}, nil
}

func (slackEvents) unsubscribe(ctx context.Context, c pollCall, s Subscription) error {
	return nil
}

// verify checks X-Slack-Signature: "v0=" and the hex HMAC-SHA256 of
// "v0:<X-Slack-Request-Timestamp>:<body>" under the signing secret, the
// timestamp within five minutes of the arrival.
func (slackEvents) verify(d Delivery, secret string) error {
	if secret == "" {
		return errors.New("the Slack signing secret is not configured: set " + catalog.SigningSecretEnv("slack"))
	}
	sig := d.Header.Get("X-Slack-Signature")
	ts := d.Header.Get("X-Slack-Request-Timestamp")
	if sig == "" || ts == "" {
		return errors.New("the delivery carries no X-Slack-Signature and X-Slack-Request-Timestamp headers")
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("X-Slack-Request-Timestamp is not a Unix time")
	}
	hexSig, ok := strings.CutPrefix(sig, "v0=")
	if !ok {
		return errors.New("X-Slack-Signature does not start with v0=")
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return errors.New("X-Slack-Signature is not hexadecimal")
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + ts + ":"))
	m.Write(d.Body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return errors.New("the X-Slack-Signature signature does not match")
	}
	if age := d.Now.Sub(time.Unix(t, 0)); age > slackTolerance || age < -slackTolerance {
		return errors.New("X-Slack-Request-Timestamp is more than five minutes away")
	}
	return nil
}

// slackEnvelope is the outer shape of an Events API request.
type slackEnvelope struct {
	Type      string          `json:"type"`
	Challenge string          `json:"challenge"`
	TeamID    string          `json:"team_id"`
	EventID   string          `json:"event_id"`
	EventTime json.Number     `json:"event_time"`
	Event     json.RawMessage `json:"event"`
}

func readSlack(body []byte) (slackEnvelope, error) {
	var env slackEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return env, errors.New("the Slack delivery is not a JSON object")
	}
	return env, nil
}

// route is the team id of an event_callback; "" for the url_verification
// handshake and for notices such as app_rate_limited, which start nothing.
func (slackEvents) route(d Delivery) (string, error) {
	env, err := readSlack(d.Body)
	if err != nil {
		return "", err
	}
	if env.Type != "event_callback" {
		return "", nil
	}
	if env.TeamID == "" {
		return "", errors.New("the Slack event carries no team_id")
	}
	return env.TeamID, nil
}

// parse answers url_verification with its challenge (text/plain, as Slack
// documents) and turns an event_callback of the trigger's event type into
// one item keyed by event_id (the same on Slack's retries, which carry
// X-Slack-Retry-Num). new-message takes plain messages only: a message
// with a subtype (bot_message, message_changed, channel_join, …) or from a
// bot (bot_id, which TaskJuice's own posts carry) starts nothing, so a
// workflow posting to a channel does not start itself again. Its channel
// input, when set, is the channel id (C…) the message must be in. The
// payload is the inner event with team_id and event_id added.
func (s slackEvents) parse(d Delivery, inputs map[string]string) ([]Item, *Reply, error) {
	env, err := readSlack(d.Body)
	if err != nil {
		return nil, nil, err
	}
	switch env.Type {
	case "url_verification":
		if env.Challenge == "" {
			return nil, nil, errors.New("the Slack url_verification carries no challenge")
		}
		return nil, &Reply{Status: http.StatusOK, ContentType: "text/plain; charset=utf-8", Body: []byte(env.Challenge)}, nil
	case "event_callback":
	default:
		return nil, nil, nil
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(env.Event, &ev); err != nil || ev == nil {
		return nil, nil, errors.New("the Slack event_callback carries no event")
	}
	str := func(k string) string {
		var v string
		_ = json.Unmarshal(ev[k], &v)
		return v
	}
	if str("type") != s.event {
		return nil, nil, nil
	}
	if s.event == "message" {
		if str("subtype") != "" || str("bot_id") != "" {
			return nil, nil, nil
		}
		if ch := strings.TrimSpace(inputs["channel"]); ch != "" && ch != str("channel") {
			return nil, nil, nil
		}
	}
	if env.EventID == "" {
		return nil, nil, fmt.Errorf("the Slack %s event carries no event_id", s.event)
	}
	ev["team_id"], _ = json.Marshal(env.TeamID)
	ev["event_id"], _ = json.Marshal(env.EventID)
	payload, err := json.Marshal(ev)
	if err != nil {
		return nil, nil, err
	}
	return []Item{{ID: env.EventID, Payload: payload}}, nil, nil
}

var _ sharedInstantSource = slackEvents{}
