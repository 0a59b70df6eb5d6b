package server_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserEmailOffInvitation: on a server without SMTP, staff invite a
// client in headless Chromium, are told email is off, copy the sign-up
// link the page shows once; a fresh browser context (no cookie of the
// staff's) follows it, the client chooses a password and lands on their
// portal. No email was queued.
func TestBrowserEmailOffInvitation(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		onceInBrowser(t)
		bctx := newBrowser(t)
		err := chromedp.Do(bctx,
			chromedp.Navigate(e.srv.URL+"/signin"),
			chromedp.SendKeys(`input[name=email]`, "owner@a.example"),
			chromedp.SendKeys(`input[name=password]`, pw),
			chromedp.Submit(`input[name=password]`),
			chromedp.WaitVisible(`.tiles`),
			chromedp.Navigate(e.srv.URL+"/acme/workspace/members"),
			chromedp.Click(`#invite-client > summary`),
			chromedp.WaitVisible(`#invite-client input[name=email]`),
		)
		if err != nil {
			t.Fatalf("open the invitation form: %v", err)
		}
		if got := text(t, bctx, `#invite-client .email-off`); !strings.Contains(got, "Email is off on this server: you will get a link to copy and give to the client yourself.") {
			t.Fatalf("the invitation form does not say email is off: %q", got)
		}
		err = chromedp.Do(bctx,
			chromedp.SendKeys(`#invite-client input[name=email]`, "dana@client.example"),
			chromedp.Click(`#invite-client button.primary`),
		)
		if err != nil {
			t.Fatalf("send the invitation: %v", err)
		}
		waitFlash(t, bctx, "Invitation created. No email was sent: email is off on this server.")
		if err := chromedp.Do(bctx, chromedp.WaitVisible(`#once-link-url`)); err != nil {
			t.Fatalf("no link to copy: %v", err)
		}
		link, err := chromedp.Run(bctx, chromedp.Value(`#once-link-url`))
		if err != nil {
			t.Fatalf("read the link: %v", err)
		}
		if !strings.HasPrefix(link, e.srv.URL+"/invitations/tji_") {
			t.Fatalf("the link to copy: got %q", link)
		}
		if got := text(t, bctx, `#once-link`); !strings.Contains(got, "No email was sent") || !strings.Contains(got, "shown only now") {
			t.Fatalf("the link's explanation: %q", got)
		}
		screenshot(t, bctx, "email-off-invitation-link")

		// Shown once: a reload no longer has it.
		if err := chromedp.Do(bctx, chromedp.Reload(), chromedp.WaitVisible(`#pending-invitations`)); err != nil {
			t.Fatal(err)
		}
		left, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#once-link").length`))
		if err != nil {
			t.Fatal(err)
		}
		if left != 0 || strings.Contains(text(t, bctx, `main`), "/invitations/tji_") {
			t.Fatal("a reload still shows the link")
		}
		if !strings.Contains(text(t, bctx, `#pending-invitations`), "dana@client.example") {
			t.Fatal("the invitation is not listed as pending")
		}

		// The client, in a fresh browser context: the copied link signs up.
		cctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
		defer cancel()
		err = chromedp.Do(cctx,
			chromedp.Navigate(link),
			chromedp.WaitVisible(`#accept-invitation`),
		)
		if err != nil {
			t.Fatalf("open the copied link: %v", err)
		}
		if got := text(t, cctx, `main`); !strings.Contains(got, "Join Acme Corp") || !strings.Contains(got, "dana@client.example") {
			t.Fatalf("sign-up page: %q", got)
		}
		err = chromedp.Do(cctx,
			chromedp.SendKeys(`input[name=name]`, "Dana"),
			chromedp.SendKeys(`input[name=password]`, pw),
			chromedp.Submit(`input[name=password]`),
			chromedp.WaitVisible(`.page-head h1`),
		)
		if err != nil {
			t.Fatalf("sign up: %v", err)
		}
		where, err := chromedp.Run(cctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		if where != e.srv.URL+"/portal" {
			t.Fatalf("after sign-up: at %q, want the portal", where)
		}
		if got := text(t, cctx, `main`); !strings.Contains(got, "Welcome, Dana") || !strings.Contains(got, "Acme Corp") {
			t.Fatalf("portal after sign-up: %q", got)
		}
		screenshot(t, cctx, "email-off-client-portal")
		p := mustP(t, e, "dana@client.example")
		if !p.IsClient() || p.WorkspaceID != e.acme.ID {
			t.Fatalf("dana is %+v, want a client of acme", p)
		}
		if n := outboxRows(t, e); n != 0 {
			t.Fatalf("outbox rows with email off: got %d, want 0", n)
		}
	})
}
