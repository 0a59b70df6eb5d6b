package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// publishAgent creates and publishes an agent whose one tool posts to
// Sandbox Chat through the fixture's connection.
func (f *fixture) publishAgent() string {
	f.t.Helper()
	cfg, _ := json.Marshal(workflow.AgentConfig{
		Instructions: "Tell the team what happened.",
		Driver:       workflow.DriverCallback,
		Tools:        []workflow.AgentTool{{Name: "post", App: "sandbox-chat", Action: "post-message", ConnectionID: f.connID}},
	})
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
		Nodes: []workflow.Node{{ID: "agent", Kind: workflow.NodeAgent, Config: cfg}},
		Edges: []workflow.Edge{{From: "start", To: "agent"}}}
	a, err := f.wfs.CreateAgent(f.ctx, f.ws, "Helper", "", g, "")
	must(f.t, err)
	_, err = f.wfs.Publish(f.ctx, f.ws, a.ID, "", f.checks())
	var ce *workflow.CompileError
	if errors.As(err, &ce) {
		f.t.Fatalf("publish agent: %v", ce.Problems)
	}
	must(f.t, err)
	return a.ID
}

func (f *fixture) checks() workflow.Checks {
	return workflow.Checks{Apps: f.cat, Connection: func(id string) (string, string, bool) {
		c, err := f.conns.Get(f.ctx, f.ws, id)
		return c.AppKey, string(c.Status), err == nil
	}}
}

func postCall(text string) engine.AgentDecision {
	return engine.AgentDecision{ToolCall: &engine.ToolCall{Tool: "post", Input: map[string]json.RawMessage{
		"channel": json.RawMessage(`"general"`), "text": json.RawMessage(`"` + text + `"`)}}}
}

// decide hands the waiting agent run its next decision and works it as far
// as it goes.
func (f *fixture) decide(id string, d engine.AgentDecision) {
	f.t.Helper()
	must(f.t, f.eng.SubmitAgentDecision(f.ctx, f.ws.ID, id, "", d))
	f.drain()
}

func (f *fixture) wantWaitingForAgent(id string) {
	f.t.Helper()
	if r := f.run(id); r.Status != engine.StatusWaiting || r.WaitReason != engine.WaitAgentCallback {
		f.t.Fatalf("agent run: %s (%q), want waiting for the agent callback", r.Status, r.WaitReason)
	}
}

func TestAgentRunCallsToolsAndAnswers(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		agent := f.publishAgent()
		id, err := f.eng.StartRun(f.ctx, agent, json.RawMessage(`{"ticket": 7}`), "api", "")
		must(t, err)
		f.drain()
		f.wantWaitingForAgent(id)
		if r := f.run(id); r.Kind != engine.KindAgent {
			t.Fatalf("run kind %q, want agent", r.Kind)
		}

		// Wrong decisions are refused and change nothing.
		err = f.eng.SubmitAgentDecision(f.ctx, f.ws.ID, id, "", engine.AgentDecision{ToolCall: &engine.ToolCall{Tool: "delete-everything"}})
		if apperr.Status(err) != 422 {
			t.Fatalf("unknown tool: %v, want 422", err)
		}
		if err := f.eng.SubmitAgentDecision(f.ctx, f.ws.ID, id, "", engine.AgentDecision{}); apperr.Status(err) != 422 {
			t.Fatalf("empty decision: %v, want 422", err)
		}
		if err := f.eng.SubmitAgentDecision(f.ctx, "other-workspace", id, "", postCall("x")); !apperr.IsNotFound(err) {
			t.Fatalf("another workspace's decision: %v, want not found", err)
		}
		f.wantWaitingForAgent(id)

		f.decide(id, postCall("first"))
		f.wantWaitingForAgent(id)
		f.decide(id, postCall("second"))
		f.decide(id, engine.AgentDecision{Answer: "Posted twice."})
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("agent run: %s, want completed", r.Status)
		}
		if err := f.eng.SubmitAgentDecision(f.ctx, f.ws.ID, id, "", postCall("late")); apperr.Status(err) != 409 {
			t.Fatalf("decision for a finished run: %v, want 409", err)
		}
		if got := f.sb.Stats().MessagesPosted; got != 2 {
			t.Fatalf("messages posted: %d, want 2", got)
		}
		steps, err := f.eng.Steps(f.ctx, f.ws.ID, id)
		must(t, err)
		var entries []string
		for _, s := range steps {
			entries = append(entries, s.NodeID+"="+string(s.Status))
		}
		want := []string{"agent=completed", "agent!1.tool=completed", "agent!2=completed", "agent!2.tool=completed", "agent!3=completed"}
		if len(entries) != len(want) {
			t.Fatalf("steps %v, want %v", entries, want)
		}
		for i := range want {
			if entries[i] != want[i] {
				t.Fatalf("steps %v, want %v", entries, want)
			}
		}
	})
}

func TestAgentRunHitsStepLimit(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		agent := f.publishAgent()
		id, err := f.eng.StartRun(f.ctx, agent, nil, "api", "")
		must(t, err)
		f.drain()
		for range workflow.DefaultAgentSteps {
			f.decide(id, postCall("again"))
		}
		r := f.run(id)
		if r.Status != engine.StatusFailed || r.Error == nil || r.Error.Code != "AGENT_STEP_LIMIT" {
			t.Fatalf("agent run past its limit: %s %+v, want failed with AGENT_STEP_LIMIT", r.Status, r.Error)
		}
	})
}

// TestSeedStory is the story the product is built around, on both
// databases: a workflow and an agent both use Sandbox Chat; the grant is
// revoked at the sandbox; new runs are held, not failed; on reconnect the
// agent run goes on by itself while workflow runs wait for Resume; a run
// that failed earlier is replayed into one that completes.
func TestSeedStory(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		// v1 posts to a channel that does not exist: its run fails.
		wf := f.publish([]workflow.Node{f.bound(postTo("nowhere", "Hello"))})
		failed, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(`{"n": 1}`), "manual", "")
		must(t, err)
		f.drain()
		if r := f.run(failed); r.Status != engine.StatusFailed {
			t.Fatalf("run on v1: %s, want failed", r.Status)
		}
		// v2 fixes the channel.
		g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
			Nodes: []workflow.Node{f.bound(postTo("general", "Hello"))}, Edges: []workflow.Edge{{From: "start", To: "post"}}}
		_, err = f.wfs.SaveDraft(f.ctx, f.ws, wf, g, "")
		must(t, err)
		_, err = f.wfs.Publish(f.ctx, f.ws, wf, "", f.checks())
		must(t, err)
		agent := f.publishAgent()
		agentRun, err := f.eng.StartRun(f.ctx, agent, nil, "api", "")
		must(t, err)
		f.drain()
		f.decide(agentRun, postCall("before the break"))
		f.wantWaitingForAgent(agentRun)

		// The grant is revoked at the sandbox.
		if _, err := f.sb.RevokeAccount("Acme Chat"); err != nil {
			t.Fatal(err)
		}
		var held []string
		for range 3 {
			id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
			must(t, err)
			held = append(held, id)
		}
		f.drain()
		f.decide(agentRun, postCall("after the break"))
		for _, id := range append([]string{agentRun}, held...) {
			if r := f.run(id); r.Status != engine.StatusPaused || r.PauseReason != engine.PauseReauth || r.PausedConnectionID != f.connID {
				t.Fatalf("run %s after the revoke: %s (%s), want paused for reauth", id, r.Status, r.PauseReason)
			}
		}
		before := f.sb.Stats().MessagesPosted

		// Reconnect: the agent run is running again at once, by itself; the
		// workflow runs stay paused.
		f.reconnect()
		n, err := f.eng.ConsumeReauthorizations(f.ctx)
		must(t, err)
		if n != 1 || f.run(agentRun).Status != engine.StatusRunning {
			t.Fatalf("after reconnect: %d resumed, agent run %s; want 1 and running", n, f.run(agentRun).Status)
		}
		f.drain()
		f.wantWaitingForAgent(agentRun)
		for _, id := range held {
			if r := f.run(id); r.Status != engine.StatusPaused {
				t.Fatalf("workflow run %s after reconnect: %s, want still paused", id, r.Status)
			}
		}
		if got := f.sb.Stats().MessagesPosted; got != before+1 {
			t.Fatalf("messages after the agent resumed: %d, want %d (the held tool call made once)", got, before+1)
		}
		f.decide(agentRun, engine.AgentDecision{Answer: "done"})
		if r := f.run(agentRun); r.Status != engine.StatusCompleted {
			t.Fatalf("agent run: %s, want completed", r.Status)
		}

		status := func(ctx context.Context, id string) (string, error) {
			c, err := f.conns.Get(ctx, f.ws, id)
			return string(c.Status), err
		}
		for _, id := range held {
			must(t, f.eng.Resume(f.ctx, f.ws.ID, id, "", status))
		}
		f.drain()
		for _, id := range held {
			if r := f.run(id); r.Status != engine.StatusCompleted {
				t.Fatalf("workflow run %s after Resume: %s, want completed", id, r.Status)
			}
		}

		replay, err := f.eng.Replay(f.ctx, f.ws.ID, failed, "")
		must(t, err)
		f.drain()
		if r := f.run(replay); r.Status != engine.StatusCompleted || r.ReplayOf != failed || replay == failed {
			t.Fatalf("replay: %s of %q, want a new completed run", r.Status, r.ReplayOf)
		}
		if r := f.run(failed); r.Status != engine.StatusFailed {
			t.Fatalf("the replayed run changed: %s", r.Status)
		}
		// 2 agent posts + 3 resumed runs + the replay.
		if got := f.sb.Stats().MessagesPosted; got != 6 {
			t.Fatalf("messages posted: %d, want 6", got)
		}
	})
}

func postTo(channel, text string) workflow.Node {
	cfg, _ := json.Marshal(map[string]any{"app": "sandbox-chat", "action": "post-message", "inputs": map[string]any{"channel": channel, "text": text}})
	return workflow.Node{ID: "post", Kind: workflow.NodeAction, Config: cfg}
}

// TestWorkflowCallsAnAgent: a Call Workflow step runs an agent; the agent
// run is an agent run of its own, and the workflow goes on with its answer.
func TestWorkflowCallsAnAgent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		agent := f.publishAgent()
		cfg, _ := json.Marshal(workflow.CallWorkflowConfig{WorkflowID: agent})
		wf := f.publish([]workflow.Node{{ID: "ask", Kind: workflow.NodeCallWorkflow, Config: cfg}})
		id, err := f.eng.StartRun(f.ctx, wf, json.RawMessage(`{"lead":"Ada"}`), "manual", "")
		must(t, err)
		f.drain()
		if r := f.run(id); r.Status != engine.StatusWaiting {
			t.Fatalf("calling run: %s, want waiting for the agent", r.Status)
		}
		runs, err := f.eng.List(f.ctx, f.ws.ID, engine.ListFilter{Status: engine.StatusWaiting})
		must(t, err)
		var child string
		for _, r := range runs {
			if r.WorkflowID == agent {
				child = r.ID
				if r.Kind != engine.KindAgent {
					t.Fatalf("called agent's run kind %q, want agent", r.Kind)
				}
			}
		}
		if child == "" {
			t.Fatal("no agent run was started")
		}
		f.decide(child, engine.AgentDecision{Answer: "Ada is a good lead."})
		r := f.run(id)
		if r.Status != engine.StatusCompleted {
			t.Fatalf("calling run after the agent answered: %s %+v", r.Status, r.Error)
		}
		steps, err := f.eng.Steps(f.ctx, f.ws.ID, id)
		must(t, err)
		if !strings.Contains(string(steps[len(steps)-1].Output), "Ada is a good lead.") {
			t.Fatalf("the agent's answer did not reach the caller: %s", steps[len(steps)-1].Output)
		}
	})
}
