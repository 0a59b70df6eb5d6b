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
	ws, err := workspace(ctx, d, accounts)
	if err != nil {
		return err
	}
	chat, err := sandboxChat(ctx, conns, ws)
	if err != nil {
		return err
	}
	if chat == "" {
		return errors.New("the demo has no Sandbox Chat connection")
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
