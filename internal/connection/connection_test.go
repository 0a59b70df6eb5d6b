package connection_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/vault"
)

type fixture struct {
	db    *db.DB
	svc   *connection.Service
	key   vault.Key
	acme  account.Workspace
	beta  account.Workspace
	owner account.Principal
}

func setup(t *testing.T, d *db.DB) fixture {
	t.Helper()
	ctx := context.Background()
	accounts := account.NewService(d)
	a, _, err := accounts.CreateAccount(ctx, "Agency", account.NewUser{Email: "owner@a.example", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	acme, err := accounts.CreateWorkspaceForAccount(ctx, a.ID, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	beta, err := accounts.CreateWorkspaceForAccount(ctx, a.ID, "Beta", "beta")
	if err != nil {
		t.Fatal(err)
	}
	owner, err := accounts.PrincipalByEmail(ctx, "owner@a.example")
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := vault.LoadKey("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return fixture{db: d, svc: connection.NewService(d, vault.NewKeyring(key)), key: key, acme: acme, beta: beta, owner: owner}
}

const secret = `{"access_token":"xoxb-SECRET-access","refresh_token":"xoxr-SECRET-refresh"}`

func (f fixture) create(t *testing.T, label string, status connection.Status) connection.Connection {
	t.Helper()
	c, err := f.svc.Create(context.Background(), f.acme, connection.New{
		AppKey: "sandbox-chat", Label: label, Status: status, Secret: []byte(secret),
		Metadata: map[string]string{"team": "T1"}, ExternalAccountID: "acct-1", ExternalAccountName: "Sandbox Workspace",
	}, connection.Actor{Kind: connection.ActorUser, UserID: f.owner.User.ID})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return c
}

func TestStatusDescriptions(t *testing.T) {
	for s, want := range map[connection.Status]string{
		connection.StatusActive: "Connected and working.",
		connection.StatusError:  "Reconnection needed.",
	} {
		if got := s.Description(); got != want {
			t.Errorf("%s description: got %q, want %q", s, got, want)
		}
	}
	for _, s := range connection.Statuses {
		if s.Description() == "" {
			t.Errorf("%s has no description", s)
		}
	}
	if connection.StatusError.Refreshable() || connection.StatusRevoked.Refreshable() || !connection.StatusActive.Refreshable() {
		t.Error("only active and pending connections are refreshable")
	}
}

func TestCreateStoresSecretEncrypted(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		c := f.create(t, "Main chat", connection.StatusActive)
		got, version, err := f.svc.Secret(ctx, c.ID)
		if err != nil || string(got) != secret || version != 1 {
			t.Fatalf("secret: got %q v%d, %v; want the stored secret at v1", got, version, err)
		}
		var ct []byte
		if err := d.Read().QueryRowContext(ctx, `SELECT ciphertext FROM credentials`).Scan(&ct); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(ct, []byte("SECRET")) {
			t.Fatal("secret stored in clear")
		}
		// The connection as shown never carries the secret.
		shown, err := f.svc.Get(ctx, f.acme, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.ToLower(fmtAll(shown)), "secret") {
			t.Fatalf("connection shows its secret: %s", fmtAll(shown))
		}
		if shown.Status != connection.StatusActive || shown.StatusDescription != "Connected and working." || shown.Metadata["team"] != "T1" {
			t.Fatalf("connection: got %+v", shown)
		}
	})
}

func TestWorkspaceIsolation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		c := f.create(t, "Main chat", connection.StatusActive)
		if _, err := f.svc.Get(ctx, f.beta, c.ID); !apperr.IsNotFound(err) {
			t.Fatalf("get from another workspace: got %v, want not found", err)
		}
		if _, err := f.svc.History(ctx, f.beta, c.ID); !apperr.IsNotFound(err) {
			t.Fatalf("history from another workspace: got %v, want not found", err)
		}
		if _, err := f.svc.Rename(ctx, f.beta, c.ID, "Hijacked"); !apperr.IsNotFound(err) {
			t.Fatalf("rename from another workspace: got %v, want not found", err)
		}
		list, err := f.svc.List(ctx, f.beta, "")
		if err != nil || len(list) != 0 {
			t.Fatalf("list of another workspace: got %d, %v; want none", len(list), err)
		}
	})
}

func TestListFilterAndRename(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		f.create(t, "One", connection.StatusActive)
		f.create(t, "Two", connection.StatusPending)
		active, err := f.svc.List(ctx, f.acme, connection.StatusActive)
		if err != nil || len(active) != 1 || active[0].Label != "One" {
			t.Fatalf("active filter: got %+v, %v", active, err)
		}
		if _, err := f.svc.List(ctx, f.acme, "broken"); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("unknown status filter: got %v, want invalid", err)
		}
		if _, err := f.svc.Rename(ctx, f.acme, active[0].ID, "  "); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("blank label: got %v, want invalid", err)
		}
		c, err := f.svc.Rename(ctx, f.acme, active[0].ID, "Renamed")
		if err != nil || c.Label != "Renamed" {
			t.Fatalf("rename: got %+v, %v", c, err)
		}
	})
}

func TestTransitionsAreRecordedOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		c := f.create(t, "Main chat", connection.StatusActive)

		// Many processes notice the same permanent failure at once: exactly
		// one moves the connection and records it.
		var wg sync.WaitGroup
		var mu sync.Mutex
		changed := 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := f.svc.Transition(ctx, c.ID, connection.StatusError, "refresh rejected: invalid_grant", connection.System, nil)
				if err != nil {
					t.Errorf("transition: %v", err)
					return
				}
				if ok {
					mu.Lock()
					changed++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if changed != 1 {
			t.Fatalf("racing transitions to error: %d changed, want 1", changed)
		}
		ok, err := f.svc.Transition(ctx, c.ID, connection.StatusActive, "reconnected", connection.Actor{Kind: connection.ActorUser, UserID: f.owner.User.ID},
			map[string]string{"externalAccountChanged": "false"})
		if err != nil || !ok {
			t.Fatalf("reconnect transition: %v, %v", ok, err)
		}
		h, err := f.svc.History(ctx, f.acme, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := []struct{ from, to connection.Status }{{"", "active"}, {"active", "error"}, {"error", "active"}}
		if len(h) != len(want) {
			t.Fatalf("history: got %d entries, want %d: %+v", len(h), len(want), h)
		}
		for i, w := range want {
			if h[i].From != w.from || h[i].To != w.to {
				t.Errorf("history[%d]: got %s→%s, want %s→%s", i, h[i].From, h[i].To, w.from, w.to)
			}
		}
		if h[1].ActorKind != connection.ActorSystem || h[1].Reason != "refresh rejected: invalid_grant" {
			t.Errorf("error entry: got %+v", h[1])
		}
		if h[2].ActorUserID != f.owner.User.ID || h[2].Detail["externalAccountChanged"] != "false" {
			t.Errorf("reconnect entry: got %+v", h[2])
		}
		got, _ := f.svc.Get(ctx, f.acme, c.ID)
		if got.Status != connection.StatusActive || got.StatusReason != "reconnected" {
			t.Fatalf("after reconnect: got %s (%s)", got.Status, got.StatusReason)
		}
	})
}

func TestStoreSecretBumpsVersion(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		c := f.create(t, "Main chat", connection.StatusActive)
		v, err := f.svc.StoreSecret(ctx, c.ID, []byte("rotated"))
		if err != nil || v != 2 {
			t.Fatalf("store secret: v%d, %v; want v2", v, err)
		}
		got, version, err := f.svc.Secret(ctx, c.ID)
		if err != nil || string(got) != "rotated" || version != 2 {
			t.Fatalf("after store: got %q v%d, %v", got, version, err)
		}
		var n int
		if err := d.Read().QueryRowContext(ctx, `SELECT count(*) FROM credentials`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("credentials rows: got %d, %v; want 1 (rewritten in place)", n, err)
		}
	})
}

func TestRotateKeys(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		a := f.create(t, "A", connection.StatusActive)
		b := f.create(t, "B", connection.StatusActive)

		newKey, _, err := vault.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		rotating := vault.NewStore(d, vault.NewKeyring(newKey, f.key))
		r, err := rotating.Rotate(ctx)
		if err != nil || r.Resealed[vault.KindConnection] != 2 {
			t.Fatalf("rotate: %v, %v; want 2 connection credentials", r.Resealed, err)
		}
		if r, err := rotating.Rotate(ctx); err != nil || r.Total() != 0 {
			t.Fatalf("second rotate: %d, %v; want 0", r.Total(), err)
		}
		// Only the new key is needed now.
		onlyNew := connection.NewService(d, vault.NewKeyring(newKey))
		for _, c := range []connection.Connection{a, b} {
			got, _, err := onlyNew.Secret(ctx, c.ID)
			if err != nil || string(got) != secret {
				t.Fatalf("secret of %s after rotation: %q, %v", c.Label, got, err)
			}
		}
		// And the old key alone no longer opens them.
		if _, _, err := f.svc.Secret(ctx, a.ID); err == nil {
			t.Fatal("old key still opens a rotated secret")
		}
	})
}

func TestSecretBoundToItsConnection(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		a := f.create(t, "A", connection.StatusActive)
		b := f.create(t, "B", connection.StatusActive)
		// Point B at A's ciphertext, as a tampered database would.
		_, err := d.Write().ExecContext(ctx, `UPDATE credentials SET ciphertext = (SELECT c.ciphertext FROM credentials c JOIN connections n ON n.secret_handle = c.handle WHERE n.id = $1)
			WHERE handle = (SELECT secret_handle FROM connections WHERE id = $2)`, a.ID, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.Secret(ctx, b.ID); err == nil {
			t.Fatal("a secret copied onto another connection opened there")
		}
	})
}
