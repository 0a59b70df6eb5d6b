package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/db"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// "bench engine --processes N": the runs are recorded by this process, and
// executed by N worker processes ("bench engine-worker", this same binary)
// sharing the one database, each with the engine's normal claim loop. Then
// the database and the workers' own records are checked: every run
// completed once, every step recorded and executed once, no run finished
// by two processes.

// errSQLiteProcesses refuses several processes on SQLite.
var errSQLiteProcesses = errors.New("--processes above 1 needs PostgreSQL (--database-url postgres://…): SQLite is for a single process (it has one writer at a time), so several would only wait on each other")

// benchProcesses runs the bench with f.processes worker processes.
func benchProcesses(ctx context.Context, d *db.DB, wfs *workflow.Service, ws account.Workspace, eng *engine.Engine, f benchEngineFlags, e env) error {
	out := e.stdout
	wf, err := publishChain(ctx, wfs, ws, f.steps)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := eng.SeedRuns(ctx, wf, f.runs, false, func(i int) string { return fmt.Sprintf(`{"n": 0, "run": %d}`, i) }); err != nil {
		return err
	}
	if err := analyze(ctx, d); err != nil {
		return err
	}
	fmt.Fprintf(out, "recorded %d runs of a chain of %d Transform steps, all due: %s\n", f.runs, f.steps, round(time.Since(start)))

	if err := warnConnections(ctx, d, f.processes, out); err != nil {
		return err
	}
	app := fmt.Sprintf("taskjuice-bench-%d", os.Getpid())
	workers, err := startFleet(ctx, d, f, app)
	defer workers.kill()
	if err != nil {
		return err
	}
	m, err := workers.measure(ctx, d, app)
	if err != nil {
		return err
	}
	chk, err := checkProcesses(ctx, d, wf, f, workers.reports)
	if err != nil {
		return err
	}
	workers.printStderr(e.stderr)
	return reportProcesses(out, d, f, m, chk, workers.reports)
}

// poolSize is the most connections one process opens to PostgreSQL (the
// pool in internal/db).
const poolSize = 20

// warnConnections says so when the workers may need more connections than
// the PostgreSQL server has free: past its max_connections, the workers'
// statements fail with "too many clients" and are retried.
func warnConnections(ctx context.Context, d *db.DB, processes int, out io.Writer) error {
	if d.Dialect() != db.Postgres {
		return nil
	}
	var limit, reserved, used int
	err := d.Read().QueryRowContext(ctx, `SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int,
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')`).Scan(&limit, &reserved, &used)
	if err != nil {
		return fmt.Errorf("read the connection limit: %w", err)
	}
	if free := limit - reserved - used; processes*poolSize > free {
		fmt.Fprintf(out, "warning: %d worker processes may open %d connections, and the server has %d free (max_connections %d, %d reserved, %d in use)\n",
			processes, processes*poolSize, free, limit, reserved, used)
	}
	return nil
}

// workerProc is one worker process, seen from the parent.
type workerProc struct {
	owner  string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // its standard output, line by line
	stderr tailBuffer
	exited chan struct{}
	err    error // once exited is closed
}

// fleet is the worker processes of one bench.
type fleet struct {
	procs   []*workerProc
	reports []workerReport
}

// startFleet starts the workers and waits until each is ready.
func startFleet(ctx context.Context, d *db.DB, f benchEngineFlags, app string) (*fleet, error) {
	fl := &fleet{}
	bin := f.workerBinary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return fl, fmt.Errorf("find this binary to start the workers: %w", err)
		}
	}
	for i := range f.processes {
		owner := fmt.Sprintf("bench-worker-%d", i+1)
		dsn, err := workerDSN(ctx, d, f.databaseURL, app+"-"+owner)
		if err != nil {
			return fl, err
		}
		w, err := startWorker(ctx, bin, owner, dsn, f.concurrency)
		if err != nil {
			return fl, err
		}
		fl.procs = append(fl.procs, w)
	}
	for _, w := range fl.procs {
		if err := w.expect(ctx, "ready"); err != nil {
			return fl, err
		}
	}
	return fl, nil
}

func startWorker(ctx context.Context, bin, owner, dsn string, concurrency int) (*workerProc, error) {
	w := &workerProc{owner: owner, lines: make(chan string, 4), exited: make(chan struct{})}
	w.cmd = exec.CommandContext(ctx, bin, "bench", "engine-worker", "--owner", owner, "--concurrency", strconv.Itoa(concurrency))
	// In the environment, not the arguments: a password in the URL stays
	// out of every other user's process list.
	w.cmd.Env = append(os.Environ(), workerDatabaseEnv+"="+dsn)
	w.cmd.Stderr = &w.stderr
	var err error
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker %s (%s): %w", owner, bin, err)
	}
	go func() {
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				w.lines <- strings.TrimSuffix(line, "\n")
			}
			if err != nil {
				break
			}
		}
		close(w.lines)
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

// next returns the worker's next line of output.
func (w *workerProc) next(ctx context.Context) (string, error) {
	select {
	case line, ok := <-w.lines:
		if !ok {
			<-w.exited
			return "", fmt.Errorf("worker %s exited (%v):\n%s", w.owner, w.err, w.stderr.String())
		}
		return line, nil
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for worker %s: %w", w.owner, ctx.Err())
	}
}

func (w *workerProc) expect(ctx context.Context, want string) error {
	line, err := w.next(ctx)
	if err == nil && line != want {
		err = fmt.Errorf("worker %s said %q, want %q", w.owner, line, want)
	}
	return err
}

// kill ends the workers still running (after a failure).
func (fl *fleet) kill() {
	for _, w := range fl.procs {
		select {
		case <-w.exited:
		default:
			_ = w.cmd.Process.Kill()
			for range w.lines {
			}
			<-w.exited
		}
	}
}

// printStderr passes on what the workers logged (warnings).
func (fl *fleet) printStderr(stderr io.Writer) {
	for _, w := range fl.procs {
		if s := w.stderr.String(); s != "" {
			fmt.Fprintf(stderr, "worker %s:\n%s", w.owner, s)
		}
	}
}

// fleetFigures is what the parent measured around the workers' work.
type fleetFigures struct {
	seconds float64
	// backendCPU is the CPU time of the PostgreSQL backends serving the
	// workers (negative: not measurable from here), machineBusy the share
	// of every core of this machine busy meanwhile, whoever used it.
	backendCPU  time.Duration
	machineBusy float64
	// connections is how many PostgreSQL connections the workers held at
	// the end (-1 on SQLite).
	connections int
	// parentCPU is this process's CPU time meanwhile (recording nothing,
	// only looking for due runs).
	parentCPU time.Duration
	// server is what the whole PostgreSQL server counted from "go" to the
	// workers' exit (every database's work, not only the bench's; the
	// commits are the bench database's); ok false on SQLite.
	server serverStats
}

// serverStats are PostgreSQL's own counters: WAL written and flushed, and
// transactions committed in the bench's database.
type serverStats struct {
	ok                          bool
	walBytes, walSyncs, commits int64
}

func readServerStats(ctx context.Context, d *db.DB) serverStats {
	var s serverStats
	if d.Dialect() != db.Postgres {
		return s
	}
	err := d.Read().QueryRowContext(ctx, `SELECT w.wal_bytes::bigint, w.wal_sync, d.xact_commit FROM pg_stat_wal w, pg_stat_database d
		WHERE d.datname = current_database()`).Scan(&s.walBytes, &s.walSyncs, &s.commits)
	s.ok = err == nil
	return s
}

func (s serverStats) since(before serverStats) serverStats {
	return serverStats{ok: s.ok && before.ok, walBytes: s.walBytes - before.walBytes, walSyncs: s.walSyncs - before.walSyncs, commits: s.commits - before.commits}
}

// measure tells every worker to go, waits until no run is due any more,
// stops the workers and collects their reports.
func (fl *fleet) measure(ctx context.Context, d *db.DB, app string) (fleetFigures, error) {
	m := fleetFigures{connections: -1}
	cpu0, _ := backendCPU(ctx, d, app)
	busy0, total0 := machineCPU()
	server0, parent0 := readServerStats(ctx, d), processCPU()
	start := time.Now()
	for _, w := range fl.procs {
		if _, err := io.WriteString(w.stdin, "go\n"); err != nil {
			return m, fmt.Errorf("tell worker %s to go: %w", w.owner, err)
		}
	}
	if err := fl.waitDrained(ctx, d); err != nil {
		return m, err
	}
	m.seconds = time.Since(start).Seconds()
	m.parentCPU = processCPU() - parent0
	busy1, total1 := machineCPU()
	if total1 > total0 {
		m.machineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	m.backendCPU = -1
	if cpu1, ok := backendCPU(ctx, d, app); ok {
		m.backendCPU = 0
		for pid, t := range cpu1 {
			m.backendCPU += t - cpu0[pid]
		}
	}
	if d.Dialect() == db.Postgres {
		if err := d.Read().QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1`, app+"-%").Scan(&m.connections); err != nil {
			return m, fmt.Errorf("count connections: %w", err)
		}
	}
	if err := fl.stop(ctx); err != nil {
		return m, err
	}
	// Read once the workers are gone: a backend passes its counts on to
	// the server's at most once a second, and at its exit.
	m.server = readServerStats(ctx, d).since(server0)
	return m, nil
}

// waitDrained polls until no run is due (every run finished), or a worker
// died.
func (fl *fleet) waitDrained(ctx context.Context, d *db.DB) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var due int
		err := d.Read().QueryRowContext(ctx, `SELECT 1 FROM runs WHERE due_at IS NOT NULL LIMIT 1`).Scan(&due)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("look for runs to finish: %w", err)
		}
		for _, w := range fl.procs {
			select {
			case <-w.exited:
				return fmt.Errorf("worker %s exited before the runs were done (%v):\n%s", w.owner, w.err, w.stderr.String())
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up waiting for the runs: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// stop ends every worker's input, so each stops as serve does, and reads
// its report.
func (fl *fleet) stop(ctx context.Context) error {
	for _, w := range fl.procs {
		w.stdin.Close()
	}
	for _, w := range fl.procs {
		line, err := w.next(ctx)
		if err != nil {
			return err
		}
		var rep workerReport
		if err := json.Unmarshal([]byte(line), &rep); err != nil {
			return fmt.Errorf("worker %s: its report is not JSON: %w", w.owner, err)
		}
		select {
		case <-w.exited:
		case <-ctx.Done():
			return fmt.Errorf("waiting for worker %s to exit: %w", w.owner, ctx.Err())
		}
		if w.err != nil {
			return fmt.Errorf("worker %s: %v\n%s", w.owner, w.err, w.stderr.String())
		}
		fl.reports = append(fl.reports, rep)
	}
	return nil
}

// workerDSN is the database the workers open: the bench's PostgreSQL
// schema, their connections named app so they can be told apart, or the
// bench's SQLite file.
func workerDSN(ctx context.Context, d *db.DB, raw, app string) (string, error) {
	if d.Dialect() != db.Postgres {
		var file string
		if err := d.Read().QueryRowContext(ctx, `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&file); err != nil {
			return "", fmt.Errorf("find the SQLite file: %w", err)
		}
		return file, nil
	}
	var schema string
	if err := d.Read().QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return "", fmt.Errorf("read the bench's schema: %w", err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("database URL: %w", err)
	}
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += "search_path=" + url.QueryEscape(schema) + "&application_name=" + url.QueryEscape(app)
	return u.String(), nil
}

// tailBuffer keeps the last 16 KB written to it, safe for concurrent use.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - 16<<10; over > 0 {
		t.b = slices.Clone(t.b[over:])
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// validateProcesses refuses what --processes cannot be combined with, before
// any database is made.
func (f benchEngineFlags) validateProcesses(backlog bool) error {
	switch {
	case f.processes < 0:
		return errors.New("--processes must not be negative")
	case f.processes == 0:
		return nil
	case f.processes > 1 && !strings.HasPrefix(f.databaseURL, "postgres://") && !strings.HasPrefix(f.databaseURL, "postgresql://"):
		return errSQLiteProcesses
	case backlog || f.duration > 0 || f.cpuProfile != "":
		return errors.New("--processes cannot be combined with --backlog, --duration or --cpuprofile: it waits for every run to finish, to check none was lost or doubled")
	}
	return nil
}
