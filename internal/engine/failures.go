package engine

import (
	"context"
	"fmt"
	"time"
)

// FailureKey names a group of failed runs: one workflow, the step they
// failed at, their error code ("" for either: not recorded).
type FailureKey struct {
	WorkflowID string `json:"workflowId"`
	Node       string `json:"node"`
	ErrorCode  string `json:"errorCode"`
}

// FailureGroup is the failed runs of one key that nobody has retried or
// replayed yet: the failed-runs inbox.
type FailureGroup struct {
	FailureKey
	WorkflowName string    `json:"workflowName"`
	Runs         int       `json:"runs"`
	FirstSeen    time.Time `json:"firstSeen"`
	LastSeen     time.Time `json:"lastSeen"`
}

// unhandled keeps failed runs that no retry or replay has taken up.
const unhandled = `NOT EXISTS (SELECT 1 FROM runs x WHERE x.retry_of = r.id) AND NOT EXISTS (SELECT 1 FROM runs x WHERE x.replay_of = r.id)`

// FailureGroups lists the workspace's failed runs not yet retried or
// replayed, grouped by workflow, step and error code, the most recent
// first (a range of runs_failed).
func (e *Engine) FailureGroups(ctx context.Context, workspaceID string) ([]FailureGroup, error) {
	rows, err := e.db.Read().QueryContext(ctx, `SELECT r.workflow_id, w.name, COALESCE(r.failed_node, ''), COALESCE(r.error_code, ''), COUNT(*),
			MIN(r.created_at), MAX(r.created_at)
		FROM runs r JOIN workflows w ON w.id = r.workflow_id
		WHERE r.workspace_id = $1 AND r.status = 'failed' AND `+unhandled+`
		GROUP BY r.workflow_id, w.name, r.failed_node, r.error_code ORDER BY MAX(r.created_at) DESC LIMIT 200`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("group failures: %w", err)
	}
	defer rows.Close()
	var out []FailureGroup
	for rows.Next() {
		var g FailureGroup
		var first, last anyTime
		if err := rows.Scan(&g.WorkflowID, &g.WorkflowName, &g.Node, &g.ErrorCode, &g.Runs, &first, &last); err != nil {
			return nil, fmt.Errorf("group failures: %w", err)
		}
		g.FirstSeen, g.LastSeen = first.t, last.t
		out = append(out, g)
	}
	return out, rows.Err()
}

// anyTime scans a time that comes back as a time or, from an aggregate on
// SQLite (which loses the column's type), as text.
type anyTime struct{ t time.Time }

func (a *anyTime) Scan(v any) error {
	switch x := v.(type) {
	case time.Time:
		a.t = x.UTC()
		return nil
	case string:
		return a.parse(x)
	case []byte:
		return a.parse(string(x))
	case nil:
		return nil
	}
	return fmt.Errorf("scan time: unexpected %T", v)
}

func (a *anyTime) parse(s string) error {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999-07:00", time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			a.t = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("scan time: cannot read %q", s)
}
