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
				// A step writes one row with one index entry.
				if got["step_rows"] != 1.0 || got["step_index_entries"] != 1.0 {
					t.Errorf("bench engine: %v rows and %v index entries per step, want 1 and 1", got["step_rows"], got["step_index_entries"])
				}
				if b, ok := got["step_stored_bytes"].(float64); !ok || b <= 0 {
					t.Errorf("bench engine: step_stored_bytes %v, want a positive size", got["step_stored_bytes"])
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
			t.Run("prune", func(t *testing.T) {
				got := runBench(t, "prune", "--runs", "1200", "--kept", "30", "--database-url", url)
				if got["pruned"] != 1200.0 || got["kept"] != 30.0 || got["pass"] != true || got["database"] != name {
					t.Errorf("bench prune: pruned %v, kept %v (pass %v) on %v; want 1200, 30 on %s", got["pruned"], got["kept"], got["pass"], got["database"], name)
				}
				if b, _ := got["batches"].(float64); b < 3 {
					t.Errorf("bench prune: %v transactions, want at least 3 of at most 500 runs", got["batches"])
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

// TestBenchEngineProcesses runs "bench engine --processes 2" small on
// PostgreSQL: two worker processes of the real binary share the runs, and
// the bench's check (every run completed once, every step recorded and
// executed once, no run finished by two processes) must pass. Timings are
// only reported.
func TestBenchEngineProcesses(t *testing.T) {
	url := os.Getenv(dbtest.PostgresEnv)
	if url == "" {
		t.Skip(dbtest.PostgresEnv + " not set")
	}
	bin := buildBinary(t)
	got := runBench(t, "engine", "--processes", "2", "--runs", "30", "--steps", "3", "--concurrency", "4",
		"--worker-binary", bin, "--database-url", url)
	if got["pass"] != true || got["runs"] != 30.0 || got["steps"] != 90.0 || got["step_rows"] != 90.0 || got["executions"] != 90.0 {
		t.Errorf("bench engine --processes 2: pass %v, runs %v, steps %v, step rows %v, executions %v; want true, 30, 90, 90, 90",
			got["pass"], got["runs"], got["steps"], got["step_rows"], got["executions"])
	}
	for _, k := range []string{"lost_runs", "lost_executions", "doubled_executions", "doubled_steps", "finished_twice"} {
		if got[k] != 0.0 {
			t.Errorf("bench engine --processes 2: %s = %v, want 0", k, got[k])
		}
	}
	procs, _ := got["per_process"].([]any)
	steps := 0.0
	for _, p := range procs {
		steps += p.(map[string]any)["steps"].(float64)
	}
	if len(procs) != 2 || steps != 90 {
		t.Errorf("bench engine --processes 2: %d processes reported %v steps in all, want 2 and 90: %v", len(procs), steps, procs)
	}
}

// TestBenchEngineProcessesRefusedOnSQLite: several processes on SQLite
// are refused before anything is made.
func TestBenchEngineProcessesRefusedOnSQLite(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"bench", "engine", "--processes", "2", "--runs", "10"},
		env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }})
	if !errors.Is(err, errSQLiteProcesses) {
		t.Fatalf("bench engine --processes 2 on SQLite: %v, want %v", err, errSQLiteProcesses)
	}
	if out.Len() != 0 {
		t.Errorf("bench engine --processes 2 on SQLite made a database: %q", out.String())
	}
}

// TestMergeExecutions: the workers' records tell a step executed twice,
// by one process or two, and a step executed nowhere.
func TestMergeExecutions(t *testing.T) {
	reports := []workerReport{
		{Owner: "a", Executions: []string{"r1 step1 1", "r1 step2 1", "r2 step1 1"}},
		{Owner: "b", Executions: []string{"r2 step2 1", "r3 step1 1", "r3 step1 2", "r1 step2 1"}},
	}
	var c procsCheck
	c.mergeExecutions(reports, 6, "step2")
	want := procsCheck{executions: 7, doubledExecutions: 2, lostExecutions: 1, movedRuns: 2, finishedTwice: 1}
	if c != want {
		t.Errorf("mergeExecutions: got %+v, want %+v", c, want)
	}
}
