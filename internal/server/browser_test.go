package server_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// newBrowser starts headless Chromium (Debian's chromium package). Without it
// the test is skipped, except in CI, where a missing browser is a failure.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; .ci/run installs it")
		}
		t.Skip("chromium not installed")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// screenshot saves the page to TASKJUICE_SCREENSHOTS (when set), for people
// to look at.
func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("TASKJUICE_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserSignInAndCreateWorkspace drives the real pages: sign in, see the
// dashboard, type a slug and watch the availability message change, create
// the workspace and land on it.
func TestBrowserSignInAndCreateWorkspace(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		if !strings.HasSuffix(t.Name(), "sqlite") {
			t.Skip("the pages behave the same on both engines; one browser run is enough")
		}
		ctx := newBrowser(t)
		base := e.srv.URL
		err := chromedp.Do(ctx,
			chromedp.Navigate(base+"/"),
			chromedp.WaitVisible(`input[name=email]`),
			chromedp.SendKeys(`input[name=email]`, "admin@a.example"),
			chromedp.SendKeys(`input[name=password]`, pw),
			chromedp.Submit(`input[name=password]`),
			chromedp.WaitVisible(`.tiles`),
		)
		if err != nil {
			t.Fatalf("sign in: %v", err)
		}
		dashboard := text(t, ctx, `main`)
		if !strings.Contains(dashboard, "Acme Corp") {
			t.Fatalf("dashboard text lacks Acme Corp: %q", dashboard)
		}
		screenshot(t, ctx, "dashboard")

		err = chromedp.Do(ctx,
			chromedp.Click(`details.create > summary`),
			chromedp.WaitVisible(`#create-workspace`),
			chromedp.SendKeys(`input[name=slug]`, "acme"),
			chromedp.WaitVisible(`[data-slug-status].field-error`),
		)
		if err != nil {
			t.Fatalf("type a taken slug: %v", err)
		}
		status := text(t, ctx, `[data-slug-status]`)
		if status != "This slug is already taken" {
			t.Fatalf("slug status for acme: got %q, want %q", status, "This slug is already taken")
		}
		screenshot(t, ctx, "slug-taken")

		err = chromedp.Do(ctx,
			chromedp.SendKeys(`input[name=slug]`, strings.Repeat(kb.Backspace, len("acme"))+"gamma"),
			chromedp.WaitVisible(`[data-slug-status].ok`),
		)
		if err != nil {
			t.Fatalf("type a free slug: %v", err)
		}
		status = text(t, ctx, `[data-slug-status]`)
		if status != "Available" {
			t.Fatalf("slug status for gamma: got %q, want Available", status)
		}

		err = chromedp.Do(ctx,
			chromedp.SendKeys(`input[name=name]`, "Gamma Ltd"),
			chromedp.Submit(`input[name=name]`),
			chromedp.WaitVisible(`.flash`),
		)
		if err != nil {
			t.Fatalf("create workspace: %v", err)
		}
		flash := text(t, ctx, `.flash`)
		url, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		if flash != "Workspace created" || !strings.HasSuffix(url, "/gamma/") {
			t.Fatalf("after create: flash %q at %s, want \"Workspace created\" at /gamma/", flash, url)
		}
		screenshot(t, ctx, "workspace")
	})
}

// TestBrowserNameSuggestsSlug: typing a name fills the slug until the slug
// is edited by hand.
func TestBrowserNameSuggestsSlug(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		if !strings.HasSuffix(t.Name(), "sqlite") {
			t.Skip("one browser run is enough")
		}
		ctx := newBrowser(t)
		err := chromedp.Do(ctx,
			chromedp.Navigate(e.srv.URL+"/signin"),
			chromedp.SendKeys(`input[name=email]`, "owner@a.example"),
			chromedp.SendKeys(`input[name=password]`, pw),
			chromedp.Submit(`input[name=password]`),
			chromedp.WaitVisible(`details.create > summary`),
			chromedp.Click(`details.create > summary`),
			chromedp.SendKeys(`input[name=name]`, "Café Noir & Co"),
		)
		if err != nil {
			t.Fatal(err)
		}
		slug, err := chromedp.Run(ctx, chromedp.Value(`input[name=slug]`))
		if err != nil {
			t.Fatal(err)
		}
		if slug != "cafe-noir-co" {
			t.Fatalf("suggested slug: got %q, want %q", slug, "cafe-noir-co")
		}
	})
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// TestBrowserConnectSandboxChat connects Sandbox Chat the way a person does:
// Connections, Connect New Account, the app, its consent screen, Allow, and
// back on the connection's page.
func TestBrowserConnectSandboxChat(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		if !strings.HasSuffix(t.Name(), "sqlite") {
			t.Skip("one browser run is enough")
		}
		ctx := newBrowser(t)
		err := chromedp.Do(ctx,
			chromedp.Navigate(e.srv.URL+"/signin"),
			chromedp.SendKeys(`input[name=email]`, "owner@a.example"),
			chromedp.SendKeys(`input[name=password]`, pw),
			chromedp.Submit(`input[name=password]`),
			chromedp.WaitVisible(`.tiles`),
			chromedp.Navigate(e.srv.URL+"/acme/connections"),
			chromedp.Click(`a.button.primary`),
			chromedp.WaitVisible(`a.tile[href$="app=sandbox-chat"]`),
		)
		if err != nil {
			t.Fatalf("open the connect dialog: %v", err)
		}
		screenshot(t, ctx, "connect-new-account")
		err = chromedp.Do(ctx,
			chromedp.Click(`a.tile[href$="app=sandbox-chat"]`),
			chromedp.WaitVisible(`input[name=label]`),
			chromedp.Submit(`input[name=label]`),
			chromedp.WaitVisible(`button[value=allow]`),
		)
		if err != nil {
			t.Fatalf("reach the consent screen: %v", err)
		}
		screenshot(t, ctx, "sandbox-consent")
		err = chromedp.Do(ctx,
			chromedp.Click(`button[value=allow]`),
			chromedp.WaitVisible(`.flash`),
		)
		if err != nil {
			t.Fatalf("allow: %v", err)
		}
		if got := text(t, ctx, `.flash`); got != "Connected." {
			t.Fatalf("flash after consent: got %q, want %q", got, "Connected.")
		}
		if got := text(t, ctx, `.facts`); !strings.Contains(got, "Connected and working.") {
			t.Fatalf("connection page: %q lacks the active description", got)
		}
		screenshot(t, ctx, "connection-active")

		// Break it at the provider; the refresh button then says why, and
		// the page shows what to do.
		if _, err := e.sandbox.RevokeAccount("Sandbox Workspace"); err != nil {
			t.Fatal(err)
		}
		err = chromedp.Do(ctx,
			chromedp.Click(`form[action$="/refresh"] button`),
			chromedp.WaitVisible(`.alert-error`),
		)
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if got := text(t, ctx, `.alert-error`); got != "Connection cannot be refreshed. Please reconnect your connection." {
			t.Fatalf("refresh of a revoked grant: got %q", got)
		}
		if got := text(t, ctx, `.facts`); !strings.Contains(got, "Reconnection needed.") {
			t.Fatalf("broken connection page: %q lacks \"Reconnection needed.\"", got)
		}
		screenshot(t, ctx, "connection-error")
	})
}
