package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserMFA walks the team and MFA story in a real browser, on both
// databases: the owner invites a teammate from the Team page, the
// teammate accepts from the emailed link, enrolls from the manual key (the
// test computes the codes as an authenticator app would), signs out and in
// with password and code, uses a backup code once (a second use fails),
// then the owner requires MFA and an unenrolled member is held at the
// enrollment page.
func TestBrowserMFA(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := newBrowser(t)
		base := e.srv.URL
		box := e.mailbox()
		browserSignIn(t, ctx, base, "owner@a.example")
		err := chromedp.Do(ctx,
			chromedp.Navigate(base+"/team?tab=invitations"),
			chromedp.WaitVisible(`//button[text()="Invite teammate"]`),
			chromedp.SendKeys(`#invite input[name=email]`, "nora@a.example"),
			chromedp.Click(`//button[text()="Invite teammate"]`),
			chromedp.WaitVisible(`//td[contains(., "nora@a.example")]`),
		)
		if err != nil {
			t.Fatalf("invite a teammate: %v", err)
		}
		screenshot(t, ctx, "team-invited")
		mails := box.deliver(t)
		if len(mails) != 1 || mails[0].To[0] != "nora@a.example" {
			t.Fatalf("invitation emails: %+v", mails)
		}
		link := linkIn(t, e, mails[0], "/invitations/")
		browserSignOut(t, ctx)
		err = chromedp.Do(ctx,
			chromedp.Navigate(link),
			chromedp.WaitVisible(`input[name=password]`),
			chromedp.SendKeys(`input[name=name]`, "Nora"),
			chromedp.SendKeys(`input[name=password]`, pw),
			chromedp.Click(`//button[text()="Create my sign-in"]`),
			chromedp.WaitVisible(`form[action="/signout"] button`),
		)
		if err != nil {
			t.Fatalf("accept the invitation: %v", err)
		}
		if who := text(t, ctx, `.who-name`); who != "Nora" {
			t.Fatalf("signed in after accepting as %q", who)
		}

		err = chromedp.Do(ctx,
			chromedp.Navigate(base+"/account/security"),
			chromedp.WaitVisible(`//button[text()="Set up MFA"]`),
			chromedp.Click(`//button[text()="Set up MFA"]`),
			chromedp.WaitVisible(chromedp.CSS(`img.qr`)),
		)
		if err != nil {
			t.Fatalf("set up MFA: %v", err)
		}
		screenshot(t, ctx, "mfa-setup")
		key := strings.ReplaceAll(text(t, ctx, `#mfa-key`), " ", "")
		err = chromedp.Do(ctx,
			chromedp.SendKeys(`form[action$="/enable"] input[name=code]`, totpCode(t, key, time.Now())),
			chromedp.Click(`//button[text()="Verify and enable"]`),
			chromedp.WaitVisible(chromedp.CSS(`#backup-codes-new`)),
		)
		if err != nil {
			t.Fatalf("verify and enable: %v", err)
		}
		codes := text(t, ctx, `#backup-codes-new pre`)
		backups := strings.Fields(codes)
		if len(backups) != 10 {
			t.Fatalf("backup codes shown: %q", codes)
		}
		screenshot(t, ctx, "mfa-enabled")

		browserSignOut(t, ctx)
		browserPassword(t, ctx, base, "nora@a.example")
		// The next time step's code: the one that enabled MFA is used up.
		browserCode(t, ctx, totpCode(t, key, time.Now().Add(30*time.Second)), `.tiles`)

		browserSignOut(t, ctx)
		browserPassword(t, ctx, base, "nora@a.example")
		browserCode(t, ctx, backups[0], `.tiles`)
		browserSignOut(t, ctx)
		browserPassword(t, ctx, base, "nora@a.example")
		browserCode(t, ctx, backups[0], `.alert-error`)
		if msg := text(t, ctx, `.alert-error`); !strings.Contains(msg, "That code is not right") {
			t.Fatalf("second use of a backup code: %q", msg)
		}
		browserCode(t, ctx, backups[1], `.tiles`)
		browserSignOut(t, ctx)
		browserSignIn(t, ctx, base, "owner@a.example")

		// The owner requires MFA with no grace period.
		err = chromedp.Do(ctx,
			chromedp.Navigate(base+"/account/security#require"),
			chromedp.WaitVisible(chromedp.CSS(`#require input[name=required]`)),
			chromedp.Click(`#require input[name=required]`),
			chromedp.SetValue(`#require input[name=graceDays]`, "0"),
			chromedp.Click(`#require button[type=submit]`),
			// Only the saved page says since when: the form's own page is
			// not mistaken for the answer.
			chromedp.WaitVisible(`//p[contains(., "Required since")]`),
		)
		if err != nil {
			t.Fatalf("require MFA: %v", err)
		}
		browserSignOut(t, ctx)
		browserPassword(t, ctx, base, "member@a.example")
		at := func(what string) {
			t.Helper()
			if err := chromedp.Do(ctx, chromedp.WaitVisible(`//button[text()="Set up MFA"]`)); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			url, err := chromedp.Run(ctx, chromedp.Location())
			if err != nil || !strings.HasSuffix(url, "/account/security") {
				t.Fatalf("%s: at %q, %v; want the Security page", what, url, err)
			}
		}
		at("unenrolled member after sign-in")
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/acme/workflows")); err != nil {
			t.Fatal(err)
		}
		at("unenrolled member on a workspace page")
		screenshot(t, ctx, "mfa-held")
	})
}

func browserPassword(t *testing.T, ctx context.Context, base, email string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/signin"),
		chromedp.WaitVisible(`input[name=email]`),
		chromedp.SendKeys(`input[name=email]`, email),
		chromedp.SendKeys(`input[name=password]`, pw),
		chromedp.Submit(`input[name=password]`),
	)
	if err != nil {
		t.Fatalf("password for %s: %v", email, err)
	}
}

// browserCode enters a code on the sign-in's code step and waits for sel.
func browserCode(t *testing.T, ctx context.Context, code, sel string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`input[name=code]`)),
		chromedp.SendKeys(`input[name=code]`, code),
		chromedp.Submit(`input[name=code]`),
		chromedp.WaitVisible(chromedp.CSS(sel)),
	)
	if err != nil {
		t.Fatalf("code step (waiting for %s): %v", sel, err)
	}
}

func browserSignOut(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Click(`form[action="/signout"] button`), chromedp.WaitVisible(chromedp.CSS(`form[action="/signin"] input[name=email]`))); err != nil {
		t.Fatalf("sign out: %v", err)
	}
}
