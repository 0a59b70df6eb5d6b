package demo

import (
	"context"
	"encoding/json"
	"errors"

	"taskjuice/internal/account"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// TriggerWorkflowName names the demo's published workflow that an app
// trigger starts.
const TriggerWorkflowName = "New chat message → post to #general"

// AddTriggerWorkflow gives the demo workspace a published workflow that
// starts from Sandbox Chat: each new message in #random (polled every ten
// seconds through the demo's connection) starts a run that posts it to
// #general, so a newcomer sees a trigger fire with
// "taskjuice sandbox emit --channel random".
func AddTriggerWorkflow(ctx context.Context, d *db.DB, accounts *account.Service, conns *connection.Service, workflows *workflow.Service) error {
	ws, chat, err := demoChat(ctx, d, accounts, conns)
	if err != nil {
		return err
	}
	trigger, _ := json.Marshal(workflow.AppTriggerConfig{App: "sandbox-chat", Trigger: "new-message", Inputs: map[string]string{"channel": "random"}, IntervalSeconds: 10})
	post, _ := json.Marshal(map[string]any{"app": "sandbox-chat", "action": "post-message",
		"inputs": map[string]any{"channel": "general", "text": "New in #random: {{ $trigger.text }}"}})
	g := workflow.Graph{Schema: 1,
		Trigger: &workflow.Node{ID: "new_message", Kind: workflow.TriggerApp, Name: "New message in #random", Config: trigger, Connection: &workflow.Binding{ID: chat}},
		Nodes:   []workflow.Node{{ID: "post", Kind: workflow.NodeAction, Name: "Post it to #general", Config: post, Connection: &workflow.Binding{ID: chat}}},
		Edges:   []workflow.Edge{{From: "new_message", To: "post"}}}
	wf, err := workflows.Create(ctx, ws, TriggerWorkflowName, "Each new message in Sandbox Chat's #random is posted to #general.", &g, "")
	if err != nil {
		return err
	}
	_, err = workflows.Publish(ctx, ws, wf.ID, "", workflow.Checks{})
	return err
}

// StarterWorkflowName names the demo's published workflow a newcomer runs
// with "Run now".
const StarterWorkflowName = "New lead → big ones to #general"

// AddStarterWorkflow gives the demo workspace a published workflow to run
// at once with "Run now": it reads a lead (a name and an amount, with
// defaults when the payload is empty), and a Branch sends leads of 1,000
// or more to Sandbox Chat's #general through the demo's connection, and
// notes the others.
func AddStarterWorkflow(ctx context.Context, d *db.DB, accounts *account.Service, conns *connection.Service, workflows *workflow.Service) error {
	ws, chat, err := demoChat(ctx, d, accounts, conns)
	if err != nil {
		return err
	}
	read, _ := json.Marshal(workflow.TransformConfig{Output: json.RawMessage(`{"name": "{{ $trigger.name ? $trigger.name : 'Ada Lovelace' }}",
		"amount": "{{ $trigger.amount ? $trigger.amount : 2500 }}"}`)})
	big, _ := json.Marshal(workflow.BranchConfig{Condition: "{{ $steps.lead.data.amount >= 1000 }}"})
	post, _ := json.Marshal(map[string]any{"app": "sandbox-chat", "action": "post-message",
		"inputs": map[string]any{"channel": "general", "text": "New lead: {{ $steps.lead.data.name }} ({{ $steps.lead.data.amount }} USD)"}})
	note, _ := json.Marshal(workflow.TransformConfig{Output: json.RawMessage(`{"skipped": "{{ $steps.lead.data.name }}: under 1,000 USD"}`)})
	g := workflow.Graph{Schema: 1,
		Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual, Name: "Run now"},
		Nodes: []workflow.Node{
			{ID: "lead", Kind: workflow.NodeTransform, Name: "Read the lead", Config: read},
			{ID: "big", Kind: workflow.NodeBranch, Name: "1,000 USD or more?", Config: big},
			{ID: "post", Kind: workflow.NodeAction, Name: "Post it to #general", Config: post, Connection: &workflow.Binding{ID: chat}},
			{ID: "note", Kind: workflow.NodeTransform, Name: "Note a small lead", Config: note},
		},
		Edges: []workflow.Edge{{From: "start", To: "lead"}, {From: "lead", To: "big"}, {From: "big", To: "post", When: "true"}, {From: "big", To: "note", When: "false"}}}
	wf, err := workflows.Create(ctx, ws, StarterWorkflowName, `Press "Run now" (or send {"name": "Grace", "amount": 400}): leads of 1,000 USD or more are posted to Sandbox Chat's #general.`, &g, "")
	if err != nil {
		return err
	}
	_, err = workflows.Publish(ctx, ws, wf.ID, "", workflow.Checks{})
	return err
}

// demoChat finds the demo workspace and its Sandbox Chat connection.
func demoChat(ctx context.Context, d *db.DB, accounts *account.Service, conns *connection.Service) (account.Workspace, string, error) {
	ws, err := workspace(ctx, d, accounts)
	if err != nil {
		return account.Workspace{}, "", err
	}
	chat, err := sandboxChat(ctx, conns, ws)
	if err != nil {
		return account.Workspace{}, "", err
	}
	if chat == "" {
		return account.Workspace{}, "", errors.New("the demo has no Sandbox Chat connection")
	}
	return ws, chat, nil
}
