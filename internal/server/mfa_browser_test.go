package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserMFA drives the Security page and the sign-in's code step in
// a real browser: enroll from the manual key (the test computes the codes
// as an authenticator app would), sign out, sign in with password and
// code, use a backup code once, and see an unenrolled member held at the
// enrollment page once the owner requires MFA.
func TestBrowserMFA(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		if !strings.HasSuffix(t.Name(), "sqlite") {
			t.Skip("the pages behave the same on both engines; one browser run is enough")
		}
		ctx := newBrowser(t)
		base := e.srv.URL
		browserSignIn(t, ctx, base, "owner@a.example")
		err := chromedp.Do(ctx,
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
		browserPassword(t, ctx, base, "owner@a.example")
		// The next time step's code: the one that enabled MFA is used up.
		browserCode(t, ctx, totpCode(t, key, time.Now().Add(30*time.Second)), `.tiles`)

		browserSignOut(t, ctx)
		browserPassword(t, ctx, base, "owner@a.example")
		browserCode(t, ctx, backups[0], `.tiles`)
		browserSignOut(t, ctx)
		browserPassword(t, ctx, base, "owner@a.example")
		browserCode(t, ctx, backups[0], `.alert-error`)
		if msg := text(t, ctx, `.alert-error`); !strings.Contains(msg, "That code is not right") {
			t.Fatalf("second use of a backup code: %q", msg)
		}
		browserCode(t, ctx, backups[1], `.tiles`)

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
	if err := chromedp.Do(ctx, chromedp.Click(`form[action="/signout"] button`), chromedp.WaitVisible(chromedp.CSS(`input[name=email]`))); err != nil {
		t.Fatalf("sign out: %v", err)
	}
}
