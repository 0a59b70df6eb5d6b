package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"taskjuice/internal/db"
)

// costSnapshot is what the database holds and has written, read before and
// after the engine runs, so that the difference is what the steps cost.
type costSnapshot struct {
	// sizes are the bytes of runs, run_steps and each of their indexes.
	sizes map[string]int64
	// indexes are run_steps' indexes (one entry each per step row).
	indexes []string
	steps   int64
	// written is PostgreSQL's WAL position, or the bytes this process has
	// written (SQLite writes from inside it: WAL frames and checkpoints).
	written int64
}

// stepCost is what each step cost, on average.
type stepCost struct {
	Rows          float64 // run_steps rows written
	IndexEntries  int     // entries each row adds to run_steps' indexes
	Indexes       []string
	StepBytes     float64 // run_steps' table and indexes grew by
	RunIndexBytes float64 // runs' indexes grew by
	Written       float64 // WAL bytes (PostgreSQL), or bytes written (SQLite)
}

func snapshotCost(ctx context.Context, d *db.DB) (costSnapshot, error) {
	s := costSnapshot{sizes: map[string]int64{}}
	q := `SELECT c.relname, pg_relation_size(c.oid), COALESCE(i.indrelid = 'run_steps'::regclass, false) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_index i ON i.indexrelid = c.oid
		WHERE n.nspname = current_schema() AND (c.relname IN ('runs', 'run_steps') OR i.indrelid IN ('runs'::regclass, 'run_steps'::regclass))`
	if d.Dialect() == db.SQLite {
		q = `SELECT m.name, COALESCE((SELECT SUM(pgsize) FROM dbstat WHERE dbstat.name = m.name), 0), m.type = 'index' AND m.tbl_name = 'run_steps'
			FROM sqlite_master m WHERE m.tbl_name IN ('runs', 'run_steps') AND m.type IN ('table', 'index')`
	}
	rows, err := d.Read().QueryContext(ctx, q)
	if err != nil {
		return s, fmt.Errorf("read sizes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var size int64
		var stepIndex bool
		if err := rows.Scan(&name, &size, &stepIndex); err != nil {
			return s, fmt.Errorf("read sizes: %w", err)
		}
		s.sizes[name] = size
		if stepIndex {
			s.indexes = append(s.indexes, name)
		}
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("read sizes: %w", err)
	}
	sort.Strings(s.indexes)
	if err := d.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM run_steps`).Scan(&s.steps); err != nil {
		return s, fmt.Errorf("count steps: %w", err)
	}
	if d.Dialect() == db.Postgres {
		err = d.Read().QueryRowContext(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint`).Scan(&s.written)
	} else {
		s.written, err = processWritten()
	}
	return s, err
}

// processWritten is the bytes this process has handed to write(2) (Linux's
// /proc/self/io wchar).
func processWritten() (int64, error) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0, fmt.Errorf("read process i/o: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "wchar: "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("read process i/o: no wchar")
}

// costSince is what the steps recorded since before cost each.
func costSince(ctx context.Context, d *db.DB, before costSnapshot) (stepCost, error) {
	after, err := snapshotCost(ctx, d)
	if err != nil {
		return stepCost{}, err
	}
	n := float64(max(after.steps-before.steps, 1))
	c := stepCost{Rows: float64(after.steps-before.steps) / n, IndexEntries: len(after.indexes), Indexes: after.indexes,
		Written: float64(after.written-before.written) / n}
	for name, size := range after.sizes {
		grew := float64(size-before.sizes[name]) / n
		switch {
		case name == "run_steps" || slices.Contains(after.indexes, name):
			c.StepBytes += grew
		case name != "runs":
			c.RunIndexBytes += grew
		}
	}
	return c, nil
}

func (c stepCost) print(out io.Writer, d db.Dialect) {
	written := "bytes written by the process (WAL frames and checkpoints)"
	if d == db.Postgres {
		written = "WAL bytes (the whole server's, so other work on it counts too)"
	}
	fmt.Fprintf(out, "per step: %.2f run_steps rows, %d index entries (%s), run_steps grew %.0f bytes, runs' indexes %.0f bytes; %.0f %s\n",
		c.Rows, c.IndexEntries, strings.Join(c.Indexes, ", "), c.StepBytes, c.RunIndexBytes, c.Written, written)
}

func (c stepCost) fields() map[string]any {
	return map[string]any{"step_rows": roundTo(c.Rows, 2), "step_index_entries": c.IndexEntries, "step_stored_bytes": roundTo(c.StepBytes, 0),
		"run_index_bytes_per_step": roundTo(c.RunIndexBytes, 0), "written_bytes_per_step": roundTo(c.Written, 0)}
}
