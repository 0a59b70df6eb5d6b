package server_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"taskjuice/internal/connection"
)

// Email off: a server without SMTP hands staff the link of an invitation,
// a client request or a reconnect request to give the client themselves,
// shown once, and sends nothing.

const onceCookie = "tj_once_link"

// handover is a request whose answer may carry a link handed to staff:
// it goes through the leak checks with the link's token cut out, as an
// email's link is.
func (b *browser) handover(method, path string, form url.Values) response {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.e.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var hdr strings.Builder
	_ = res.Header.Write(&hdr)
	b.e.seenMu.Lock()
	b.e.seen = append(b.e.seen, linkToken.ReplaceAllString(method+" "+path+"\n"+hdr.String()+"\n"+string(raw), "[link]"))
	b.e.seenMu.Unlock()
	return response{Response: res, Body: string(raw)}
}

// emailOffAction posts an action that would email a link, with email off,
// and returns the link the page it redirects to shows, once: the answer
// is a redirect to page with the flash, the link crosses it in an
// HttpOnly cookie scoped to page, page shows it once, and a reload no
// longer does.
func emailOffAction(t *testing.T, staff *browser, action, page, flash, linkPath string) string {
	t.Helper()
	res := staff.handover("POST", action, url.Values{})
	wantRedirect(t, "post "+action, res, page)
	var ck *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == onceCookie {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.Path != page || ck.MaxAge <= 0 || ck.MaxAge > 300 || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("link cookie: got %+v, want HttpOnly, SameSite=Strict, Path=%s, short-lived", ck, page)
	}
	shown := staff.handover("GET", page, nil)
	wantStatus(t, "page with the link", shown, 200)
	for _, want := range []string{flash, "No email was sent: email is off on this server.", "shown only now"} {
		if !strings.Contains(shown.Body, want) {
			t.Fatalf("page after %s lacks %q:\n%s", action, want, shown.Body)
		}
	}
	m := regexp.MustCompile(`value="(` + regexp.QuoteMeta(staff.e.srv.URL+linkPath) + `tj[il]_[A-Za-z0-9_-]+)"`).FindStringSubmatch(shown.Body)
	if m == nil || !strings.Contains(shown.Body, `id="once-link-url"`) {
		t.Fatalf("page after %s shows no %s link:\n%s", action, linkPath, shown.Body)
	}
	link := m[1]
	again := staff.get(page)
	wantStatus(t, "reload", again, 200)
	if strings.Contains(again.Body, "once-link") || linkToken.MatchString(again.Body) {
		t.Fatalf("a reload still shows the link:\n%s", again.Body)
	}
	return link
}

func outboxRows(t *testing.T, e *env) int {
	t.Helper()
	var n int
	must(t, e.db.Read().QueryRowContext(context.Background(), `SELECT COUNT(*) FROM outbound_emails`).Scan(&n))
	return n
}

// wantEmailOffLogged checks the one log line per email not sent: the
// recipient and the kind of email (the leak check sees it has no link).
func wantEmailOffLogged(t *testing.T, e *env, kind, to string, times int) {
	t.Helper()
	n := 0
	for _, line := range strings.Split(e.log.String(), "\n") {
		if strings.Contains(line, "email not sent: email is off") && strings.Contains(line, `email="`+kind+`"`) && strings.Contains(line, "to="+to) {
			n++
		}
	}
	if n != times {
		t.Fatalf("log lines for the %s to %s not emailed: got %d, want %d:\n%s", kind, to, n, times, e.log.String())
	}
}

// TestEmailOffInvitation: with no SMTP, the members page says email is
// off; "Send invitation" hands staff the sign-up link once and queues no
// email; the link signs the client up; a resend hands over a new link and
// kills the old one.
func TestEmailOffInvitation(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.t.Cleanup(e.checkNoLinkTokenStored)
		owner := e.signIn("owner@a.example")
		page := owner.get("/acme/workspace/members")
		if !strings.Contains(page.Body, "Email is off on this server: you will get a link to copy and give to the client yourself.") {
			t.Fatalf("members page does not say email is off:\n%s", page.Body)
		}
		// A refused form is shown again as before.
		if p := wantKept(t, owner, "bad email", owner.post("/acme/workspace/members/invite", url.Values{"email": {"not-an-email"}}), "/acme/workspace/members"); !strings.Contains(p.Body, `value="not-an-email"`) {
			t.Fatal("bad email: the form must show again with the input")
		}

		res := owner.handover("POST", "/acme/workspace/members/invite", url.Values{"email": {"Dana@Client.example"}})
		wantRedirect(t, "invite", res, "/acme/workspace/members")
		// The link goes only to the page it was meant for.
		if other := owner.get("/acme/clients/requests"); strings.Contains(other.Body, "once-link") {
			t.Fatal("another page shows the handed-over link")
		}
		shown := owner.handover("GET", "/acme/workspace/members", nil)
		link := regexp.MustCompile(regexp.QuoteMeta(e.srv.URL+"/invitations/") + `tji_[A-Za-z0-9_-]+`).FindString(shown.Body)
		if link == "" || !strings.Contains(shown.Body, "No email was sent: email is off on this server.") {
			t.Fatalf("members page after the invitation:\n%s", shown.Body)
		}
		if strings.Contains(shown.Body, "Invitation sent.") {
			t.Fatal("the page claims the invitation was sent")
		}
		if again := owner.get("/acme/workspace/members"); linkToken.MatchString(again.Body) || !strings.Contains(again.Body, "dana@client.example") {
			t.Fatalf("after a reload: the link shown again, or the invitation not listed:\n%s", again.Body)
		}
		if n := outboxRows(t, e); n != 0 {
			t.Fatalf("outbox rows with email off: got %d, want 0", n)
		}
		wantEmailOffLogged(t, e, "client invitation", "dana@client.example", 1)

		// A resend hands over a new link; the first one stops working.
		inv, err := e.accounts.PendingInvitations(context.Background(), mustP(t, e, "owner@a.example"), e.acme)
		must(t, err)
		link2 := emailOffAction(t, owner, "/acme/workspace/members/invitations/"+inv[0].ID+"/resend", "/acme/workspace/members",
			"New invitation link created; the earlier link no longer works.", "/invitations/")
		if link2 == link {
			t.Fatal("a resend handed over the same link")
		}
		wantStatus(t, "superseded link", e.browser().open(link), 404)
		wantEmailOffLogged(t, e, "client invitation (resend)", "dana@client.example", 1)

		dana := e.browser()
		form := dana.open(link2)
		wantStatus(t, "sign-up page", form, 200)
		if !strings.Contains(form.Body, "Join Acme Corp") {
			t.Fatalf("sign-up page:\n%s", form.Body)
		}
		wantRedirect(t, "accept", dana.postLink(link2, url.Values{"name": {"Dana"}, "password": {pw}}), "/portal")
		wantStatus(t, "portal", dana.get("/portal"), 200)
		if p := mustP(t, e, "dana@client.example"); !p.IsClient() || p.WorkspaceID != e.acme.ID {
			t.Fatalf("dana is %+v, want a client of acme", p)
		}
		if n := outboxRows(t, e); n != 0 {
			t.Fatalf("outbox rows with email off: got %d, want 0", n)
		}
	})
}

// TestEmailOffClientRequests: with no SMTP, sending the request queue
// hands staff the sign-in link once and queues no email; the client
// follows it and connects; a resend hands over a new link.
func TestEmailOffClientRequests(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.t.Cleanup(e.checkNoLinkTokenStored)
		owner := e.signIn("owner@a.example")
		w := e.clientWorkflow(t, e.acme, "Lead alerts", map[string]string{"post": "sandbox-chat"})
		owner.post("/acme/workflows/"+w.ID+"/edit/steps/post/request", url.Values{})
		page := owner.get("/acme/clients/requests")
		if !strings.Contains(page.Body, "Email is off on this server: you will get a link to copy and give to the client yourself.") {
			t.Fatalf("requests page does not say email is off:\n%s", page.Body)
		}
		link := emailOffAction(t, owner, "/acme/clients/requests/send", "/acme/clients/requests", "Request created.", "/portal/link/")
		if strings.Contains(owner.get("/acme/clients/requests").Body, "Request sent to the client") {
			t.Fatal("the page claims an email was sent")
		}
		if n := outboxRows(t, e); n != 0 {
			t.Fatalf("outbox rows with email off: got %d, want 0", n)
		}
		wantEmailOffLogged(t, e, "client request", "client@acme.example", 1)

		// Resend: a new link, the first one dead.
		sent := regexp.MustCompile(`/acme/clients/requests/([^/"]+)/resend`).FindStringSubmatch(owner.get("/acme/clients/requests").Body)
		if sent == nil {
			t.Fatal("no Resend on the sent request")
		}
		link2 := emailOffAction(t, owner, sent[0], "/acme/clients/requests", "New request link created; the earlier link no longer works.", "/portal/link/")
		wantStatus(t, "superseded link", e.browser().open(link), 404)
		wantEmailOffLogged(t, e, "client request (resend)", "client@acme.example", 1)

		client := e.browser()
		opened := client.open(link2)
		reqPage := opened.Header.Get("Location")
		if opened.StatusCode != http.StatusSeeOther || !strings.HasPrefix(reqPage, "/portal/requests/") {
			t.Fatalf("open link: %d to %q", opened.StatusCode, reqPage)
		}
		mm := connectButton.FindStringSubmatch(client.get(reqPage).Body)
		if mm == nil {
			t.Fatal("no Connect button on the request page")
		}
		wantRedirect(t, "connect", client.consent(t, mm[1], nil, "Cleo Chat"), reqPage)
		if !strings.Contains(client.get(reqPage).Body, "1 of 1 connected") {
			t.Fatal("the request is not connected")
		}
		if n := outboxRows(t, e); n != 0 {
			t.Fatalf("outbox rows with email off: got %d, want 0", n)
		}
	})
}

// TestEmailOffReconnect: with no SMTP, "Ask the client to reconnect" hands
// staff the link once; the client's own "Reconnect now" in the portal goes
// straight to the consent screen instead of claiming an email; both
// reconnect the same connection; no email is queued.
func TestEmailOffReconnect(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.t.Cleanup(e.checkNoLinkTokenStored)
		owner := e.signIn("owner@a.example")
		w := e.clientWorkflow(t, e.acme, "Lead alerts", map[string]string{"post": "sandbox-chat"})
		owner.post("/acme/workflows/"+w.ID+"/edit/steps/post/request", url.Values{})
		link := emailOffAction(t, owner, "/acme/clients/requests/send", "/acme/clients/requests", "Request created.", "/portal/link/")
		client := e.browser()
		reqPage := client.open(link).Header.Get("Location")
		mm := connectButton.FindStringSubmatch(client.get(reqPage).Body)
		wantRedirect(t, "connect", client.consent(t, mm[1], nil, "Cleo Chat"), reqPage)
		bound, err := e.workflows.ClientBindings(ctx, w.ID)
		must(t, err)
		id := bound["post"]

		breakIt := func() {
			t.Helper()
			_, err := e.sandbox.RevokeAccount("Cleo Chat")
			must(t, err)
			wantStatus(t, "refresh of the broken grant", owner.api("POST", "/api/v1/connections/"+id+"/refresh", ""), 400)
		}
		wantActive := func(what string) {
			t.Helper()
			c, err := e.connections.Get(ctx, e.acme, id)
			must(t, err)
			if c.Status != connection.StatusActive {
				t.Fatalf("%s: status %s, want active", what, c.Status)
			}
		}

		// Staff ask the client: the link, once.
		breakIt()
		cp := owner.get("/acme/connections/" + id)
		if !strings.Contains(cp.Body, "Ask the client to reconnect") || !strings.Contains(cp.Body, "Email is off on this server") {
			t.Fatalf("connection page does not say email is off:\n%s", cp.Body)
		}
		relink := emailOffAction(t, owner, "/acme/connections/"+id+"/request-reconnect", "/acme/connections/"+id,
			"Request to reconnect created.", "/portal/link/")
		if strings.Contains(owner.get("/acme/connections/"+id).Body, "The client was emailed") {
			t.Fatal("the page claims the client was emailed")
		}
		wantEmailOffLogged(t, e, "client reconnect request", "client@acme.example", 1)
		cleo := e.browser()
		rp := cleo.open(relink).Header.Get("Location")
		body := cleo.get(rp).Body
		if !strings.Contains(body, "0 of 1 connected") {
			t.Fatalf("reconnect request page:\n%s", body)
		}
		mm = connectButton.FindStringSubmatch(body)
		wantRedirect(t, "reconnect consent", cleo.consent(t, mm[1], nil, "Cleo Chat"), rp)
		wantActive("after the handed-over link")

		// The client on their own: no email claimed, straight to consent.
		breakIt()
		pc := cleo.get("/portal/connections/" + id)
		if !strings.Contains(pc.Body, "Reconnect now") || strings.Contains(pc.Body, "Reconnect by email") || !strings.Contains(pc.Body, "Email is off on this server") {
			t.Fatalf("portal connections with email off:\n%s", pc.Body)
		}
		back := cleo.consent(t, "/portal/connections/"+id+"/reconnect", nil, "Cleo Chat")
		loc := back.Header.Get("Location")
		if back.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/portal/requests/") {
			t.Fatalf("back from the portal's reconnect: %d to %q", back.StatusCode, loc)
		}
		done := cleo.get(loc)
		if !strings.Contains(done.Body, "1 of 1 connected") || strings.Contains(done.Body, "emailed") {
			t.Fatalf("after the portal's reconnect:\n%s", done.Body)
		}
		wantActive("after the portal's reconnect")
		if pc := cleo.get("/portal/connections"); !strings.Contains(pc.Body, "Connected and working.") {
			t.Fatalf("portal connections after reconnect:\n%s", pc.Body)
		}
		if c, err := e.connections.Get(ctx, e.acme, id); err != nil || c.ID != id {
			t.Fatalf("the same connection was not reconnected: %v", err)
		}
		if n := outboxRows(t, e); n != 0 {
			t.Fatalf("outbox rows with email off: got %d, want 0", n)
		}
	})
}

// TestEmailOnUnchanged: with SMTP, the same actions email the link and
// hand nothing over: the flashes say what was sent, no page says email is
// off, no link cookie is set.
func TestEmailOnUnchanged(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		box := e.mailbox()
		owner := e.signIn("owner@a.example")
		noHandover := func(what string, res response) {
			t.Helper()
			for _, c := range res.Cookies() {
				if c.Name == onceCookie {
					t.Fatalf("%s with email on set the link cookie", what)
				}
			}
		}
		for _, p := range []string{"/acme/workspace/members", "/acme/clients/requests"} {
			if strings.Contains(owner.get(p).Body, "Email is off") {
				t.Fatalf("%s says email is off with SMTP configured", p)
			}
		}
		res := owner.post("/acme/workspace/members/invite", url.Values{"email": {"dana@client.example"}})
		wantRedirect(t, "invite", res, "/acme/workspace/members")
		noHandover("invite", res)
		page := owner.get("/acme/workspace/members")
		if !strings.Contains(page.Body, "Invitation sent.") || strings.Contains(page.Body, "once-link") {
			t.Fatalf("members page after an emailed invitation:\n%s", page.Body)
		}
		if got := box.deliver(t); len(got) != 1 || got[0].To[0] != "dana@client.example" {
			t.Fatalf("invitation emails: %d", len(got))
		}

		w := e.clientWorkflow(t, e.acme, "Lead alerts", map[string]string{"post": "sandbox-chat"})
		owner.post("/acme/workflows/"+w.ID+"/edit/steps/post/request", url.Values{})
		res = owner.post("/acme/clients/requests/send", url.Values{})
		wantRedirect(t, "send", res, "/acme/clients/requests")
		noHandover("send", res)
		if page := owner.get("/acme/clients/requests"); !strings.Contains(page.Body, "Request sent to the client: one email with one sign-in link.") || strings.Contains(page.Body, "once-link") {
			t.Fatalf("requests page after an emailed request:\n%s", page.Body)
		}
		got := box.deliver(t)
		if len(got) != 1 {
			t.Fatalf("request emails: %d, want 1", len(got))
		}
		client := e.browser()
		reqPage := client.open(linkIn(t, e, got[0], "/portal/link/")).Header.Get("Location")
		mm := connectButton.FindStringSubmatch(client.get(reqPage).Body)
		wantRedirect(t, "connect", client.consent(t, mm[1], nil, "Cleo Chat"), reqPage)
		bound, err := e.workflows.ClientBindings(context.Background(), w.ID)
		must(t, err)
		id := bound["post"]
		if strings.Contains(owner.get("/acme/connections/"+id).Body, "Email is off") {
			t.Fatal("the connection page says email is off with SMTP configured")
		}
		res = owner.post("/acme/connections/"+id+"/request-reconnect", nil)
		wantRedirect(t, "ask to reconnect", res, "/acme/connections/"+id)
		noHandover("ask to reconnect", res)
		if !strings.Contains(owner.get("/acme/connections/"+id).Body, "The client was emailed a request to reconnect.") {
			t.Fatal("no flash after asking the client to reconnect")
		}
		if got := box.deliver(t); len(got) != 1 || !strings.Contains(got[0].Text, "(reconnect)") {
			t.Fatalf("reconnect emails: %d", len(got))
		}
		if strings.Contains(client.get("/portal/connections/"+id).Body, "Email is off") {
			t.Fatal("the portal says email is off with SMTP configured")
		}
		wantRedirect(t, "portal reconnect", client.post("/portal/connections/"+id+"/reconnect", nil), "/portal/connections/"+id)
		if got := box.deliver(t); len(got) != 1 {
			t.Fatalf("portal reconnect emails: %d, want 1", len(got))
		}
		if strings.Contains(e.log.String(), "email not sent") {
			t.Fatal("email on, yet a log line says an email was not sent")
		}
	})
}
