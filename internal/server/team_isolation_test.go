package server_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// The lines around the agency's own security: a member cannot invite,
// change roles, read the audit log, change the settings, export or delete
// (403 "Tenant admin required", in the pages and the API); another
// account's team, invitations, sessions, staff tokens and audit entries
// are not found (404) or not shown, and nothing of theirs changes.
func TestTeamIsolation(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner, member := e.signIn("owner@a.example"), e.signIn("member@a.example")
		outsider := e.signIn("owner@b.example")
		res := owner.api("POST", "/api/v1/account/invitations", `{"email":"nora@a.example"}`)
		wantStatus(t, "invite", res, 201)
		var inv struct{ Invitation struct{ ID string } }
		must(t, json.Unmarshal([]byte(res.Body), &inv))
		adminID := mustP(t, e, "admin@a.example").User.ID

		refused := map[string]response{
			"invite (API)":          member.api("POST", "/api/v1/account/invitations", `{"email":"x@a.example"}`),
			"invite (page)":         member.post("/team/invitations", url.Values{"email": {"x@a.example"}}),
			"invitations (API)":     member.api("GET", "/api/v1/account/invitations", ""),
			"invitations (page)":    member.get("/team?tab=invitations"),
			"resend (API)":          member.api("POST", "/api/v1/account/invitations/"+inv.Invitation.ID+"/resend", ""),
			"change a role (API)":   member.api("PATCH", "/api/v1/account/staff/"+adminID, `{"role":"account-member"}`),
			"change a role (page)":  member.post("/team/members/"+adminID+"/role", url.Values{"role": {"account-member"}}),
			"remove (API)":          member.api("DELETE", "/api/v1/account/staff/"+adminID, ""),
			"audit log (API)":       member.api("GET", "/api/v1/account/audit-log", ""),
			"audit log (page)":      member.get("/settings/audit"),
			"settings (API)":        member.api("PATCH", "/api/v1/account", `{"name":"Mine"}`),
			"settings (page)":       member.get("/settings/general"),
			"settings form":         member.post("/settings/general", url.Values{"card": {"identity"}, "name": {"Mine"}}),
			"export (API)":          member.api("GET", "/api/v1/account/export", ""),
			"delete a workspace":    member.api("DELETE", "/api/v1/workspaces/beta", `{"confirm":"beta"}`),
			"staff tokens (revoke)": member.post("/settings/api-tokens/x/revoke-staff", nil),
		}
		for what, r := range refused {
			if r.StatusCode != 403 || !strings.Contains(r.Body, "Tenant admin required") {
				t.Errorf("a member's %s: %d %.150s", what, r.StatusCode, r.Body)
			}
		}

		// Another account's owner reaches none of it.
		ownerSessions := owner.api("GET", "/api/v1/me/sessions", "")
		wantStatus(t, "sessions", ownerSessions, 200)
		var s struct{ Sessions []struct{ ID string } }
		must(t, json.Unmarshal([]byte(ownerSessions.Body), &s))
		if len(s.Sessions) == 0 {
			t.Fatal("the owner has no session listed")
		}
		tok := owner.api("POST", "/api/v1/api-tokens", `{"name":"deploy"}`)
		wantStatus(t, "token", tok, 201)
		var created struct{ APIToken struct{ ID string } }
		must(t, json.Unmarshal([]byte(tok.Body), &created))
		notFound := map[string]response{
			"change a role":       outsider.api("PATCH", "/api/v1/account/staff/"+adminID, `{"role":"account-member"}`),
			"change a role, page": outsider.post("/team/members/"+adminID+"/role", url.Values{"role": {"account-member"}}),
			"remove":              outsider.api("DELETE", "/api/v1/account/staff/"+adminID, ""),
			"remove, page":        outsider.post("/team/members/"+adminID+"/remove", nil),
			"resend":              outsider.api("POST", "/api/v1/account/invitations/"+inv.Invitation.ID+"/resend", ""),
			"revoke":              outsider.api("POST", "/api/v1/account/invitations/"+inv.Invitation.ID+"/revoke", ""),
			"a session (API)":     outsider.api("DELETE", "/api/v1/me/sessions/"+s.Sessions[0].ID, ""),
			"a session (page)":    outsider.post("/account/sessions/"+s.Sessions[0].ID+"/end", nil),
			"a staff token":       outsider.post("/settings/api-tokens/"+created.APIToken.ID+"/revoke-staff", nil),
			"a workspace":         outsider.api("DELETE", "/api/v1/workspaces/acme", `{"confirm":"acme"}`),
		}
		for what, r := range notFound {
			if r.StatusCode != 404 {
				t.Errorf("another account's %s: %d %.150s", what, r.StatusCode, r.Body)
			}
		}
		for what, r := range map[string]response{
			"team":        outsider.get("/team"),
			"invitations": outsider.api("GET", "/api/v1/account/invitations", ""),
			"staff":       outsider.api("GET", "/api/v1/account/staff", ""),
			"audit log":   outsider.api("GET", "/api/v1/account/audit-log", ""),
			"sessions":    outsider.api("GET", "/api/v1/me/sessions", ""),
		} {
			if r.StatusCode != 200 {
				t.Errorf("the outsider's own %s: %d", what, r.StatusCode)
			}
			for _, leak := range []string{"nora@a.example", "admin@a.example", "owner@a.example", s.Sessions[0].ID} {
				if strings.Contains(r.Body, leak) {
					t.Errorf("the outsider's %s shows %q", what, leak)
				}
			}
		}
		// Paging the outsider's log from one of this account's entries
		// shows nothing of this account either.
		mine := owner.auditLog(t, "")
		if len(mine.Entries) == 0 {
			t.Fatal("no audit entries")
		}
		entries := outsider.api("GET", "/api/v1/account/audit-log?before="+url.QueryEscape(owner.auditIDs(t)[0]), "")
		if strings.Contains(entries.Body, "a.example") {
			t.Fatalf("another account's entries through paging: %.300s", entries.Body)
		}
		// Nothing of theirs changed.
		if p := mustP(t, e, "admin@a.example"); p.Role != "account-admin" {
			t.Fatalf("the admin's role changed to %s", p.Role)
		}
		wantStatus(t, "the owner's session", owner.api("GET", "/api/v1/me", ""), 200)
		wantStatus(t, "the owner's own session ends by the API", owner.api("DELETE", "/api/v1/me/sessions/"+s.Sessions[0].ID, ""), 204)
	})
}

// auditIDs reads the ids of the account's audit entries, newest first.
func (b *browser) auditIDs(t *testing.T) []string {
	t.Helper()
	res := b.api("GET", "/api/v1/account/audit-log", "")
	var out struct{ Entries []struct{ ID string } }
	must(t, json.Unmarshal([]byte(res.Body), &out))
	ids := make([]string, len(out.Entries))
	for i, e := range out.Entries {
		ids[i] = e.ID
	}
	return ids
}
