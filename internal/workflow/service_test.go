package workflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/workflow"
)

func workspaces(t *testing.T, d *db.DB) (account.Workspace, account.Workspace) {
	t.Helper()
	ctx := context.Background()
	accounts := account.NewService(d)
	a, _, err := accounts.CreateAccount(ctx, "Agency", account.NewUser{Email: "o@a.example", Password: "correct horse battery"})
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
	return acme, beta
}

func TestVersioning(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		acme, beta := workspaces(t, d)
		svc := workflow.NewService(d)
		c := checks(t)
		w, err := svc.Create(ctx, acme, "New leads", "Tell the team", nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if w.Status != workflow.StatusDraft || w.StatusText != "No version is live yet. Nothing is dispatching." {
			t.Fatalf("new workflow: %s %q", w.Status, w.StatusText)
		}
		if _, err := svc.Get(ctx, beta, w.ID); !apperr.IsNotFound(err) {
			t.Fatalf("another workspace reads it: %v, want not found", err)
		}

		// The starter graph cannot be published.
		_, err = svc.Publish(ctx, acme, w.ID, "", c)
		var ce *workflow.CompileError
		if !errors.As(err, &ce) || ce.Error() != "Workflow compilation failed" || len(ce.Problems) == 0 {
			t.Fatalf("publish the starter: %v, want a compilation failure", err)
		}

		g := mustGraph(t, base)
		if _, err := svc.SaveDraft(ctx, acme, w.ID, g, ""); err != nil {
			t.Fatal(err)
		}
		v1, err := svc.Publish(ctx, acme, w.ID, "", c)
		if err != nil || v1.Number != 1 || v1.State != workflow.VersionActive {
			t.Fatalf("publish v1: %+v, %v", v1, err)
		}
		w, _ = svc.Get(ctx, acme, w.ID)
		if w.Status != workflow.StatusPublished || w.ActiveVersionID != v1.ID {
			t.Fatalf("after publish: %s active %s", w.Status, w.ActiveVersionID)
		}

		// Editing the active version makes "Draft from v1"; v1 keeps
		// dispatching.
		d2, err := svc.Draft(ctx, acme, w.ID, "")
		if err != nil || d2.Number != 2 || d2.Title() != "Draft from v1" {
			t.Fatalf("draft: %+v (%s), %v", d2, d2.Title(), err)
		}
		if again, _ := svc.Draft(ctx, acme, w.ID, ""); again.ID != d2.ID {
			t.Fatal("a second draft was created")
		}
		g.Nodes[0].Name = "Tell the team"
		if _, err := svc.SaveDraft(ctx, acme, w.ID, g, ""); err != nil {
			t.Fatal(err)
		}
		w, _ = svc.Get(ctx, acme, w.ID)
		if w.ActiveVersionID != v1.ID {
			t.Fatal("saving a draft changed the active version")
		}
		// A run in flight holds v1; publishing v2 swaps the active version
		// but leaves v1 readable as it was.
		inFlight, err := svc.Version(ctx, acme, w.ID, v1.ID)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := svc.Publish(ctx, acme, w.ID, "", c)
		if err != nil || v2.Number != 2 {
			t.Fatalf("publish v2: %+v, %v", v2, err)
		}
		still, _ := svc.Version(ctx, acme, w.ID, v1.ID)
		if still.State != workflow.VersionInactive || !reflect.DeepEqual(still.Graph, inFlight.Graph) {
			t.Fatalf("v1 after v2 went live: %s, graph changed %v", still.State, !reflect.DeepEqual(still.Graph, inFlight.Graph))
		}
		vs, _ := svc.Versions(ctx, acme, w.ID)
		if len(vs) != 2 || vs[0].State != workflow.VersionActive || vs[1].State != workflow.VersionInactive {
			t.Fatalf("versions: %+v", vs)
		}

		// Deactivating the last active version makes it a Draft again;
		// activating v1 publishes it again.
		if err := svc.Deactivate(ctx, acme, w.ID); err != nil {
			t.Fatal(err)
		}
		if w, _ = svc.Get(ctx, acme, w.ID); w.Status != workflow.StatusDraft {
			t.Fatalf("after deactivate: %s, want draft", w.Status)
		}
		if _, err := svc.Publish(ctx, acme, w.ID, v1.ID, c); err != nil {
			t.Fatal(err)
		}
		if w, _ = svc.Get(ctx, acme, w.ID); w.Status != workflow.StatusPublished || w.ActiveVersionID != v1.ID {
			t.Fatalf("after activating v1: %s %s", w.Status, w.ActiveVersionID)
		}
	})
}

func TestExportImportRoundTrip(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		acme, beta := workspaces(t, d)
		svc := workflow.NewService(d)
		g := mustGraph(t, base)
		w, err := svc.Create(ctx, acme, "New leads", "Tell the team", &g, "")
		if err != nil {
			t.Fatal(err)
		}
		exp, err := svc.Export(ctx, acme, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(exp)
		w2, err := svc.Import(ctx, beta, raw, "")
		if err != nil {
			t.Fatal(err)
		}
		exp2, err := svc.Export(ctx, beta, w2.ID)
		if err != nil {
			t.Fatal(err)
		}
		raw2, _ := json.Marshal(exp2)
		var a, b any
		_ = json.Unmarshal(raw, &a)
		_ = json.Unmarshal(raw2, &b)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the workflow:\n%s\n%s", raw, raw2)
		}
		if _, err := svc.Import(ctx, beta, []byte(`{"name":"x","graph":{"schema":9}}`), ""); !apperr.Is(err, apperr.KindBadRequest) {
			t.Fatalf("import of a future version: %v, want a clear 400", err)
		}
		if _, err := svc.Import(ctx, beta, []byte(`{"name":"x","graf":{}}`), ""); !apperr.Is(err, apperr.KindBadRequest) {
			t.Fatalf("import of a misspelt document: %v, want a clear 400", err)
		}
	})
}
