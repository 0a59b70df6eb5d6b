package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"taskjuice/internal/account"
	"taskjuice/internal/connection"
)

type wfVersion struct {
	ID, State string
	Number    int
	BasedOn   int
	Graph     struct {
		Schema  int
		Trigger *struct{ ID, Kind string }
		Nodes   []struct{ ID, Kind string }
		Edges   []struct{ From, To, When string }
	}
}

type wfDetail struct {
	Workflow struct {
		ID, Name, Description, Status, ActiveVersionID string
		AutoResumeReauth                               bool
		MaxRunsPerMinute                               int
		ErrorWorkflowID                                string
	}
	Live, Draft *wfVersion
}

func decodeDetail(t *testing.T, what string, r response, status int) wfDetail {
	t.Helper()
	wantStatus(t, what, r, status)
	var d wfDetail
	if err := json.Unmarshal([]byte(r.Body), &d); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return d
}

func wantAPIError(t *testing.T, what string, r response, status int, message string) {
	t.Helper()
	wantStatus(t, what, r, status)
	if _, msg := apiError(t, r); !strings.Contains(msg, message) {
		t.Fatalf("%s: message %q, want %q", what, msg, message)
	}
}

// The JSON API lists, reads and creates workflows and replaces their
// drafts, with the pages' messages; bad input is a 4xx that changes
// nothing; clients are refused and other accounts see nothing.
func TestWorkflowsAPIListGetCreateDraft(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		base := "/api/v1/workspaces/acme/workflows"
		list := func(b *browser, query string) []string {
			t.Helper()
			res := b.api("GET", base+query, "")
			wantStatus(t, "list "+query, res, 200)
			var out struct{ Workflows []struct{ ID, Name string } }
			must(t, json.Unmarshal([]byte(res.Body), &out))
			var names []string
			for _, w := range out.Workflows {
				names = append(names, w.Name)
			}
			return names
		}
		if got := list(owner, ""); len(got) != 0 {
			t.Fatalf("a new workspace lists %v", got)
		}

		// Created without a graph: a manual trigger, nothing live yet.
		res := owner.api("POST", base, `{"name": "  Lead intake ", "description": "New leads from the form"}`)
		d := decodeDetail(t, "create", res, 201)
		id := d.Workflow.ID
		if res.Header.Get("Location") != base+"/"+id || d.Workflow.Name != "Lead intake" || d.Workflow.Status != "draft" || d.Live != nil ||
			d.Draft == nil || d.Draft.Number != 1 || d.Draft.Graph.Trigger == nil || d.Draft.Graph.Trigger.Kind != "manual" {
			t.Fatalf("created: %s", res.Body)
		}

		// Created with a graph.
		graph := `{"schema": 1, "trigger": {"id": "start", "kind": "webhook", "config": {"auth": "none"}}, "nodes": [{"id": "wait", "kind": "delay", "config": {"duration": "1m"}}], "edges": [{"from": "start", "to": "wait"}]}`
		d = decodeDetail(t, "create with graph", owner.api("POST", base, `{"name": "Hook", "graph": `+graph+`}`), 201)
		if d.Draft == nil || d.Draft.Graph.Trigger.Kind != "webhook" || len(d.Draft.Graph.Nodes) != 1 || len(d.Draft.Graph.Edges) != 1 {
			t.Fatalf("created with a graph: %+v", d.Draft)
		}
		hookID := d.Workflow.ID

		// Bad input: a 4xx with the message, nothing created.
		for _, c := range []struct {
			what, body string
			status     int
			message    string
		}{
			{"no name", `{"description": "x"}`, 422, "Name must be 1–100 characters"},
			{"long description", `{"name": "X", "description": "` + strings.Repeat("d", 2001) + `"}`, 422, "Description must be at most 2000 characters"},
			{"unknown field", `{"name": "X", "nmae": "Y"}`, 400, `Unknown field "nmae"`},
			{"wrong type", `{"name": 3}`, 400, `Field "name" must be a string`},
			{"bad JSON", `{"name": `, 400, "not valid JSON"},
			{"unknown graph field", `{"name": "X", "graph": {"trigger": {"id": "t", "kind": "manual"}, "steps": []}}`, 400, `Unknown field "steps"`},
			{"no trigger", `{"name": "X", "graph": {"nodes": []}}`, 422, "A workflow needs a trigger"},
			{"schema", `{"name": "X", "graph": {"schema": 2, "trigger": {"id": "t", "kind": "manual"}}}`, 422, "this TaskJuice reads version 1"},
		} {
			wantAPIError(t, c.what, owner.api("POST", base, c.body), c.status, c.message)
		}
		if got := list(owner, ""); strings.Join(got, ",") != "Hook,Lead intake" {
			t.Fatalf("after refused creates: %v", got)
		}

		// Filters.
		if got := list(owner, "?name=LEAD"); strings.Join(got, ",") != "Lead intake" {
			t.Fatalf("name filter: %v", got)
		}
		if got := list(owner, "?status=published"); len(got) != 0 {
			t.Fatalf("status filter: %v", got)
		}
		wantAPIError(t, "bad status", owner.api("GET", base+"?status=live", ""), 422, "status must be draft, published")

		// Replace the draft; publish it on the page; a new draft is based
		// on the live version, which does not change.
		path := base + "/" + id
		d = decodeDetail(t, "put draft", owner.api("PUT", path+"/draft", `{"graph": `+graph+`}`), 200)
		if d.Draft == nil || d.Draft.Number != 1 || d.Draft.Graph.Trigger.ID != "start" || len(d.Draft.Graph.Nodes) != 1 {
			t.Fatalf("draft replaced: %+v", d.Draft)
		}
		wantRedirect(t, "publish", owner.post("/acme/workflows/"+id+"/publish", nil), "/acme/workflows/"+id+"/edit")
		d = decodeDetail(t, "get published", owner.api("GET", path, ""), 200)
		if d.Workflow.Status != "published" || d.Live == nil || d.Live.Number != 1 || d.Live.ID != d.Workflow.ActiveVersionID || d.Draft != nil {
			t.Fatalf("published: %+v live %+v draft %+v", d.Workflow, d.Live, d.Draft)
		}
		if got := list(owner, "?status=published"); strings.Join(got, ",") != "Lead intake" {
			t.Fatalf("published filter: %v", got)
		}
		d = decodeDetail(t, "put draft after publish", owner.api("PUT", path+"/draft", `{"graph": {"trigger": {"id": "start", "kind": "manual"}}}`), 200)
		if d.Live == nil || d.Live.Graph.Trigger.Kind != "webhook" || d.Draft == nil || d.Draft.BasedOn != 1 || d.Draft.Number != 2 ||
			d.Draft.Graph.Trigger.Kind != "manual" || d.Draft.Graph.Schema != 1 {
			t.Fatalf("draft from v1: live %+v draft %+v", d.Live, d.Draft)
		}
		for _, c := range []struct{ what, body, message string }{
			{"no graph", `{}`, `Send the draft's "graph"`},
			{"unknown field", `{"graph": {"trigger": {"id": "t", "kind": "manual"}}, "settings": {}}`, `Unknown field "settings"`},
			{"unknown node field", `{"graph": {"trigger": {"id": "t", "kind": "manual", "cfg": 1}}}`, `Unknown field "cfg"`},
			{"wrong type", `{"graph": {"trigger": {"id": "t", "kind": "manual"}, "nodes": {}}}`, `must be`},
		} {
			res := owner.api("PUT", path+"/draft", c.body)
			if res.StatusCode != 400 && res.StatusCode != 422 {
				t.Fatalf("%s: status %d: %s", c.what, res.StatusCode, res.Body)
			}
			if _, msg := apiError(t, res); !strings.Contains(msg, c.message) {
				t.Fatalf("%s: %q", c.what, msg)
			}
		}
		if d2 := decodeDetail(t, "get after refused drafts", owner.api("GET", path, ""), 200); d2.Draft == nil || d2.Draft.Graph.Trigger.ID != "start" || d2.Draft.Graph.Trigger.Kind != "manual" {
			t.Fatalf("a refused draft changed it: %+v", d2.Draft)
		}

		// Settings, as the page's form; a refused change changes nothing.
		d = decodeDetail(t, "settings", owner.api("PATCH", path+"/settings", `{"autoResumeReauth": true, "maxRunsPerMinute": 60}`), 200)
		if !d.Workflow.AutoResumeReauth || d.Workflow.MaxRunsPerMinute != 60 {
			t.Fatalf("settings: %+v", d.Workflow)
		}
		wantAPIError(t, "settings out of range", owner.api("PATCH", path+"/settings", `{"autoResumeReauth": false, "maxRunsPerMinute": -1}`), 422, "The limit must be 0 (none) to 100000 runs per minute")
		wantAPIError(t, "settings wrong type", owner.api("PATCH", path+"/settings", `{"maxRunsPerMinute": "60"}`), 400, `Field "maxRunsPerMinute" must be`)
		wantAPIError(t, "settings empty", owner.api("PATCH", path+"/settings", `{}`), 422, `Send "autoResumeReauth", "maxRunsPerMinute" or "errorWorkflowId"`)
		wantAPIError(t, "own error workflow", owner.api("PATCH", path+"/settings", `{"maxRunsPerMinute": 5, "errorWorkflowId": "`+id+`"}`), 422, "A workflow cannot be its own error workflow")
		wantAPIError(t, "unknown error workflow", owner.api("PATCH", path+"/settings", `{"errorWorkflowId": "no-such-workflow"}`), 422, "Choose one of this workspace's workflows")
		wantAPIError(t, "error workflow without the Error trigger", owner.api("PATCH", path+"/settings", `{"errorWorkflowId": "`+hookID+`"}`), 422, "must start with the Error trigger")
		if d := decodeDetail(t, "after refused settings", owner.api("GET", path, ""), 200); !d.Workflow.AutoResumeReauth || d.Workflow.MaxRunsPerMinute != 60 || d.Workflow.ErrorWorkflowID != "" {
			t.Fatalf("refused settings changed them: %+v", d.Workflow)
		}
		onError := decodeDetail(t, "create an error workflow", owner.api("POST", base, `{"name": "On failure", "graph": {"schema": 1, "trigger": {"id": "failed", "kind": "error"}}}`), 201)
		d = decodeDetail(t, "set the error workflow", owner.api("PATCH", path+"/settings", `{"errorWorkflowId": "`+onError.Workflow.ID+`"}`), 200)
		if d.Workflow.ErrorWorkflowID != onError.Workflow.ID {
			t.Fatalf("error workflow: %q, want %q", d.Workflow.ErrorWorkflowID, onError.Workflow.ID)
		}

		// A member may build; a client may not; an unknown id is 404.
		member := e.signIn("member@a.example")
		decodeDetail(t, "member creates", member.api("POST", base, `{"name": "Member's"}`), 201)
		client := e.signIn("client@acme.example")
		wantStatus(t, "client lists", client.api("GET", base, ""), 403)
		wantStatus(t, "client creates", client.api("POST", base, `{"name": "Client's"}`), 403)
		wantStatus(t, "client reads", client.api("GET", path, ""), 403)
		wantStatus(t, "client edits", client.api("PUT", path+"/draft", `{"graph": `+graph+`}`), 403)
		wantStatus(t, "client settings", client.api("PATCH", path+"/settings", `{"maxRunsPerMinute": 1}`), 403)
		wantStatus(t, "unknown id", owner.api("GET", base+"/nope", ""), 404)
		wantStatus(t, "unknown id draft", owner.api("PUT", base+"/nope/draft", `{"graph": `+graph+`}`), 404)

		// Another account: its session and its token see nothing.
		other := e.signIn("owner@b.example")
		page := other.post("/settings/api-tokens", url.Values{"name": {"Other"}}).Body
		i := strings.Index(page, account.APITokenPrefix)
		if i < 0 {
			t.Fatal("no token shown to account B")
		}
		bearer := []string{"Authorization", "Bearer " + page[i:i+strings.IndexAny(page[i:], "<\n \"")]}
		for _, c := range []struct{ method, path, body string }{
			{"GET", base, ""}, {"POST", base, `{"name": "Intruder"}`}, {"GET", path, ""}, {"PUT", path + "/draft", `{"graph": ` + graph + `}`},
			{"PATCH", path + "/settings", `{"maxRunsPerMinute": 1}`},
			{"GET", "/api/v1/workspaces/bravo/workflows/" + id, ""}, {"PUT", "/api/v1/workspaces/bravo/workflows/" + id + "/draft", `{"graph": ` + graph + `}`},
		} {
			wantStatus(t, "other token "+c.method+" "+c.path, e.browser().api(c.method, c.path, c.body, bearer...), 404)
			wantStatus(t, "other session "+c.method+" "+c.path, other.api(c.method, c.path, c.body), 404)
		}
		if d2 := decodeDetail(t, "get after intrusions", owner.api("GET", path, ""), 200); d2.Draft.Graph.Trigger.Kind != "manual" {
			t.Fatalf("another account changed the draft: %+v", d2.Draft)
		}
		if got := list(owner, ""); strings.Join(got, ",") != "Hook,Lead intake,Member's,On failure" {
			t.Fatalf("final list: %v", got)
		}
	})
}

type wfFindings struct {
	Valid    bool
	Problems []struct{ NodeID, Field, Message string }
}

func (f wfFindings) has(node, message string) bool {
	for _, p := range f.Problems {
		if p.NodeID == node && strings.Contains(p.Message, message) {
			return true
		}
	}
	return false
}

// Validate reports the publish gate's findings without publishing; publish
// refuses with "Workflow compilation failed" and the same findings, and
// changes nothing; then publish, deactivate and archive, as on the pages.
func TestWorkflowsAPIValidatePublishDeactivateArchive(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		base := "/api/v1/workspaces/acme/workflows"
		revoked, err := e.connections.CreateWithCredential(ctx, e.acme, connection.New{AppKey: "stripe", Label: "Old Stripe", Status: connection.StatusRevoked},
			connection.Credential{APIKey: "sk_live_OLDKEY1234", Fields: map[string]string{"apiKey": "sk_live_OLDKEY1234"}}, connection.System)
		must(t, err)
		bad := `{"name": "Broken", "graph": {"trigger": {"id": "start", "kind": "manual"}, "nodes": [
			{"id": "odd", "kind": "teleport"},
			{"id": "charge", "kind": "http", "config": {"method": "GET", "url": "https://api.stripe.com/v1/charges"}, "connection": {"id": "` + revoked.ID + `"}},
			{"id": "shape", "kind": "transform", "config": {"output": {"x": "{{ $trigger.( }}"}}},
			{"id": "a", "kind": "delay", "config": {"duration": "1m"}}, {"id": "b", "kind": "delay", "config": {"duration": "1m"}}],
			"edges": [{"from": "start", "to": "odd"}, {"from": "odd", "to": "charge"}, {"from": "charge", "to": "shape"}, {"from": "shape", "to": "ghost"},
				{"from": "shape", "to": "a"}, {"from": "a", "to": "b"}, {"from": "b", "to": "a"}]}}`
		d := decodeDetail(t, "create broken", owner.api("POST", base, bad), 201)
		path := base + "/" + d.Workflow.ID

		res := owner.api("POST", path+"/validate", "")
		wantStatus(t, "validate", res, 200)
		var f wfFindings
		must(t, json.Unmarshal([]byte(res.Body), &f))
		for _, want := range []struct{ node, message string }{
			{"odd", `Unknown node kind "teleport"`},
			{"charge", "Action node has an inactive connection"},
			{"shape", "An edge leads to \"ghost\", which is not a node"},
			{"shape", "syntax error"},
			{"b", `This step leads back to "a": workflows cannot go in circles; use a Loop`},
		} {
			if !f.has(want.node, want.message) {
				t.Errorf("validate: no %q at %s in %s", want.message, want.node, res.Body)
			}
		}
		if f.Valid || !strings.Contains(res.Body, `"nodeId":"shape"`) {
			t.Fatalf("validate: %s", res.Body)
		}

		res = owner.api("POST", path+"/publish", "")
		wantStatus(t, "publish broken", res, 422)
		var refused struct {
			Error struct {
				Code, Message string
				Problems      []struct{ NodeID, Field, Message string }
			}
		}
		must(t, json.Unmarshal([]byte(res.Body), &refused))
		if refused.Error.Code != "compilation_failed" || refused.Error.Message != "Workflow compilation failed" || len(refused.Error.Problems) != len(f.Problems) {
			t.Fatalf("publish refused: %s", res.Body)
		}
		if d := decodeDetail(t, "after refused publish", owner.api("GET", path, ""), 200); d.Workflow.Status != "draft" || d.Live != nil || d.Draft == nil {
			t.Fatalf("a refused publish changed it: %+v", d)
		}

		// Fixed, it validates clean and publishes.
		good := `{"graph": {"trigger": {"id": "start", "kind": "manual"}, "nodes": [{"id": "shape", "kind": "transform", "config": {"output": {"x": "{{ $trigger.name }}"}}}], "edges": [{"from": "start", "to": "shape"}]}}`
		decodeDetail(t, "fix", owner.api("PUT", path+"/draft", good), 200)
		res = owner.api("POST", path+"/validate", "")
		wantStatus(t, "validate fixed", res, 200)
		f = wfFindings{}
		must(t, json.Unmarshal([]byte(res.Body), &f))
		if !f.Valid || len(f.Problems) != 0 {
			t.Fatalf("validate fixed: %s", res.Body)
		}
		wantAPIError(t, "publish bad body", owner.api("POST", path+"/publish", `{"version": "x"}`), 400, `Unknown field "version"`)
		wantStatus(t, "publish unknown version", owner.api("POST", path+"/publish", `{"versionId": "nope"}`), 404)
		d = decodeDetail(t, "publish", owner.api("POST", path+"/publish", ""), 200)
		if d.Workflow.Status != "published" || d.Live == nil || d.Live.Number != 1 || d.Draft != nil {
			t.Fatalf("published: %+v", d)
		}
		v1 := d.Live.ID
		wantAPIError(t, "publish without a draft", owner.api("POST", path+"/publish", ""), 409, "There is no draft to publish")
		res = owner.api("POST", "/api/v1/workspaces/acme/workflows/"+d.Workflow.ID+"/runs", `{"name": "Ada"}`)
		wantStatus(t, "run the published workflow", res, 202)

		// Client: 403; another account: 404; nothing changes.
		client := e.signIn("client@acme.example")
		other := e.signIn("owner@b.example")
		for _, action := range []string{"validate", "publish", "deactivate", "archive"} {
			wantStatus(t, "client "+action, client.api("POST", path+"/"+action, ""), 403)
			wantStatus(t, "other account "+action, other.api("POST", path+"/"+action, ""), 404)
			wantStatus(t, "unknown id "+action, owner.api("POST", base+"/nope/"+action, ""), 404)
		}
		if d := decodeDetail(t, "after refusals", owner.api("GET", path, ""), 200); d.Workflow.Status != "published" {
			t.Fatalf("refused calls changed it: %+v", d.Workflow)
		}

		d = decodeDetail(t, "deactivate", owner.api("POST", path+"/deactivate", ""), 200)
		if d.Workflow.Status != "draft" || d.Live != nil {
			t.Fatalf("deactivated: %+v", d)
		}
		member := e.signIn("member@a.example")
		d = decodeDetail(t, "member publishes v1 again", member.api("POST", path+"/publish", `{"versionId": "`+v1+`"}`), 200)
		if d.Workflow.Status != "published" || d.Live == nil || d.Live.ID != v1 {
			t.Fatalf("v1 again: %+v", d)
		}
		d = decodeDetail(t, "archive", member.api("POST", path+"/archive", ""), 200)
		if d.Workflow.Status != "archived" {
			t.Fatalf("archived: %+v", d.Workflow)
		}
		if got := owner.api("GET", base+"?status=archived", ""); !strings.Contains(got.Body, d.Workflow.ID) {
			t.Fatalf("archived filter: %s", got.Body)
		}
	})
}

// Versions, a diff between two of them, and export and import in the
// Workflows page's document format.
func TestWorkflowsAPIVersionsDiffExportImport(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		owner := e.signIn("owner@a.example")
		base := "/api/v1/workspaces/acme/workflows"
		v1 := `{"trigger": {"id": "start", "kind": "manual"}, "nodes": [{"id": "shape", "kind": "transform", "config": {"output": {"x": "{{ $trigger.name }}"}}},
			{"id": "wait", "kind": "delay", "config": {"duration": "1m"}}], "edges": [{"from": "start", "to": "shape"}, {"from": "shape", "to": "wait"}]}`
		d := decodeDetail(t, "create", owner.api("POST", base, `{"name": "Versions", "description": "Two of them", "graph": `+v1+`}`), 201)
		path := base + "/" + d.Workflow.ID
		decodeDetail(t, "publish v1", owner.api("POST", path+"/publish", ""), 200)
		v2 := `{"graph": {"trigger": {"id": "start", "kind": "manual"}, "nodes": [{"id": "shape", "kind": "transform", "name": "Shape", "config": {"output": {"x": "{{ $trigger.email }}"}}},
			{"id": "later", "kind": "delay", "config": {"duration": "2m"}}], "edges": [{"from": "start", "to": "shape"}, {"from": "shape", "to": "later"}]}}`
		decodeDetail(t, "draft v2", owner.api("PUT", path+"/draft", v2), 200)

		res := owner.api("GET", path+"/versions", "")
		wantStatus(t, "versions", res, 200)
		var vs struct{ Versions []wfVersion }
		must(t, json.Unmarshal([]byte(res.Body), &vs))
		if len(vs.Versions) != 2 || vs.Versions[0].Number != 2 || vs.Versions[0].State != "draft" || vs.Versions[1].Number != 1 || vs.Versions[1].State != "active" {
			t.Fatalf("versions: %s", res.Body)
		}

		res = owner.api("GET", path+"/diff?from=1&to=2", "")
		wantStatus(t, "diff", res, 200)
		var diff struct {
			From, To int
			Diff     struct {
				Added, Removed []string
				Changed        []struct {
					NodeID string
					Fields []string
				}
				EdgesAdded, EdgesRemoved []struct{ From, To string }
			}
		}
		must(t, json.Unmarshal([]byte(res.Body), &diff))
		if diff.From != 1 || diff.To != 2 || strings.Join(diff.Diff.Added, ",") != "later" || strings.Join(diff.Diff.Removed, ",") != "wait" ||
			len(diff.Diff.Changed) != 1 || diff.Diff.Changed[0].NodeID != "shape" || strings.Join(diff.Diff.Changed[0].Fields, ",") != "name,config.output" ||
			len(diff.Diff.EdgesAdded) != 1 || diff.Diff.EdgesAdded[0].To != "later" || len(diff.Diff.EdgesRemoved) != 1 || diff.Diff.EdgesRemoved[0].To != "wait" {
			t.Fatalf("diff: %s", res.Body)
		}
		wantAPIError(t, "diff without from", owner.api("GET", path+"/diff?to=2", ""), 422, "from must be a version number")
		wantAPIError(t, "diff of a missing version", owner.api("GET", path+"/diff?from=1&to=9", ""), 422, "This workflow has no version 9")

		// Export is the draft in the page's format; importing it makes a
		// new draft workflow with the same graph.
		res = owner.api("GET", path+"/export", "")
		wantStatus(t, "export", res, 200)
		if page := owner.get("/acme/workflows/" + d.Workflow.ID + "/export"); strings.TrimSpace(page.Body) == "" || !jsonEqual(t, page.Body, res.Body) {
			t.Fatalf("export differs from the page's:\n%s\n%s", page.Body, res.Body)
		}
		imported := decodeDetail(t, "import", owner.api("POST", base+"/import", res.Body), 201)
		if imported.Workflow.ID == d.Workflow.ID || imported.Workflow.Name != "Versions" || imported.Workflow.Description != "Two of them" ||
			imported.Workflow.Status != "draft" || imported.Draft == nil || len(imported.Draft.Graph.Nodes) != 2 || imported.Draft.Graph.Nodes[1].ID != "later" {
			t.Fatalf("imported: %+v %+v", imported.Workflow, imported.Draft)
		}
		before := owner.api("GET", base, "").Body
		for _, c := range []struct {
			what, body string
			status     int
			message    string
		}{
			{"empty", "", 400, "The request body is empty"},
			{"not a document", `{"nom": "x"}`, 400, "The file is not a TaskJuice workflow"},
			{"newer version", `{"name": "X", "graph": {"schema": 9, "trigger": {"id": "t", "kind": "manual"}}}`, 400, "The workflow document has version 9"},
			{"no name", `{"name": "", "graph": {"schema": 1, "trigger": {"id": "t", "kind": "manual"}}}`, 422, "Name must be 1–100 characters"},
		} {
			wantAPIError(t, "import "+c.what, owner.api("POST", base+"/import", c.body), c.status, c.message)
		}
		if after := owner.api("GET", base, "").Body; after != before {
			t.Fatalf("a refused import changed the list:\n%s\n%s", before, after)
		}

		// Clients and other accounts.
		client := e.signIn("client@acme.example")
		other := e.signIn("owner@b.example")
		for _, p := range []string{path + "/versions", path + "/diff?from=1&to=2", path + "/export"} {
			wantStatus(t, "client "+p, client.api("GET", p, ""), 403)
			wantStatus(t, "other account "+p, other.api("GET", p, ""), 404)
		}
		wantStatus(t, "client import", client.api("POST", base+"/import", res.Body), 403)
		wantStatus(t, "other account import", other.api("POST", base+"/import", res.Body), 404)
	})
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	must(t, json.Unmarshal([]byte(a), &va))
	must(t, json.Unmarshal([]byte(b), &vb))
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}
