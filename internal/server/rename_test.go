package server_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// A workspace is renamed by an owner or admin, in the API or on its page:
// every problem is refused with a message and changes nothing; the old
// address of its pages redirects to the new one (forms posted there are
// refused); a slug given up can be taken again; members and other accounts
// cannot rename.
func TestRenameWorkspace(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner, member := e.signIn("owner@a.example"), e.signIn("member@a.example")
		const api = "/api/v1/workspaces/acme"
		res := member.api("PATCH", api, `{"name":"Mine"}`)
		if res.StatusCode != 403 || !strings.Contains(res.Body, "Tenant admin required") {
			t.Fatalf("member renames: %d %.200s", res.StatusCode, res.Body)
		}
		wantStatus(t, "another account renames", e.signIn("owner@b.example").api("PATCH", api, `{"name":"Ours"}`), 404)
		for what, c := range map[string]struct {
			body string
			want int
		}{
			"a bad address":   {`{"slug":"Not A Slug"}`, 422},
			"an empty name":   {`{"name":"  "}`, 422},
			"a taken address": {`{"slug":"beta"}`, 409},
			"broken JSON":     {`{"slug":`, 400},
		} {
			if res := owner.api("PATCH", api, c.body); res.StatusCode != c.want || !strings.Contains(res.Body, `"message"`) {
				t.Errorf("rename with %s: %d %.200s, want %d with a message", what, res.StatusCode, res.Body, c.want)
			}
		}
		wantStatus(t, "unchanged after refusals", owner.api("GET", api, ""), 200)

		res = owner.api("PATCH", api, `{"name":"Acme Inc","slug":"acme-inc"}`)
		wantStatus(t, "rename", res, 200)
		var ws struct{ Name, Slug string }
		must(t, json.Unmarshal([]byte(res.Body), &ws))
		if ws.Name != "Acme Inc" || ws.Slug != "acme-inc" {
			t.Fatalf("renamed to %+v", ws)
		}
		wantRedirect(t, "old address", owner.get("/acme/monitoring/workflow-runs?status=failed"), "/acme-inc/monitoring/workflow-runs?status=failed")
		wantRedirect(t, "old address, a member", member.get("/acme/workflows"), "/acme-inc/workflows")
		wantStatus(t, "another account at the old address", e.signIn("owner@b.example").get("/acme/workflows"), 404)
		wantStatus(t, "a form posted to the old address", owner.post("/acme/workspace/retention", url.Values{"days": {"5"}, "maxRuns": {"10"}}), 404)
		if page := owner.get("/acme-inc/"); page.StatusCode != 200 || !strings.Contains(page.Body, "Acme Inc") || !strings.Contains(page.Body, "Rename workspace") {
			t.Fatalf("new address: %d", page.StatusCode)
		}
		if page := member.get("/acme-inc/"); strings.Contains(page.Body, "Rename workspace") {
			t.Fatal("a member is offered the rename")
		}

		// On the page: back to the first address, which stops redirecting.
		wantRedirect(t, "rename on the page", owner.post("/acme-inc/workspace/rename", url.Values{"name": {"Acme Corp"}, "slug": {"acme"}}), "/acme/")
		wantStatus(t, "first address again", owner.get("/acme/workflows"), 200)
		wantRedirect(t, "the second address now redirects", owner.get("/acme-inc/workflows"), "/acme/workflows")
		// A new workspace may take an address given up.
		wantStatus(t, "create at the old address", owner.api("POST", "/api/v1/workspaces", `{"name":"Acme Inc","slug":"acme-inc"}`), 201)
		if page := owner.get("/acme-inc/workflows"); page.StatusCode != 200 {
			t.Fatalf("the new workspace's address still redirects: %d %s", page.StatusCode, page.Header.Get("Location"))
		}
	})
}
