package main

import (
	"log/slog"
	"time"

	"taskjuice/internal/trigger"
)

// pollerOptions tune the app-trigger poller: a one-minute floor between
// polls of a trigger, lowered to five seconds when the built-in sandbox
// runs in this process (it is local; a demo should not wait a minute).
func pollerOptions(sandbox bool, log *slog.Logger) trigger.PollerOptions {
	o := trigger.PollerOptions{Log: log.With("component", "poll-triggers")}
	if sandbox {
		o.MinInterval = 5 * time.Second
	}
	return o
}
