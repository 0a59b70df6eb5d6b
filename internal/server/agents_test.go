package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/engine"
	"taskjuice/internal/llm"
	"taskjuice/internal/sandbox"
)

// TestAgentsAPI: an agent is created over the API with a Sandbox Chat
// tool, started, driven through the agent callback, held when the grant is
// revoked, resumed by itself after the reconnect, and answers. Bad input and
// other accounts are refused.
func TestAgentsAPI(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		conn := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}}, "Acme Chat"))
		drain := func() {
			for {
				did, err := e.engine.Work(ctx)
				must(t, err)
				if !did {
					return
				}
			}
		}
		spec := `{"name":"Notifier","instructions":"Tell the team.","tools":[{"name":"post","app":"sandbox-chat","action":"post-message","connectionId":"` + conn + `"}]}`

		// Bad specs are refused with every problem, and store nothing.
		res := owner.api("POST", "/api/v1/workspaces/acme/agents", `{"name":"Broken","instructions":"","tools":[{"name":"1x","app":"nope","action":"x","connectionId":""}]}`)
		wantStatus(t, "bad agent", res, 422)
		if !strings.Contains(res.Body, "Tell the agent what to do") || !strings.Contains(res.Body, `Unknown app \"nope\"`) {
			t.Fatalf("bad agent: %s", res.Body)
		}
		wantStatus(t, "malformed agent", owner.api("POST", "/api/v1/workspaces/acme/agents", `{"name":`), 400)
		wantStatus(t, "another workspace's connection", owner.api("POST", "/api/v1/workspaces/beta/agents", spec), 422)
		list := owner.api("GET", "/api/v1/workspaces/acme/agents", "")
		if !strings.Contains(list.Body, `"agents":[]`) {
			t.Fatalf("agents after refusals: %s", list.Body)
		}

		res = owner.api("POST", "/api/v1/workspaces/acme/agents", spec)
		wantStatus(t, "create agent", res, 201)
		var created struct{ Agent struct{ ID, Status string } }
		must(t, json.Unmarshal([]byte(res.Body), &created))
		if created.Agent.Status != "published" {
			t.Fatalf("agent status %q, want published", created.Agent.Status)
		}
		agentURL := "/api/v1/workspaces/acme/agents/" + created.Agent.ID
		wantStatus(t, "get agent", owner.api("GET", agentURL, ""), 200)
		wantStatus(t, "agent of another account", e.signIn("owner@b.example").api("GET", "/api/v1/workspaces/acme/agents/"+created.Agent.ID, ""), 404)
		wantStatus(t, "agent under another workspace", owner.api("GET", "/api/v1/workspaces/beta/agents/"+created.Agent.ID, ""), 404)
		wfs := owner.get("/acme/workflows")
		wantStatus(t, "workflows page", wfs, 200)
		if strings.Contains(wfs.Body, "Notifier") {
			t.Fatal("the agent is listed among the workflows")
		}

		res = owner.api("POST", agentURL+"/runs", `{"ticket":42}`)
		wantStatus(t, "start agent run", res, 202)
		var started struct{ RunID string }
		must(t, json.Unmarshal([]byte(res.Body), &started))
		drain()
		runURL := "/api/v1/workspaces/acme/runs/" + started.RunID
		decide := func(body string, want int) {
			t.Helper()
			wantStatus(t, "agent decision "+body, owner.api("POST", runURL+"/agent-decision", body), want)
		}
		decide(`{"toolCall":{"tool":"shout"}}`, 422)
		decide(`{"answer":`, 400)
		decide(`{"toolCall":{"tool":"post","input":{"channel":"general","text":"one"}}}`, 200)
		drain()

		_, err := e.sandbox.RevokeAccount("Acme Chat")
		must(t, err)
		decide(`{"toolCall":{"tool":"post","input":{"channel":"general","text":"two"}}}`, 200)
		drain()
		run, err := e.engine.Get(ctx, e.acme.ID, started.RunID)
		must(t, err)
		if run.Status != engine.StatusPaused || run.PauseReason != engine.PauseReauth || run.Kind != engine.KindAgent {
			t.Fatalf("agent run after the revoke: %s (%s, %s), want a paused agent run", run.Status, run.PauseReason, run.Kind)
		}
		decide(`{"answer":"too early"}`, 409)

		connectionFromLocation(t, owner.consent(t, "/acme/connections/"+conn+"/reconnect", url.Values{}, "Acme Chat"))
		n, err := e.engine.ConsumeReauthorizations(ctx)
		must(t, err)
		if n != 1 {
			t.Fatalf("resumed %d runs after reconnect, want the agent run", n)
		}
		drain()
		decide(`{"answer":"Posted both."}`, 200)
		drain()
		got := owner.api("GET", runURL, "")
		if !strings.Contains(got.Body, `"status":"completed"`) || !strings.Contains(got.Body, `"kind":"agent"`) {
			t.Fatalf("agent run: %.400s", got.Body)
		}
		if posted := e.sandbox.Stats().MessagesPosted; posted != 2 {
			t.Fatalf("messages posted: %d, want 2", posted)
		}

		// A client may not change agents (nor see them through the API).
		client := e.signIn("client@acme.example")
		wantStatus(t, "client updates agent", client.api("PUT", agentURL, spec), 403)
		wantStatus(t, "client lists agents", client.api("GET", "/api/v1/workspaces/acme/agents", ""), 403)
		wantStatus(t, "owner updates agent", owner.api("PUT", agentURL, strings.Replace(spec, "Tell the team.", "Tell everyone.", 1)), 200)
		if a := owner.api("GET", agentURL, ""); !strings.Contains(a.Body, "Tell everyone.") {
			t.Fatalf("updated agent: %s", a.Body)
		}
	})
}

// TestAgentsPages: an agent driven by the sandbox's model is created from
// the Agents page and run by hand; it posts through its tool, answers, and
// its model calls count toward the workspace's spend.
func TestAgentsPages(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		conn := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}}, "Acme Chat"))
		p, err := e.models.Create(ctx, e.acme.ID, llm.ProviderInput{Name: "Sandbox", BaseURL: e.srv.URL + "/sandbox/v1", APIKey: e.sandbox.ModelKey(),
			Models: []llm.ModelInput{{Model: sandbox.ModelSmall, InputUSDPerMTok: "1", OutputUSDPerMTok: "2", MaxOutputTokens: 500}}})
		must(t, err)
		page := owner.get("/acme/agents")
		wantStatus(t, "agents page", page, 200)
		model, tool := p.ID+"|"+sandbox.ModelSmall, conn+"|sandbox-chat|post-message"
		if !strings.Contains(page.Body, model) || !strings.Contains(page.Body, tool) || !strings.Contains(page.Body, "No agents yet") {
			t.Fatal("agents page lacks the model, the tool or the empty state")
		}
		bad := owner.post("/acme/agents", url.Values{"name": {"Broken"}, "instructions": {" "}, "model": {model}, "tool": {tool}})
		wantStatus(t, "agent without instructions", bad, 422)
		if !strings.Contains(bad.Body, "Tell the agent what to do") {
			t.Fatal("the refusal does not say what is missing")
		}
		res := owner.post("/acme/agents", url.Values{"name": {"Lead agent"}, "instructions": {"Tell the team about the lead."}, "model": {model}, "tool": {tool, ""}})
		if res.StatusCode != 303 || !strings.HasPrefix(res.Header.Get("Location"), "/acme/agents/") {
			t.Fatalf("create agent: %d to %q", res.StatusCode, res.Header.Get("Location"))
		}
		agentPath := res.Header.Get("Location")
		id := strings.TrimPrefix(agentPath, "/acme/agents/")
		if a := owner.get(agentPath); !strings.Contains(a.Body, "Sandbox · sandbox-small") || !strings.Contains(a.Body, "Run now") {
			t.Fatal("agent page lacks its model or the Run now form")
		}
		if p := wantKept(t, owner, "run with bad input", owner.post(agentPath+"/run", url.Values{"input": {"{nope"}}), agentPath); !strings.Contains(p.Body, "The input must be JSON") || !strings.Contains(p.Body, "{nope") {
			t.Fatalf("bad input: the page must show the message and keep the input: %.3000s", p.Body)
		}
		wantStatus(t, "another account's agent", e.signIn("owner@b.example").get(agentPath), 404)

		must(t, e.sandbox.ScriptModel(sandbox.ToolCallReply("post-message", `{"channel":"general","text":"New lead: Ada"}`), sandbox.TextReply("Done.")))
		res = owner.post(agentPath+"/run", url.Values{"input": {`{"lead":"Ada"}`}})
		loc := res.Header.Get("Location")
		if res.StatusCode != 303 || !strings.HasPrefix(loc, "/acme/monitoring/workflow-runs/"+id+"/") {
			t.Fatalf("run now: %d to %q", res.StatusCode, loc)
		}
		for {
			did, err := e.engine.Work(ctx)
			must(t, err)
			if !did {
				break
			}
		}
		run := owner.get(loc)
		if !strings.Contains(run.Body, "Completed") || !strings.Contains(run.Body, "Done.") {
			t.Fatalf("agent run page: %.500s", run.Body)
		}
		if got := e.sandbox.Stats().MessagesPosted; got != 1 {
			t.Fatalf("messages posted: %d, want 1", got)
		}
		sum, err := e.spend.Summary(ctx, e.acme.ID, time.Now())
		must(t, err)
		if sum.Spent <= 0 {
			t.Fatal("the agent's model calls cost nothing")
		}
	})
}
