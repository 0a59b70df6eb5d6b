package trigger

import (
	"context"
	"fmt"
	"strings"
	"time"

	"taskjuice/internal/db"
)

// Event is one item an app trigger started a run for.
type Event struct {
	// ItemID is the item's app-side id (from the run's dedup key).
	ItemID string
	RunID  string
	// RunStatus is the run's status now.
	RunStatus string
	At        time.Time
}

// eventsQuery reads a range of the index runs_workflow_source (0028).
const eventsQuery = `SELECT id, status, COALESCE(dedup_key, ''), created_at FROM runs
	WHERE workflow_id = $1 AND source = $2 ORDER BY created_at DESC, id DESC LIMIT $3`

// MaxEvents is the most events Events returns at once.
const MaxEvents = 200

// Events lists the runs the workflow's polling trigger started, newest
// first, at most limit (1–MaxEvents).
func (p *Poller) Events(ctx context.Context, workflowID string, limit int) ([]Event, error) {
	return triggerEvents(ctx, p.db, workflowID, SourcePoll, limit)
}

// Events lists the runs the workflow's instant trigger started, newest
// first, at most limit (1–MaxEvents).
func (l *Listener) Events(ctx context.Context, workflowID string, limit int) ([]Event, error) {
	return triggerEvents(ctx, l.db, workflowID, SourceInstant, limit)
}

// triggerEvents reads the runs of one source of a workflow: one range of
// the runs index by workflow and source.
func triggerEvents(ctx context.Context, d *db.DB, workflowID, source string, limit int) ([]Event, error) {
	if limit < 1 || limit > MaxEvents {
		limit = MaxEvents
	}
	rows, err := d.Read().QueryContext(ctx, eventsQuery, workflowID, source, limit)
	if err != nil {
		return nil, fmt.Errorf("list trigger events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var key string
		if err := rows.Scan(&e.RunID, &e.RunStatus, &key, &e.At); err != nil {
			return nil, fmt.Errorf("list trigger events: %w", err)
		}
		e.ItemID = itemOf(key)
		e.At = e.At.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list trigger events: %w", err)
	}
	return out, nil
}

// itemOf is the item id of an app trigger run's dedup key
// ("poll:<app>:<trigger>:<item id>" or "instant:…"; the item id may itself hold colons).
func itemOf(key string) string {
	parts := strings.SplitN(key, ":", 4)
	if len(parts) < 4 {
		return key
	}
	return parts[3]
}
