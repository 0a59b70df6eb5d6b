package server_test

import (
	"net/url"
	"strings"
	"testing"
)

// The team page: owners and admins see both tabs, invite (with email off
// the link is shown once), change a role and remove a teammate; members see
// the teammates without the invite button and get 403 from the invitations
// tab and every action.
func TestTeamPage(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner, member := e.signIn("owner@a.example"), e.signIn("member@a.example")
		page := owner.get("/team")
		wantStatus(t, "owner's team page", page, 200)
		for _, want := range []string{"Teammates", "Invitations", "Mia", "member@a.example", "Change role"} {
			if !strings.Contains(page.Body, want) {
				t.Fatalf("team page lacks %q", want)
			}
		}
		mine := member.get("/team")
		wantStatus(t, "member's team page", mine, 200)
		if !strings.Contains(mine.Body, "Olive") || strings.Contains(mine.Body, "Invite teammate") || strings.Contains(mine.Body, "Change role") {
			t.Fatalf("member's team page offers what a member cannot do")
		}
		memberID := mustP(t, e, "member@a.example").User.ID
		for what, res := range map[string]response{
			"invitations tab": member.get("/team?tab=invitations"),
			"invite":          member.post("/team/invitations", url.Values{"email": {"x@a.example"}}),
			"change a role":   member.post("/team/members/"+mustP(t, e, "admin@a.example").User.ID+"/role", url.Values{"role": {"account-member"}}),
			"remove":          member.post("/team/members/"+mustP(t, e, "admin@a.example").User.ID+"/remove", nil),
		} {
			if res.StatusCode != 403 || !strings.Contains(res.Body, "Tenant admin required") {
				t.Errorf("member %s: %d, want 403 Tenant admin required", what, res.StatusCode)
			}
		}

		wantRedirect(t, "invite", owner.post("/team/invitations", url.Values{"email": {"nora@a.example"}, "role": {"account-admin"}}), "/team")
		shown := owner.get("/team")
		if !strings.Contains(shown.Body, e.srv.URL+"/invitations/tji_") {
			t.Fatalf("the invitation link is not shown once with email off")
		}
		if again := owner.get("/team?tab=invitations"); strings.Contains(again.Body, "/invitations/tji_") || !strings.Contains(again.Body, "nora@a.example") {
			t.Fatalf("invitations tab: the link shown again, or the invitation missing")
		}
		res := owner.post("/team/invitations", url.Values{"email": {"nora@a.example"}})
		if res.StatusCode != 303 {
			t.Fatalf("second invite: %d", res.StatusCode)
		}
		if tab := owner.get("/team?tab=invitations"); !strings.Contains(tab.Body, "already has a pending invitation") {
			t.Fatalf("a second invitation to the same email was not refused with a message")
		}

		wantRedirect(t, "promote", owner.post("/team/members/"+memberID+"/role", url.Values{"role": {"account-admin"}}), "/team")
		if p := mustP(t, e, "member@a.example"); string(p.Role) != "account-admin" {
			t.Fatalf("role after the change: %s", p.Role)
		}
		wantRedirect(t, "remove", owner.post("/team/members/"+memberID+"/remove", nil), "/team")
		if res := member.get("/team"); res.StatusCode == 200 {
			t.Fatalf("the removed teammate's session still opens the team page")
		}
		if strings.Contains(owner.get("/team").Body, "member@a.example") {
			t.Fatal("the removed teammate is still listed")
		}
	})
}
