package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// revokedGrants counts the sandbox's grants revoked at the app.
func (e *env) revokedGrants() int {
	n := 0
	for _, g := range e.sandbox.Grants() {
		if g.Revoked {
			n++
		}
	}
	return n
}

// rows counts a table's rows matching where.
func (e *env) rows(t *testing.T, table, where string, args ...any) int {
	t.Helper()
	var n int
	must(t, e.db.Read().QueryRowContext(context.Background(), `SELECT count(*) FROM `+table+` WHERE `+where, args...).Scan(&n))
	return n
}

// Deleting a workspace: the confirmation names what goes; a member gets
// 403, another account 404, a wrong confirmation 422, each with nothing
// changed; confirmed, every connection is revoked at its app (the sandbox
// sees its grant revoked), its schedule stops, the workspace and its
// clients' sign-ins are gone, the other workspace is untouched, and the
// audit log says so.
func TestDeleteWorkspace(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner, member := e.signIn("owner@a.example"), e.signIn("member@a.example")
		connID := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}, "label": {"Team chat"}}, "Acme Chat"))
		base := "/api/v1/workspaces/acme/workflows"
		d := decodeDetail(t, "create", owner.api("POST", base, `{"name": "Morning report", "graph": {"trigger": {"id": "start", "kind": "schedule", "config": {"cron": "0 9 * * *"}},
			"nodes": [{"id": "shape", "kind": "transform", "config": {"output": {"x": "1"}}}], "edges": [{"from": "start", "to": "shape"}]}}`), 201)
		wantStatus(t, "publish", owner.api("POST", base+"/"+d.Workflow.ID+"/publish", ""), 200)
		if e.rows(t, "schedule_state", "workflow_id = $1", d.Workflow.ID) != 1 {
			t.Fatal("the schedule is not kept")
		}

		page := owner.get("/acme/workspace/delete")
		wantStatus(t, "confirmation page", page, 200)
		for _, want := range []string{"1 workflow, 0 agents, 1 connection, 0 runs, 1 client sign-in", "Morning report", "Team chat (Sandbox Chat)", `name="confirm"`} {
			if !strings.Contains(page.Body, want) {
				t.Errorf("the confirmation does not name %q", want)
			}
		}
		res := owner.api("GET", "/api/v1/workspaces/acme/contents", "")
		if res.StatusCode != 200 || !strings.Contains(res.Body, `"connections":1`) {
			t.Fatalf("contents: %d %s", res.StatusCode, res.Body)
		}

		for what, r := range map[string]response{
			"member page":   member.get("/acme/workspace/delete"),
			"member form":   member.post("/acme/workspace/delete", url.Values{"confirm": {"acme"}}),
			"member API":    member.api("DELETE", "/api/v1/workspaces/acme", `{"confirm":"acme"}`),
			"member counts": member.api("GET", "/api/v1/workspaces/acme/contents", ""),
		} {
			if r.StatusCode != 403 || !strings.Contains(r.Body, "Tenant admin required") {
				t.Errorf("%s: %d", what, r.StatusCode)
			}
		}
		other := e.signIn("owner@b.example")
		wantStatus(t, "another account", other.api("DELETE", "/api/v1/workspaces/acme", `{"confirm":"acme"}`), 404)
		wantStatus(t, "another account's page", other.get("/acme/workspace/delete"), 404)
		wantAPIError(t, "wrong confirmation", owner.api("DELETE", "/api/v1/workspaces/acme", `{"confirm":"beta"}`), 422, "Type the workspace's address, acme, to confirm")
		wantAPIError(t, "no confirmation", owner.api("DELETE", "/api/v1/workspaces/acme", `{}`), 422, `Field "confirm" is required`)
		wantAPIError(t, "not JSON", owner.api("DELETE", "/api/v1/workspaces/acme", `confirm=acme`), 400, "")
		wantRedirect(t, "wrong confirmation in the page", owner.post("/acme/workspace/delete", url.Values{"confirm": {"Acme Corp"}}), "/acme/workspace/delete")
		if p := owner.get("/acme/workspace/delete"); !strings.Contains(p.Body, "Type the workspace&#39;s address, acme, to confirm") || !strings.Contains(p.Body, `value="Acme Corp"`) {
			t.Fatalf("the refused confirmation is not shown at its field")
		}
		if e.revokedGrants() != 0 || e.rows(t, "workspaces", "slug = 'acme'") != 1 || e.rows(t, "connections", "status <> 'revoked'") != 1 {
			t.Fatal("a refused deletion changed something")
		}

		wantRedirect(t, "delete", owner.post("/acme/workspace/delete", url.Values{"confirm": {"acme"}}), "/dashboard")
		if e.revokedGrants() != 1 {
			t.Fatalf("the connection's grant is not revoked at the app: %+v", e.sandbox.Grants())
		}
		for table, where := range map[string]string{"workspaces": "slug = 'acme'", "connections": "id = '" + connID + "'", "schedule_state": "workflow_id = '" + d.Workflow.ID + "'",
			"users": "email = 'client@acme.example'", "workflows": "id = '" + d.Workflow.ID + "'"} {
			if n := e.rows(t, table, where); n != 0 {
				t.Errorf("%s: %d rows left of the deleted workspace", table, n)
			}
		}
		wantStatus(t, "beta stays", owner.get("/beta/"), 200)
		wantStatus(t, "acme is gone", owner.get("/acme/"), 404)
		log := owner.auditLog(t, "?action=workspace.deleted")
		if len(log.Entries) != 1 || log.Entries[0].Target != "Acme Corp (acme)" || !strings.Contains(log.Entries[0].Detail, "1 connection") {
			t.Fatalf("audit: %+v", log.Entries)
		}
		if l := owner.auditLog(t, "?action=connection.revoked"); len(l.Entries) != 1 {
			t.Fatalf("the revocation is not in the audit log: %+v", l.Entries)
		}

		// The API deletes the other one and reports the revocations.
		res = owner.api("DELETE", "/api/v1/workspaces/beta", `{"confirm":"beta"}`)
		wantStatus(t, "API delete", res, 200)
		var rep struct {
			Removed     struct{ Workflows, Connections int }
			Revocations []any
		}
		must(t, json.Unmarshal([]byte(res.Body), &rep))
		if rep.Removed.Connections != 0 || rep.Revocations == nil {
			t.Fatalf("report: %s", res.Body)
		}
		e.checkNoSecretLeaked()
	})
}

// The account's export is a JSON archive of its settings, staff,
// workspaces, connections (no credential) and workflows, for owners and
// admins; members get 403; it is in the audit log. The owner deletes the
// account (an admin cannot; a wrong name changes nothing): its
// connections are revoked at their apps, its people can no longer sign in,
// and the other account is untouched.
func TestExportAndDeleteAccount(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner, admin, member := e.signIn("owner@a.example"), e.signIn("admin@a.example"), e.signIn("member@a.example")
		connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}, "label": {"Team chat"}}, "Acme Chat"))
		decodeDetail(t, "create", owner.api("POST", "/api/v1/workspaces/beta/workflows", `{"name": "Greeter", "graph": {"trigger": {"id": "start", "kind": "manual"},
			"nodes": [{"id": "shape", "kind": "transform", "config": {"output": {"x": "{{ $trigger.name }}"}}}], "edges": [{"from": "start", "to": "shape"}]}}`), 201)

		wantStatus(t, "member export", member.api("GET", "/api/v1/account/export", ""), 403)
		wantStatus(t, "member export page", member.post("/settings/general/export", nil), 403)
		res := admin.api("GET", "/api/v1/account/export", "")
		wantStatus(t, "export", res, 200)
		var a struct {
			Format     string
			Account    struct{ Name string }
			Staff      []any
			Workspaces []struct {
				Workspace   struct{ Slug string }
				Clients     []struct{ Email string }
				Connections []struct{ Label, App string }
				Workflows   []struct {
					Document struct{ Name string }
				}
			}
		}
		must(t, json.Unmarshal([]byte(res.Body), &a))
		if a.Format != "taskjuice-account-export" || a.Account.Name != "Agency A" || len(a.Staff) != 3 || len(a.Workspaces) != 2 {
			t.Fatalf("archive: %.500s", res.Body)
		}
		for _, w := range a.Workspaces {
			switch w.Workspace.Slug {
			case "acme":
				if len(w.Connections) != 1 || w.Connections[0].Label != "Team chat" || len(w.Clients) != 1 {
					t.Errorf("acme in the archive: %+v", w)
				}
			case "beta":
				if len(w.Workflows) != 1 || w.Workflows[0].Document.Name != "Greeter" {
					t.Errorf("beta in the archive: %+v", w)
				}
			}
		}
		if secretPattern.MatchString(res.Body) || strings.Contains(res.Body, "asswordHash") || strings.Contains(res.Body, "$argon2") || strings.Contains(res.Body, "accessToken") {
			t.Fatalf("a secret in the export: %q", secretPattern.FindString(res.Body))
		}
		page := owner.post("/settings/general/export", nil)
		if page.StatusCode != 200 || !strings.Contains(page.Header.Get("Content-Disposition"), "attachment") || !strings.Contains(page.Body, `"taskjuice-account-export"`) {
			t.Fatalf("export from the page: %d %q", page.StatusCode, page.Header.Get("Content-Disposition"))
		}
		if l := owner.auditLog(t, "?action=account.exported"); len(l.Entries) != 2 || l.Entries[1].ActorEmail != "admin@a.example" {
			t.Fatalf("exports in the audit log: %+v", l.Entries)
		}

		wantAPIError(t, "admin deletes", admin.api("DELETE", "/api/v1/account", `{"confirm":"Agency A"}`), 403, "Only the account's owner can delete it")
		wantStatus(t, "admin deletes in the page", admin.post("/settings/general/delete", url.Values{"confirm": {"Agency A"}}), 403)
		wantAPIError(t, "wrong name", owner.api("DELETE", "/api/v1/account", `{"confirm":"Agency B"}`), 422, "Type the account's name, Agency A, to confirm")
		wantRedirect(t, "wrong name in the page", owner.post("/settings/general/delete", url.Values{"confirm": {"agency a"}}), "/settings/general#danger")
		if p := owner.get("/settings/general"); !strings.Contains(p.Body, "Type the account&#39;s name, Agency A, to confirm") {
			t.Fatal("the refused name is not shown")
		}
		if e.revokedGrants() != 0 || e.rows(t, "accounts", "name = 'Agency A'") != 1 {
			t.Fatal("a refused deletion changed something")
		}
		accountA := mustP(t, e, "owner@a.example").AccountID
		done := owner.post("/settings/general/delete", url.Values{"confirm": {"Agency A"}})
		if done.StatusCode != 200 || !strings.Contains(done.Body, "Account deleted") {
			t.Fatalf("delete: %d %.300s", done.StatusCode, done.Body)
		}
		if e.revokedGrants() != 1 {
			t.Fatalf("the connection's grant is not revoked at the app")
		}
		for _, email := range []string{"owner@a.example", "admin@a.example", "client@acme.example"} {
			if r := e.browser().post("/signin", url.Values{"email": {email}, "password": {pw}}); r.StatusCode == 303 {
				t.Errorf("%s still signs in", email)
			}
		}
		wantStatus(t, "the admin's session", admin.api("GET", "/api/v1/me", ""), 401)
		for table, where := range map[string]string{"workspaces": "account_id = $1", "audit_log": "account_id = $1", "accounts": "id = $1",
			"connections": "workspace_id NOT IN (SELECT id FROM workspaces)", "workflows": "workspace_id NOT IN (SELECT id FROM workspaces)"} {
			if n := e.rows(t, table, strings.ReplaceAll(where, "$1", "'"+accountA+"'")); n != 0 {
				t.Errorf("%s: %d rows of the deleted account", table, n)
			}
		}
		if e.rows(t, "workspaces", "slug = 'bravo'") != 1 {
			t.Fatal("another account's workspace went too")
		}
		wantStatus(t, "Agency B", e.signIn("owner@b.example").get("/bravo/"), 200)
		e.checkNoSecretLeaked()
	})
}
