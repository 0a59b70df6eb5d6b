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

	"taskjuice/internal/account"
)

type triggerBody struct {
	Trigger *struct {
		WorkflowID, Kind, NodeID, App, AppName, Trigger, TriggerName, ConnectionID string
		Live, ClientProvidesConnection, AwaitingClient                             bool
		Poll                                                                       *struct {
			State, ConnectionID, ConnectionPageURL, LastError string
			Failures                                          int
			LastPollAt, NextPollAt, CursorAt                  *time.Time
			CursorAgeSeconds                                  *int64
			RunsStarted                                       int64
		}
		Instant json.RawMessage
	}
}

type eventsBody struct {
	Events []struct {
		ItemID, RunID, RunStatus string
		At                       time.Time
	}
}

// The trigger's state and recent events, in the JSON API and on the
// workflow page: listening, the cursor's age, each item's run; held with
// the connection's page; isolated from other accounts.
func TestTriggerStateAndEventsInAPIAndPage(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		connID := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}, "label": {"Team chat"}}, "Acme Chat"))
		w, err := e.workflows.Create(ctx, e.acme, "Chat log", "", chatTriggerGraph(connID), "")
		must(t, err)
		base := "/api/v1/workflows/" + w.ID + "/trigger"
		getTrigger := func(b *browser, header ...string) triggerBody {
			t.Helper()
			res := b.api("GET", base, "", header...)
			wantStatus(t, "get trigger", res, 200)
			var out triggerBody
			must(t, json.Unmarshal([]byte(res.Body), &out))
			if out.Trigger == nil {
				t.Fatalf("no trigger: %s", res.Body)
			}
			return out
		}
		events := func(limit string) eventsBody {
			t.Helper()
			res := owner.api("GET", base+"/events"+limit, "")
			wantStatus(t, "trigger events", res, 200)
			var out eventsBody
			must(t, json.Unmarshal([]byte(res.Body), &out))
			return out
		}

		// A draft: the trigger is shown, nothing listens.
		if tr := getTrigger(owner).Trigger; tr.Live || tr.Kind != "app" || tr.Poll != nil || tr.App != "sandbox-chat" || tr.TriggerName != "New message in channel" {
			t.Fatalf("draft trigger: %+v", tr)
		}
		wantRedirect(t, "publish", owner.post("/acme/workflows/"+w.ID+"/publish", nil), "/acme/workflows/"+w.ID+"/edit")
		tr := getTrigger(owner).Trigger
		if !tr.Live || tr.ConnectionID != connID || tr.ClientProvidesConnection || tr.Poll == nil || tr.Poll.State != "not-yet-primed" || tr.Poll.CursorAt != nil || string(tr.Instant) != "null" {
			t.Fatalf("published, not yet polled: %+v %+v", tr, tr.Poll)
		}

		at := time.Now()
		tick := func() {
			t.Helper()
			at = at.Add(time.Minute)
			if _, err := e.poller.Tick(ctx, at); err != nil {
				t.Fatalf("poll tick: %v", err)
			}
		}
		tick()
		primedAt := at
		ids := map[string]string{} // message text by id
		for i := range 12 {
			m, err := e.sandbox.Post("Acme Chat", "general", fmt.Sprintf("hello %d", i+1))
			must(t, err)
			ids[m.ID] = m.Text
		}
		tick()
		tr = getTrigger(owner).Trigger
		if p := tr.Poll; p.State != "listening" || p.RunsStarted != 12 || p.LastPollAt == nil || p.NextPollAt == nil || p.CursorAt == nil || !p.CursorAt.After(primedAt) || p.CursorAgeSeconds == nil {
			t.Fatalf("listening: %+v", p)
		}
		moved := *tr.Poll.CursorAt
		tick() // nothing new: the cursor stays where it moved
		if p := getTrigger(owner).Trigger.Poll; p.CursorAt == nil || !p.CursorAt.Equal(moved) || !p.LastPollAt.After(moved) {
			t.Fatalf("cursor moved without new items: %v → %+v", moved, p)
		}

		ev := events("")
		if len(ev.Events) != 12 {
			t.Fatalf("events: %d, want 12", len(ev.Events))
		}
		runs := pollRuns(t, e, w.ID)
		for i, x := range ev.Events {
			// Newest first: the 12th message first.
			if want := fmt.Sprintf("hello %d", 12-i); ids[x.ItemID] != want {
				t.Fatalf("event %d is item %s (%q), want %q", i, x.ItemID, ids[x.ItemID], want)
			}
			run, err := e.engine.Get(ctx, e.acme.ID, x.RunID)
			must(t, err)
			if string(run.Status) != x.RunStatus || !strings.HasSuffix(run.Source, "poll") || x.At.IsZero() {
				t.Fatalf("event %d: %+v, run %+v", i, x, run)
			}
		}
		if len(runs) != 12 {
			t.Fatalf("runs: %d", len(runs))
		}
		if ev := events("?limit=3"); len(ev.Events) != 3 || ids[ev.Events[0].ItemID] != "hello 12" {
			t.Fatalf("limit=3: %+v", ev.Events)
		}
		for _, bad := range []string{"?limit=0", "?limit=201", "?limit=x"} {
			wantStatus(t, "events "+bad, owner.api("GET", base+"/events"+bad, ""), 422)
		}

		// The workflow page: the cursor's age and the recent events, each
		// linked to its run.
		page := html.UnescapeString(owner.get("/acme/workflows/" + w.ID).Body)
		for _, want := range []string{"Listening", "Cursor moved", "Recent events", `href="/acme/monitoring/workflow-runs/` + w.ID + `/` + ev.Events[0].RunID + `"`, ev.Events[0].ItemID} {
			if !strings.Contains(page, want) {
				t.Fatalf("workflow page lacks %q: %.4000s", want, page)
			}
		}
		if oldest := ev.Events[11]; strings.Contains(page, oldest.RunID) {
			t.Fatal("the workflow page shows more than the last 10 events")
		}

		// Held: the connection needs reauthorization.
		if n, err := e.sandbox.RevokeAccount("Acme Chat"); err != nil || n != 1 {
			t.Fatalf("revoke: %d, %v", n, err)
		}
		tick()
		if p := getTrigger(owner).Trigger.Poll; p.State != "held" || p.ConnectionID != connID || !strings.HasSuffix(p.ConnectionPageURL, "/acme/connections/"+connID) || p.NextPollAt != nil {
			t.Fatalf("held: %+v", p)
		}

		// With an API token of the account it reads the same; another
		// account's token, or a session of another account, gets 404, as
		// does an unknown workflow.
		page = owner.post("/settings/api-tokens", url.Values{"name": {"Deploy"}}).Body
		i := strings.Index(page, account.APITokenPrefix)
		if i < 0 {
			t.Fatal("no token shown")
		}
		secret := page[i : i+strings.IndexAny(page[i:], "<\n \"")]
		if tr := getTrigger(e.browser(), "Authorization", "Bearer "+secret).Trigger; tr.Poll == nil || tr.Poll.State != "held" {
			t.Fatalf("with a token: %+v", tr)
		}
		other := e.signIn("owner@b.example")
		otherPage := other.post("/settings/api-tokens", url.Values{"name": {"Other"}}).Body
		j := strings.Index(otherPage, account.APITokenPrefix)
		if j < 0 {
			t.Fatal("no token shown to account B")
		}
		otherSecret := otherPage[j : j+strings.IndexAny(otherPage[j:], "<\n \"")]
		for _, path := range []string{base, base + "/events"} {
			wantStatus(t, "another account's token "+path, e.browser().api("GET", path, "", "Authorization", "Bearer "+otherSecret), 404)
			wantStatus(t, "another account's session "+path, other.api("GET", path, ""), 404)
		}
		wantStatus(t, "unknown workflow", owner.api("GET", "/api/v1/workflows/nope/trigger", ""), 404)
		wantStatus(t, "unknown workflow events", owner.api("GET", "/api/v1/workflows/nope/trigger/events", ""), 404)
	})
}
