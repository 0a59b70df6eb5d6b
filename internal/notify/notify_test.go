package notify_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/notify"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fixture is an agency with workspaces acme and beta, and an active
// Sandbox Chat connection in acme.
type fixture struct {
	ctx   context.Context
	owner account.User
	ws    account.Workspace
	other account.Workspace
	cat   *catalog.Catalog
	conns *connection.Service
	conn  connection.Connection
	svc   *notify.Service
}

func setup(t *testing.T, d *db.DB) fixture {
	t.Helper()
	f := fixture{ctx: context.Background()}
	accounts := account.NewService(d)
	a, owner, err := accounts.CreateAccount(f.ctx, "Agency", account.NewUser{Email: "o@a.example", Password: "correct horse battery"})
	must(t, err)
	f.owner = owner
	f.ws, err = accounts.CreateWorkspaceForAccount(f.ctx, a.ID, "Acme", "acme")
	must(t, err)
	f.other, err = accounts.CreateWorkspaceForAccount(f.ctx, a.ID, "Beta", "beta")
	must(t, err)
	f.cat, err = catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: "http://127.0.0.1:1/sandbox"})
	must(t, err)
	key, _, _ := vault.GenerateKey()
	f.conns = connection.NewService(d, vault.NewKeyring(key))
	f.conn, err = f.conns.CreateWithCredential(f.ctx, f.ws, connection.New{AppKey: "sandbox-chat", Label: "Team chat", Status: connection.StatusActive},
		connection.Credential{OAuth: &connection.OAuthToken{AccessToken: "a", RefreshToken: "r"}}, connection.System)
	must(t, err)
	f.svc = notify.NewService(d, f.cat)
	return f
}

func TestReauthNotification(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx, owner, ws, other, conns, c, svc := f.ctx, f.owner, f.ws, f.other, f.conns, f.conn, f.svc
		wfs := workflow.NewService(d)
		cfg, _ := json.Marshal(map[string]any{"app": "sandbox-chat", "action": "post-message", "inputs": map[string]any{"channel": "general", "text": "hi"}})
		g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
			Nodes: []workflow.Node{{ID: "post", Kind: workflow.NodeAction, Config: cfg, Connection: &workflow.Binding{ID: c.ID}}},
			Edges: []workflow.Edge{{From: "start", To: "post"}}}
		w, err := wfs.Create(ctx, ws, "New leads", "", &g, "")
		must(t, err)
		_, err = wfs.Publish(ctx, ws, w.ID, "", workflow.Checks{})
		must(t, err)
		eng := engine.New(d, wfs, nil, nil, engine.Options{})
		for range 2 {
			id, err := eng.StartRun(ctx, w.ID, nil, "manual", "")
			must(t, err)
			_, err = d.Write().ExecContext(ctx, `UPDATE runs SET status = 'paused', pause_reason = 'reauth', paused_connection_id = $1 WHERE id = $2`, c.ID, id)
			must(t, err)
		}

		_, err = conns.Transition(ctx, c.ID, connection.StatusError, "refresh rejected", connection.System, nil)
		must(t, err)
		for range 2 { // consumed once, however often it runs
			_, err := svc.Consume(ctx)
			must(t, err)
		}
		list, err := svc.List(ctx, ws.ID, owner.ID, 0)
		must(t, err)
		if len(list) != 1 {
			t.Fatalf("notifications: %d, want 1", len(list))
		}
		n := list[0]
		if n.Severity != notify.Critical || n.Title != "Sandbox Chat reauth required" || n.Read || n.Link != "/acme/connections/"+c.ID {
			t.Fatalf("notification: %+v", n)
		}
		for _, want := range []string{`"Team chat"`, "It blocks New leads.", "2 runs are held"} {
			if !strings.Contains(n.Body, want) {
				t.Errorf("body %q lacks %q", n.Body, want)
			}
		}
		if u, _, _ := svc.Unread(ctx, ws.ID, owner.ID); u != 1 {
			t.Fatalf("unread: %d, want 1", u)
		}
		if u, _, _ := svc.Unread(ctx, other.ID, owner.ID); u != 0 {
			t.Fatal("another workspace sees the notification")
		}
		if banner, _, _ := svc.Reauth(ctx, ws.ID, owner.ID); len(banner) != 1 {
			t.Fatalf("banner rows: %d, want 1", len(banner))
		}

		// A run held after the alert was raised counts: the impact line
		// says what holds now.
		id, err := eng.StartRun(ctx, w.ID, nil, "manual", "")
		must(t, err)
		_, err = d.Write().ExecContext(ctx, `UPDATE runs SET status = 'paused', pause_reason = 'reauth', paused_connection_id = $1 WHERE id = $2`, c.ID, id)
		must(t, err)
		list, err = svc.List(ctx, ws.ID, owner.ID, 0)
		must(t, err)
		if !strings.Contains(list[0].Body, "3 runs are held") {
			t.Fatalf("body after a third run is held: %q, want it to say 3 runs are held", list[0].Body)
		}
		// Marked read while still broken: no banner row, a quiet reminder.
		_, before, _ := svc.Unread(ctx, ws.ID, owner.ID)
		must(t, svc.MarkRead(ctx, ws.ID, owner.ID, ""))
		banner, quiet, err := svc.Reauth(ctx, ws.ID, owner.ID)
		must(t, err)
		if len(banner) != 0 || len(quiet) != 1 || quiet[0].ConnectionID != c.ID {
			t.Fatalf("after mark all read: banner %d, reminders %d; want 0 and 1", len(banner), len(quiet))
		}
		if u, after, _ := svc.Unread(ctx, ws.ID, owner.ID); u != 0 || after == before {
			t.Fatalf("after mark all read: unread %d, signature changed %v; want 0 and a new signature", u, after != before)
		}

		// Reconnected: resolved, read for everyone.
		_, err = conns.Transition(ctx, c.ID, connection.StatusActive, "reconnected", connection.System, nil)
		must(t, err)
		_, err = svc.Consume(ctx)
		must(t, err)
		if u, _, _ := svc.Unread(ctx, ws.ID, owner.ID); u != 0 {
			t.Fatalf("unread after reconnect: %d, want 0", u)
		}
		if banner, quiet, _ := svc.Reauth(ctx, ws.ID, owner.ID); len(banner) != 0 || len(quiet) != 0 {
			t.Fatalf("banner after reconnect: %d rows, %d reminders", len(banner), len(quiet))
		}
		// Broken again: a new alert.
		_, err = conns.Transition(ctx, c.ID, connection.StatusError, "refresh rejected", connection.System, nil)
		must(t, err)
		_, err = svc.Consume(ctx)
		must(t, err)
		if u, _, _ := svc.Unread(ctx, ws.ID, owner.ID); u != 1 {
			t.Fatalf("unread after breaking again: %d, want 1", u)
		}
		must(t, svc.MarkRead(ctx, ws.ID, owner.ID, ""))
		if u, _, _ := svc.Unread(ctx, ws.ID, owner.ID); u != 0 {
			t.Fatalf("unread after mark all read: %d", u)
		}
		if err := svc.MarkRead(ctx, other.ID, owner.ID, n.ID); err == nil {
			t.Fatal("marking another workspace's notification: got nil error")
		}
	})
}

func TestExpiringWarning(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx, owner, ws, c, svc := f.ctx, f.owner, f.ws, f.conn, f.svc
		// Sandbox Chat declares 30 days; issued 29 days ago, it ends within
		// the warning window.
		setIssued := func(ago time.Duration) {
			_, err := d.Write().ExecContext(ctx, `UPDATE connections SET refresh_issued_at = $1, refresh_used_at = $1 WHERE id = $2`, time.Now().UTC().Add(-ago), c.ID)
			must(t, err)
		}
		setIssued(24 * time.Hour)
		if n, err := svc.Expiring(ctx); err != nil || n != 0 {
			t.Fatalf("fresh token: %d warnings, %v", n, err)
		}
		setIssued(29 * 24 * time.Hour)
		for range 2 {
			if _, err := svc.Expiring(ctx); err != nil {
				t.Fatal(err)
			}
		}
		list, _ := svc.List(ctx, ws.ID, owner.ID, 0)
		if len(list) != 1 || list[0].Severity != notify.Warning || list[0].Title != "Sandbox Chat connection expires soon" || !strings.Contains(list[0].Body, "Reconnect it before then") {
			t.Fatalf("warnings: %+v", list)
		}
		// Reconnected (a new refresh token): the warning is resolved.
		setIssued(0)
		_, err := svc.Expiring(ctx)
		must(t, err)
		if u, _, _ := svc.Unread(ctx, ws.ID, owner.ID); u != 0 {
			t.Fatalf("unread after renewal: %d", u)
		}
	})
}
