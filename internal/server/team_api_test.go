package server_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// The team through the API: an owner invites a teammate as admin (one
// email, a single-use link), the teammate joins with that role; a member
// can neither invite, list invitations, change roles nor remove anyone
// (403 "Tenant admin required"); an admin changes a member's role; a
// removed teammate's session and API token stop working at once; nobody
// changes the owner or themselves; another account sees 404.
func TestTeamAPI(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		box := e.mailbox()
		owner, admin, member := e.signIn("owner@a.example"), e.signIn("admin@a.example"), e.signIn("member@a.example")
		const invs = "/api/v1/account/invitations"

		adminID := mustP(t, e, "admin@a.example").User.ID
		for _, call := range [][3]string{
			{"POST", invs, `{"email":"x@a.example"}`}, {"GET", invs, ""},
			{"PATCH", "/api/v1/account/staff/" + adminID, `{"role":"account-member"}`},
			{"DELETE", "/api/v1/account/staff/" + adminID, ""},
		} {
			res := member.api(call[0], call[1], call[2])
			if res.StatusCode != 403 || !strings.Contains(res.Body, "Tenant admin required") {
				t.Fatalf("member %s %s: %d %.200s, want 403 Tenant admin required", call[0], call[1], res.StatusCode, res.Body)
			}
		}
		for what, body := range map[string]string{
			"an owner":     `{"email":"x@a.example","role":"account-owner"}`,
			"a client":     `{"email":"x@a.example","role":"workspace-client"}`,
			"no email":     `{"role":"account-member"}`,
			"a bad email":  `{"email":"not an address"}`,
			"a teammate":   `{"email":"member@a.example"}`,
			"broken JSON":  `{"email":`,
			"unknown role": `{"email":"x@a.example","role":"boss"}`,
		} {
			res := owner.api("POST", invs, body)
			if res.StatusCode < 400 || res.StatusCode >= 500 || !strings.Contains(res.Body, `"message"`) {
				t.Errorf("invite %s: %d %.200s, want a 4xx with a message", what, res.StatusCode, res.Body)
			}
		}

		res := owner.api("POST", invs, `{"email":"Nora@A.example","role":"account-admin"}`)
		wantStatus(t, "invite", res, 201)
		if strings.Contains(res.Body, `"link"`) {
			t.Fatalf("with email on the answer carries a link: %.300s", res.Body)
		}
		wantStatus(t, "invite twice", owner.api("POST", invs, `{"email":"nora@a.example"}`), 409)
		var list struct {
			Invitations []struct{ ID, Email, Role string }
		}
		res = admin.api("GET", invs, "")
		wantStatus(t, "list", res, 200)
		must(t, json.Unmarshal([]byte(res.Body), &list))
		if len(list.Invitations) != 1 || list.Invitations[0].Email != "nora@a.example" || list.Invitations[0].Role != "account-admin" {
			t.Fatalf("invitations: %+v", list)
		}
		wantStatus(t, "another account revokes", e.signIn("owner@b.example").api("POST", invs+"/"+list.Invitations[0].ID+"/revoke", ""), 404)
		mails := box.deliver(t)
		if len(mails) != 1 || mails[0].To[0] != "nora@a.example" || !strings.Contains(mails[0].Text, "as an admin") {
			t.Fatalf("invitation emails: %d", len(mails))
		}
		link := linkIn(t, e, mails[0], "/invitations/")
		nora := e.browser()
		wantStatus(t, "sign-up page", nora.open(link), 200)
		res = nora.postLink(link, url.Values{"name": {"Nora"}, "password": {pw}})
		if res.StatusCode != 303 {
			t.Fatalf("accept: %d %.300s", res.StatusCode, res.Body)
		}
		if p := mustP(t, e, "nora@a.example"); string(p.Role) != "account-admin" || p.AccountID != mustP(t, e, "owner@a.example").AccountID {
			t.Fatalf("nora joined as %+v", p)
		}
		wantStatus(t, "reused link", e.browser().open(link), 410)

		// Roles: an admin demotes nobody at the top, nor themselves.
		ownerID, memberID := mustP(t, e, "owner@a.example").User.ID, mustP(t, e, "member@a.example").User.ID
		wantStatus(t, "change the owner's role", admin.api("PATCH", "/api/v1/account/staff/"+ownerID, `{"role":"account-member"}`), 403)
		wantStatus(t, "change one's own role", admin.api("PATCH", "/api/v1/account/staff/"+adminID, `{"role":"account-member"}`), 403)
		wantStatus(t, "make an owner", admin.api("PATCH", "/api/v1/account/staff/"+memberID, `{"role":"account-owner"}`), 422)
		wantStatus(t, "another account's teammate", e.signIn("owner@b.example").api("PATCH", "/api/v1/account/staff/"+memberID, `{"role":"account-admin"}`), 404)
		wantStatus(t, "promote", admin.api("PATCH", "/api/v1/account/staff/"+memberID, `{"role":"account-admin"}`), 204)
		if p := mustP(t, e, "member@a.example"); string(p.Role) != "account-admin" {
			t.Fatalf("member is %s after the change", p.Role)
		}
		wantStatus(t, "demote again", owner.api("PATCH", "/api/v1/account/staff/"+memberID, `{"role":"account-member"}`), 204)

		// Removal ends the teammate's session and token at once.
		res = member.api("POST", "/api/v1/api-tokens", `{"name":"script"}`)
		wantStatus(t, "member's token", res, 201)
		var tok struct{ Token string }
		must(t, json.Unmarshal([]byte(res.Body), &tok))
		byToken := e.browser()
		wantStatus(t, "token works", byToken.api("GET", "/api/v1/me", "", "Authorization", "Bearer "+tok.Token), 200)
		wantStatus(t, "remove", owner.api("DELETE", "/api/v1/account/staff/"+memberID, ""), 204)
		wantStatus(t, "session after removal", member.api("GET", "/api/v1/me", ""), 401)
		wantStatus(t, "token after removal", byToken.api("GET", "/api/v1/me", "", "Authorization", "Bearer "+tok.Token), 401)
		wantStatus(t, "remove twice", owner.api("DELETE", "/api/v1/account/staff/"+memberID, ""), 404)
	})
}

// With email off, an invitation's answer carries its sign-up link once.
func TestTeamInviteEmailOff(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		res := owner.api("POST", "/api/v1/account/invitations", `{"email":"nora@a.example"}`)
		wantStatus(t, "invite", res, 201)
		var out struct {
			Invitation struct{ ID, Role string }
			Link       string
		}
		must(t, json.Unmarshal([]byte(res.Body), &out))
		if out.Invitation.Role != "account-member" || !strings.HasPrefix(out.Link, e.srv.URL+"/invitations/tji_") {
			t.Fatalf("invite with email off: %+v", out)
		}
		res = owner.api("POST", "/api/v1/account/invitations/"+out.Invitation.ID+"/resend", "")
		wantStatus(t, "resend", res, 200)
		var again struct{ Link string }
		must(t, json.Unmarshal([]byte(res.Body), &again))
		if again.Link == "" || again.Link == out.Link {
			t.Fatalf("resend gave link %q, want a new one", again.Link)
		}
		wantStatus(t, "old link", e.browser().open(out.Link), 404)
		wantStatus(t, "revoke", owner.api("POST", "/api/v1/account/invitations/"+out.Invitation.ID+"/revoke", ""), 204)
		wantStatus(t, "revoked link", e.browser().open(again.Link), 410)
	})
}
