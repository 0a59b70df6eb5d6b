package server_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/mail"
	"taskjuice/internal/mail/mailtest"
)

// mailbox is a real SMTP server in the test and the outbox delivering to
// it, wired into the server as serve does.
type mailbox struct {
	e      *env
	smtpd  *mailtest.Server
	outbox *mail.Outbox
	seen   int
}

func (e *env) mailbox() *mailbox {
	e.t.Helper()
	smtpd := mailtest.Start(e.t)
	sender, err := mail.NewSMTP(smtpd.Config())
	must(e.t, err)
	outbox := mail.NewOutbox(e.db, sender, nil)
	e.server.UseMail(outbox)
	e.t.Cleanup(e.checkNoLinkTokenStored)
	return &mailbox{e: e, smtpd: smtpd, outbox: outbox}
}

// deliver sends what the outbox holds and returns the messages that
// arrived since the last call. Each message goes through the leak check
// with its link cut out: the link is the one secret an email may carry.
func (m *mailbox) deliver(t *testing.T) []mailtest.Received {
	t.Helper()
	n, err := m.outbox.Deliver(context.Background())
	must(t, err)
	got := m.smtpd.Wait(m.seen+n, 5*time.Second)
	if len(got) != m.seen+n {
		t.Fatalf("delivered %d emails, %d arrived", n, len(got)-m.seen)
	}
	fresh := got[m.seen:]
	m.seen = len(got)
	m.e.seenMu.Lock()
	for _, r := range fresh {
		m.e.seen = append(m.e.seen, linkToken.ReplaceAllString(r.Raw, "[link]"))
	}
	m.e.seenMu.Unlock()
	return fresh
}

// linkToken matches the single-use tokens of emailed links: invitations
// (tji_) and client-request sign-in links (tjl_).
var linkToken = regexp.MustCompile(`tj[il]_[A-Za-z0-9_-]{20,}`)

// linkIn returns the first link of the email under path (e.g.
// "/invitations/").
func linkIn(t *testing.T, e *env, m mailtest.Received, path string) string {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(e.srv.URL+path) + `[A-Za-z0-9_-]+`)
	link := re.FindString(m.Text)
	if link == "" {
		t.Fatalf("email has no %s link:\n%s", path, m.Text)
	}
	return link
}

// checkNoLinkTokenStored fails the test if a link's token rests anywhere
// in the database (only hashes may) or left TaskJuice in a response or a
// log line.
func (e *env) checkNoLinkTokenStored() {
	ctx := context.Background()
	for _, q := range []string{
		`SELECT text_body FROM outbound_emails`, `SELECT subject FROM outbound_emails`,
		`SELECT token_hash FROM invitations`, `SELECT COALESCE(link_hash, '') FROM client_request_batches`,
	} {
		rows, err := e.db.Read().QueryContext(ctx, q)
		if err != nil {
			e.t.Errorf("%s: %v", q, err)
			continue
		}
		for rows.Next() {
			var s string
			_ = rows.Scan(&s)
			if linkToken.MatchString(s) {
				e.t.Errorf("a link token is stored in the database (%s)", q)
			}
		}
		rows.Close()
	}
	e.seenMu.Lock()
	defer e.seenMu.Unlock()
	for _, out := range append(e.seen, e.log.String()) {
		if m := linkToken.FindString(out); m != "" {
			first, _, _ := strings.Cut(out, "\n")
			e.t.Errorf("a link token (%s…) leaked into: %s", m[:6], first)
		}
	}
}

// open follows an emailed link as a mail client would: the address itself
// is the secret, so only the response goes through the leak checks.
func (b *browser) open(link string) response {
	b.e.t.Helper()
	res, err := b.c.Get(link)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer res.Body.Close()
	var body strings.Builder
	_, _ = io.Copy(&body, res.Body)
	var hdr strings.Builder
	_ = res.Header.Write(&hdr)
	b.e.seenMu.Lock()
	b.e.seen = append(b.e.seen, "GET (emailed link)\n"+hdr.String()+"\n"+body.String())
	b.e.seenMu.Unlock()
	return response{Response: res, Body: body.String()}
}

func (b *browser) postLink(link string, form url.Values) response {
	b.e.t.Helper()
	res, err := b.c.PostForm(link, form)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer res.Body.Close()
	var body strings.Builder
	_, _ = io.Copy(&body, res.Body)
	var hdr strings.Builder
	_ = res.Header.Write(&hdr)
	b.e.seenMu.Lock()
	b.e.seen = append(b.e.seen, "POST (emailed link)\n"+hdr.String()+"\n"+body.String())
	b.e.seenMu.Unlock()
	return response{Response: res, Body: body.String()}
}

// TestInviteClient: "Invite client" → "Send invitation" emails a sign-up
// link over SMTP; the client chooses a password and lands on the portal;
// the link is single-use; a resend kills the earlier link; a revoked or
// expired invitation's link is refused with a clear page.
func TestInviteClient(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		box := e.mailbox()
		owner := e.signIn("owner@a.example")

		page := owner.get("/acme/workspace/members")
		wantStatus(t, "members page", page, 200)
		for _, want := range []string{"Invite client", "Send invitation", `name="email"`} {
			if !strings.Contains(page.Body, want) {
				t.Fatalf("members page lacks %q", want)
			}
		}
		if strings.Contains(page.Body, `name="role"`) {
			t.Fatal("the invitation dialog has a role picker")
		}
		if p := wantKept(t, owner, "bad email", owner.post("/acme/workspace/members/invite", url.Values{"email": {"not-an-email"}}), "/acme/workspace/members"); !strings.Contains(p.Body, `value="not-an-email"`) || !strings.Contains(p.Body, `field-error`) {
			t.Fatalf("bad email: the form must show again with the message and the input: %.3000s", p.Body)
		}
		if p := owner.get("/acme/workspace/members"); strings.Contains(p.Body, `value="not-an-email"`) {
			t.Fatal("the refused form shows again on reload")
		}
		wantKept(t, owner, "existing person", owner.post("/acme/workspace/members/invite", url.Values{"email": {"client@acme.example"}}), "/acme/workspace/members")
		wantRedirect(t, "invite", owner.post("/acme/workspace/members/invite", url.Values{"email": {"Dana@Client.example"}}), "/acme/workspace/members")
		page = owner.get("/acme/workspace/members")
		if !strings.Contains(page.Body, "dana@client.example") || !strings.Contains(page.Body, "Resend") || !strings.Contains(page.Body, "Revoke") {
			t.Fatalf("pending invitation not listed with Resend and Revoke:\n%s", page.Body)
		}
		wantKept(t, owner, "invite twice", owner.post("/acme/workspace/members/invite", url.Values{"email": {"dana@client.example"}}), "/acme/workspace/members")

		got := box.deliver(t)
		if len(got) != 1 || got[0].To[0] != "dana@client.example" {
			t.Fatalf("invitation emails: %+v", got)
		}
		link := linkIn(t, e, got[0], "/invitations/")
		if !strings.Contains(got[0].Text, "Acme Corp") || !strings.Contains(got[0].Subject, "Agency A") {
			t.Fatalf("invitation email:\n%s\n%s", got[0].Subject, got[0].Text)
		}

		// A resend mints a new link: the first one stops working.
		inv, err := e.accounts.PendingInvitations(ctx, mustP(t, e, "owner@a.example"), e.acme)
		must(t, err)
		wantRedirect(t, "resend", owner.post("/acme/workspace/members/invitations/"+inv[0].ID+"/resend", nil), "/acme/workspace/members")
		again := box.deliver(t)
		if len(again) != 1 {
			t.Fatalf("resent emails: %d, want 1", len(again))
		}
		link2 := linkIn(t, e, again[0], "/invitations/")
		if link2 == link {
			t.Fatal("a resend reused the link")
		}
		dana := e.browser()
		wantStatus(t, "superseded link", dana.open(link), 404)

		form := dana.open(link2)
		wantStatus(t, "sign-up page", form, 200)
		if !strings.Contains(form.Body, "dana@client.example") || !strings.Contains(form.Body, "Join Acme Corp") {
			t.Fatalf("sign-up page:\n%s", form.Body)
		}
		wantStatus(t, "short password", dana.postLink(link2, url.Values{"name": {"Dana"}, "password": {"short"}}), 422)
		res := dana.postLink(link2, url.Values{"name": {"Dana"}, "password": {pw}})
		wantRedirect(t, "accept", res, "/portal")
		portal := dana.get("/portal")
		wantStatus(t, "portal after sign-up", portal, 200)
		if !strings.Contains(portal.Body, "Acme Corp") {
			t.Fatal("the new client's portal is not Acme's")
		}
		wantRedirect(t, "client on staff page", dana.get("/acme/workspace/members"), "/portal")
		p := mustP(t, e, "dana@client.example")
		if !p.IsClient() || p.WorkspaceID != e.acme.ID {
			t.Fatalf("dana is %+v, want a client of acme", p)
		}
		used := e.browser().open(link2)
		wantStatus(t, "reused link", used, 410)
		if !strings.Contains(used.Body, "already used") {
			t.Fatalf("reused link page: %s", used.Body)
		}
		// Signed in, with the password chosen.
		e.signIn("dana@client.example")

		// Revoked: the link is refused, an unsent email is dropped.
		wantRedirect(t, "invite eve", owner.post("/acme/workspace/members/invite", url.Values{"email": {"eve@client.example"}}), "/acme/workspace/members")
		eveLink := linkIn(t, e, box.deliver(t)[0], "/invitations/")
		inv, err = e.accounts.PendingInvitations(ctx, mustP(t, e, "owner@a.example"), e.acme)
		must(t, err)
		wantRedirect(t, "resend eve", owner.post("/acme/workspace/members/invitations/"+inv[0].ID+"/resend", nil), "/acme/workspace/members")
		wantRedirect(t, "revoke eve", owner.post("/acme/workspace/members/invitations/"+inv[0].ID+"/revoke", nil), "/acme/workspace/members")
		if n := len(box.deliver(t)); n != 0 {
			t.Fatalf("the email of a revoked invitation went out (%d)", n)
		}
		wantStatus(t, "revoked link", e.browser().open(eveLink), 404)
		if strings.Contains(owner.get("/acme/workspace/members").Body, "eve@client.example") {
			t.Fatal("a revoked invitation is still listed")
		}

		// Expired.
		wantRedirect(t, "invite fay", owner.post("/acme/workspace/members/invite", url.Values{"email": {"fay@client.example"}}), "/acme/workspace/members")
		fayLink := linkIn(t, e, box.deliver(t)[0], "/invitations/")
		_, err = e.db.Write().ExecContext(ctx, `UPDATE invitations SET expires_at = $1 WHERE email = 'fay@client.example'`, time.Now().Add(-time.Minute))
		must(t, err)
		exp := e.browser().open(fayLink)
		wantStatus(t, "expired link", exp, 410)
		if !strings.Contains(exp.Body, "expired") || strings.Contains(exp.Body, `name="password"`) {
			t.Fatalf("expired invitation page offers something:\n%s", exp.Body)
		}

		// Another agency's staff cannot touch A's invitations.
		wantStatus(t, "B revokes A's invitation", e.signIn("owner@b.example").post("/acme/workspace/members/invitations/"+inv[0].ID+"/revoke", nil), 404)
		wantStatus(t, "method not allowed", e.browser().open(e.srv.URL+"/invitations/x"), 404)
		_ = http.StatusOK
	})
}
