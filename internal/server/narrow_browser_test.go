package server_test

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// evalJS evaluates a JavaScript expression in the page and returns its value.
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shown says whether the first element matching sel takes space on screen.
func shown(t *testing.T, ctx context.Context, sel string) bool {
	t.Helper()
	return evalJS[bool](t, ctx, `(() => { const el = document.querySelector(`+strconv.Quote(sel)+`);
		if (!el) return false; const r = el.getBoundingClientRect();
		return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== "hidden"; })()`)
}

// rowLabels reads the label each cell of the run's row shows before its
// value (the computed ::before content; "none" for no label).
func rowLabels(t *testing.T, ctx context.Context, runID string) []string {
	t.Helper()
	return evalJS[[]string](t, ctx, `[...document.querySelectorAll("#runs-live tbody tr")]
		.filter(tr => tr.querySelector('a[href$="/`+runID+`"]'))
		.flatMap(tr => [...tr.cells].map(td => getComputedStyle(td, "::before").content))`)
}

func browserSignIn(t *testing.T, ctx context.Context, base, email string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/signin"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)),
		chromedp.SendKeys(`input[name=email]`, email),
		chromedp.SendKeys(`input[name=password]`, pw),
		chromedp.Submit(`input[name=password]`),
		chromedp.WaitVisible(chromedp.CSS(`.topbar`)),
	)
	if err != nil {
		t.Fatalf("sign in as %s: %v", email, err)
	}
}

// TestBrowserNarrowScreen looks at the pages on a 390 x 844 phone screen
// and on a 1280 px desktop: on the phone the navigation is one bar (brand,
// bell, Menu) and the menu opens the account and workspace links; the runs
// list's cards name every field, also after the list is redrawn live; the
// portal folds the same way. On the desktop the sidebar and the links are
// there without opening anything, and the table keeps its header row.
func TestBrowserNarrowScreen(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		onceInBrowser(t)
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		g, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
			"nodes":[{"id":"wait","kind":"approval","config":{"message":"Go?"}}],"edges":[{"from":"start","to":"wait"}]}`))
		must(t, err)
		w, err := e.workflows.Create(ctx, e.acme, "Approvals", "", &g, "")
		must(t, err)
		_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
		must(t, err)
		// One completed run (it has a completion date and a duration) and
		// one waiting.
		done, err := e.engine.StartRun(ctx, w.ID, nil, "manual", "")
		must(t, err)
		e.drain(t)
		wantStatus(t, "approve", owner.api("POST", "/api/v1/workspaces/acme/runs/"+done+"/approve", `{"comment":"ok"}`), 200)
		e.drain(t)
		waiting, err := e.engine.StartRun(ctx, w.ID, nil, "manual", "")
		must(t, err)
		e.drain(t)
		for id, want := range map[string]engine.Status{done: engine.StatusCompleted, waiting: engine.StatusWaiting} {
			r, err := e.engine.Get(ctx, e.acme.ID, id)
			must(t, err)
			if r.Status != want {
				t.Fatalf("run %s: got %s, want %s", id[:8], r.Status, want)
			}
		}
		// A connection, to fill the connections pages and to break later.
		id := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}}, "Acme Chat"))
		wantLabels := []string{`"Select"`, `"Run"`, `"Workflow"`, `"Status"`, `"Started"`, `"Completed"`, `"Duration"`}
		runsPage := e.srv.URL + "/acme/monitoring/workflow-runs"

		// The phone.
		b := newBrowserSized(t, 390, 844)
		browserSignIn(t, b, e.srv.URL, "owner@a.example")
		if err := chromedp.Do(b, chromedp.Navigate(runsPage), chromedp.WaitVisible(chromedp.CSS(`#runs-live table`))); err != nil {
			t.Fatalf("open the runs page: %v", err)
		}
		if got := evalJS[int](t, b, `window.innerWidth`); got != 390 {
			t.Fatalf("viewport width: got %d, want 390", got)
		}
		screenshot(t, b, "narrow-runs")
		if h := evalJS[float64](t, b, `document.querySelector(".topbar").getBoundingClientRect().height`); h >= 80 {
			t.Errorf("top bar on a phone: %.0f px high, want one row (< 80 px)", h)
		}
		// Nothing else stands between the bar and the page.
		if top := evalJS[float64](t, b, `document.getElementById("main").getBoundingClientRect().top`); top >= 80 {
			t.Errorf("the page starts %.0f px down, want right under the one-row bar (< 80 px)", top)
		}
		for sel, want := range map[string]bool{
			`.topbar .brand`: true, `#bell`: true, `.navmenu > summary`: true,
			`.topnav a[href="/settings/api-tokens"]`: false, `.sidebar a[href="/acme/connections"]`: false,
		} {
			if got := shown(t, b, sel); got != want {
				t.Errorf("menu closed: %s shown %v, want %v", sel, got, want)
			}
		}
		// The bar's items sit on one line.
		if spread := evalJS[float64](t, b, `(() => { const tops = [".brand", "#bell", ".navmenu > summary"].map(s => {
				const r = document.querySelector(".topbar " + s).getBoundingClientRect(); return r.top + r.height / 2; });
				return Math.max(...tops) - Math.min(...tops); })()`); spread > 8 {
			t.Errorf("brand, bell and menu are not on one line: their middles are %.0f px apart", spread)
		}
		if got := rowLabels(t, b, done); strings.Join(got, ",") != strings.Join(wantLabels, ",") {
			t.Errorf("labels of a run card: got %v, want %v", got, wantLabels)
		}
		// Each date sits beside its label, on the same line.
		for _, col := range []int{4, 5, 6} {
			got := evalJS[[]float64](t, b, `(() => {
				const tr = [...document.querySelectorAll("#runs-live tbody tr")].find(tr => tr.querySelector('a[href$="/`+done+`"]'));
				const td = tr.cells[`+strconv.Itoa(col-1)+`]; const range = document.createRange(); range.selectNodeContents(td);
				const c = td.getBoundingClientRect(), v = range.getBoundingClientRect();
				return [v.left - c.left, v.height, v.width]; })()`)
			if got[0] < 90 || got[1] > 30 || got[2] == 0 {
				t.Errorf("%s cell: value %.0f px from the card's edge, %.0f px high, %.0f px wide; want it beside its label, on one line",
					strings.Trim(wantLabels[col-1], `"`), got[0], got[1], got[2])
			}
		}

		// The menu opens the account links and the workspace's links.
		if err := chromedp.Do(b, chromedp.Click(chromedp.CSS(`.navmenu > summary`)), chromedp.WaitVisible(chromedp.CSS(`.sidebar a[href="/acme/connections"]`))); err != nil {
			t.Fatalf("open the menu: %v", err)
		}
		screenshot(t, b, "narrow-menu")
		for _, sel := range []string{`.topnav a[href="/settings/api-tokens"]`, `.topnav a[href="/dashboard"]`, `.topnav button[type=submit]`,
			`.sidebar a[href="/acme/workflows"]`, `.sidebar a[href="/acme/monitoring/workflow-runs"]`, `.sidebar a[href="/acme/workspace/members"]`} {
			if !shown(t, b, sel) {
				t.Errorf("menu open: %s is not shown", sel)
			}
		}
		if err := chromedp.Do(b, chromedp.Click(chromedp.CSS(`.sidebar a[href="/acme/connections"]`))); err != nil {
			t.Fatalf("follow a menu link: %v", err)
		}
		eventually(t, "the connections page from the menu", 10*time.Second, func() bool {
			return evalJS[bool](t, b, `location.pathname === "/acme/connections" && document.readyState === "complete"`)
		})
		if shown(t, b, `.sidebar a[href="/acme/connections"]`) {
			t.Error("the next page opens with the menu open")
		}

		// Every table that turns into cards names each field after its
		// column (buttons excepted).
		// None of them scrolls sideways.
		for i, page := range []string{"/acme/connections", "/acme/connections/" + id, "/acme/workflows", "/acme/workflows/" + w.ID, "/acme/workspace/members", "/team", "/acme/settings/models"} {
			if err := chromedp.Do(b, chromedp.Navigate(e.srv.URL+page), chromedp.WaitVisible(chromedp.CSS(`#main`))); err != nil {
				t.Fatalf("open %s: %v", page, err)
			}
			got := evalJS[struct {
				Cells int
				Bad   []string
			}](t, b, `(() => {
				const out = { Cells: 0, Bad: [] };
				document.querySelectorAll("main table.table").forEach(table => {
					const heads = [...table.querySelectorAll("thead th")].map(th => th.textContent.trim());
					if (!heads.length) return;
					table.querySelectorAll("tbody tr").forEach(tr => [...tr.cells].forEach((td, i) => {
						const head = heads[i] || "", label = getComputedStyle(td, "::before").content;
						out.Cells++;
						if (head === "" || head === "Actions") {
							if (label !== "none") out.Bad.push("a cell under no heading shows " + label);
						} else if (label === "none" || !head.startsWith(JSON.parse(label))) {
							out.Bad.push("column " + JSON.stringify(head) + " labelled " + label);
						}
					}));
				});
				return out; })()`)
			if got.Cells == 0 || len(got.Bad) > 0 {
				t.Errorf("%s on a phone: %d cells; wrong labels: %v", page, got.Cells, got.Bad)
			}
			if sw := evalJS[int](t, b, `document.documentElement.scrollWidth`); sw > 390 {
				t.Errorf("%s on a phone: %d px wide, wider than the 390 px screen", page, sw)
			}
			screenshot(t, b, "narrow-table-"+strconv.Itoa(i+1))
		}

		// The list redrawn live (a connection breaks while the page is open;
		// a new run has started meanwhile) still names every field.
		if err := chromedp.Do(b, chromedp.Navigate(runsPage), chromedp.WaitVisible(chromedp.CSS(`#runs-live table`)),
			chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`)); err != nil {
			t.Fatalf("open the runs page again: %v", err)
		}
		later, err := e.engine.StartRun(ctx, w.ID, nil, "manual", "")
		must(t, err)
		e.drain(t)
		_, err = e.sandbox.RevokeAccount("Acme Chat")
		must(t, err)
		wantStatus(t, "refresh a revoked grant", owner.api("POST", "/api/v1/connections/"+id+"/refresh", ""), 400)
		_, err = e.notify.Consume(ctx)
		must(t, err)
		eventually(t, "the new run in the live list", 15*time.Second, func() bool {
			return len(rowLabels(t, b, later)) > 0
		})
		if !evalJS[bool](t, b, `window.notReloaded === true`) {
			t.Fatal("the page was reloaded, not redrawn live")
		}
		if got := rowLabels(t, b, later); strings.Join(got, ",") != strings.Join(wantLabels, ",") {
			t.Errorf("labels of a run card drawn live: got %v, want %v", got, wantLabels)
		}
		screenshot(t, b, "narrow-runs-live")

		// The portal folds the same way. Sign out from the menu.
		if err := chromedp.Do(b, chromedp.Click(chromedp.CSS(`.navmenu > summary`)), chromedp.WaitVisible(chromedp.CSS(`.topnav button[type=submit]`)),
			chromedp.Click(chromedp.CSS(`.topnav button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`input[name=email]`))); err != nil {
			t.Fatalf("sign out from the menu: %v", err)
		}
		browserSignIn(t, b, e.srv.URL, "client@acme.example")
		if loc, _ := chromedp.Run(b, chromedp.Location()); !strings.HasSuffix(loc, "/portal") {
			t.Fatalf("client signed in: at %s, want /portal", loc)
		}
		screenshot(t, b, "narrow-portal")
		if h := evalJS[float64](t, b, `document.querySelector(".topbar").getBoundingClientRect().height`); h >= 80 {
			t.Errorf("portal top bar on a phone: %.0f px high, want one row (< 80 px)", h)
		}
		if shown(t, b, `.portal-nav a[href="/portal/connections"]`) {
			t.Error("portal: the links show with the menu closed")
		}
		if err := chromedp.Do(b, chromedp.Click(chromedp.CSS(`.navmenu > summary`)), chromedp.WaitVisible(chromedp.CSS(`.portal-nav a[href="/portal/connections"]`))); err != nil {
			t.Fatalf("portal: open the menu: %v", err)
		}
		screenshot(t, b, "narrow-portal-menu")
		if err := chromedp.Do(b, chromedp.Click(chromedp.CSS(`.portal-nav a[href="/portal/connections"]`))); err != nil {
			t.Fatalf("portal: follow the menu's Connections link: %v", err)
		}
		eventually(t, "the portal's connections page", 10*time.Second, func() bool {
			return evalJS[bool](t, b, `location.pathname === "/portal/connections" && document.readyState === "complete"`)
		})

		// The desktop: everything on screen as before, nothing to open.
		d := newBrowser(t)
		browserSignIn(t, d, e.srv.URL, "owner@a.example")
		if err := chromedp.Do(d, chromedp.Navigate(runsPage), chromedp.WaitVisible(chromedp.CSS(`#runs-live table`))); err != nil {
			t.Fatalf("desktop: open the runs page: %v", err)
		}
		screenshot(t, d, "desktop-runs")
		for sel, want := range map[string]bool{
			`.sidebar a[href="/acme/connections"]`: true, `.topnav a[href="/settings/api-tokens"]`: true, `#bell`: true,
			`#runs-live thead`: true, `.navmenu`: false,
		} {
			if got := shown(t, d, sel); got != want {
				t.Errorf("desktop: %s shown %v, want %v", sel, got, want)
			}
		}
		if w := evalJS[float64](t, d, `document.querySelector(".sidebar").getBoundingClientRect().width`); w < 200 {
			t.Errorf("desktop sidebar: %.0f px wide, want the 220 px column", w)
		}
		if h := evalJS[float64](t, d, `document.querySelector(".topbar").getBoundingClientRect().height`); h >= 80 {
			t.Errorf("desktop top bar: %.0f px high, want one row", h)
		}
		if got := rowLabels(t, d, done); strings.Join(got, ",") != strings.Repeat("none,", 6)+"none" {
			t.Errorf("desktop table cells carry labels: %v", got)
		}
	})
}
