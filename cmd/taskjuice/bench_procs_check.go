package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"taskjuice/internal/db"
)

// procsCheck is what the database and the workers' records say about the
// runs of a --processes bench.
type procsCheck struct {
	runs, completed int
	// badRuns completed without their steps_done or last output.
	badRuns int
	// stepRows are the run_steps rows, attempts the distinct (run, node,
	// attempt) among them, completedSteps those completed, doubledSteps the
	// (run, node) with more than one completed row, retries the rows of a
	// second or later attempt.
	stepRows, attempts, completedSteps, doubledSteps, retries int
	// executions are the Transform executions the workers made,
	// doubledExecutions the (run, node) executed more than once (in one
	// process or two), lostExecutions the (run, node) executed nowhere.
	executions, doubledExecutions, lostExecutions int
	// movedRuns had steps executed by more than one process; finishedTwice
	// had their last step executed by more than one.
	movedRuns, finishedTwice int
	p50, p95                 time.Duration
}

func (c procsCheck) ok(runs, steps int) bool {
	want := runs * steps
	return c.runs == runs && c.completed == runs && c.badRuns == 0 &&
		c.stepRows == want && c.attempts == want && c.completedSteps == want && c.doubledSteps == 0 &&
		c.executions == want && c.doubledExecutions == 0 && c.lostExecutions == 0 && c.finishedTwice == 0
}

// checkProcesses counts the rows of wf's runs and steps and merges the
// workers' executions.
func checkProcesses(ctx context.Context, d *db.DB, wf string, f benchEngineFlags, reports []workerReport) (procsCheck, error) {
	var c procsCheck
	q := d.Read()
	if err := q.QueryRowContext(ctx, `SELECT count(*), COALESCE(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0)
		FROM runs WHERE workflow_id = $1`, wf).Scan(&c.runs, &c.completed); err != nil {
		return c, fmt.Errorf("count runs: %w", err)
	}
	if err := q.QueryRowContext(ctx, `SELECT count(*), COALESCE(SUM(CASE WHEN s.status = 'completed' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN s.attempt > 1 THEN 1 ELSE 0 END), 0)
		FROM run_steps s JOIN runs r ON r.id = s.run_id WHERE r.workflow_id = $1`, wf).Scan(&c.stepRows, &c.completedSteps, &c.retries); err != nil {
		return c, fmt.Errorf("count steps: %w", err)
	}
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM run_steps s JOIN runs r ON r.id = s.run_id
		WHERE r.workflow_id = $1 GROUP BY s.run_id, s.node_id, s.attempt) g`, wf).Scan(&c.attempts); err != nil {
		return c, fmt.Errorf("count step attempts: %w", err)
	}
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM run_steps s JOIN runs r ON r.id = s.run_id
		WHERE r.workflow_id = $1 AND s.status = 'completed' GROUP BY s.run_id, s.node_id HAVING count(*) > 1) g`, wf).Scan(&c.doubledSteps); err != nil {
		return c, fmt.Errorf("count doubled steps: %w", err)
	}
	if err := checkRunOutputs(ctx, d, wf, f.steps, &c); err != nil {
		return c, err
	}
	c.mergeExecutions(reports, f.runs*f.steps, fmt.Sprintf("step%d", f.steps))
	return c, nil
}

// checkRunOutputs reads every completed run: its steps done, its last
// step's output ({"n": steps}) and its latency.
func checkRunOutputs(ctx context.Context, d *db.DB, wf string, steps int, c *procsCheck) error {
	rows, err := d.Read().QueryContext(ctx, `SELECT r.started_at, r.finished_at, r.steps_done, COALESCE(s.output, '')
		FROM runs r LEFT JOIN run_steps s ON s.run_id = r.id AND s.node_id = $2 AND s.status = 'completed'
		WHERE r.workflow_id = $1 AND r.status = 'completed'`, wf, fmt.Sprintf("step%d", steps))
	if err != nil {
		return fmt.Errorf("read runs: %w", err)
	}
	defer rows.Close()
	var lat []time.Duration
	for rows.Next() {
		var started, finished time.Time
		var done int
		var output string
		if err := rows.Scan(&started, &finished, &done, &output); err != nil {
			return fmt.Errorf("read runs: %w", err)
		}
		lat = append(lat, finished.Sub(started))
		var last struct{ N json.Number }
		if done != steps || json.Unmarshal([]byte(output), &last) != nil || last.N.String() != strconv.Itoa(steps) {
			c.badRuns++
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read runs: %w", err)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		c.p50, c.p95 = quantile(lat, 0.5), quantile(lat, 0.95)
	}
	return nil
}

// mergeExecutions counts the workers' executions against the want steps
// expected, lastNode being each run's last step.
func (c *procsCheck) mergeExecutions(reports []workerReport, want int, lastNode string) {
	byStep := map[string][]string{} // "RUN NODE" → the processes that executed it
	byRun := map[string]map[string]bool{}
	for _, r := range reports {
		for _, e := range r.Executions {
			f := strings.Fields(e)
			if len(f) < 2 {
				continue
			}
			c.executions++
			key := f[0] + " " + f[1]
			byStep[key] = append(byStep[key], r.Owner)
			if byRun[f[0]] == nil {
				byRun[f[0]] = map[string]bool{}
			}
			byRun[f[0]][r.Owner] = true
		}
	}
	for key, owners := range byStep {
		if len(owners) > 1 {
			c.doubledExecutions++
			if strings.HasSuffix(key, " "+lastNode) && slices.ContainsFunc(owners, func(o string) bool { return o != owners[0] }) {
				c.finishedTwice++
			}
		}
	}
	c.lostExecutions = max(0, want-len(byStep))
	for _, owners := range byRun {
		if len(owners) > 1 {
			c.movedRuns++
		}
	}
}

// reportProcesses prints the figures, the check, and the JSON line.
func reportProcesses(out io.Writer, d *db.DB, f benchEngineFlags, m fleetFigures, c procsCheck, reports []workerReport) error {
	steps := c.completedSteps
	fmt.Fprintf(out, "%s, %d runs in flight each: completed %d of %d runs, %d durable steps in %.2f s: %.0f steps/s\n",
		plural(f.processes, "worker process", "worker processes"), f.concurrency, c.completed, f.runs, steps, m.seconds, float64(steps)/m.seconds)
	t := printProcesses(out, reports, c.runs, m.seconds)
	printCPU(out, d, m, t.cpu, steps)
	fmt.Fprintf(out, "run latency (first step started to run finished): p50 %s, p95 %s\n", ms(c.p50), ms(c.p95))
	ok := c.ok(f.runs, f.steps)
	fmt.Fprintf(out, "check: %d of %d runs completed (%d without their last output); %d step rows, %d distinct (run, node, attempt), %d completed, %d doubled, %d retried; "+
		"%d executions, %d doubled, %d lost; %d runs moved between processes, %d finished by two: %s\n",
		c.completed, f.runs, c.badRuns, c.stepRows, c.attempts, c.completedSteps, c.doubledSteps, c.retries,
		c.executions, c.doubledExecutions, c.lostExecutions, c.movedRuns, c.finishedTwice, verdict(ok))
	writeJSONLine(out, processesJSON(d, f, m, c, t, ok))
	if !ok {
		return fmt.Errorf("bench engine --processes %d: runs or steps were lost or doubled", f.processes)
	}
	return nil
}

// workerTotals sums the workers' reports.
type workerTotals struct {
	cpu           float64
	claims, empty int64
	perProcess    []map[string]any
}

// printProcesses prints each worker's share and the claims of all.
func printProcesses(out io.Writer, reports []workerReport, runs int, seconds float64) workerTotals {
	var t workerTotals
	for _, r := range reports {
		n := len(r.Executions)
		fmt.Fprintf(out, "  %s: %d steps of %d runs; %d claims, %d found nothing; CPU %.2f s (%.0f µs per step)\n",
			r.Owner, n, r.Claims.Runs, r.Claims.Claims, r.Claims.Empty, r.CPUSeconds, r.CPUSeconds*1e6/float64(max(n, 1)))
		t.cpu += r.CPUSeconds
		t.claims, t.empty = t.claims+r.Claims.Claims, t.empty+r.Claims.Empty
		t.perProcess = append(t.perProcess, map[string]any{"owner": r.Owner, "steps": n, "runs": r.Claims.Runs, "claims": r.Claims.Claims,
			"empty_claims": r.Claims.Empty, "cpu_seconds": roundTo(r.CPUSeconds, 2)})
	}
	fmt.Fprintf(out, "claims: %d for %d runs (%.2f per run), %d found nothing (%.1f per second)\n",
		t.claims, runs, float64(t.claims)/float64(max(runs, 1)), t.empty, float64(t.empty)/seconds)
	return t
}

// printCPU prints where the CPU went, and what the PostgreSQL server
// counted.
func printCPU(out io.Writer, d *db.DB, m fleetFigures, workerCPU float64, steps int) {
	perStep := func(v float64) float64 { return v / float64(max(steps, 1)) }
	where := "SQLite inside them"
	switch {
	case d.Dialect() == db.Postgres && m.backendCPU >= 0:
		where = fmt.Sprintf("their PostgreSQL backends %.2f s (%.0f µs per step)", m.backendCPU.Seconds(), perStep(float64(m.backendCPU.Microseconds())))
	case d.Dialect() == db.Postgres:
		where = "their PostgreSQL backends not measurable (not on this machine)"
	}
	fmt.Fprintf(out, "CPU meanwhile: workers %.2f s (%.0f µs per step), %s, this process %.2f s; this machine's %d cores %.0f%% busy, %.2f s (everyone's work)\n",
		workerCPU, perStep(workerCPU*1e6), where, m.parentCPU.Seconds(), runtime.NumCPU(), m.machineBusy*100,
		m.machineBusy*m.seconds*float64(runtime.NumCPU()))
	if m.server.ok {
		fmt.Fprintf(out, "PostgreSQL server meanwhile (whoever else used it too): %.2f commits per step in this database, %.2f WAL flushes and %.0f WAL bytes per step\n",
			perStep(float64(m.server.commits)), perStep(float64(m.server.walSyncs)), perStep(float64(m.server.walBytes)))
	}
	if m.connections >= 0 {
		fmt.Fprintf(out, "PostgreSQL connections held by the workers at the end: %d\n", m.connections)
	}
}

// processesJSON is the bench's last line.
func processesJSON(d *db.DB, f benchEngineFlags, m fleetFigures, c procsCheck, t workerTotals, ok bool) map[string]any {
	steps := c.completedSteps
	perStep := func(v float64) float64 { return v / float64(max(steps, 1)) }
	line := map[string]any{
		"bench": "engine", "database": string(d.Dialect()), "processes": f.processes, "concurrency": f.concurrency,
		"runs": c.completed, "steps": steps, "steps_per_run": f.steps, "seconds": roundTo(m.seconds, 3), "steps_per_second": roundTo(float64(steps)/m.seconds, 0),
		"p50_run_ms": roundTo(msf(c.p50), 2), "p95_run_ms": roundTo(msf(c.p95), 2), "per_process": t.perProcess,
		"claims": t.claims, "empty_claims": t.empty, "worker_cpu_seconds": roundTo(t.cpu, 2), "parent_cpu_seconds": roundTo(m.parentCPU.Seconds(), 2),
		"machine_busy_percent": roundTo(m.machineBusy*100, 0),
		"step_rows":            c.stepRows, "distinct_attempts": c.attempts, "doubled_steps": c.doubledSteps, "executions": c.executions,
		"doubled_executions": c.doubledExecutions, "lost_executions": c.lostExecutions, "lost_runs": f.runs - c.completed,
		"moved_runs": c.movedRuns, "finished_twice": c.finishedTwice, "pass": ok,
	}
	if m.server.ok {
		line["server_commits_per_step"] = roundTo(perStep(float64(m.server.commits)), 3)
		line["server_wal_flushes_per_step"] = roundTo(perStep(float64(m.server.walSyncs)), 3)
		line["server_wal_bytes_per_step"] = roundTo(perStep(float64(m.server.walBytes)), 0)
	}
	if m.backendCPU >= 0 {
		line["postgres_backend_cpu_seconds"] = roundTo(m.backendCPU.Seconds(), 2)
	}
	if m.connections >= 0 {
		line["connections"] = m.connections
	}
	return line
}

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// backendCPU reads the CPU time of the PostgreSQL backends whose
// application name starts with app, by process id, from /proc: it works
// when PostgreSQL runs on this machine, and says so.
func backendCPU(ctx context.Context, d *db.DB, app string) (map[int]time.Duration, bool) {
	if d.Dialect() != db.Postgres {
		return nil, false
	}
	rows, err := d.Read().QueryContext(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1`, app+"-%")
	if err != nil {
		return nil, false
	}
	defer rows.Close()
	out := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) != nil {
			return nil, false
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || !strings.HasPrefix(string(comm), "postgres") {
			return nil, false
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil, false
		}
		// After the command's closing parenthesis: state, then 10 fields,
		// then utime and stime.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 13 {
			return nil, false
		}
		user, _ := strconv.ParseInt(f[11], 10, 64)
		sys, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = time.Duration(user+sys) * clockTick
	}
	return out, rows.Err() == nil
}

// machineCPU reads this machine's busy and total CPU time (every core)
// from /proc/stat, in ticks; zero where there is none.
func machineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i >= 8 { // guest time is counted in user time already
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// plural is "1 worker process" or "2 worker processes".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
