package server

import (
	"context"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/engine"
	"taskjuice/internal/notify"
)

// ChatPoster posts failure alerts through a workspace's chat connection,
// with the app action an action step would use.
func ChatPoster(cat *catalog.Catalog, conns *connection.Service, apps *connection.AppClient) notify.ChatPoster {
	return func(ctx context.Context, connectionID, channel, text, key string) error {
		c, err := conns.ByID(ctx, connectionID)
		if err != nil {
			return err
		}
		return engine.RunAction(ctx, cat, apps, connectionID, c.AppKey, notify.ChatActions[c.AppKey], map[string]any{"channel": channel, "text": text}, key)
	}
}
