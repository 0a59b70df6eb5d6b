package notify

import (
	"context"

	"taskjuice/internal/connection"
)

// ChatActions are the app actions failure alerts post to a channel with,
// by app: each takes a channel and a text.
var ChatActions = map[string]string{"sandbox-chat": "post-message", "slack": "send-message"}

// ChatTargetsOf tells which of a workspace's connections can post alerts:
// its own, of an app in ChatActions.
func ChatTargetsOf(conns *connection.Service) ChatTargets {
	return func(ctx context.Context, workspaceID, connectionID string) (string, bool) {
		c, err := conns.ByID(ctx, connectionID)
		if err != nil || c.WorkspaceID != workspaceID || ChatActions[c.AppKey] == "" {
			return "", false
		}
		return c.AppKey, true
	}
}
