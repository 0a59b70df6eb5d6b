package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"taskjuice/internal/connection"
	"taskjuice/internal/engine"
)

// TestBrowserClientRequest walks the client-request story in headless
// Chromium with a real SMTP server: staff add two steps to the client
// request queue (nothing is sent), send the queue (exactly one email), the
// client follows the emailed link, connects both sandbox apps through the
// sandbox's consent screen one at a time and sees "2 of 2 connected"; the
// steps are bound to the client's connections and the run that waited for
// them completes.
func TestBrowserClientRequest(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		onceInBrowser(t)
		ctx := context.Background()
		box := e.mailbox()
		w := e.clientWorkflow(t, e.acme, "Lead alerts", map[string]string{"post": "sandbox-chat", "read": "sandbox-inbox"})
		base := e.srv.URL + "/acme/workflows/" + w.ID

		bctx := newBrowser(t)
		err := chromedp.Do(bctx,
			chromedp.Navigate(e.srv.URL+"/signin"),
			chromedp.SendKeys(`input[name=email]`, "owner@a.example"),
			chromedp.SendKeys(`input[name=password]`, pw),
			chromedp.Submit(`input[name=password]`),
			chromedp.WaitVisible(`.tiles`),
			chromedp.Navigate(base+"/edit"),
			chromedp.WaitVisible(`#client-slot-post`),
		)
		if err != nil {
			t.Fatalf("open the editor: %v", err)
		}
		if got := text(t, bctx, `#client-slot-post`); !strings.Contains(got, "The agency queues a request and the client connects Sandbox Chat from their portal or via a magic-link email.") {
			t.Fatalf("client slot: %q", got)
		}
		screenshot(t, bctx, "client-slot")
		for _, node := range []string{"post", "read"} {
			if err := chromedp.Do(bctx, chromedp.Click(`#client-slot-`+node+` button`)); err != nil {
				t.Fatalf("queue %s: %v", node, err)
			}
			// The page after the redirect says the step is queued.
			eventually(t, "step "+node+" queued", 10*time.Second, func() bool {
				got, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`(() => { const s = document.querySelector("#client-slot-`+node+`"); return s ? s.textContent : ""; })()`))
				return strings.Contains(got, "not sent yet")
			})
			waitFlash(t, bctx, "Added to the client request queue. Nothing is sent until you send the queue.")
		}
		if got := box.deliver(t); len(got) != 0 {
			t.Fatalf("queuing sent %d emails", len(got))
		}
		err = chromedp.Do(bctx,
			chromedp.Navigate(e.srv.URL+"/acme/clients/requests"),
			chromedp.WaitVisible(`#send-requests`),
			chromedp.SendKeys(`textarea[name=note]`, "Two apps for the lead alerts, please."),
		)
		if err != nil {
			t.Fatalf("requests page: %v", err)
		}
		screenshot(t, bctx, "client-request-queue")
		if err := chromedp.Do(bctx, chromedp.Click(`#send-requests button.primary`)); err != nil {
			t.Fatalf("send: %v", err)
		}
		waitFlash(t, bctx, "Request sent to the client: one email with one sign-in link.")
		mails := box.deliver(t)
		if len(mails) != 1 {
			t.Fatalf("sending the queue sent %d emails, want one", len(mails))
		}
		for _, want := range []string{"Sandbox Chat", "Sandbox Inbox", "Post messages as you", "Read messages", "Two apps for the lead alerts, please."} {
			if !strings.Contains(mails[0].Text, want) {
				t.Fatalf("email lacks %q:\n%s", want, mails[0].Text)
			}
		}
		if s := secretPattern.FindString(mails[0].Raw); s != "" {
			t.Fatal("the request email carries a secret")
		}
		link := linkIn(t, e, mails[0], "/portal/link/")

		// Published (the request is out) and a run waits for the client.
		owner := e.signIn("owner@a.example")
		wantRedirect(t, "publish", owner.post("/acme/workflows/"+w.ID+"/publish", nil), "/acme/workflows/"+w.ID+"/edit")
		res := owner.api("POST", "/api/v1/workspaces/acme/workflows/"+w.ID+"/runs", `{"name":"Ada"}`)
		wantStatus(t, "start run", res, 202)
		var started struct{ RunID string }
		must(t, json.Unmarshal([]byte(res.Body), &started))
		e.drain(t)

		// The client: signed out staff, the emailed link in the same browser.
		err = chromedp.Do(bctx,
			chromedp.Click(`form[action="/signout"] button`),
			chromedp.WaitVisible(`input[name=email]`),
			chromedp.Navigate(link),
			chromedp.WaitVisible(`#progress`),
		)
		if err != nil {
			t.Fatalf("open the emailed link: %v", err)
		}
		if got := text(t, bctx, `#progress`); got != "0 of 2 connected" {
			t.Fatalf("progress: got %q", got)
		}
		screenshot(t, bctx, "client-request-page")
		for i, app := range []string{"sandbox-chat", "sandbox-inbox"} {
			err = chromedp.Do(bctx,
				chromedp.Click(`#app-`+app+` button`),
				chromedp.WaitVisible(`button[value=allow]`),
			)
			if err != nil {
				t.Fatalf("consent screen for %s: %v", app, err)
			}
			if i == 0 {
				screenshot(t, bctx, "client-consent")
			}
			err = chromedp.Do(bctx,
				chromedp.Click(`button[value=allow]`),
				chromedp.WaitVisible(`#app-`+app+` .request-state`),
			)
			if err != nil {
				t.Fatalf("back from consent for %s: %v", app, err)
			}
			if got := text(t, bctx, `#app-`+app+` .request-state`); got != "Connected" {
				t.Fatalf("%s reads %q, want Connected", app, got)
			}
			if got, want := text(t, bctx, `#progress`), []string{"1 of 2 connected", "2 of 2 connected"}[i]; got != want {
				t.Fatalf("progress: got %q, want %q", got, want)
			}
		}
		screenshot(t, bctx, "client-request-done")

		bound, err := e.workflows.ClientBindings(ctx, w.ID)
		must(t, err)
		for _, node := range []string{"post", "read"} {
			c, err := e.connections.Get(ctx, e.acme, bound[node])
			if err != nil || c.OwnerKind != connection.OwnerClient || c.Status != connection.StatusActive {
				t.Fatalf("node %s: %+v, %v", node, c, err)
			}
		}
		e.drain(t)
		run, err := e.engine.Get(ctx, e.acme.ID, started.RunID)
		must(t, err)
		if run.Status != engine.StatusCompleted {
			t.Fatalf("the waiting run: %s, want completed", run.Status)
		}
		err = chromedp.Do(bctx, chromedp.Navigate(e.srv.URL+"/portal/connections"), chromedp.WaitVisible(`#client-connections`))
		if err != nil {
			t.Fatal(err)
		}
		if got := text(t, bctx, `#client-connections`); strings.Count(got, "Connected and working.") != 2 {
			t.Fatalf("portal connections: %q", got)
		}
		screenshot(t, bctx, "portal-connections")
	})
}

// TestBrowserClientConnectionScreen walks a client's connection detail
// screen at each viewport and reads it after every transition: a healthy
// connection from the list; the app revokes it and the screen says so in a
// client's words, with the workflow it serves, "Refresh credential" (refused
// on the screen's own address) and "Reconnect by email"; the client
// reconnects through the fresh request and the screen says it works again.
func TestBrowserClientConnectionScreen(t *testing.T) {
	eachViewport(t, clientConnectionStory)
}

func clientConnectionStory(t *testing.T, e *env, vp viewport) {
	ctx := context.Background()
	box := e.mailbox()
	owner := e.signIn("owner@a.example")
	w := e.clientWorkflow(t, e.acme, "Lead alerts", map[string]string{"post": "sandbox-chat"})
	owner.post("/acme/workflows/"+w.ID+"/edit/steps/post/request", nil)
	owner.post("/acme/clients/requests/send", nil)
	link := linkIn(t, e, box.deliver(t)[0], "/portal/link/")

	p := &storyPage{t: t, b: newBrowserSized(t, vp.width, vp.height), base: e.srv.URL, vp: vp}
	p.open(strings.TrimPrefix(link, e.srv.URL), `#progress`)
	p.click("connect", `form[action*="/connect/"] button`, `button[value=allow]`)
	p.click("allow", `button[value=allow]`, `#progress`)
	bound, err := e.workflows.ClientBindings(ctx, w.ID)
	must(t, err)
	id := bound["post"]
	if id == "" {
		t.Fatal("the client's connection is not bound to the step")
	}
	detail := "/portal/connections/" + id

	// Healthy: the list links to the screen, which says it works.
	p.open("/portal/connections", `#client-connections`)
	p.see("connection list", `#client-connections`, "Sandbox Chat", "Connected and working.")
	p.click("open the connection", `#client-connections a[href="`+detail+`"]`, `#connection-state`)
	p.see("healthy connection", `#connection-state`, "Active", "Connected and working.", "Sandbox Chat", "TaskJuice can reach Sandbox Chat with this connection")
	p.notSee("healthy connection", `#connection-state`, "Reconnection needed.", "Reconnect by email", "no longer accepts")
	p.see("workflows it serves", `#connection-workflows`, "Lead alerts")
	p.see("history", `#connection-history`, "Connected", "You")
	p.snap("client-connection-active")

	// The app revokes it: the screen says why in a client's words.
	account := connectionAccount(t, e, id)
	_, err = e.sandbox.RevokeAccount(account)
	must(t, err)
	wantStatus(t, "staff refresh of the revoked grant", owner.api("POST", "/api/v1/connections/"+id+"/refresh", ""), 400)
	p.open(detail, `#connection-state`)
	p.see("broken connection", `#connection-state`, "Error", "Reconnection needed.", "Since", "Sandbox Chat no longer accepts this connection", "Refresh credential", "Reconnect by email")
	p.notSee("broken connection", `#connection-state`, "Connected and working.", "TaskJuice can reach")
	p.see("history after the break", `#connection-history`, "Sandbox Chat stopped accepting the connection", "TaskJuice")
	p.snap("client-connection-error")

	// Refresh credential is refused, on the screen's own address.
	p.click("refresh credential", `form[action$="/refresh"] button`, `.alert-error`)
	p.see("refused refresh", `.alert-error`, "Connection cannot be refreshed. Please reconnect your connection.")
	p.at("after a refused refresh", detail)
	p.notSee("reloaded screen", `main`, "Connection cannot be refreshed.")
	p.snap("client-refresh-refused")

	// Reconnect by email: the emailed link leads through consent.
	p.click("reconnect by email", `form[action$="/reconnect"] button`, `.flash`)
	p.see("reconnect emailed", `.flash`, "We emailed you a link to reconnect.")
	p.at("after reconnect by email", detail)
	relink := linkIn(t, e, box.deliver(t)[0], "/portal/link/")
	p.open(strings.TrimPrefix(relink, e.srv.URL), `#progress`)
	p.see("reconnect request", `#progress`, "0 of 1 connected")
	p.click("connect again", `form[action*="/connect/"] button`, `button[value=allow]`)
	p.click("allow again", `button[value=allow]`, `#progress`)
	p.see("reconnect request", `#progress`, "1 of 1 connected")

	p.open(detail, `#connection-state`)
	p.see("mended connection", `#connection-state`, "Active", "Connected and working.", "TaskJuice can reach Sandbox Chat")
	p.notSee("mended connection", `#connection-state`, "Reconnection needed.", "no longer accepts", "Reconnect by email")
	p.see("history after the reconnect", `#connection-history`, "Reconnected")
	p.click("refresh a healthy connection", `form[action$="/refresh"] button`, `.flash`)
	p.see("refreshed", `.flash`, "Connection refreshed.")
	p.at("after a refresh", detail)
	p.snap("client-connection-mended")
}

// connectionAccount is the sandbox account a connection was made with.
func connectionAccount(t *testing.T, e *env, id string) string {
	t.Helper()
	c, err := e.connections.Get(context.Background(), e.acme, id)
	must(t, err)
	if c.ExternalAccountName == "" {
		t.Fatal("the connection has no external account")
	}
	return c.ExternalAccountName
}
