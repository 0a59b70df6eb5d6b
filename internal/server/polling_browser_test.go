package server_test

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"taskjuice/internal/connection"
	"taskjuice/internal/workflow"
)

// TestBrowserAppTriggerCard builds an app trigger in the editor with a real
// browser, at a desktop and a phone width: the card offers the app, its
// event, the channel and the connection; once published the workflow page
// shows it listening, and held (with the way to its connection) when the
// connection breaks.
func TestBrowserAppTriggerCard(t *testing.T) {
	for _, size := range [][2]int{{1280, 900}, {390, 844}} {
		t.Run(strconv.Itoa(size[0]), func(t *testing.T) {
			each(t, func(t *testing.T, e *env) {
				if !strings.HasSuffix(t.Name(), "sqlite") {
					t.Skip("one browser run per width is enough")
				}
				bg := context.Background()
				owner := e.signIn("owner@a.example")
				connID := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}, "label": {"Team chat"}}, "Acme Chat"))
				g := chatTriggerGraph(connID)
				g.Trigger = &workflow.Node{ID: "start", Kind: workflow.TriggerManual}
				w, err := e.workflows.Create(bg, e.acme, "Chat log", "", g, "")
				must(t, err)

				ctx := newBrowserSized(t, size[0], size[1])
				set := func(sel, value string) chromedp.Action[chromedp.Void] {
					return chromedp.Evaluate[chromedp.Void](`(() => { const el = document.querySelector(` + strconv.Quote(sel) + `); el.value = ` + strconv.Quote(value) + `; })()`)
				}
				clear := chromedp.Evaluate[chromedp.Void](`document.querySelectorAll(".flash").forEach(f => f.remove())`)
				submit := func(sel, value string) {
					t.Helper()
					if err := chromedp.Do(ctx, clear, set(sel, value), chromedp.Submit(sel)); err != nil {
						t.Fatalf("submit %s: %v", sel, err)
					}
					waitFlash(t, ctx, "Trigger saved.")
				}
				must(t, chromedp.Do(ctx,
					chromedp.Navigate(e.srv.URL+"/signin"),
					chromedp.SendKeys(`input[name=email]`, "owner@a.example"),
					chromedp.SendKeys(`input[name=password]`, pw),
					chromedp.Submit(`input[name=password]`),
					chromedp.WaitVisible(`.tiles`),
					chromedp.Navigate(e.srv.URL+"/acme/workflows/"+w.ID+"/edit"),
					chromedp.WaitVisible(`#trigger`)))
				form := `form[action$="/edit/trigger"] `
				submit(form+`select[name=kind]`, "app")
				submit(form+`select[name=app]`, "sandbox-chat")
				submit(form+`select[name=trigger]`, "new-message")
				if err := chromedp.Do(ctx, set(form+`input[name="input.channel"]`, "general"), set(form+`select[name=connection]`, connID)); err != nil {
					t.Fatal(err)
				}
				submit(form+`input[name=intervalSeconds]`, "")
				screenshot(t, ctx, "app-trigger-card-"+strconv.Itoa(size[0]))
				card := text(t, ctx, `#trigger`)
				for _, want := range []string{"Sandbox Chat", "New message in channel", "Channel", "Connection", "Include recent items"} {
					if !strings.Contains(card, want) {
						t.Fatalf("trigger card lacks %q: %s", want, card)
					}
				}
				must(t, chromedp.Do(ctx, clear, chromedp.Click(`form[action$="/publish"] button`)))
				waitFlash(t, ctx, "Workflow published")

				_, err = e.poller.Tick(bg, time.Now())
				must(t, err)
				must(t, chromedp.Do(ctx, chromedp.Navigate(e.srv.URL+"/acme/workflows/"+w.ID), chromedp.WaitVisible(`#app-trigger`)))
				if got := text(t, ctx, `#app-trigger`); !strings.Contains(got, "Listening") || !strings.Contains(got, "Next poll") {
					t.Fatalf("app trigger card: %s", got)
				}

				_, err = e.connections.Transition(bg, connID, connection.StatusError, "rejected", connection.System, nil)
				must(t, err)
				_, err = e.poller.Tick(bg, time.Now().Add(2*time.Minute))
				must(t, err)
				must(t, chromedp.Do(ctx, chromedp.Navigate(e.srv.URL+"/acme/workflows/"+w.ID), chromedp.WaitVisible(`#app-trigger a[href="/acme/connections/`+connID+`"]`)))
				screenshot(t, ctx, "app-trigger-held-"+strconv.Itoa(size[0]))
				if got := text(t, ctx, `#app-trigger`); !strings.Contains(got, "Held for reauthorization") {
					t.Fatalf("held app trigger card: %s", got)
				}
			})
		})
	}
}
