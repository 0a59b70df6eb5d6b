package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"taskjuice/internal/ai"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/llm"
	"taskjuice/internal/notify"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/spend"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

// models gives the fixture's engine a model gateway and a provider of the
// sandbox's model endpoint, at $1 per million tokens read and $2 written.
func (f *fixture) models() (*spend.Service, workflow.ModelRef) {
	return f.modelsPriced("1", "2")
}

func (f *fixture) modelsPriced(in, out llm.USD) (*spend.Service, workflow.ModelRef) {
	f.t.Helper()
	key, _, err := vault.GenerateKey()
	must(f.t, err)
	providers := llm.NewService(f.d, vault.NewKeyring(key), llm.Options{})
	p, err := providers.Create(f.ctx, f.ws.ID, llm.ProviderInput{Name: "Sandbox", BaseURL: f.sbURL + "/v1", APIKey: f.sb.ModelKey(),
		Models: []llm.ModelInput{{Model: sandbox.ModelSmall, InputUSDPerMTok: in, OutputUSDPerMTok: out, MaxOutputTokens: 1000}}})
	must(f.t, err)
	caps := spend.NewService(f.d, spend.Options{})
	f.eng.UseModels(ai.New(providers, caps, f.cat))
	f.modelCheck, err = modelCheck(f.ctx, providers, f.ws.ID)
	must(f.t, err)
	return caps, workflow.ModelRef{ProviderID: p.ID, Name: sandbox.ModelSmall}
}

func modelCheck(ctx context.Context, providers *llm.Service, ws string) (func(string, string) (bool, bool), error) {
	ps, err := providers.List(ctx, ws)
	if err != nil {
		return nil, err
	}
	return func(id, model string) (bool, bool) {
		for _, p := range ps {
			if p.ID == id {
				for _, m := range p.Models {
					if m.Model == model {
						return true, true
					}
				}
				return false, true
			}
		}
		return false, false
	}, nil
}

// publishModelAgent publishes an agent driven by the model, with a tool
// posting to Sandbox Chat.
func (f *fixture) publishModelAgent(m workflow.ModelRef) string {
	f.t.Helper()
	cfg, _ := json.Marshal(workflow.AgentConfig{
		Instructions: "Tell the team about the lead, twice.",
		Driver:       workflow.DriverModel,
		Model:        &m,
		MaxTokens:    200,
		Tools:        []workflow.AgentTool{{Name: "post", App: "sandbox-chat", Action: "post-message", ConnectionID: f.connID}},
	})
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
		Nodes: []workflow.Node{{ID: "agent", Kind: workflow.NodeAgent, Config: cfg}},
		Edges: []workflow.Edge{{From: "start", To: "agent"}}}
	a, err := f.wfs.CreateAgent(f.ctx, f.ws, "Lead agent", "", g, "")
	must(f.t, err)
	c := f.checks()
	c.Model = f.modelCheck
	_, err = f.wfs.Publish(f.ctx, f.ws, a.ID, "", c)
	var ce *workflow.CompileError
	if errors.As(err, &ce) {
		f.t.Fatalf("publish agent: %v", ce.Problems)
	}
	must(f.t, err)
	return a.ID
}

func (f *fixture) scriptTwoPostsAndAnswer() {
	f.t.Helper()
	must(f.t, f.sb.ScriptModel(
		sandbox.ToolCallReply("post", `{"channel":"general","text":"New lead: Ada"}`),
		sandbox.ToolCallReply("post", `{"channel":"general","text":"Ada is waiting for a call"}`),
		sandbox.TextReply("Told the team twice."),
	))
}

func TestModelAgentCallsToolsAndAnswers(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		_, m := f.models()
		agent := f.publishModelAgent(m)
		f.scriptTwoPostsAndAnswer()
		id, err := f.eng.StartRun(f.ctx, agent, json.RawMessage(`{"lead":"Ada"}`), "api", "")
		must(t, err)
		f.drain()
		r := f.run(id)
		if r.Status != engine.StatusCompleted {
			t.Fatalf("agent run: %s %+v, want completed", r.Status, r.Error)
		}
		if got := f.sb.Stats().MessagesPosted; got != 2 {
			t.Fatalf("messages posted: %d, want 2", got)
		}
		steps, err := f.eng.Steps(f.ctx, f.ws.ID, id)
		must(t, err)
		want := []string{"agent", "agent!1.tool", "agent!2", "agent!2.tool", "agent!3"}
		if len(steps) != len(want) {
			t.Fatalf("%d steps, want %v", len(steps), want)
		}
		for i, s := range steps {
			if s.NodeID != want[i] || s.Status != engine.StepCompleted {
				t.Fatalf("step %d: %s %s, want %s completed", i, s.NodeID, s.Status, want[i])
			}
			if i%2 == 0 { // a model call: its usage and cost are recorded
				var d engine.AgentDecision
				must(t, json.Unmarshal(s.Output, &d))
				if d.Usage == nil || d.Usage.PromptTokens == 0 || d.Cost == "" {
					t.Fatalf("model step %s records no usage or cost: %s", s.NodeID, s.Output)
				}
			}
		}
		var last engine.AgentDecision
		must(t, json.Unmarshal(steps[4].Output, &last))
		if last.Answer != "Told the team twice." {
			t.Fatalf("answer %v", last.Answer)
		}
		var entries int
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT count(*) FROM spend_entries WHERE run_id = $1 AND status = 'settled'`, id).Scan(&entries))
		if entries != 3 {
			t.Fatalf("settled model calls in the ledger: %d, want 3", entries)
		}
	})
}

func TestModelAgentHeldBetweenToolCalls(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		_, m := f.models()
		agent := f.publishModelAgent(m)
		f.scriptTwoPostsAndAnswer()
		id, err := f.eng.StartRun(f.ctx, agent, nil, "api", "")
		must(t, err)
		// The grant is revoked at the sandbox while the model decides the
		// second tool call, after the first one went through.
		f.before = func(r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/chat/completions") && f.sb.Stats().Model.Completions == 1 {
				_, _ = f.sb.RevokeAccount("Acme Chat")
			}
		}
		f.drain()
		if got := f.sb.Stats().MessagesPosted; got != 1 {
			t.Fatalf("messages before the revoke: %d, want 1", got)
		}
		r := f.run(id)
		if r.Status != engine.StatusPaused || r.PauseReason != engine.PauseReauth {
			t.Fatalf("after the revoke: %s (%s), want paused for reauth", r.Status, r.PauseReason)
		}
		f.reconnect()
		n, err := f.eng.ConsumeReauthorizations(f.ctx)
		must(t, err)
		if n != 1 {
			t.Fatalf("resumed %d, want the agent run by itself", n)
		}
		f.drain()
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("after reconnect: %s %+v, want completed", r.Status, r.Error)
		}
		if got := f.sb.Stats().MessagesPosted; got != 2 {
			t.Fatalf("messages posted: %d, want 2 (the held tool call made once)", got)
		}
		if got := f.sb.Stats().Model.Completions; got != 3 {
			t.Fatalf("model completions: %d, want 3 (no decision made twice)", got)
		}
	})
}

func TestSpendCapPausesBeforeTheCall(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		caps, m := f.models()
		agent := f.publishModelAgent(m)
		f.scriptTwoPostsAndAnswer()

		// A first run spends something; the cap is then set just above it.
		id, err := f.eng.StartRun(f.ctx, agent, nil, "api", "")
		must(t, err)
		f.drain()
		sum, err := caps.Summary(f.ctx, f.ws.ID, db.Now())
		must(t, err)
		spent := sum.Spent
		if spent <= 0 || f.run(id).Status != engine.StatusCompleted {
			t.Fatalf("first run: %s, spent %s", f.run(id).Status, spent)
		}
		must(t, caps.SetCap(f.ctx, f.ws.ID, spent+1))
		f.scriptTwoPostsAndAnswer()
		before := f.sb.Stats().Model.Requests
		id, err = f.eng.StartRun(f.ctx, agent, nil, "api", "")
		must(t, err)
		f.drain()
		r := f.run(id)
		if r.Status != engine.StatusPaused || r.PauseReason != engine.PauseSpendCap {
			t.Fatalf("run over the cap: %s (%s), want paused for the spend cap", r.Status, r.PauseReason)
		}
		if got := f.sb.Stats().Model.Requests; got != before {
			t.Fatalf("model requests: %d, want %d — the refused call reached the model", got, before)
		}
		// Raised cap, Resume: it completes.
		must(t, caps.SetCap(f.ctx, f.ws.ID, llm.Dollars(10)))
		must(t, f.eng.Resume(f.ctx, f.ws.ID, id, "", nil))
		f.drain()
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("after raising the cap and Resume: %s %+v", r.Status, r.Error)
		}
	})
}

func TestSpendNotificationsOncePerThreshold(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		// Reading is free, writing costs $100 per million tokens; each call
		// may write 30 tokens ($0.003) and writes about 15. A cap of $0.07
		// is crossed at 50%, 80% and 95% in steps of about $0.0015.
		caps, m := f.modelsPriced("0", "100")
		gen, _ := json.Marshal(workflow.AIGenerateConfig{Model: m, Prompt: "Write a greeting", MaxTokens: 30})
		wf := f.publishWithModels([]workflow.Node{{ID: "greet", Kind: workflow.NodeAIGenerate, Config: gen}})
		must(t, caps.SetCap(f.ctx, f.ws.ID, llm.Money(70_000)))
		for i := 0; ; i++ {
			sum, err := caps.Summary(f.ctx, f.ws.ID, db.Now())
			must(t, err)
			if sum.Percent >= 95 {
				break
			}
			if i == 100 {
				t.Fatalf("spend stopped at %d%% of the cap", sum.Percent)
			}
			must(t, f.sb.ScriptModel(sandbox.TextReply("Hello there, a warm welcome to you all!!!!!!!!!!!!!!!!!!!")))
			id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
			must(t, err)
			f.drain()
			if r := f.run(id); r.Status != engine.StatusCompleted {
				t.Fatalf("run %d: %s (%s) at %d%% of the cap", i, r.Status, r.PauseReason, sum.Percent)
			}
		}
		nt := notify.NewService(d, f.cat)
		list, err := nt.List(f.ctx, f.ws.ID, "", 200)
		must(t, err)
		count := map[string]int{}
		for _, n := range list {
			count[n.Kind]++
		}
		for _, k := range []string{"spend-50", "spend-80", "spend-95"} {
			if count[k] != 1 {
				t.Errorf("%s notifications: %d, want exactly 1 (all: %v)", k, count[k], count)
			}
		}
	})
}

func TestAIExtractRejectsOutputOffTheSchema(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		_, m := f.models()
		cfg, _ := json.Marshal(workflow.AIExtractConfig{Model: m, Text: "Ada Lovelace, ada@example.com, budget 5000",
			Schema: json.RawMessage(`{"type":"object","required":["email","budget"],"properties":{"email":{"type":"string"},"budget":{"type":"number"}}}`)})
		gen, _ := json.Marshal(workflow.AIGenerateConfig{Model: m, Prompt: "Write a greeting"})
		wf := f.publishWithModels([]workflow.Node{{ID: "greet", Kind: workflow.NodeAIGenerate, Config: gen}, {ID: "extract", Kind: workflow.NodeAIExtract, Config: cfg}})

		must(t, f.sb.ScriptModel(sandbox.TextReply("Hello!"), sandbox.TextReply(`{"email":"ada@example.com","budget":"lots"}`)))
		id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, err)
		f.drain()
		r := f.run(id)
		if r.Status != engine.StatusFailed || r.Error == nil || r.Error.Code != "AI_OUTPUT_INVALID" {
			t.Fatalf("extract off the schema: %s %+v, want failed with AI_OUTPUT_INVALID", r.Status, r.Error)
		}

		must(t, f.sb.ScriptModel(sandbox.TextReply("Hello!"), sandbox.TextReply(`{"email":"ada@example.com","budget":5000}`)))
		id, err = f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, err)
		f.drain()
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("extract on the schema: %s %+v", r.Status, r.Error)
		}
		steps, err := f.eng.Steps(f.ctx, f.ws.ID, id)
		must(t, err)
		if string(steps[0].Output) != `{"finishReason":"stop","text":"Hello!"}` || string(steps[1].Output) != `{"email":"ada@example.com","budget":5000}` {
			t.Fatalf("outputs: %s / %s", steps[0].Output, steps[1].Output)
		}
	})
}

// publishWithModels publishes a chain of steps that may use models.
func (f *fixture) publishWithModels(nodes []workflow.Node) string {
	f.t.Helper()
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual}, Nodes: nodes}
	prev := "start"
	for _, n := range nodes {
		g.Edges = append(g.Edges, workflow.Edge{From: prev, To: n.ID})
		prev = n.ID
	}
	w, err := f.wfs.Create(f.ctx, f.ws, "AI flow", "", &g, "")
	must(f.t, err)
	c := f.checks()
	c.Model = f.modelCheck
	_, err = f.wfs.Publish(f.ctx, f.ws, w.ID, "", c)
	var ce *workflow.CompileError
	if errors.As(err, &ce) {
		f.t.Fatalf("publish: %v", ce.Problems)
	}
	must(f.t, err)
	return w.ID
}
