package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"taskjuice/internal/account"
	"taskjuice/internal/workflow"
)

// The runs of every client of the account in one list (page and API):
// newest first across workspaces, narrowed to one client or by any runs
// filter, a value search included; another account's workspaces are
// neither listed nor accepted as a client.
func TestRunsAcrossClients(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		p, err := e.accounts.PrincipalByEmail(ctx, "owner@a.example")
		must(t, err)
		beta, err := e.accounts.WorkspaceBySlug(ctx, p, "beta")
		must(t, err)
		publish := func(ws account.Workspace) string {
			g, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
				"nodes":[{"id":"shape","kind":"transform","config":{"output":{"ok":true}}}],"edges":[{"from":"start","to":"shape"}]}`))
			must(t, err)
			w, err := e.workflows.Create(ctx, ws, "Lead intake", "", &g, "")
			must(t, err)
			_, err = e.workflows.Publish(ctx, ws, w.ID, "", workflow.Checks{})
			must(t, err)
			return w.ID
		}
		inAcme, inBeta, inBravo := publish(e.acme), publish(beta), publish(e.bravo)
		start := func(wf, email string) string {
			id, err := e.engine.StartRun(ctx, wf, json.RawMessage(`{"customer":{"email":"`+email+`"}}`), "manual", "")
			must(t, err)
			return id
		}
		a1 := start(inAcme, "ann@acme.example")
		b1 := start(inBeta, "bob@beta.example")
		a2 := start(inAcme, "bob@beta.example")
		other := start(inBravo, "bob@beta.example")
		e.workAll(t)
		_, err = e.engine.IndexRuns(ctx)
		must(t, err)

		list := func(query string) []string {
			t.Helper()
			res := owner.api("GET", "/api/v1/runs?"+query, "")
			wantStatus(t, "runs?"+query, res, 200)
			var got struct {
				Runs []struct{ ID, Client string }
			}
			must(t, json.Unmarshal([]byte(res.Body), &got))
			var ids []string
			for _, r := range got.Runs {
				if r.Client == "" || r.Client == "bravo" {
					t.Fatalf("run %s listed with client %q", r.ID, r.Client)
				}
				ids = append(ids, r.ID)
			}
			return ids
		}
		same := func(what string, got []string, want ...string) {
			t.Helper()
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s: got %v, want %v", what, got, want)
			}
		}
		same("all clients", list(""), a2, b1, a1)
		same("one client", list("client=beta"), b1)
		same("a value across clients", list("field="+url.QueryEscape("$trigger.customer.email")+"&value=bob@beta.example"), a2, b1)
		same("a value in one client", list("client=acme&field="+url.QueryEscape("$trigger.customer.email")+"&match=contains&value=ACME"), a1)
		same("paged", list("limit=2"), a2, b1)
		same("next page", list("limit=2&before="+b1), a1)
		wantAPIError(t, "another account's client", owner.api("GET", "/api/v1/runs?client=bravo", ""), 422, "No client (workspace) of this account has the slug bravo")
		wantAPIError(t, "bad filter", owner.api("GET", "/api/v1/runs?field=email&value=x", ""), 422, "field must name a value")

		page := owner.get("/runs?field=" + url.QueryEscape("$trigger.customer.email") + "&value=bob@beta.example")
		wantStatus(t, "runs page", page, 200)
		for _, id := range []string{a2, b1} {
			if !strings.Contains(page.Body, `data-run="`+id+`"`) {
				t.Errorf("the page does not list run %s", id)
			}
		}
		if strings.Contains(page.Body, other) || strings.Contains(page.Body, a1) {
			t.Error("the page lists a run the search does not match, or another account's")
		}
		if !strings.Contains(page.Body, `href="/beta/monitoring/workflow-runs/`+inBeta+`/`+b1+`"`) {
			t.Error("a run does not link to its page in its client's workspace")
		}
		bad := owner.get("/runs?client=bravo")
		wantStatus(t, "another account's client on the page", bad, 400)
		if !strings.Contains(bad.Body, "No client (workspace) of this account has the slug bravo") {
			t.Error("the page does not say the client is unknown")
		}
		bravo := e.signIn("owner@b.example")
		if res := bravo.api("GET", "/api/v1/runs", ""); !strings.Contains(res.Body, other) || strings.Contains(res.Body, a1) {
			t.Errorf("the other account's list: %.300s", res.Body)
		}
	})
}
