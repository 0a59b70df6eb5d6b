package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/connection"
	"taskjuice/internal/workflow"
)

// TestClientProvidesTriggerConnection: an app trigger whose client
// provides the connection is requested like an action's; published once
// the request is sent, nothing is polled until the client connects; then
// the trigger is bound to the client's connection and the poller reads
// through it: each new message starts one run.
func TestClientProvidesTriggerConnection(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		box := e.mailbox()
		owner := e.signIn("owner@a.example")
		g := chatTriggerGraph("")
		g.Trigger.Connection = &workflow.Binding{ClientProvides: true}
		w, err := e.workflows.Create(ctx, e.acme, "Client chat log", "", g, "")
		must(t, err)
		base := "/acme/workflows/" + w.ID

		ed := owner.get(base + "/edit")
		for _, want := range []string{"The agency queues a request and the client connects Sandbox Chat from their portal or via a magic-link email.",
			`action="/acme/workflows/` + w.ID + `/edit/steps/start/request"`} {
			if !strings.Contains(ed.Body, want) {
				t.Fatalf("trigger card lacks %q", want)
			}
		}
		wantRedirect(t, "publish before the request", owner.post(base+"/publish", nil), base+"/edit?check=publish")
		if pub := owner.get(base + "/edit?check=publish"); !strings.Contains(pub.Body, workflow.MsgTriggerInactiveConnection) {
			t.Fatalf("publish refusal lacks %q", workflow.MsgTriggerInactiveConnection)
		}
		if res := owner.post(base+"/edit/steps/start/request", url.Values{}); res.StatusCode != http.StatusSeeOther {
			t.Fatalf("queue the trigger: %d %.300s", res.StatusCode, res.Body)
		}
		if page := owner.get("/acme/clients/requests"); strings.Count(page.Body, `/clients/requests/queue/`) != 1 {
			t.Fatalf("queue should list the trigger's request:\n%.3000s", page.Body)
		}
		wantRedirect(t, "send the queue", owner.post("/acme/clients/requests/send", url.Values{"note": {"Please connect your chat."}}), "/acme/clients/requests")
		got := box.deliver(t)
		if len(got) != 1 || !strings.Contains(got[0].Text, "Sandbox Chat") {
			t.Fatalf("request emails: %d", len(got))
		}
		link := linkIn(t, e, got[0], "/portal/link/")

		// Sent: it may go live; nothing is polled before the client connects.
		wantRedirect(t, "publish once requested", owner.post(base+"/publish", nil), base+"/edit")
		if _, ok, err := e.poller.State(ctx, w.ID); err != nil || ok {
			t.Fatalf("polled before the client connected: %v %v", ok, err)
		}
		res := owner.api("GET", "/api/v1/workflows/"+w.ID+"/trigger", "")
		var tr triggerBody
		must(t, json.Unmarshal([]byte(res.Body), &tr))
		if tr.Trigger == nil || !tr.Trigger.Live || !tr.Trigger.ClientProvidesConnection || tr.Trigger.ConnectionID != "" || tr.Trigger.Poll != nil || !tr.Trigger.AwaitingClient {
			t.Fatalf("trigger before the client connected: %s", res.Body)
		}

		if page := owner.get(base).Body; !strings.Contains(page, "Not listening yet: the client has not connected Sandbox Chat.") {
			t.Fatalf("workflow page does not say the trigger waits for the client:\n%.3000s", page)
		}

		// The client connects their chat from the request page.
		client := e.browser()
		opened := client.open(link)
		reqPage := opened.Header.Get("Location")
		if !strings.HasPrefix(reqPage, "/portal/requests/") {
			t.Fatalf("open link: %d to %q", opened.StatusCode, reqPage)
		}
		rp := client.get(reqPage)
		mm := connectButton.FindStringSubmatch(rp.Body)
		if mm == nil {
			t.Fatalf("no Connect button:\n%s", rp.Body)
		}
		wantRedirect(t, "back from consent", client.consent(t, mm[1], url.Values{}, "Cleo Chat"), reqPage)
		bound, ok, err := e.workflows.ClientConnection(ctx, w.ID, "start")
		if err != nil || !ok {
			t.Fatalf("trigger not bound: %v %v", ok, err)
		}
		c, err := e.connections.Get(ctx, e.acme, bound)
		must(t, err)
		if c.OwnerKind != connection.OwnerClient || c.Status != connection.StatusActive {
			t.Fatalf("trigger bound to %+v, want the client's active connection", c)
		}
		st, ok, err := e.poller.State(ctx, w.ID)
		if err != nil || !ok || st.ConnectionID != bound {
			t.Fatalf("poller after the client connected: %+v %v %v, want polling through %s", st, ok, err, bound)
		}

		// The poller reads the client's chat.
		at := time.Now()
		tick := func() {
			t.Helper()
			at = at.Add(time.Minute)
			if _, err := e.poller.Tick(ctx, at); err != nil {
				t.Fatalf("poll tick: %v", err)
			}
		}
		tick()
		var want []string
		for i := range 3 {
			text := fmt.Sprintf("from the client %d", i+1)
			_, err := e.sandbox.Post("Cleo Chat", "general", text)
			must(t, err)
			want = append(want, text)
		}
		tick()
		if got := pollRuns(t, e, w.ID); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("runs: %q, want %q", got, want)
		}
		res = owner.api("GET", "/api/v1/workflows/"+w.ID+"/trigger", "")
		must(t, json.Unmarshal([]byte(res.Body), &tr))
		if !tr.Trigger.ClientProvidesConnection || tr.Trigger.AwaitingClient || tr.Trigger.ConnectionID != bound || tr.Trigger.Poll == nil || tr.Trigger.Poll.State != "listening" {
			t.Fatalf("trigger after the client connected: %s", res.Body)
		}
		if page := owner.get(base).Body; !strings.Contains(page, "Listening") || strings.Contains(page, "Not listening") {
			t.Fatalf("workflow page after the client connected:\n%.3000s", page)
		}
		if ed := owner.get(base + "/edit"); !strings.Contains(ed.Body, "The client connected <strong>") {
			t.Fatal("the trigger card does not show the client's connection")
		}
	})
}
