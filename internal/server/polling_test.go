package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/connection"
	"taskjuice/internal/workflow"
)

// chatTriggerGraph is "New message in channel" of Sandbox Chat (#general,
// through connID) → a Transform of the message.
func chatTriggerGraph(connID string) *workflow.Graph {
	trig, _ := json.Marshal(map[string]any{"app": "sandbox-chat", "trigger": "new-message", "inputs": map[string]string{"channel": "general"}})
	out, _ := json.Marshal(map[string]any{"output": map[string]string{"said": "{{ $trigger.text }}"}})
	return &workflow.Graph{Schema: 1,
		Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerApp, Config: trig, Connection: &workflow.Binding{ID: connID}},
		Nodes:   []workflow.Node{{ID: "note", Kind: workflow.NodeTransform, Config: out}},
		Edges:   []workflow.Edge{{From: "start", To: "note"}}}
}

// pollRuns lists the texts of the messages whose runs the workflow's app
// trigger started, in the order the runs were recorded, failing the test if
// a message started two runs.
func pollRuns(t *testing.T, e *env, workflowID string) []string {
	t.Helper()
	rows, err := e.db.Read().QueryContext(context.Background(), `SELECT trigger_payload FROM runs WHERE workflow_id = $1 AND source = 'poll' ORDER BY created_at, id`, workflowID)
	must(t, err)
	defer rows.Close()
	var texts []string
	seen := map[string]bool{}
	for rows.Next() {
		var raw string
		must(t, rows.Scan(&raw))
		var m struct{ ID, Text string }
		must(t, json.Unmarshal([]byte(raw), &m))
		if seen[m.ID] {
			t.Fatalf("message %s (%q) started two runs", m.ID, m.Text)
		}
		seen[m.ID] = true
		texts = append(texts, m.Text)
	}
	must(t, rows.Err())
	return texts
}

// The acceptance story of polling app triggers, through the pages, the
// sandbox's OAuth and chat API, and the poller: publish a workflow whose
// trigger polls Sandbox Chat; 5 messages → 5 runs; the grant revoked → the
// trigger is held and the alert names the workflow; 50 messages while held
// → no run; reconnect → exactly those 50 runs, in order, none twice.
func TestAppTriggerPollsSandboxChatThroughReauth(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		connID := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}, "label": {"Team chat"}}, "Acme Chat"))
		// Build the trigger in the editor: a manual trigger becomes an app
		// trigger, then gets its app, event, channel and connection.
		g := chatTriggerGraph(connID)
		g.Trigger = &workflow.Node{ID: "start", Kind: workflow.TriggerManual}
		w, err := e.workflows.Create(ctx, e.acme, "Chat log", "", g, "")
		must(t, err)
		edit := "/acme/workflows/" + w.ID + "/edit"
		wantRedirect(t, "choose app trigger", owner.post(edit+"/trigger", url.Values{"kind": {"app"}}), edit+"#trigger")
		wantRedirect(t, "choose the app", owner.post(edit+"/trigger", url.Values{"kind": {"app"}, "app": {"sandbox-chat"}}), edit+"#trigger")
		card := html.UnescapeString(owner.get(edit).Body)
		for _, want := range []string{`<option value="new-message"`, "New message in channel", `<option value="` + connID + `"`, "Team chat — Active", "Client provides the connection"} {
			if !strings.Contains(card, want) {
				t.Fatalf("trigger card lacks %q: %.4000s", want, card)
			}
		}
		wantRedirect(t, "choose the event", owner.post(edit+"/trigger", url.Values{"kind": {"app"}, "app": {"sandbox-chat"}, "trigger": {"new-message"}}), edit+"#trigger")
		res := owner.post(edit+"/trigger", url.Values{"kind": {"app"}, "app": {"sandbox-chat"}, "trigger": {"new-message"},
			"input.channel": {"general"}, "connection": {connID}, "intervalSeconds": {""}})
		wantRedirect(t, "save the trigger", res, edit+"#trigger")
		if card = html.UnescapeString(owner.get(edit).Body); !strings.Contains(card, `name="input.channel" value="general"`) {
			t.Fatalf("trigger card lacks the channel: %.4000s", card)
		}
		wantRedirect(t, "publish", owner.post("/acme/workflows/"+w.ID+"/publish", nil), "/acme/workflows/"+w.ID+"/edit")
		live, ok, err := e.workflows.Live(ctx, w.ID)
		must(t, err)
		if !ok || live.Graph.Trigger.Kind != workflow.TriggerApp || live.Graph.Trigger.Connection == nil || live.Graph.Trigger.Connection.ID != connID {
			t.Fatalf("published trigger: %+v", live.Graph.Trigger)
		}

		// The poller's clock: each tick a poll interval later.
		at := time.Now()
		tick := func() int {
			t.Helper()
			at = at.Add(time.Minute)
			n, err := e.poller.Tick(ctx, at)
			if err != nil {
				t.Fatalf("poll tick: %v", err)
			}
			return n
		}
		ids := map[string]string{} // message id by text
		post := func(prefix string, n int) []string {
			var texts []string
			for i := range n {
				text := fmt.Sprintf("%s %d", prefix, i+1)
				m, err := e.sandbox.Post("Acme Chat", "general", text)
				must(t, err)
				ids[text] = m.ID
				texts = append(texts, text)
			}
			return texts
		}

		post("before publishing", 2)
		if n := tick(); n != 0 {
			t.Fatalf("first poll started %d runs, want 0: it records where the channel stands", n)
		}
		page := html.UnescapeString(owner.get("/acme/workflows/" + w.ID).Body)
		if !strings.Contains(page, "Listening") || !strings.Contains(page, "New message in channel") || !strings.Contains(page, "Last poll") {
			t.Fatalf("workflow page does not show the trigger listening: %.3000s", page)
		}

		first := post("hello", 5)
		tick()
		tick()
		if got := pollRuns(t, e, w.ID); strings.Join(got, "|") != strings.Join(first, "|") {
			t.Fatalf("runs after 5 messages: %q, want %q", got, first)
		}

		// The grant is revoked at the app: the next poll meets it, the
		// refresh is refused, the connection breaks and the trigger is held.
		if n, err := e.sandbox.RevokeAccount("Acme Chat"); err != nil || n != 1 {
			t.Fatalf("revoke: %d, %v", n, err)
		}
		tick()
		c, err := e.connections.Get(ctx, e.acme, connID)
		must(t, err)
		if c.Status != connection.StatusError {
			t.Fatalf("connection after the revoked grant: %s, want error", c.Status)
		}
		st, ok, err := e.poller.State(ctx, w.ID)
		if err != nil || !ok || !st.Held {
			t.Fatalf("trigger after the revoked grant: %+v %v %v, want held", st, ok, err)
		}
		page = html.UnescapeString(owner.get("/acme/workflows/" + w.ID).Body)
		if !strings.Contains(page, "Held for reauthorization: the app refused the connection's credential.") || !strings.Contains(page, `href="/acme/connections/`+connID+`"`) {
			t.Fatalf("workflow page does not show the held trigger with a link to its connection: %.3000s", page)
		}
		_, err = e.notify.Consume(ctx)
		must(t, err)
		alerts, err := e.notify.List(ctx, e.acme.ID, mustP(t, e, "owner@a.example").User.ID, 10)
		must(t, err)
		title := ""
		for _, a := range alerts {
			if a.ConnectionID == connID && strings.Contains(a.Body, "It blocks Chat log.") {
				title = a.Title
			}
		}
		if title == "" {
			t.Fatalf("no reauthorization alert naming the workflow: %+v", alerts)
		}
		// The overview's banner names the connection the trigger waits for.
		banner := html.UnescapeString(owner.get("/acme/").Body)
		if i := strings.Index(banner, `class="banner"`); i < 0 || !strings.Contains(banner[i:], title) || !strings.Contains(banner[i:], "A connection needs to be reauthorized") {
			t.Fatalf("no banner naming the connection %q: %.3000s", title, banner)
		}

		// While held: messages wait at the app; ticking calls nothing and
		// starts nothing.
		gap := post("during the outage", 50)
		stats := e.sandbox.Stats()
		for range 5 {
			if n := tick(); n != 0 {
				t.Fatalf("held trigger started %d runs", n)
			}
		}
		if after := e.sandbox.Stats(); after.TokenRequests["refresh_token"] != stats.TokenRequests["refresh_token"] {
			t.Fatalf("held trigger kept knocking: refreshes %v → %v", stats.TokenRequests, after.TokenRequests)
		}
		if got := len(pollRuns(t, e, w.ID)); got != 5 {
			t.Fatalf("runs while held: %d, want still 5", got)
		}

		// Publishing another workflow on the broken connection is refused.
		w2, err := e.workflows.Create(ctx, e.acme, "Chat log 2", "", chatTriggerGraph(connID), "")
		must(t, err)
		wantRedirect(t, "publish on a broken connection", owner.post("/acme/workflows/"+w2.ID+"/publish", nil), "/acme/workflows/"+w2.ID+"/edit?check=publish")
		refused := html.UnescapeString(owner.get("/acme/workflows/" + w2.ID + "/edit?check=publish").Body)
		if !strings.Contains(refused, workflow.MsgCompilationFailed) || !strings.Contains(refused, workflow.MsgTriggerInactiveConnection) {
			t.Fatalf("refused publish lacks %q and %q: %.3000s", workflow.MsgCompilationFailed, workflow.MsgTriggerInactiveConnection, refused)
		}

		// Reconnect through the consent page: the trigger resumes from its
		// cursor, and every message of the gap starts exactly one run, in
		// order.
		if again := connectionFromLocation(t, owner.consent(t, "/acme/connections/"+connID+"/reconnect", url.Values{}, "Acme Chat")); again != connID {
			t.Fatalf("reconnect landed on %s, want %s", again, connID)
		}
		tick()
		tick()
		want := append(append([]string{}, first...), gap...)
		if got := pollRuns(t, e, w.ID); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("runs after reconnect: %d %q…, want the 5 then the 50 in order", len(got), got[min(5, len(got)):min(8, len(got))])
		}
		if st, _, _ := e.poller.State(ctx, w.ID); st.Held || st.LastError != "" || st.RunsStarted != 55 {
			t.Fatalf("trigger after reconnect: %+v", st)
		}
		// A poll that reads the 50 again (a process that died after their
		// runs were recorded, before it saved the cursor) starts nothing new:
		// each run is keyed by its message's id.
		_, err = e.db.Write().ExecContext(ctx, `UPDATE poll_triggers SET cursor_value = $1 WHERE workflow_id = $2`, ids[first[4]], w.ID)
		must(t, err)
		tick()
		if got := pollRuns(t, e, w.ID); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("runs after reading the 50 again: %d, want the same 55", len(got))
		}

		// Deactivating stops polling.
		wantRedirect(t, "deactivate", owner.post("/acme/workflows/"+w.ID+"/deactivate", nil), "/acme/workflows/"+w.ID)
		if _, ok, _ := e.poller.State(ctx, w.ID); ok {
			t.Fatal("a deactivated workflow is still polled")
		}
	})
}
