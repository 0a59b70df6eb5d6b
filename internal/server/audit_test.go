package server_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

type auditEntries struct {
	Entries []struct{ ActorEmail, Address, Action, Target, Detail string }
}

func (b *browser) auditLog(t *testing.T, query string) auditEntries {
	t.Helper()
	res := b.api("GET", "/api/v1/account/audit-log"+query, "")
	wantStatus(t, "audit log", res, 200)
	var out auditEntries
	must(t, json.Unmarshal([]byte(res.Body), &out))
	return out
}

// The account's audit log records sign-ins (and refused ones), teammate
// invitations, role changes and removals, the ownership transfer and API
// tokens, each with its actor, address and target and no secret; owners and
// admins read it (filtered), members get 403 and another account sees none
// of it.
func TestAuditLog(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		wrong := e.browser().post("/signin", url.Values{"email": {"member@a.example"}, "password": {"not the password"}})
		if wrong.StatusCode == 303 {
			t.Fatal("a wrong password signed in")
		}
		owner, member := e.signIn("owner@a.example"), e.signIn("member@a.example")
		res := owner.api("POST", "/api/v1/account/invitations", `{"email":"nora@a.example","role":"account-admin"}`)
		wantStatus(t, "invite", res, 201)
		var inv struct {
			Invitation struct{ ID string }
			Link       string
		}
		must(t, json.Unmarshal([]byte(res.Body), &inv))
		wantStatus(t, "resend", owner.api("POST", "/api/v1/account/invitations/"+inv.Invitation.ID+"/resend", ""), 200)
		wantStatus(t, "revoke", owner.api("POST", "/api/v1/account/invitations/"+inv.Invitation.ID+"/revoke", ""), 204)
		for what, r := range map[string]response{"the API": member.api("GET", "/api/v1/account/audit-log", ""), "the page": member.get("/settings/audit")} {
			if r.StatusCode != 403 || !strings.Contains(r.Body, "Tenant admin required") {
				t.Errorf("a member reads the audit log in %s: %d", what, r.StatusCode)
			}
		}
		adminID, memberID := mustP(t, e, "admin@a.example").User.ID, mustP(t, e, "member@a.example").User.ID
		wantStatus(t, "promote", owner.api("PATCH", "/api/v1/account/staff/"+memberID, `{"role":"account-admin"}`), 204)
		wantStatus(t, "demote", owner.api("PATCH", "/api/v1/account/staff/"+memberID, `{"role":"account-member"}`), 204)
		res = owner.api("POST", "/api/v1/api-tokens", `{"name":"deploy"}`)
		wantStatus(t, "token", res, 201)
		var tok struct {
			Token    string
			APIToken struct{ ID string }
		}
		must(t, json.Unmarshal([]byte(res.Body), &tok))
		wantStatus(t, "revoke token", owner.api("DELETE", "/api/v1/api-tokens/"+tok.APIToken.ID, ""), 204)
		res = member.api("POST", "/api/v1/api-tokens", `{"name":"script"}`)
		wantStatus(t, "member's token", res, 201)
		var mtok struct{ APIToken struct{ ID string } }
		must(t, json.Unmarshal([]byte(res.Body), &mtok))
		wantStatus(t, "revoke staff token", owner.post("/settings/api-tokens/"+mtok.APIToken.ID+"/revoke-staff", nil), 303)
		wantStatus(t, "transfer", owner.api("POST", "/api/v1/account/transfer-ownership", `{"userId":"`+adminID+`"}`), 204)
		wantStatus(t, "remove", e.signIn("admin@a.example").api("DELETE", "/api/v1/account/staff/"+memberID, ""), 204)

		log := owner.auditLog(t, "")
		seen := map[string]int{}
		for _, en := range log.Entries {
			seen[en.Action]++
			if en.Address == "" {
				t.Errorf("%s has no address", en.Action)
			}
			for _, secret := range []string{tok.Token, inv.Link, "tji_", "tjp_" + strings.TrimPrefix(tok.Token, "tjp_"), pw} {
				if secret != "" && (strings.Contains(en.Target, secret) || strings.Contains(en.Detail, secret)) {
					t.Fatalf("a secret in the audit log: %+v", en)
				}
			}
		}
		for action, n := range map[string]int{
			"signin.failure": 1, "signin.success": 3, "teammate.invited": 1, "teammate.invitation_resent": 1, "teammate.invitation_revoked": 1,
			"teammate.role_changed": 2, "teammate.removed": 1, "account.ownership_transferred": 1, "api_token.created": 2, "api_token.revoked": 1,
			"api_token.revoked_by_admin": 1,
		} {
			if seen[action] != n {
				t.Errorf("%s: %d entries, want %d (all: %v)", action, seen[action], n, seen)
			}
		}
		if len(log.Entries) == 0 || log.Entries[0].Action != "teammate.removed" || log.Entries[0].ActorEmail != "admin@a.example" || log.Entries[0].Target != "member@a.example" {
			t.Fatalf("newest entry: %+v", log.Entries[0])
		}
		if got := owner.auditLog(t, "?action=teammate.&actor=owner@a.example"); len(got.Entries) != 5 {
			t.Fatalf("filtered by family and actor: %d entries, want 5", len(got.Entries))
		}
		if page := owner.get("/settings/audit?action=api_token."); page.StatusCode != 200 || !strings.Contains(page.Body, "api_token.revoked_by_admin") || strings.Contains(page.Body, "teammate.removed") {
			t.Fatalf("audit page filtered: %d", page.StatusCode)
		}
		if got := e.signIn("owner@b.example").auditLog(t, ""); len(got.Entries) != 1 || got.Entries[0].ActorEmail != "owner@b.example" {
			t.Fatalf("another account's log: %+v, want only its own sign-in", got.Entries)
		}
	})
}

// A person's changes to a connection reach the account's audit log: its
// creation, its consent completed on the app's screen and its revocation, with the
// connection named and no credential.
func TestAuditLogConnections(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		connID := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}, "label": {"Team chat"}}, "Acme Chat"))
		wantStatus(t, "refresh by hand", owner.api("POST", "/api/v1/connections/"+connID+"/refresh", ""), 200)
		connectionFromLocation(t, owner.consent(t, "/acme/connections/"+connID+"/reconnect", url.Values{}, "Acme Chat"))
		wantRedirect(t, "allowed domains", owner.post("/acme/connections/"+connID+"/allowed-domains", url.Values{"domains": {"files.chat.example"}}), "/acme/connections/"+connID)
		wantStatus(t, "revoke", owner.api("POST", "/api/v1/connections/"+connID+"/revoke", ""), 200)
		got := owner.auditLog(t, "?action=connection.")
		var actions []string
		for _, en := range got.Entries {
			actions = append(actions, en.Action)
			if en.ActorEmail != "owner@a.example" || !strings.Contains(en.Target, "Team chat") || en.Address == "" {
				t.Errorf("connection entry: %+v", en)
			}
			if secretPattern.MatchString(en.Target + en.Detail) {
				t.Fatalf("a credential in the audit log: %+v", en)
			}
		}
		if strings.Join(actions, ",") != "connection.revoked,connection.allowed_domains_changed,connection.reconnected,connection.refreshed,connection.connected,connection.created" {
			t.Fatalf("connection entries: %v, want the revocation, the domains, the reconnection, the refresh, then the creation", actions)
		}
		if got.Entries[3].Detail != "refreshed" {
			t.Fatalf("the refresh's outcome: %+v", got.Entries[3])
		}
	})
}

// A workflow's publication and deactivation and a workspace's spend cap
// changes are recorded with the person who made them; the system's own
// work is not.
func TestAuditLogWorkflowsAndCaps(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner, admin := e.signIn("owner@a.example"), e.signIn("admin@a.example")
		base := "/api/v1/workspaces/acme/workflows"
		d := decodeDetail(t, "create", owner.api("POST", base, `{"name": "Greeter", "graph": {"trigger": {"id": "start", "kind": "manual"},
			"nodes": [{"id": "shape", "kind": "transform", "config": {"output": {"x": "{{ $trigger.name }}"}}}], "edges": [{"from": "start", "to": "shape"}]}}`), 201)
		path := base + "/" + d.Workflow.ID
		wantStatus(t, "publish", owner.api("POST", path+"/publish", ""), 200)
		wantStatus(t, "deactivate", admin.api("POST", path+"/deactivate", ""), 200)
		wantStatus(t, "deactivate again", admin.api("POST", path+"/deactivate", ""), 200)
		wantStatus(t, "cap", admin.api("PUT", "/api/v1/workspaces/acme/spend/cap", `{"capUsd":"25.00"}`), 200)
		wantStatus(t, "same cap", admin.api("PUT", "/api/v1/workspaces/acme/spend/cap", `{"capUsd":"25.00"}`), 200)
		wantStatus(t, "no cap", owner.api("PUT", "/api/v1/workspaces/acme/spend/cap", `{"capUsd":"0"}`), 200)
		want := []string{
			"spend_cap.changed owner@a.example $25.00 a month → no cap",
			"spend_cap.changed admin@a.example no cap → $25.00 a month",
			"workflow.deactivated admin@a.example ",
			"workflow.published owner@a.example version 1",
		}
		var got []string
		for _, en := range owner.auditLog(t, "").Entries {
			if strings.HasPrefix(en.Action, "workflow.") || strings.HasPrefix(en.Action, "spend_cap.") {
				got = append(got, en.Action+" "+en.ActorEmail+" "+en.Detail)
				if strings.HasPrefix(en.Action, "workflow.") && en.Target != "Greeter ("+d.Workflow.ID+")" {
					t.Errorf("workflow entry's target: %q", en.Target)
				}
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}
