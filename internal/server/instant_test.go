package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/connection"
	"taskjuice/internal/workflow"
)

// chatInstantGraph is "New message in channel (instant)" of Sandbox Chat
// (#general, through connID) → the message posted to #random through the
// same connection.
func chatInstantGraph(connID string) *workflow.Graph {
	trig, _ := json.Marshal(map[string]any{"app": "sandbox-chat", "trigger": "new-message-instant", "inputs": map[string]string{"channel": "general"}})
	post, _ := json.Marshal(map[string]any{"app": "sandbox-chat", "action": "post-message",
		"inputs": map[string]string{"channel": "random", "text": "echo: {{ $trigger.text }}"}})
	return &workflow.Graph{Schema: 1,
		Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerApp, Config: trig, Connection: &workflow.Binding{ID: connID}},
		Nodes:   []workflow.Node{{ID: "echo", Kind: workflow.NodeAction, Config: post, Connection: &workflow.Binding{ID: connID}}},
		Edges:   []workflow.Edge{{From: "start", To: "echo"}}}
}

// instantRun is one run an instant trigger started.
type instantRun struct {
	id, status, reason, dedup, text string
}

// instantRuns lists the workflow's instant runs, failing the test if an
// event or a message started two.
func instantRuns(t *testing.T, e *env, workflowID string) []instantRun {
	t.Helper()
	rows, err := e.db.Read().QueryContext(context.Background(), `SELECT id, status, pause_reason, dedup_key, trigger_payload FROM runs
		WHERE workflow_id = $1 AND source = 'instant' ORDER BY created_at, id`, workflowID)
	must(t, err)
	defer rows.Close()
	var out []instantRun
	keys, msgs := map[string]bool{}, map[string]bool{}
	for rows.Next() {
		var r instantRun
		var raw string
		must(t, rows.Scan(&r.id, &r.status, &r.reason, &r.dedup, &raw))
		var m struct{ ID, Text, EventID string }
		must(t, json.Unmarshal([]byte(raw), &m))
		if keys[r.dedup] || msgs[m.ID] {
			t.Fatalf("event %s (message %s) started two runs", r.dedup, m.ID)
		}
		if !strings.HasPrefix(r.dedup, "instant:sandbox-chat:new-message-instant:evt_") {
			t.Fatalf("run %s has dedup key %q, want the event's id", r.id, r.dedup)
		}
		keys[r.dedup], msgs[m.ID] = true, true
		r.text = m.Text
		out = append(out, r)
	}
	must(t, rows.Err())
	return out
}

func countBy(runs []instantRun, f func(instantRun) bool) int {
	n := 0
	for _, r := range runs {
		if f(r) {
			n++
		}
	}
	return n
}

// The acceptance story of instant app triggers, through the pages, the
// sandbox's OAuth, chat and webhook APIs, and the delivery address:
// publish a workflow whose trigger is Sandbox Chat's instant trigger (its
// step posts through the same connection); 5 messages → 5 runs; the grant
// revoked → deliveries still arrive, and 50 more messages start 50 runs
// held at their step; reconnect and resume → they complete. Exactly 55
// runs, one per event; a forged delivery is refused, a redelivery starts
// nothing new; unpublishing deletes the webhook at the app.
func TestInstantTriggerSandboxChatThroughReauth(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		connID := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}, "label": {"Team chat"}}, "Acme Chat"))

		// The editor offers the instant trigger, without poll fields.
		g := chatInstantGraph(connID)
		w, err := e.workflows.Create(ctx, e.acme, "Chat echo", "", g, "")
		must(t, err)
		edit := "/acme/workflows/" + w.ID + "/edit"
		card := html.UnescapeString(owner.get(edit).Body)
		for _, want := range []string{`<option value="new-message-instant"`, "New message in channel (instant)", "Publishing subscribes to"} {
			if !strings.Contains(card, want) {
				t.Fatalf("trigger card lacks %q: %.4000s", want, card)
			}
		}
		if strings.Contains(card, `name="intervalSeconds"`) {
			t.Fatal("the instant trigger's card asks for seconds between polls")
		}
		// Saved through the card as a person would (no poll fields sent).
		wantRedirect(t, "save the trigger", owner.post(edit+"/trigger", url.Values{"kind": {"app"}, "app": {"sandbox-chat"},
			"trigger": {"new-message-instant"}, "input.channel": {"general"}, "connection": {connID}}), edit+"#trigger")
		wantRedirect(t, "publish", owner.post("/acme/workflows/"+w.ID+"/publish", nil), "/acme/workflows/"+w.ID+"/edit")
		live, ok, err := e.workflows.Live(ctx, w.ID)
		must(t, err)
		if !ok || live.Graph.Trigger.Kind != workflow.TriggerApp || live.Graph.Trigger.Connection == nil || live.Graph.Trigger.Connection.ID != connID {
			t.Fatalf("published trigger: %+v", live.Graph.Trigger)
		}
		if cfg, err := workflow.DecodeConfig(*live.Graph.Trigger); err != nil || cfg.(*workflow.AppTriggerConfig).Trigger != "new-message-instant" ||
			cfg.(*workflow.AppTriggerConfig).Inputs["channel"] != "general" {
			t.Fatalf("published trigger config: %s (%v)", live.Graph.Trigger.Config, err)
		}
		st, ok, err := e.listener.State(ctx, w.ID)
		if err != nil || !ok || st.State != "subscribed" || !strings.HasPrefix(st.Address, e.srv.URL+"/webhooks/triggers/") {
			t.Fatalf("instant trigger after publishing: %+v %v %v", st, ok, err)
		}
		if _, polled, _ := e.poller.State(ctx, w.ID); polled {
			t.Fatal("an instant trigger is also polled")
		}
		page := html.UnescapeString(owner.get("/acme/workflows/" + w.ID).Body)
		for _, want := range []string{"Instant: subscribed", st.Address, "Events received", "Last event"} {
			if !strings.Contains(page, want) {
				t.Fatalf("workflow page lacks %q: %.3000s", want, page)
			}
		}

		work := func() {
			t.Helper()
			for range 1000 {
				did, err := e.engine.Work(ctx)
				must(t, err)
				if !did {
					return
				}
			}
		}
		waitRuns := func(what string, n int, cond func(instantRun) bool) []instantRun {
			t.Helper()
			var runs []instantRun
			eventually(t, what, 30*time.Second, func() bool {
				work()
				runs = instantRuns(t, e, w.ID)
				return len(runs) == n && countBy(runs, cond) == n
			})
			return runs
		}
		post := func(prefix string, n int) {
			t.Helper()
			for i := range n {
				_, err := e.sandbox.Post("Acme Chat", "general", fmt.Sprintf("%s %d", prefix, i+1))
				must(t, err)
			}
		}

		// The first delivery fails once at the sandbox and is retried.
		must(t, e.sandbox.FailDeliveries(1))
		post("hello", 5)
		waitRuns("5 runs completed", 5, func(r instantRun) bool { return r.status == "completed" })

		// The grant is revoked at the app: deliveries still arrive and start
		// runs; their step, which needs the connection, is held.
		if n, err := e.sandbox.RevokeAccount("Acme Chat"); err != nil || n != 1 {
			t.Fatalf("revoke: %d, %v", n, err)
		}
		post("during the outage", 50)
		runs := waitRuns("55 runs, 50 held for reauth", 55, func(r instantRun) bool {
			return r.status == "completed" || (r.status == "paused" && r.reason == "reauth")
		})
		if held := countBy(runs, func(r instantRun) bool { return r.status == "paused" }); held != 50 {
			t.Fatalf("held runs: %d, want 50", held)
		}
		c, err := e.connections.Get(ctx, e.acme, connID)
		must(t, err)
		if c.Status != connection.StatusError {
			t.Fatalf("connection after the revoked grant: %s, want error", c.Status)
		}

		// Publishing another instant trigger on the broken connection is
		// refused by the publish gate, and subscribes nothing.
		w2, err := e.workflows.Create(ctx, e.acme, "Chat echo 2", "", chatInstantGraph(connID), "")
		must(t, err)
		wantRedirect(t, "publish on a broken connection", owner.post("/acme/workflows/"+w2.ID+"/publish", nil), "/acme/workflows/"+w2.ID+"/edit?check=publish")
		refused := html.UnescapeString(owner.get("/acme/workflows/" + w2.ID + "/edit?check=publish").Body)
		if !strings.Contains(refused, workflow.MsgCompilationFailed) || !strings.Contains(refused, workflow.MsgTriggerInactiveConnection) {
			t.Fatalf("refused publish lacks %q and %q: %.3000s", workflow.MsgCompilationFailed, workflow.MsgTriggerInactiveConnection, refused)
		}
		if _, ok, _ := e.listener.State(ctx, w2.ID); ok {
			t.Fatal("a workflow refused at publishing listens")
		}

		// A forged delivery is refused and starts nothing; a recorded one
		// sent again starts nothing new.
		sent := e.deliveries.Sent()
		if len(sent) < 55 {
			t.Fatalf("the sandbox sent %d deliveries, want at least 55", len(sent))
		}
		last := sent[len(sent)-1]
		forged := bytes.Replace(last.Body, []byte("during the outage"), []byte("forged message"), 1)
		for _, c := range []struct {
			name string
			body []byte
			want int
		}{{"forged", forged, http.StatusUnauthorized}, {"redelivered", last.Body, http.StatusOK}} {
			req, _ := http.NewRequest(http.MethodPost, last.URL, bytes.NewReader(c.body))
			req.Header = last.Header.Clone()
			res, err := http.DefaultClient.Do(req)
			must(t, err)
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != c.want {
				t.Fatalf("%s delivery: got %d %s, want %d", c.name, res.StatusCode, body, c.want)
			}
		}
		if got := len(instantRuns(t, e, w.ID)); got != 55 {
			t.Fatalf("runs after a forged and a repeated delivery: %d, want 55", got)
		}

		// Reconnect, then resume what the outage held: all 55 complete.
		if again := connectionFromLocation(t, owner.consent(t, "/acme/connections/"+connID+"/reconnect", url.Values{}, "Acme Chat")); again != connID {
			t.Fatalf("reconnect landed on %s, want %s", again, connID)
		}
		res := owner.post("/acme/connections/"+connID+"/resume-held", nil)
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("resume held: got %d, want 303", res.StatusCode)
		}
		waitRuns("55 runs completed", 55, func(r instantRun) bool { return r.status == "completed" })
		// Every message posted: the 55 in #general and their 55 echoes.
		if posted := e.sandbox.Stats().MessagesPosted; posted != 110 {
			t.Fatalf("messages posted at the sandbox: %d, want 55 and their 55 echoes", posted)
		}
		st, _, _ = e.listener.State(ctx, w.ID)
		if st.EventsReceived < 55 || st.RunsStarted != 55 || st.LastEventAt == nil {
			t.Fatalf("instant trigger after the story: %+v, want 55 runs started (a repeated delivery starts none)", st)
		}
		// The API tells the same: subscribed, and the 55 events, each
		// with the run it started.
		res = owner.api("GET", "/api/v1/workflows/"+w.ID+"/trigger", "")
		wantStatus(t, "trigger API", res, 200)
		var tb triggerBody
		must(t, json.Unmarshal([]byte(res.Body), &tb))
		var iv struct {
			State, Address string
			EventsReceived int64
		}
		if tb.Trigger == nil || tb.Trigger.Poll != nil || json.Unmarshal(tb.Trigger.Instant, &iv) != nil || iv.State != "subscribed" || iv.Address != st.Address || iv.EventsReceived < 55 {
			t.Fatalf("trigger API for the instant trigger: %s", res.Body)
		}
		res = owner.api("GET", "/api/v1/workflows/"+w.ID+"/trigger/events?limit=200", "")
		wantStatus(t, "trigger events API", res, 200)
		var eb eventsBody
		must(t, json.Unmarshal([]byte(res.Body), &eb))
		items := map[string]bool{}
		for _, ev := range eb.Events {
			if ev.RunStatus != "completed" || items[ev.ItemID] {
				t.Fatalf("trigger event %+v (seen before: %v)", ev, items[ev.ItemID])
			}
			items[ev.ItemID] = true
		}
		if len(items) != 55 {
			t.Fatalf("trigger events: %d, want the 55", len(items))
		}
		if page := owner.get("/acme/workflows/" + w.ID).Body; !strings.Contains(page, `id="trigger-events"`) {
			t.Fatalf("workflow page lacks the recent events: %.3000s", page)
		}

		// Deactivating unsubscribes at the app; the address answers 404.
		wantRedirect(t, "deactivate", owner.post("/acme/workflows/"+w.ID+"/deactivate", nil), "/acme/workflows/"+w.ID)
		if _, ok, _ := e.listener.State(ctx, w.ID); ok {
			t.Fatal("a deactivated workflow still listens")
		}
		before := len(e.deliveries.Sent())
		post("after deactivating", 1)
		if st := e.sandbox.Stats(); st.DeliveriesPending != 0 || len(e.deliveries.Sent()) != before {
			t.Fatalf("the sandbox still delivers after deactivation: %d pending, %d sent, want none", st.DeliveriesPending, len(e.deliveries.Sent())-before)
		}
		req, _ := http.NewRequest(http.MethodPost, last.URL, bytes.NewReader(last.Body))
		req.Header = last.Header.Clone()
		after, err := http.DefaultClient.Do(req)
		must(t, err)
		after.Body.Close()
		if after.StatusCode != http.StatusNotFound && after.StatusCode != http.StatusGone {
			t.Fatalf("delivery after deactivation: got %d, want 404 or 410", after.StatusCode)
		}
		if got := len(instantRuns(t, e, w.ID)); got != 55 {
			t.Fatalf("runs at the end: %d, want 55", got)
		}
	})
}
