package engine

import (
	"context"
	"encoding/json"
	"strings"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/workflow"
)

// RunAction makes one app action through a connection outside any run (a
// failure alert posted to a chat channel): the request an action step
// makes, with key as its idempotency key. Its error is a *StepError, or
// the connection's (it needs to be reconnected, say).
func RunAction(ctx context.Context, cat *catalog.Catalog, apps *connection.AppClient, connectionID, app, name string, inputs map[string]any, key string) error {
	cfg, err := json.Marshal(map[string]any{"app": app, "action": name, "inputs": inputs})
	if err != nil {
		return err
	}
	node := workflow.Node{ID: "alert", Kind: workflow.NodeAction, Connection: &workflow.Binding{ID: connectionID}}
	_, err = action(cat, apps)(ctx, Call{Node: node, Entry: node.ID, Config: cfg, IdempotencyKey: key, Console: &strings.Builder{}, Attempt: 1})
	return err
}
