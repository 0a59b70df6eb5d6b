package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/connection"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// clientWorkflow creates a draft whose action nodes' client provides the
// connection: one node per app, each reading or posting through it.
func (e *env) clientWorkflow(t *testing.T, ws account.Workspace, name string, nodes map[string]string) workflow.Workflow {
	t.Helper()
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual}}
	prev := "start"
	for _, id := range []string{"post", "read", "notify"} {
		app, ok := nodes[id]
		if !ok {
			continue
		}
		cfg := map[string]any{"app": app, "action": "list-channels"}
		if app == "sandbox-chat" {
			cfg = map[string]any{"app": app, "action": "post-message", "inputs": map[string]any{"channel": "general", "text": "New lead: {{ $trigger.name }}"}}
		}
		raw, _ := json.Marshal(cfg)
		g.Nodes = append(g.Nodes, workflow.Node{ID: id, Kind: workflow.NodeAction, Config: raw, Connection: &workflow.Binding{ClientProvides: true}})
		g.Edges = append(g.Edges, workflow.Edge{From: prev, To: id})
		prev = id
	}
	w, err := e.workflows.Create(context.Background(), ws, name, "", &g, "")
	must(t, err)
	return w
}

// drain runs the engine until no run is due.
func (e *env) drain(t *testing.T) {
	t.Helper()
	for range 100 {
		did, err := e.engine.Work(context.Background())
		must(t, err)
		if !did {
			return
		}
	}
	t.Fatal("the engine never ran out of due runs")
}

var connectButton = regexp.MustCompile(`action="(/portal/requests/[^/"]+/connect/[^"]+)"`)

// TestClientRequestsEndToEnd: two nodes queued → nothing sent; the queue
// dispatched → exactly one email (one link, both apps, their permission
// labels, the note, no secret); the client opens the link, connects both
// apps through the sandbox's consent screen, "2 of 2 connected"; the nodes
// are bound to the client's connections; the run that waited for them
// completes; the link does not work twice.
func TestClientRequestsEndToEnd(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		box := e.mailbox()
		owner := e.signIn("owner@a.example")
		w := e.clientWorkflow(t, e.acme, "Lead alerts", map[string]string{"post": "sandbox-chat", "read": "sandbox-inbox"})
		base := "/acme/workflows/" + w.ID

		ed := owner.get(base + "/edit")
		wantStatus(t, "editor", ed, 200)
		for _, want := range []string{
			"The agency queues a request and the client connects Sandbox Chat from their portal or via a magic-link email.",
			"The agency queues a request and the client connects Sandbox Inbox from their portal or via a magic-link email.",
			"Add to client request queue",
		} {
			if !strings.Contains(ed.Body, want) {
				t.Fatalf("editor lacks %q", want)
			}
		}
		// Blocked only by the connections the client has not provided.
		wantRedirect(t, "publish before any request", owner.post(base+"/publish", nil), base+"/edit?check=publish")
		pub := owner.get(base + "/edit?check=publish")
		if !strings.Contains(pub.Body, workflow.MsgCompilationFailed) || !strings.Contains(pub.Body, workflow.MsgActionInactiveConnection) {
			t.Fatalf("publish refusal: %.400s", pub.Body)
		}

		for _, node := range []string{"post", "read"} {
			res := owner.post(base+"/edit/steps/"+node+"/request", url.Values{})
			if res.StatusCode != http.StatusSeeOther {
				t.Fatalf("queue %s: %d %.300s", node, res.StatusCode, res.Body)
			}
		}
		owner.post(base+"/edit/steps/post/request", url.Values{}) // twice: still one request
		if got := box.deliver(t); len(got) != 0 {
			t.Fatalf("queuing sent %d emails, want none", len(got))
		}
		page := owner.get("/acme/clients/requests")
		wantStatus(t, "requests page", page, 200)
		if strings.Count(page.Body, `/clients/requests/queue/`) != 2 {
			t.Fatalf("queue should list two requests:\n%s", page.Body)
		}

		const note = "Please connect these two so the lead alerts can start."
		wantRedirect(t, "send the queue", owner.post("/acme/clients/requests/send", url.Values{"note": {note}}), "/acme/clients/requests")
		got := box.deliver(t)
		if len(got) != 1 {
			t.Fatalf("dispatch sent %d emails, want exactly one", len(got))
		}
		m := got[0]
		if len(m.To) != 1 || m.To[0] != "client@acme.example" {
			t.Fatalf("request email to %v, want the client", m.To)
		}
		for _, want := range []string{"Sandbox Chat", "Sandbox Inbox", "Post messages as you", "Read your channels", "Read messages", note} {
			if !strings.Contains(m.Text, want) {
				t.Errorf("request email lacks %q:\n%s", want, m.Text)
			}
		}
		if n := strings.Count(m.Text, e.srv.URL+"/portal/link/"); n != 1 {
			t.Fatalf("request email has %d sign-in links, want one:\n%s", n, m.Text)
		}
		if s := secretPattern.FindString(m.Raw); s != "" || strings.Contains(m.Raw, "tjs_") {
			t.Fatalf("request email carries a secret:\n%s", m.Text)
		}
		link := linkIn(t, e, m, "/portal/link/")
		sent := owner.get("/acme/clients/requests")
		if !strings.Contains(sent.Body, "0 of 2 connected") {
			t.Fatalf("staff do not see the request's progress:\n%s", sent.Body)
		}

		// Sent: the workflow may go live, and its runs wait for the client.
		wantRedirect(t, "publish once requested", owner.post(base+"/publish", nil), base+"/edit")
		res := owner.api("POST", "/api/v1/workspaces/acme/workflows/"+w.ID+"/runs", `{"name":"Ada"}`)
		wantStatus(t, "start run", res, 202)
		var started struct{ RunID string }
		must(t, json.Unmarshal([]byte(res.Body), &started))
		e.drain(t)
		run, err := e.engine.Get(ctx, e.acme.ID, started.RunID)
		must(t, err)
		if run.Status != engine.StatusWaiting || run.WaitReason != engine.WaitClientConnection {
			t.Fatalf("run before the client connects: %s (%s), want waiting (%s)", run.Status, run.WaitReason, engine.WaitClientConnection)
		}

		// The client follows the link: signed in, on the request page.
		client := e.browser()
		opened := client.open(link)
		if opened.StatusCode != http.StatusSeeOther || !strings.HasPrefix(opened.Header.Get("Location"), "/portal/requests/") {
			t.Fatalf("open link: %d to %q", opened.StatusCode, opened.Header.Get("Location"))
		}
		reqPage := opened.Header.Get("Location")
		rp := client.get(reqPage)
		wantStatus(t, "request page", rp, 200)
		if !strings.Contains(rp.Body, "0 of 2 connected") || !strings.Contains(rp.Body, note) {
			t.Fatalf("request page:\n%s", rp.Body)
		}
		for i, account := range []string{"Cleo Chat", "Cleo Inbox"} {
			mm := connectButton.FindStringSubmatch(rp.Body)
			if mm == nil {
				t.Fatalf("no Connect button left:\n%s", rp.Body)
			}
			back := client.consent(t, mm[1], url.Values{}, account)
			wantRedirect(t, "back from consent", back, reqPage)
			rp = client.get(reqPage)
			if want := []string{"1 of 2 connected", "2 of 2 connected"}[i]; !strings.Contains(rp.Body, want) {
				t.Fatalf("after consent %d: want %q:\n%s", i+1, want, rp.Body)
			}
			if strings.Count(rp.Body, ">Connected<") != i+1 {
				t.Fatalf("after consent %d: %d apps read Connected", i+1, strings.Count(rp.Body, ">Connected<"))
			}
		}

		// Bound to the client's own connections, by themselves.
		bound, err := e.workflows.ClientBindings(ctx, w.ID)
		must(t, err)
		cleo := mustP(t, e, "client@acme.example")
		for _, node := range []string{"post", "read"} {
			c, err := e.connections.Get(ctx, e.acme, bound[node])
			if err != nil {
				t.Fatalf("node %s is not bound: %v", node, err)
			}
			if c.OwnerKind != connection.OwnerClient || c.OwnerUserID != cleo.User.ID || c.Status != connection.StatusActive {
				t.Fatalf("node %s bound to %+v, want the client's active connection", node, c)
			}
		}
		// The run goes on by itself and completes.
		e.drain(t)
		run, err = e.engine.Get(ctx, e.acme.ID, started.RunID)
		must(t, err)
		if run.Status != engine.StatusCompleted {
			steps, _ := e.engine.Steps(ctx, e.acme.ID, run.ID)
			t.Fatalf("run after the client connected: %s, want completed; steps %+v", run.Status, steps)
		}
		// The gate passes on the client's connections, a new run needs no wait.
		ed = owner.get(base + "/edit")
		if strings.Contains(ed.Body, workflow.MsgActionInactiveConnection) {
			t.Fatal("the editor still reports an inactive connection")
		}
		if !strings.Contains(owner.get("/acme/clients/requests").Body, "2 of 2 connected") {
			t.Fatal("staff do not see the request completed")
		}
		portal := client.get("/portal")
		if !strings.Contains(portal.Body, "Lead alerts") || !strings.Contains(portal.Body, "Completed") {
			t.Fatalf("portal lacks the workflow or its run:\n%s", portal.Body)
		}
		wantStatus(t, "the link twice", e.browser().open(link), 410)
	})
}

// TestClientReconnectsFromPortal: a client-owned connection breaks at the
// sandbox; the client sees "Reconnection needed." at /portal/connections;
// Refresh credential answers the 400 message; a fresh request email's link
// reconnects it through consent; "Connected and working."; the reauthorized
// signal is raised as for staff, and the staff banner clears.
func TestClientReconnectsFromPortal(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		box := e.mailbox()
		owner := e.signIn("owner@a.example")
		w := e.clientWorkflow(t, e.acme, "Lead alerts", map[string]string{"post": "sandbox-chat"})
		owner.post("/acme/workflows/"+w.ID+"/edit/steps/post/request", nil)
		owner.post("/acme/clients/requests/send", url.Values{"note": {"One app"}})
		link := linkIn(t, e, box.deliver(t)[0], "/portal/link/")
		client := e.browser()
		reqPage := client.open(link).Header.Get("Location")
		mm := connectButton.FindStringSubmatch(client.get(reqPage).Body)
		wantRedirect(t, "connect", client.consent(t, mm[1], nil, "Cleo Chat"), reqPage)
		bound, err := e.workflows.ClientBindings(ctx, w.ID)
		must(t, err)
		id := bound["post"]

		page := client.get("/portal/connections")
		wantStatus(t, "portal connections", page, 200)
		if !strings.Contains(page.Body, "Connected and working.") {
			t.Fatalf("healthy connection:\n%s", page.Body)
		}

		// Broken at the sandbox; the refresher finds out.
		_, err = e.sandbox.RevokeAccount("Cleo Chat")
		must(t, err)
		wantStatus(t, "staff refresh of the broken grant", owner.api("POST", "/api/v1/connections/"+id+"/refresh", ""), 400)
		_, err = e.notify.Consume(ctx)
		must(t, err)
		if !strings.Contains(owner.get("/acme/").Body, "A connection needs to be reauthorized") {
			t.Fatal("no staff banner for the broken client connection")
		}
		page = client.get("/portal/connections")
		if !strings.Contains(page.Body, "Reconnection needed.") || !strings.Contains(page.Body, `href="/portal/connections/`+id+`"`) {
			t.Fatalf("broken connection in the list lacks its status or its link:\n%s", page.Body)
		}
		detail := "/portal/connections/" + id
		page = client.get(detail)
		for _, want := range []string{"Reconnection needed.", "Refresh credential", "Reconnect by email", "Lead alerts", "no longer accepts this connection"} {
			if !strings.Contains(page.Body, want) {
				t.Fatalf("connection detail screen lacks %q:\n%s", want, page.Body)
			}
		}
		wantSentBack(t, client, "client refresh of a broken connection", client.post(detail+"/refresh", nil), detail,
			"Connection cannot be refreshed. Please reconnect your connection.")

		wantRedirect(t, "reconnect by email", client.post(detail+"/reconnect", nil), detail)
		mails := box.deliver(t)
		if len(mails) != 1 || !strings.Contains(mails[0].Text, "Sandbox Chat (reconnect)") {
			t.Fatalf("reconnect email: %+v", mails)
		}
		relink := linkIn(t, e, mails[0], "/portal/link/")
		again := client.open(relink)
		rp := again.Header.Get("Location")
		body := client.get(rp).Body
		if !strings.Contains(body, "0 of 1 connected") {
			t.Fatalf("reconnect request page:\n%s", body)
		}
		mm = connectButton.FindStringSubmatch(body)
		// The consent screen is asked for the account the connection was
		// made with (login_hint).
		cleo, err := e.connections.Get(ctx, e.acme, id)
		must(t, err)
		if loc, _ := url.Parse(client.post(mm[1], nil).Header.Get("Location")); cleo.ExternalAccountID == "" || loc.Query().Get("login_hint") != cleo.ExternalAccountID {
			t.Fatalf("client reconnect: login_hint %q, want the account's id %q", loc.Query().Get("login_hint"), cleo.ExternalAccountID)
		}
		wantRedirect(t, "reconnect consent", client.consent(t, mm[1], nil, "Cleo Chat"), rp)
		if !strings.Contains(client.get(rp).Body, "1 of 1 connected") {
			t.Fatal("reconnect not shown as connected")
		}
		page = client.get("/portal/connections")
		if !strings.Contains(page.Body, "Connected and working.") || strings.Contains(page.Body, "Reconnection needed.") {
			t.Fatalf("after reconnect:\n%s", page.Body)
		}
		c, err := e.connections.Get(ctx, e.acme, id)
		must(t, err)
		if c.Status != connection.StatusActive {
			t.Fatalf("status after reconnect: %s", c.Status)
		}
		sigs, err := e.connections.Signals(ctx, id)
		must(t, err)
		if len(sigs) != 2 || sigs[1].Kind != connection.SignalReauthorized {
			t.Fatalf("signals: %+v, want needs_reauth then reauthorized", sigs)
		}
		_, err = e.notify.Consume(ctx)
		must(t, err)
		if strings.Contains(owner.get("/acme/").Body, "A connection needs to be reauthorized") {
			t.Fatal("the staff banner did not clear")
		}
		// Refresh credential on a healthy one: the toast.
		wantRedirect(t, "refresh healthy", client.post(detail+"/refresh", nil), detail)
		if !strings.Contains(client.get(detail).Body, "Connection refreshed.") {
			t.Fatal("no toast after a refresh")
		}
		_ = time.Second
	})
}
