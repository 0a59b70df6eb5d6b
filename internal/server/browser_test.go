package server_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// newBrowser starts headless Chromium (Debian's chromium package) with a
// desktop window. Without it the test is skipped, except in CI, where a
// missing browser is a failure.
// onceInBrowser skips the PostgreSQL half of a page story: the pages
// behave the same on both engines, and one browser run is enough.
func onceInBrowser(t *testing.T) {
	t.Helper()
	if !strings.HasSuffix(t.Name(), "sqlite") {
		t.Skip("the pages behave the same on both engines; one browser run is enough")
	}
}

func newBrowser(t *testing.T) context.Context {
	t.Helper()
	return newBrowserSized(t, 1280, 900)
}

// newBrowserSized starts headless Chromium with a viewport of w x h CSS
// pixels; a window taller than wide (a phone) is emulated in portrait.
func newBrowserSized(t *testing.T, w, h int) context.Context {
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
		chromedp.WindowSize(w, h),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 120*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if h > w {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(w), int64(h), chromedp.EmulatePortrait)); err != nil {
			t.Fatalf("emulate a %dx%d screen: %v", w, h, err)
		}
	}
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
		onceInBrowser(t)
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
		onceInBrowser(t)
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
		onceInBrowser(t)
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

// TestBrowserBuildPublishAndCallWebhook builds a workflow in the editor
// (webhook trigger, a Transform step mapping the payload), publishes it,
// and calls its webhook URL with curl: a run is recorded and completes with
// the mapped output.
func TestBrowserBuildPublishAndCallWebhook(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		onceInBrowser(t)
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("curl not installed")
		}
		ctx := newBrowser(t)
		set := func(sel, value string) chromedp.Action[chromedp.Void] {
			return chromedp.Evaluate[chromedp.Void](`(() => { const el = document.querySelector(` + strconv.Quote(sel) + `); el.value = ` + strconv.Quote(value) + `; })()`)
		}
		// submit sets a form field and submits its form, then waits until the
		// next page shows want in its flash (polling: the old page is still
		// there for a moment after the submit).
		submit := func(sel, value, want string) {
			t.Helper()
			// The old page's flash goes first, so only the next page's counts.
			clear := chromedp.Evaluate[chromedp.Void](`document.querySelectorAll(".flash").forEach(f => f.remove())`)
			if err := chromedp.Do(ctx, chromedp.WaitReady(sel), clear, set(sel, value), chromedp.Submit(sel)); err != nil {
				t.Fatalf("submit %s: %v", sel, err)
			}
			waitFlash(t, ctx, want)
		}
		err = chromedp.Do(ctx,
			chromedp.Navigate(e.srv.URL+"/signin"),
			chromedp.SendKeys(`input[name=email]`, "member@a.example"),
			chromedp.SendKeys(`input[name=password]`, pw),
			chromedp.Submit(`input[name=password]`),
			chromedp.WaitVisible(`.tiles`),
			chromedp.Navigate(e.srv.URL+"/acme/workflows"),
			chromedp.Click(`details.create > summary`),
			chromedp.SendKeys(`form[action="/acme/workflows"] input[name=name]`, "Greeter"),
			chromedp.Submit(`form[action="/acme/workflows"] input[name=name]`),
		)
		if err != nil {
			t.Fatalf("create a workflow: %v", err)
		}
		waitFlash(t, ctx, "Workflow created.")
		// Trigger: a webhook without authentication.
		submit(`form[action$="/edit/trigger"] select[name=kind]`, "webhook", "Trigger saved.")
		submit(`form[action$="/edit/trigger"] select[name=auth]`, "none", "Trigger saved.")
		// One Transform step mapping the payload.
		submit(`#add-step select[name=kind]`, "transform", "Step added.")
		submit(`textarea[name=output]`, `{"greeting": "Hello {{ $trigger.body.name }}"}`, "Step saved.")
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.querySelectorAll(".flash").forEach(f => f.remove())`),
			chromedp.Click(`form[action$="/publish"] button`)); err != nil {
			t.Fatal(err)
		}
		waitFlash(t, ctx, "Workflow published")
		screenshot(t, ctx, "editor-published")

		// The workflow page shows the webhook URL.
		wfs, err := e.workflows.List(context.Background(), e.acme)
		must(t, err)
		if len(wfs) != 1 || wfs[0].Status != workflow.StatusPublished {
			t.Fatalf("workflows: %+v", wfs)
		}
		err = chromedp.Do(ctx, chromedp.Navigate(e.srv.URL+"/acme/workflows/"+wfs[0].ID), chromedp.WaitVisible(`pre.secret`))
		must(t, err)
		hook := text(t, ctx, `pre.secret`)
		if !strings.HasPrefix(hook, e.srv.URL+"/webhooks/") {
			t.Fatalf("webhook URL: %q", hook)
		}

		out, err := exec.Command(curl, "-s", "-X", "POST", "-H", "Content-Type: application/json", "-d", `{"name":"Ada"}`, hook).Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		var started struct {
			RunID string `json:"runId"`
		}
		if err := json.Unmarshal(out, &started); err != nil || started.RunID == "" {
			t.Fatalf("webhook answer %q, want a run id", out)
		}
		for {
			did, err := e.engine.Work(context.Background())
			must(t, err)
			if !did {
				break
			}
		}
		run, err := e.engine.Get(context.Background(), e.acme.ID, started.RunID)
		must(t, err)
		steps, _ := e.engine.Steps(context.Background(), e.acme.ID, started.RunID)
		if run.Status != engine.StatusCompleted || len(steps) != 1 || string(steps[0].Output) != `{"greeting":"Hello Ada"}` {
			t.Fatalf("run %s, steps %+v", run.Status, steps)
		}
	})
}

// waitFlash polls until the flash of a page that has finished parsing reads
// want (or fails after 10s), so the fields below the flash are there when the
// caller goes on.
func waitFlash(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		got, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`(() => { if (document.readyState === "loading") return ""; const f = document.querySelector(".flash"); return f ? f.textContent.trim() : ""; })()`))
		if got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	screenshot(t, ctx, "flash-timeout")
	t.Fatalf("flash: got %q, want %q", got, want)
}
