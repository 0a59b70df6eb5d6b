package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"taskjuice/internal/db/dbtest"
)

// TestBenchSmoke runs the engine benchmarks small, on SQLite and, when
// configured, on PostgreSQL: they must do all their work and end with
// their JSON line. Their timings are not held to their targets here (a
// test machine, and the race detector, are no place for that), only
// reported.
func TestBenchSmoke(t *testing.T) {
	databases := map[string]string{"sqlite": ""}
	if base := os.Getenv(dbtest.PostgresEnv); base != "" {
		databases["postgres"] = base
	}
	for name, url := range databases {
		t.Run(name, func(t *testing.T) {
			t.Run("engine", func(t *testing.T) {
				got := runBench(t, "engine", "--runs", "40", "--steps", "3", "--concurrency", "8", "--database-url", url)
				if got["runs"] != 40.0 || got["steps"] != 120.0 || got["database"] != name {
					t.Errorf("bench engine: runs %v, steps %v on %v, want 40 runs, 120 steps on %s", got["runs"], got["steps"], got["database"], name)
				}
				if _, ok := got["steps_per_second"].(float64); !ok {
					t.Errorf("bench engine: no steps_per_second in %v", got)
				}
			})
			t.Run("engine backlog", func(t *testing.T) {
				got := runBench(t, "engine", "--backlog", "50,200", "--finished", "100", "--steps", "2", "--concurrency", "8", "--database-url", url)
				if got["backlog"] != 200.0 || got["runs"] != 200.0 || got["steps"] != 400.0 || got["finished_runs"] != 100.0 || got["database"] != name {
					t.Errorf("bench engine --backlog: backlog %v, runs %v, steps %v, finished %v on %v; want 200, 200, 400, 100 on %s",
						got["backlog"], got["runs"], got["steps"], got["finished_runs"], got["database"], name)
				}
				if _, ok := got["p99_run_ms"].(float64); !ok {
					t.Errorf("bench engine --backlog: no p99_run_ms in %v", got)
				}
			})
			t.Run("intake", func(t *testing.T) {
				got := runBench(t, "intake", "--requests", "300", "--clients", "8", "--database-url", url)
				if got["accepted"] != 300.0 || got["recorded"] != 300.0 || got["missing"] != 0.0 || got["doubled"] != 0.0 || got["database"] != name {
					t.Errorf("bench intake: %v accepted, %v recorded, %v missing, %v doubled on %v; want 300, 300, 0, 0 on %s",
						got["accepted"], got["recorded"], got["missing"], got["doubled"], got["database"], name)
				}
				if _, ok := got["p99_ms"].(float64); !ok {
					t.Errorf("bench intake: no p99_ms in %v", got)
				}
			})
			t.Run("triggers", func(t *testing.T) {
				got := runBench(t, "triggers", "--triggers", "20", "--items", "150", "--passes", "5", "--workers", "2", "--deliveries", "20", "--database-url", url)
				if got["triggers"] != 20.0 || got["polls"] != 20.0 || got["runs"] != 150.0 || got["database"] != name {
					t.Errorf("bench triggers: %v triggers, %v polls, %v runs on %v; want 20, 20, 150 on %s", got["triggers"], got["polls"], got["runs"], got["database"], name)
				}
				if got["instant_deliveries"] != 20.0 || got["instant_runs"] != 20.0 {
					t.Errorf("bench triggers: %v instant deliveries, %v runs; want 20, 20", got["instant_deliveries"], got["instant_runs"])
				}
				if _, ok := got["instant_p95_ms"].(float64); !ok {
					t.Errorf("bench triggers: no instant_p95_ms in %v", got)
				}
			})
			t.Run("resume", func(t *testing.T) {
				got := runBench(t, "resume", "--runs", "30", "--held", "20", "--idle", "100ms", "--database-url", url)
				if got["resumed"] != 30.0 || got["held"] != 20.0 || got["database"] != name {
					t.Errorf("bench resume: resumed %v of 30 (held %v) on %v, want all 30 on %s", got["resumed"], got["held"], got["database"], name)
				}
				if _, ok := got["resume_seconds"].(float64); !ok {
					t.Errorf("bench resume: no resume_seconds in %v", got)
				}
			})
		})
	}
}

// runBench runs "taskjuice bench NAME ARGS" and returns its last line,
// decoded. A missed target is no failure here; anything else is.
func runBench(t *testing.T, name string, args ...string) map[string]any {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"bench", name}, args...), env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }})
	if err != nil && !errors.Is(err, errTargetMissed) {
		t.Fatalf("bench %s: %v\nstdout:\n%s\nstderr:\n%s", name, err, out.String(), errb.String())
	}
	t.Logf("bench %s:\n%s", name, out.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("bench %s: the last line is not JSON: %q (%v)", name, lines[len(lines)-1], err)
	}
	return got
}
