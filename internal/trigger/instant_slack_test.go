package trigger

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/catalog"
)

func slackDelivery(secret string, at time.Time, body string) Delivery {
	ts := strconv.FormatInt(at.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + ts + ":" + body))
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", ts)
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(m.Sum(nil)))
	h.Set("Content-Type", "application/json")
	return Delivery{Header: h, Body: []byte(body), Now: at}
}

func TestSlackVerify(t *testing.T) {
	src := source(t, "slack", "new-message")
	// Slack's documented example (Verifying requests from Slack).
	const docSecret = "8f742231b10e8888abcd99yyyzzz85a5"
	const docBody = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	doc := Delivery{Header: http.Header{}, Body: []byte(docBody), Now: time.Unix(1531420618, 0).Add(time.Minute)}
	doc.Header.Set("X-Slack-Request-Timestamp", "1531420618")
	doc.Header.Set("X-Slack-Signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")
	if err := src.verify(doc, docSecret); err != nil {
		t.Errorf("documented vector: %v", err)
	}

	now := time.Unix(1700000000, 0)
	body := `{"type":"event_callback","team_id":"T0001"}`
	good := slackDelivery("shh", now, body)
	if err := src.verify(good, "shh"); err != nil {
		t.Errorf("good signature: %v", err)
	}
	old := slackDelivery("shh", now.Add(-6*time.Minute), body)
	old.Now = now
	future := slackDelivery("shh", now.Add(6*time.Minute), body)
	future.Now = now
	noTS := slackDelivery("shh", now, body)
	noTS.Header.Del("X-Slack-Request-Timestamp")
	noSig := slackDelivery("shh", now, body)
	noSig.Header.Del("X-Slack-Signature")
	for name, tc := range map[string]struct {
		d      Delivery
		secret string
	}{
		"wrong secret":      {good, "other"},
		"secret not set":    {good, ""},
		"tampered body":     {Delivery{Header: good.Header, Body: []byte(`{"type":"event_callback","team_id":"T0002"}`), Now: now}, "shh"},
		"old timestamp":     {old, "shh"},
		"future timestamp":  {future, "shh"},
		"missing timestamp": {noTS, "shh"},
		"missing signature": {noSig, "shh"},
	} {
		if err := src.verify(tc.d, tc.secret); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
	if err := src.verify(good, ""); err == nil || !strings.Contains(err.Error(), "TASKJUICE_APP_SLACK_SIGNING_SECRET") {
		t.Errorf("secret not set: got %v, want the variable named", err)
	}
}

func TestSlackSubscribeRoutesByTeam(t *testing.T) {
	src := source(t, "slack", "new-message")
	if _, ok := src.(sharedInstantSource); !ok || !IsShared("slack", "new-channel") || IsShared("github", "new-issue") {
		t.Fatal("Slack's sources are to be app-wide, GitHub's not")
	}
	sub, err := src.subscribe(context.Background(), pollCall{}, SubscribeArgs{DeliveryURL: "https://tj.example/webhooks/apps/slack", Account: "T0001"})
	if err != nil || sub != (Subscription{Route: "T0001"}) {
		t.Errorf("subscribe: got %+v, %v, want the team id as route and nothing else", sub, err)
	}
	if _, err := src.subscribe(context.Background(), pollCall{}, SubscribeArgs{}); err == nil {
		t.Error("subscribe without a team id: got no error")
	}
	if err := src.unsubscribe(context.Background(), pollCall{}, sub); err != nil {
		t.Errorf("unsubscribe: %v", err)
	}
}

func TestSharedSecret(t *testing.T) {
	c, err := catalog.Load(catalog.Options{Getenv: func(k string) string {
		if k == "TASKJUICE_APP_SLACK_SIGNING_SECRET" {
			return "shh"
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := SharedSecret(c, "slack"); got != "shh" {
		t.Errorf("SharedSecret(slack): got %q", got)
	}
	if got := SharedSecret(c, "nope"); got != "" {
		t.Errorf("SharedSecret(unknown app): got %q", got)
	}
	if got := SharedSecret(nil, "slack"); got != "" {
		t.Errorf("SharedSecret(no catalog): got %q", got)
	}
}

// From Slack's Events API documentation.
const (
	slackChallenge = `{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`
	slackMessage   = `{"token":"XXYYZZ","team_id":"T0001","api_app_id":"A0001","event":{"type":"message","channel":"C2147483705","user":"U2147483697","text":"Hello world","ts":"1355517523.000005","event_ts":"1355517523.000005","channel_type":"channel"},"type":"event_callback","authorizations":[{"team_id":"T0001","user_id":"U0002","is_bot":true}],"event_id":"Ev08MFMKH6","event_time":1355517523}`
	slackBotPost   = `{"token":"XXYYZZ","team_id":"T0001","event":{"type":"message","channel":"C2147483705","bot_id":"B0001","text":"posted by a workflow","ts":"1355517524.000001","channel_type":"channel"},"type":"event_callback","event_id":"Ev08MFMKH7","event_time":1355517524}`
	slackEdited    = `{"token":"XXYYZZ","team_id":"T0001","event":{"type":"message","subtype":"message_changed","channel":"C2147483705","hidden":true,"message":{"type":"message","user":"U2147483697","text":"Hello there","ts":"1355517523.000005"},"ts":"1358878755.000001"},"type":"event_callback","event_id":"Ev08MFMKH8","event_time":1358878755}`
	slackChannel   = `{"token":"XXYYZZ","team_id":"T0001","event":{"type":"channel_created","channel":{"id":"C024BE91L","name":"fun","created":1360782804,"creator":"U024BE7LH"}},"type":"event_callback","event_id":"Ev08MFMKH9","event_time":1360782804}`
)

func TestSlackParse(t *testing.T) {
	msg, ch := source(t, "slack", "new-message"), source(t, "slack", "new-channel")
	shared := msg.(sharedInstantSource)
	now := time.Now()
	d := func(body string) Delivery { return slackDelivery("shh", now, body) }

	if team, err := shared.route(d(slackChallenge)); err != nil || team != "" {
		t.Errorf("route of url_verification: got %q, %v, want none", team, err)
	}
	items, reply, err := msg.parse(d(slackChallenge), nil)
	if err != nil || len(items) != 0 || reply == nil || reply.Status != 200 || string(reply.Body) != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" || !strings.HasPrefix(reply.ContentType, "text/plain") {
		t.Errorf("url_verification: got %v, %+v, %v, want the challenge as plain text", items, reply, err)
	}

	if team, err := shared.route(d(slackMessage)); err != nil || team != "T0001" {
		t.Errorf("route: got %q, %v, want T0001", team, err)
	}
	if _, err := shared.route(d(`{"type":"event_callback","event":{}}`)); err == nil {
		t.Error("route of an event without team_id: got no error")
	}
	if _, err := shared.route(d(`nope`)); err == nil {
		t.Error("route of something not JSON: got no error")
	}

	items, reply, err = msg.parse(d(slackMessage), map[string]string{})
	if err != nil || reply != nil || len(items) != 1 || items[0].ID != "Ev08MFMKH6" {
		t.Fatalf("message: got %v, %v, %v", items, reply, err)
	}
	var p map[string]any
	_ = json.Unmarshal(items[0].Payload, &p)
	if p["text"] != "Hello world" || p["channel"] != "C2147483705" || p["team_id"] != "T0001" || p["event_id"] != "Ev08MFMKH6" {
		t.Errorf("message payload: got %s", items[0].Payload)
	}
	// A retry (X-Slack-Retry-Num) carries the same event_id.
	retry := d(slackMessage)
	retry.Header.Set("X-Slack-Retry-Num", "1")
	retry.Header.Set("X-Slack-Retry-Reason", "http_timeout")
	if again, _, _ := msg.parse(retry, nil); len(again) != 1 || again[0].ID != "Ev08MFMKH6" {
		t.Errorf("retry: got %v, want the same event id", again)
	}
	if items, _, _ := msg.parse(d(slackMessage), map[string]string{"channel": "C2147483705"}); len(items) != 1 {
		t.Errorf("message in the trigger's channel: got %v, want one", items)
	}
	if items, _, _ := msg.parse(d(slackMessage), map[string]string{"channel": "C999"}); len(items) != 0 {
		t.Errorf("message in another channel: got %v, want none", items)
	}
	for name, body := range map[string]string{"bot post": slackBotPost, "edit": slackEdited, "channel created": slackChannel, "rate limited": `{"token":"x","type":"app_rate_limited","team_id":"T0001","minute_rate_limited":1518467820,"api_app_id":"A0001"}`} {
		if items, reply, err := msg.parse(d(body), nil); err != nil || reply != nil || len(items) != 0 {
			t.Errorf("%s at new-message: got %v, %v, %v, want nothing", name, items, reply, err)
		}
	}

	items, _, err = ch.parse(d(slackChannel), nil)
	if err != nil || len(items) != 1 || items[0].ID != "Ev08MFMKH9" || !strings.Contains(string(items[0].Payload), `"name":"fun"`) {
		t.Errorf("channel created: got %v, %v", items, err)
	}
	if items, _, _ := ch.parse(d(slackMessage), nil); len(items) != 0 {
		t.Errorf("message at new-channel: got %v, want none", items)
	}
	for name, body := range map[string]string{
		"not JSON":          `nope`,
		"challenge missing": `{"type":"url_verification"}`,
		"no event":          `{"type":"event_callback","team_id":"T0001","event_id":"Ev1"}`,
		"no event_id":       `{"type":"event_callback","team_id":"T0001","event":{"type":"channel_created","channel":{"id":"C1"}}}`,
	} {
		if _, _, err := ch.parse(d(body), nil); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
}
