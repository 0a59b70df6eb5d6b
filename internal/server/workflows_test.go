package server_test

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestWorkflowPages(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		member := e.signIn("member@a.example")
		res := member.post("/acme/workflows", url.Values{"name": {"New leads"}, "description": {"Tell the team"}})
		loc := res.Header.Get("Location")
		if res.StatusCode != http.StatusSeeOther || !strings.HasSuffix(loc, "/edit") {
			t.Fatalf("create: %d to %q, want a redirect to the editor", res.StatusCode, loc)
		}
		id := strings.TrimSuffix(strings.TrimPrefix(loc, "/acme/workflows/"), "/edit")
		list := member.get("/acme/workflows")
		wantStatus(t, "list", list, 200)
		if !strings.Contains(list.Body, "New leads") || !strings.Contains(list.Body, "No version is live yet. Nothing is dispatching.") {
			t.Fatal("list lacks the workflow or its Draft description")
		}
		detail := member.get("/acme/workflows/" + id)
		wantStatus(t, "detail", detail, 200)
		if !strings.Contains(detail.Body, ">Draft<") {
			t.Fatal("detail lacks the draft version")
		}
		wantStatus(t, "empty name", member.post("/acme/workflows", url.Values{"name": {" "}}), 422)
		wantRedirect(t, "settings", member.post("/acme/workflows/"+id+"/settings", url.Values{"autoResume": {"on"}}), "/acme/workflows/"+id)
		if !strings.Contains(member.get("/acme/workflows/"+id).Body, `name="autoResume" checked`) {
			t.Fatal("auto-resume setting not saved")
		}
		// The error workflow is chosen among the others; a refused choice
		// changes nothing.
		wantSentBack(t, member, "own error workflow", member.post("/acme/workflows/"+id+"/settings", url.Values{"errorWorkflow": {id}, "maxRunsPerMinute": {"7"}}),
			"/acme/workflows/"+id, "A workflow cannot be its own error workflow")
		if strings.Contains(member.get("/acme/workflows/"+id).Body, `name="maxRunsPerMinute" value="7"`) {
			t.Fatal("a refused settings form changed the run limit")
		}

		// The starter draft (a trigger, no steps) cannot be published.
		versions := member.get("/acme/workflows/" + id)
		i := strings.Index(versions.Body, "/versions/")
		vid := versions.Body[i+len("/versions/") : i+len("/versions/")+36]
		refused := wantSentBack(t, member, "publish the starter", member.post("/acme/workflows/"+id+"/versions/"+vid+"/activate", nil), "/acme/workflows/"+id, "Workflow compilation failed")
		if !strings.Contains(refused.Body, "Workflow compilation failed") || !strings.Contains(refused.Body, "Add at least one step after the trigger") {
			t.Fatal("refused publish does not say why")
		}

		// Export, then import into the same workspace.
		exp := member.get("/acme/workflows/" + id + "/export")
		wantStatus(t, "export", exp, 200)
		if !strings.Contains(exp.Header.Get("Content-Disposition"), "new-leads.taskjuice.json") || !strings.Contains(exp.Body, `"schema": 1`) {
			t.Fatalf("export: %q %.200s", exp.Header.Get("Content-Disposition"), exp.Body)
		}
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormFile("file", "new-leads.taskjuice.json")
		_, _ = fw.Write([]byte(exp.Body))
		_ = mw.Close()
		req, _ := http.NewRequest("POST", e.srv.URL+"/acme/workflows/import", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		imp := member.do(req)
		if imp.StatusCode != http.StatusSeeOther {
			t.Fatalf("import: %d %.300s", imp.StatusCode, imp.Body)
		}
		if n := strings.Count(member.get("/acme/workflows").Body, ">New leads</a>"); n != 2 {
			t.Fatalf("after import: %d workflows named New leads, want 2", n)
		}
		// Disable, then enable.
		wantRedirect(t, "disable", member.post("/acme/workflows/"+id+"/state", url.Values{"state": {"disabled"}}), "/acme/workflows/"+id)
		if !strings.Contains(member.get("/acme/workflows/"+id).Body, "Turned off by an operator") {
			t.Fatal("disabled workflow does not say so")
		}
		wantRedirect(t, "enable", member.post("/acme/workflows/"+id+"/state", url.Values{"state": {""}}), "/acme/workflows/"+id)
		wantStatus(t, "bad state", member.post("/acme/workflows/"+id+"/state", url.Values{"state": {"exploded"}}), 422)
		// Another account cannot see it.
		wantStatus(t, "account B", e.signIn("owner@b.example").get("/acme/workflows/"+id), 404)
		wantStatus(t, "another workspace", member.get("/beta/workflows/"+id), 404)
	})
}
