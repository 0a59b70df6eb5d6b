package trigger

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/sandbox"
)

// The catalog's trigger examples ("example", the sample a workflow's steps
// are built against before a real event arrives) against what the
// triggers really hand a run.

// payloadCase obtains a payload a trigger really gave: from the app fakes
// of this package's other tests, from the documented events they parse, or
// from the built-in sandbox provider itself.
type payloadCase struct {
	app, trigger string
	payload      func(t *testing.T, d *db.DB) json.RawMessage
	// documented are top-level fields of the app's own object that the
	// fake's trimmed objects leave out while the app's API documentation
	// (or the trigger's own request) says the app sends them; the example
	// carries them too.
	documented []string
}

// The top-level keys of every trigger's example are those of a payload the
// trigger produced; a missing or extra key is named.
func TestTriggerExamplesHaveTheKeysOfARealPayload(t *testing.T) {
	cat := testCatalog(t)
	sb, token := sandboxWithToken(t)
	cases := []payloadCase{
		{app: "freshdesk", trigger: "new-ticket", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			f, h := newFreshdeskFixture(t, d, true)
			h.add(1)
			return firstRun(t, f)
		}, documented: []string{
			// GET /api/v2/tickets (https://developers.freshdesk.com/api/#list_all_tickets).
			"cc_emails", "company_id", "custom_fields", "due_by", "fr_due_by", "group_id", "is_escalated", "responder_id", "source",
		}},
		{app: "gmail", trigger: "new-email", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			f, g := newGmailFixture(t, d, "", true)
			g.add(1)
			return firstRun(t, f)
		}},
		{app: "google-sheets", trigger: "new-row", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			f, sheet := newSheetFixture(t, d, true)
			sheet.appendRow("ada@example.com", "Ada Lovelace", "Analytical Engines Ltd")
			return firstRun(t, f)
		}},
		{app: "hubspot", trigger: "new-contact", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			f, h := newHubSpotFixture(t, d, true)
			h.add(1)
			return firstRun(t, f)
		}},
		{app: "microsoft-365", trigger: "new-email", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			f, g := newGraphFixture(t, d, "", true)
			g.add(1)
			return firstRun(t, f)
		}, documented: append(strings.Split(outlookSelect, ","), "@odata.etag")}, // fakeGraph ignores $select
		{app: catalog.SandboxKey, trigger: "new-message", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			return sandboxPoll(t, d, sb, token, catalog.SandboxKey)
		}},
		{app: "sandbox-inbox", trigger: "new-message", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			return sandboxPoll(t, d, sb, token, "sandbox-inbox")
		}},
		{app: catalog.SandboxKey, trigger: "new-message-instant", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			return sandboxPush(t, cat, sb, token)
		}},
		{app: "github", trigger: "new-issue", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			return onlyItem(t)(source(t, "github", "new-issue").parse(githubDelivery("issues", "g1", "s", []byte(githubIssueOpened)), nil))
		}},
		{app: "github", trigger: "new-pull-request", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			return onlyItem(t)(source(t, "github", "new-pull-request").parse(githubDelivery("pull_request", "g2", "s", []byte(githubPullRequestOpened)), nil))
		}},
		{app: "slack", trigger: "new-message", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			return onlyItem(t)(source(t, "slack", "new-message").parse(slackDelivery("shh", time.Now(), slackMessage), map[string]string{}))
		}},
		{app: "slack", trigger: "new-channel", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			return onlyItem(t)(source(t, "slack", "new-channel").parse(slackDelivery("shh", time.Now(), slackChannel), nil))
		}},
		{app: "stripe", trigger: "payment-succeeded", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			return onlyItem(t)(source(t, "stripe", "payment-succeeded").parse(Delivery{Header: http.Header{}, Body: []byte(stripePaymentSucceeded), Now: time.Now()}, nil))
		}, documented: []string{
			// The PaymentIntent object (https://docs.stripe.com/api/payment_intents/object).
			"created", "description", "latest_charge", "livemode", "metadata", "payment_method", "receipt_email",
		}},
		{app: "stripe", trigger: "new-customer", payload: func(t *testing.T, d *db.DB) json.RawMessage {
			return onlyItem(t)(source(t, "stripe", "new-customer").parse(Delivery{Header: http.Header{}, Body: []byte(stripeCustomerCreated), Now: time.Now()}, nil))
		}, documented: []string{
			// The Customer object (https://docs.stripe.com/api/customers/object).
			"description", "livemode", "metadata", "phone",
		}},
	}
	for _, a := range cat.Apps() {
		for _, tr := range a.Triggers {
			if !slices.ContainsFunc(cases, func(c payloadCase) bool { return c.app == a.Key && c.trigger == tr.Key }) {
				t.Errorf("%s %s: no real payload to check its example against; add a case here", a.Key, tr.Key)
			}
		}
	}
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		for _, c := range cases {
			t.Run(c.app+" "+c.trigger, func(t *testing.T) {
				example := exampleOf(t, cat, c.app, c.trigger)
				got := c.payload(t, d)
				want := topKeys(t, "the payload", got)
				for _, k := range c.documented {
					if !slices.Contains(want, k) {
						want = append(want, k)
					}
				}
				slices.Sort(want)
				have := topKeys(t, "the example", example)
				missing := slices.DeleteFunc(slices.Clone(want), func(k string) bool { return slices.Contains(have, k) })
				extra := slices.DeleteFunc(slices.Clone(have), func(k string) bool { return slices.Contains(want, k) })
				if len(missing) > 0 || len(extra) > 0 {
					t.Errorf("example's top-level keys: missing %q, extra %q; got %q, want %q (the trigger gave %s)", missing, extra, have, want, got)
				}
			})
		}
	})
}

// The example of an instant trigger is exactly what the trigger makes of
// the event its app sends for it: wrapped back into that event, it passes
// the trigger's filters (GitHub's action "opened", Slack's plain messages,
// Stripe's event type) and comes out unchanged.
func TestInstantTriggerExamplesComeBackFromTheirEvent(t *testing.T) {
	cat := testCatalog(t)
	n := 0
	for _, a := range cat.Apps() {
		for _, tr := range a.Triggers {
			if tr.Mode != catalog.TriggerWebhook {
				continue
			}
			n++
			t.Run(a.Key+" "+tr.Key, func(t *testing.T) {
				src := source(t, a.Key, tr.Key)
				example := exampleOf(t, cat, a.Key, tr.Key)
				var ex map[string]json.RawMessage
				if err := json.Unmarshal(example, &ex); err != nil {
					t.Fatal(err)
				}
				d, inputs := eventFor(t, a.Key, src, ex)
				items, reply, err := src.parse(d, inputs)
				if err != nil || reply != nil || len(items) != 1 {
					t.Fatalf("the example's event %s: got %v, %+v, %v, want one item (the trigger never gives this example)", d.Body, items, reply, err)
				}
				got := items[0].Payload
				var g, w any
				_ = json.Unmarshal(got, &g)
				_ = json.Unmarshal(example, &w)
				if !reflect.DeepEqual(g, w) {
					t.Errorf("payload from the example's event: got %s, want the example %s", got, example)
				}
			})
		}
	}
	if n < 7 {
		t.Fatalf("got %d instant triggers in the catalog, want at least 7", n)
	}
}

// eventFor is the delivery an app sends for the event that ex, a trigger's
// payload, came from, and trigger inputs it matches.
func eventFor(t *testing.T, app string, src instantSource, ex map[string]json.RawMessage) (Delivery, map[string]string) {
	t.Helper()
	rest := maps.Clone(ex)
	take := func(k string) json.RawMessage {
		v := rest[k]
		delete(rest, k)
		return v
	}
	marshal := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	plain := func(body []byte) Delivery { return Delivery{Header: http.Header{}, Body: body, Now: time.Now()} }
	switch app {
	case "github": // the webhook event is the payload
		return githubDelivery(src.(githubHook).event, "g1", "s", marshal(ex)), nil
	case "stripe": // the payload is data.object plus event_id and event_type
		id, typ := take("event_id"), take("event_type")
		return plain(marshal(map[string]any{"id": id, "object": "event", "type": typ, "data": map[string]any{"object": rest}})), nil
	case "slack": // the payload is the inner event plus team_id and event_id
		team, id := take("team_id"), take("event_id")
		return plain(marshal(map[string]any{"type": "event_callback", "team_id": team, "event_id": id, "event_time": 1772442900, "event": rest})), nil
	case catalog.SandboxKey: // the payload is the message plus channel_name and event_id
		name, id := take("channel_name"), take("event_id")
		var channel string
		_ = json.Unmarshal(name, &channel)
		return plain(marshal(map[string]any{"id": id, "type": "message.created", "created": 1772442900,
			"data": map[string]any{"channel": map[string]any{"id": ex["channel"], "name": name}, "message": rest}})), map[string]string{"channel": channel}
	}
	t.Fatalf("no event known for %s's triggers; teach eventFor its app's delivery", app)
	return Delivery{}, nil
}

func testCatalog(t *testing.T) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: "http://sandbox.test/sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func exampleOf(t *testing.T, cat *catalog.Catalog, app, trigger string) json.RawMessage {
	t.Helper()
	a, ok := cat.App(app)
	if !ok {
		t.Fatalf("app %s: got missing", app)
	}
	tr, ok := a.Trigger(trigger)
	if !ok || len(tr.Example) == 0 {
		t.Fatalf("%s %s: got no example, want one", app, trigger)
	}
	return tr.Example
}

// topKeys are the keys of a JSON object.
func topKeys(t *testing.T, what string, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		t.Fatalf("%s: got %s, want a JSON object", what, raw)
	}
	return slices.Sorted(maps.Keys(m))
}

// firstRun polls the fixture's trigger once and returns the payload of the
// first run it started.
func firstRun(t *testing.T, f *appFixture) json.RawMessage {
	t.Helper()
	f.tick(t)
	_, payloads := f.started(t, false)
	if len(payloads) == 0 {
		t.Fatalf("the poll started no run (%+v)", f.state(t))
	}
	return payloads[0]
}

// onlyItem takes what parse returned and wants exactly one item.
func onlyItem(t *testing.T) func([]Item, *Reply, error) json.RawMessage {
	return func(items []Item, reply *Reply, err error) json.RawMessage {
		t.Helper()
		if err != nil || reply != nil || len(items) != 1 {
			t.Fatalf("parse: got %v, %+v, %v, want one item", items, reply, err)
		}
		return items[0].Payload
	}
}

// sandboxWithToken starts the built-in sandbox provider and connects to it
// through its real consent flow as the sandbox account "Acme Chat": the
// provider and an access token for its chat API.
func sandboxWithToken(t *testing.T) (*sandbox.Provider, string) {
	t.Helper()
	const redirect = "http://127.0.0.1/callback"
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	sb, err := sandbox.New(sandbox.Options{BaseURL: base, Clients: []sandbox.Client{
		{ID: catalog.SandboxClientID(catalog.SandboxKey), Name: "TaskJuice", RedirectURIs: []string{redirect}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	srv.Config.Handler = sb.Handler()
	srv.Start()
	t.Cleanup(srv.Close)

	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: base})
	if err != nil {
		t.Fatal(err)
	}
	app, _ := cat.App(catalog.SandboxKey)
	cfg, err := connection.OAuthConfig(app, redirect)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	cb, err := sandbox.Consent(ctx, nil, cfg.AuthCodeURL("state", oauth2.S256ChallengeOption(verifier)), "Acme Chat", true)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	return sb, tok.AccessToken
}

// sandboxAPI answers a sandbox app's calls (at http://sandbox.test/sandbox,
// as testCatalog places it) with the real provider, in process, as the
// connection holding token.
func sandboxAPI(sb *sandbox.Provider, token string) *fakeApp {
	h := sb.Handler()
	return &fakeApp{handler: http.StripPrefix("/sandbox", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+token)
		h.ServeHTTP(w, r)
	}))}
}

// sandboxPoll posts a message in the sandbox's general channel and returns
// the payload of the run a sandbox app's new-message trigger starts for it.
func sandboxPoll(t *testing.T, d *db.DB, sb *sandbox.Provider, token, app string) json.RawMessage {
	t.Helper()
	f := newAppFixture(t, d, sandboxAPI(sb, token), app, "new-message", map[string]string{"channel": "general"}, true)
	if _, err := sb.Post("Acme Chat", "general", "New lead: Ada Lovelace <ada@example.com> wants a demo"); err != nil {
		t.Fatal(err)
	}
	return firstRun(t, f)
}

// sandboxPush subscribes Sandbox Chat's instant trigger at the provider,
// posts a message, and returns the payload the trigger makes of the
// delivery the provider sends.
func sandboxPush(t *testing.T, cat *catalog.Catalog, sb *sandbox.Provider, token string) json.RawMessage {
	t.Helper()
	deliveries := make(chan Delivery, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case deliveries <- Delivery{Header: r.Header.Clone(), Body: body, Now: time.Now()}:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	app, _ := cat.App(catalog.SandboxKey)
	c := pollCall{api: sandboxAPI(sb, token), app: app, conn: "conn-1", inputs: map[string]string{"channel": "general"}}
	src := source(t, catalog.SandboxKey, "new-message-instant")
	ctx := context.Background()
	sub, err := src.subscribe(ctx, c, SubscribeArgs{DeliveryURL: hook.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.unsubscribe(ctx, c, sub) })
	if _, err := sb.Post("Acme Chat", "general", "New lead: Ada Lovelace <ada@example.com> wants a demo"); err != nil {
		t.Fatal(err)
	}
	var d Delivery
	select {
	case d = <-deliveries:
	case <-time.After(10 * time.Second):
		t.Fatal("the sandbox sent no delivery within 10s")
	}
	if err := src.verify(d, sub.Secret); err != nil {
		t.Fatalf("verify the sandbox's delivery: %v", err)
	}
	return onlyItem(t)(src.parse(d, c.inputs))
}
