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
		var plan []string
		err := d.InTx(ctx, func(tx db.Querier) error {
			explain := "EXPLAIN QUERY PLAN "
			if d.Dialect() == db.Postgres {
				// The table is small: make the planner show what it does
				// when it is not.
				if _, err := tx.ExecContext(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
					return err
				}
				explain = "EXPLAIN "
			}
			rows, err := tx.QueryContext(ctx, explain+eventsQuery, "wf", SourcePoll, 10)
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
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(plan, "\n")
		if !strings.Contains(text, "runs_workflow_source") || strings.Contains(text, "TEMP B-TREE") || strings.Contains(text, "Sort") {
			t.Fatalf("events plan does not read the index in order:\n%s", text)
		}
	})
}
