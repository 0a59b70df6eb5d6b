package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/account"
)

// TestPortalIsolation: a client of workspace A sees and acts on nothing of
// workspace B (404), is sent back to the portal from every staff address,
// and cannot use another client's link, an expired link or a used one;
// staff cannot use a client's link either. Each link is random and
// single-purpose, and only its hash is stored (checkNoLinkTokenStored).
func TestPortalIsolation(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		box := e.mailbox()
		_, err := e.accounts.CreateClient(ctx, e.bravo.ID, account.NewUser{Email: "client@bravo.example", Name: "Bea", Password: pw})
		must(t, err)

		// B's client gets a request and connects an app.
		ownerB := e.signIn("owner@b.example")
		wb := e.clientWorkflow(t, e.bravo, "Bravo alerts", map[string]string{"post": "sandbox-chat", "read": "sandbox-inbox"})
		ownerB.post("/bravo/workflows/"+wb.ID+"/edit/steps/post/request", nil)
		ownerB.post("/bravo/workflows/"+wb.ID+"/edit/steps/read/request", nil)
		wantRedirect(t, "B sends", ownerB.post("/bravo/clients/requests/send", url.Values{"note": {"for Bea"}}), "/bravo/clients/requests")
		bLink := linkIn(t, e, box.deliver(t)[0], "/portal/link/")

		cleo := e.signIn("client@acme.example")
		// Another client's link, while signed in: refused, and not spent.
		foreign := cleo.open(bLink)
		wantStatus(t, "another client's link", foreign, 409)
		if !strings.Contains(foreign.Body, "for someone else") || strings.Contains(foreign.Body, "<form method=\"post\" action=\"/portal/requests") {
			t.Fatalf("foreign link page:\n%s", foreign.Body)
		}
		wantStatus(t, "staff on a client's link", e.signIn("owner@a.example").open(bLink), 409)

		bea := e.browser()
		opened := bea.open(bLink)
		reqPage := opened.Header.Get("Location")
		if opened.StatusCode != http.StatusSeeOther || !strings.HasPrefix(reqPage, "/portal/requests/") {
			t.Fatalf("B's client opens the link: %d %q", opened.StatusCode, reqPage)
		}
		mm := connectButton.FindStringSubmatch(bea.get(reqPage).Body)
		wantRedirect(t, "B connects", bea.consent(t, mm[1], nil, "Bea Chat"), reqPage)
		bound, err := e.workflows.ClientBindings(ctx, wb.ID)
		must(t, err)
		bConn := bound["post"]

		// A's client and B's things: not found.
		wantStatus(t, "A's client on B's request", cleo.get(reqPage), 404)
		wantStatus(t, "A's client connects B's app", cleo.post(mm[1], nil), 404)
		wantStatus(t, "A's client refreshes B's connection", cleo.post("/portal/connections/"+bConn+"/refresh", nil), 404)
		wantStatus(t, "A's client reconnects B's connection", cleo.post("/portal/connections/"+bConn+"/reconnect", nil), 404)
		if strings.Contains(cleo.get("/portal/connections").Body, "Bea Chat") || strings.Contains(cleo.get("/portal").Body, "Bravo") {
			t.Fatal("A's client sees B's things")
		}
		if n := len(box.deliver(t)); n != 0 {
			t.Fatalf("a refused action sent %d emails", n)
		}

		// Every staff address sends a client back to the portal.
		for _, p := range []string{"/dashboard", "/acme/", "/acme/clients/requests", "/acme/workspace/members", "/acme/connections/" + bConn,
			"/bravo/clients/requests", "/acme/workflows/" + wb.ID + "/edit", "/settings/account", "/nothing/here", "/acme/monitoring/workflow-runs"} {
			wantRedirect(t, "client on "+p, cleo.get(p), "/portal")
		}
		for _, p := range []string{"/acme/clients/requests/send", "/acme/workflows/" + wb.ID + "/edit/steps/post/request", "/acme/workspace/members/invite"} {
			wantRedirect(t, "client posts to "+p, cleo.post(p, url.Values{"email": {"x@y.example"}}), "/portal")
		}
		// And staff never see the portal's pages.
		owner := e.signIn("owner@a.example")
		for _, p := range []string{"/portal", "/portal/connections", reqPage} {
			wantRedirect(t, "staff on "+p, owner.get(p), "/dashboard")
		}
		// Staff of A cannot see or send B's requests.
		wantStatus(t, "A's staff on B's requests", owner.get("/bravo/clients/requests"), 404)

		// A used link: refused with a clear page, offering nothing.
		used := e.browser().open(bLink)
		wantStatus(t, "used link", used, 410)
		if !strings.Contains(used.Body, "already used") || strings.Contains(used.Body, "/connect/") {
			t.Fatalf("used link page:\n%s", used.Body)
		}
		// An expired link.
		ownerB.post("/bravo/connections/"+bConn+"/request-reconnect", nil)
		exLink := linkIn(t, e, box.deliver(t)[0], "/portal/link/")
		if exLink == bLink {
			t.Fatal("two requests share a link")
		}
		_, err = e.db.Write().ExecContext(ctx, `UPDATE client_request_batches SET link_expires_at = $1 WHERE link_used_at IS NULL`, time.Now().Add(-time.Minute))
		must(t, err)
		ex := e.browser().open(exLink)
		wantStatus(t, "expired link", ex, 410)
		if !strings.Contains(ex.Body, "expired") || strings.Contains(ex.Body, "/connect/") || strings.Contains(ex.Body, `type="password"`) {
			t.Fatalf("expired link page:\n%s", ex.Body)
		}
		wantStatus(t, "a made-up link", e.browser().open(e.srv.URL+"/portal/link/tjl_"+strings.Repeat("A", 43)), 404)

		// A request past its 4 hours in the inbox: nothing can be connected.
		_, err = e.db.Write().ExecContext(ctx, `UPDATE client_request_batches SET expires_at = $1`, time.Now().Add(-time.Minute))
		must(t, err)
		exp := bea.get(reqPage)
		wantStatus(t, "expired request page", exp, 410)
		if !strings.Contains(exp.Body, "This request has expired") || strings.Contains(exp.Body, "/connect/") {
			t.Fatalf("expired request page:\n%s", exp.Body)
		}
		wantStatus(t, "connect from an expired request", bea.post(reqPage+"/connect/x", nil), 410)
	})
}
