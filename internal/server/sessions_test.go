package server_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestSessionsList: the Security page lists a person's sessions with this
// browser marked; signing another out ends it at once; another person's
// session cannot be ended; "Sign out everywhere" ends them all.
func TestSessionsList(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		laptop, phone := e.signIn("member@a.example"), e.signIn("member@a.example")
		other := e.signIn("owner@a.example")
		page := laptop.get("/account/security")
		wantStatus(t, "security page", page, 200)
		if strings.Count(page.Body, `action="/account/sessions/`) != 2 || strings.Count(page.Body, "This browser") != 1 {
			t.Fatalf("sessions: want 2 listed (one to sign out, and Sign out everywhere) with this browser marked:\n%s", page.Body[strings.Index(page.Body, `id="sessions"`):])
		}
		ids := regexp.MustCompile(`/account/sessions/([0-9a-f]{16})/end`).FindAllStringSubmatch(page.Body, -1)
		if len(ids) != 1 {
			t.Fatalf("session ids on the page: %v, want the phone's", ids)
		}
		phoneID := ids[0][1]
		wantStatus(t, "another person's session", other.post("/account/sessions/"+phoneID+"/end", nil), 404)
		wantStatus(t, "the phone before", phone.get("/dashboard"), 200)
		wantRedirect(t, "sign the phone out", laptop.post("/account/sessions/"+phoneID+"/end", nil), "/account/security#sessions")
		if res := phone.get("/dashboard"); res.StatusCode == 200 {
			t.Fatal("the phone is still signed in")
		}
		wantStatus(t, "the laptop after", laptop.get("/dashboard"), 200)
		wantStatus(t, "a made-up id", laptop.post("/account/sessions/zzzz/end", nil), 404)
		wantRedirect(t, "sign out everywhere", laptop.post("/account/sessions/end-all", nil), "/signin")
		if res := laptop.get("/dashboard"); res.StatusCode == 200 {
			t.Fatal("the laptop is still signed in")
		}
		wantStatus(t, "the other person", other.get("/dashboard"), 200)
	})
}

// TestStaffTokens: owners and admins see every staff member's API tokens
// and revoke them, which ends them at once; a member sees only their own
// and gets 403 revoking another's; another account's token is not found.
func TestStaffTokens(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		member, admin := e.signIn("member@a.example"), e.signIn("admin@a.example")
		res := member.post("/settings/api-tokens", url.Values{"name": {"Deploy script"}})
		wantStatus(t, "create a token", res, 200)
		secret := regexp.MustCompile(`tjp_[A-Za-z0-9_-]+`).FindString(res.Body)
		if secret == "" {
			t.Fatal("no token shown")
		}
		bearer := func() int {
			req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/workspaces", nil)
			req.Header.Set("Authorization", "Bearer "+secret)
			r, err := http.DefaultClient.Do(req)
			must(t, err)
			r.Body.Close()
			return r.StatusCode
		}
		if got := bearer(); got != 200 {
			t.Fatalf("the new token: %d, want 200", got)
		}
		if strings.Contains(member.get("/settings/api-tokens").Body, "Staff tokens") {
			t.Fatal("a member sees the staff tokens")
		}
		page := admin.get("/settings/api-tokens")
		ids := regexp.MustCompile(`/settings/api-tokens/([0-9a-f-]{36})/revoke-staff`).FindAllStringSubmatch(page.Body, -1)
		if !strings.Contains(page.Body, "Staff tokens") || !strings.Contains(page.Body, "member@a.example") || len(ids) != 1 {
			t.Fatalf("the admin's staff tokens: %d revoke forms", len(ids))
		}
		id := ids[0][1]
		wantStatus(t, "a member revokes a staff token", member.post("/settings/api-tokens/"+id+"/revoke-staff", nil), 403)
		wantStatus(t, "another account's admin", e.signIn("owner@b.example").post("/settings/api-tokens/"+id+"/revoke-staff", nil), 404)
		wantRedirect(t, "the admin revokes it", admin.post("/settings/api-tokens/"+id+"/revoke-staff", nil), "/settings/api-tokens#staff")
		if got := bearer(); got != 401 {
			t.Fatalf("the revoked token: %d, want 401", got)
		}
	})
}
