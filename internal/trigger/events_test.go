package trigger

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// A trigger's events are one range of the index by workflow, source and
// time, on both databases, however many runs the workspace has.
func TestEventsQueryIsAnIndexRange(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		wf := newWorkflow(t, d)
		if d.Dialect() == db.Postgres {
			seedRunsOfManySources(t, d, wf)
		}
		plan, err := explainEvents(ctx, d, wf)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(plan, "\n")
		if !strings.Contains(text, "runs_workflow_source") || strings.Contains(text, "TEMP B-TREE") || strings.Contains(text, "Sort") {
			t.Fatalf("events plan does not read the index in order:\n%s", text)
		}
	})
}

// seedRunsOfManySources gives PostgreSQL's planner a table like a real
// one: the workflow's runs come mostly from webhooks and the schedule, a
// few from polling, and the statistics say so.
func seedRunsOfManySources(t *testing.T, d *db.DB, wf string) {
	t.Helper()
	ctx := context.Background()
	stmts := []string{
		`INSERT INTO workflow_versions (id, workflow_id, number, state, graph, created_at)
			VALUES ($1 || '-v1', $1, 1, 'active', '{}', now())`,
		`INSERT INTO runs (id, workspace_id, workflow_id, version_id, status, source, trigger_payload, created_at, updated_at)
			SELECT $1 || '-run-' || g, w.workspace_id, w.id, w.id || '-v1', 'completed',
				CASE WHEN g % 50 = 0 THEN 'poll' WHEN g % 2 = 0 THEN 'webhook' ELSE 'schedule' END,
				'{}', now() - g * interval '1 second', now()
			FROM generate_series(1, 5000) AS g, workflows AS w WHERE w.id = $1`,
		`ANALYZE runs`,
	}
	for _, q := range stmts {
		args := []any{wf}
		if !strings.Contains(q, "$1") {
			args = nil
		}
		if _, err := d.Write().ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
}

// explainEvents returns the plan of the events query, one line per row.
func explainEvents(ctx context.Context, d *db.DB, wf string) ([]string, error) {
	var plan []string
	err := d.InTx(ctx, func(tx db.Querier) error {
		explain := "EXPLAIN QUERY PLAN "
		if d.Dialect() == db.Postgres {
			explain = "EXPLAIN "
		}
		rows, err := tx.QueryContext(ctx, explain+eventsQuery, wf, SourcePoll, 10)
		if err != nil {
			return err
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return err
			}
			plan = append(plan, fmt.Sprint(vals...))
		}
		return rows.Err()
	})
	return plan, err
}
