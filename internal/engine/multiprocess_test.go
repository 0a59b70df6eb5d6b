package engine_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

// The durability tests run the engine in separate OS processes: this test
// binary, started again with workerEnv set, builds the engine as serve does
// and works on due runs until it is stopped (SIGTERM) or killed (SIGKILL).
// The test process owns the database's contents, starts the runs, serves
// Sandbox Chat (which must outlive the workers) and checks the outcome.
const workerEnv = "TASKJUICE_TEST_ENGINE_WORKER"

// TestEngineWorkerProcess is the body of a worker process, not a test of
// its own.
func TestEngineWorkerProcess(t *testing.T) {
	if os.Getenv(workerEnv) == "" {
		t.Skip("runs only as a worker process of the durability tests")
	}
	if err := workerMain(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// workerMain prints "ready" once the engine is built, then one line per
// node execution ("exec RUN NODE KEY"), written before the executor runs so
// a killed worker's lines are all there.
func workerMain() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	d, err := db.Open(ctx, os.Getenv("WORKER_DATABASE_URL"))
	if err != nil {
		return err
	}
	defer d.Close()
	key, err := vault.ParseKey(os.Getenv("WORKER_KEY"))
	if err != nil {
		return err
	}
	lease, err := time.ParseDuration(os.Getenv("WORKER_LEASE"))
	if err != nil {
		return err
	}
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: os.Getenv("WORKER_SANDBOX_URL")})
	if err != nil {
		return err
	}
	conns := connection.NewService(d, vault.NewKeyring(key))
	refresher := connection.NewRefresher(conns, connection.CatalogOAuth(cat, "http://127.0.0.1/callback"), connection.RefresherOptions{})
	apps := connection.NewAppClient(conns, refresher, cat, nil)
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	executors := engine.Builtins(cat, apps, nil)
	for kind, run := range executors {
		executors[kind] = func(ctx context.Context, c engine.Call) (engine.Outcome, error) {
			mu.Lock()
			fmt.Fprintf(out, "exec %s %s %s\n", c.Run.ID, c.Node.ID, c.IdempotencyKey)
			out.Flush()
			mu.Unlock()
			return run(ctx, c)
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	eng := engine.New(d, workflow.NewService(d), executors, nil, engine.Options{
		Owner: os.Getenv("WORKER_OWNER"), Lease: lease, Poll: 20 * time.Millisecond, RetryBackoff: 10 * time.Millisecond, Log: log,
	})
	mu.Lock()
	fmt.Fprintln(out, "ready")
	out.Flush()
	mu.Unlock()
	return eng.Run(ctx)
}

// cluster is the test's side: one database shared with worker processes,
// and the Sandbox Chat they post to.
type cluster struct {
	t       *testing.T
	ctx     context.Context
	dsn     string
	d       *db.DB
	keyText string
	sb      *sandbox.Provider
	sbURL   string
	cat     *catalog.Catalog
	ws      account.Workspace
	conns   *connection.Service
	wfs     *workflow.Service
	eng     *engine.Engine
	connID  string

	mu    sync.Mutex
	posts map[string]int // post requests the sandbox received, per idempotency key
	trap  chan string    // when set, the next post is applied but never answered
	// postDelay, when set, makes each post take that long, so that many
	// are in flight at any moment.
	postDelay time.Duration
	done      chan struct{} // closed at cleanup: releases a trapped request
}

// newCluster prepares the database at dsn: an account, a workspace and a
// Sandbox Chat connection holding a real grant.
func newCluster(t *testing.T, dsn string) *cluster {
	t.Helper()
	ctx := context.Background()
	c := &cluster{t: t, ctx: ctx, dsn: dsn, posts: map[string]int{}, done: make(chan struct{})}
	var err error
	c.d, err = db.Open(ctx, dsn)
	must(t, err)
	t.Cleanup(func() { c.d.Close() })
	_, err = c.d.Migrate(ctx)
	must(t, err)

	srv := httptest.NewServer(http.HandlerFunc(c.serveSandbox))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(c.done) }) // runs before srv.Close
	c.sbURL = srv.URL
	c.sb, err = sandbox.New(sandbox.Options{BaseURL: srv.URL, Clients: []sandbox.Client{{ID: "taskjuice", RedirectURIs: []string{"http://127.0.0.1/callback"}}}})
	must(t, err)
	t.Cleanup(func() { _ = c.sb.Close() })
	c.cat, err = catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: srv.URL})
	must(t, err)

	accounts := account.NewService(c.d)
	a, _, err := accounts.CreateAccount(ctx, "Agency", account.NewUser{Email: "o@a.example", Password: "correct horse battery"})
	must(t, err)
	c.ws, err = accounts.CreateWorkspaceForAccount(ctx, a.ID, "Acme", "acme")
	must(t, err)
	key, keyText, err := vault.GenerateKey()
	must(t, err)
	c.keyText = strings.TrimSpace(keyText)
	c.conns = connection.NewService(c.d, vault.NewKeyring(key))
	c.wfs = workflow.NewService(c.d)
	// This engine only starts runs; the workers execute them.
	c.eng = engine.New(c.d, c.wfs, nil, nil, engine.Options{})
	f := &fixture{t: t, ctx: ctx, cat: c.cat}
	conn, err := c.conns.CreateWithCredential(ctx, c.ws, connection.New{AppKey: "sandbox-chat", Label: "Chat", Status: connection.StatusActive},
		connection.Credential{OAuth: connection.FromOAuth2(f.grant("Acme Chat"))}, connection.System)
	must(t, err)
	c.connID = conn.ID
	return c
}

func (c *cluster) serveSandbox(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/messages") {
		c.sb.Handler().ServeHTTP(w, r)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	c.mu.Lock()
	c.posts[key]++
	trap := c.trap
	c.trap = nil
	delay := c.postDelay
	c.mu.Unlock()
	if trap == nil {
		time.Sleep(delay)
		c.sb.Handler().ServeHTTP(w, r)
		return
	}
	// The message is posted, but the worker never hears so: it is killed
	// while it waits, between the app's effect and the step's record.
	c.sb.Handler().ServeHTTP(httptest.NewRecorder(), r)
	trap <- key
	select {
	case <-r.Context().Done():
	case <-c.done:
	}
}

// trapNextPost arms the trap; the channel yields the trapped post's key.
func (c *cluster) trapNextPost() <-chan string {
	ch := make(chan string, 1)
	c.mu.Lock()
	c.trap = ch
	c.mu.Unlock()
	return ch
}

// publish publishes: manual trigger → post a message → transform.
func (c *cluster) publish() string {
	c.t.Helper()
	p := post("Hello from a durable run")
	p.Connection = &workflow.Binding{ID: c.connID}
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual}, Nodes: []workflow.Node{
		p, {ID: "done", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"ok": true}}`)},
	}, Edges: []workflow.Edge{{From: "start", To: "post"}, {From: "post", To: "done"}}}
	return c.publishGraph("Durable", &g)
}

// publishGraph creates and publishes a workflow of graph g.
func (c *cluster) publishGraph(name string, g *workflow.Graph) string {
	c.t.Helper()
	w, err := c.wfs.Create(c.ctx, c.ws, name, "", g, "")
	must(c.t, err)
	checks := workflow.Checks{Apps: c.cat, Connection: func(id string) (string, string, bool) {
		conn, err := c.conns.Get(c.ctx, c.ws, id)
		return conn.AppKey, string(conn.Status), err == nil
	}}
	_, err = c.wfs.Publish(c.ctx, c.ws, w.ID, "", checks)
	var ce *workflow.CompileError
	if errors.As(err, &ce) {
		c.t.Fatalf("publish: %v", ce.Problems)
	}
	must(c.t, err)
	return w.ID
}

func (c *cluster) startRuns(wf string, n int) {
	c.t.Helper()
	for i := range n {
		_, err := c.eng.StartRun(c.ctx, wf, json.RawMessage(fmt.Sprintf(`{"n": %d}`, i)), "manual", "")
		must(c.t, err)
	}
}

// count counts the workflow's runs with one of the statuses.
func (c *cluster) count(wf string, statuses ...engine.Status) int {
	c.t.Helper()
	in := make([]string, len(statuses))
	for i, s := range statuses {
		in[i] = "'" + string(s) + "'"
	}
	var n int
	err := c.d.Read().QueryRowContext(c.ctx, `SELECT COUNT(*) FROM runs WHERE workflow_id = $1 AND status IN (`+strings.Join(in, ", ")+`)`, wf).Scan(&n)
	must(c.t, err)
	return n
}

func (c *cluster) terminal(wf string) int {
	return c.count(wf, engine.StatusCompleted, engine.StatusFailed, engine.StatusCancelled)
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// worker is one engine process.
type worker struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	out    lockedBuffer
	errOut lockedBuffer
	exited chan struct{}
	err    error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (c *cluster) startWorker(name string, lease time.Duration) *worker {
	c.t.Helper()
	w := &worker{t: c.t, name: name, exited: make(chan struct{})}
	w.cmd = exec.Command(os.Args[0], "-test.run=^TestEngineWorkerProcess$", "-test.timeout=5m")
	w.cmd.Env = append(os.Environ(), workerEnv+"=1", "WORKER_DATABASE_URL="+c.dsn, "WORKER_KEY="+c.keyText,
		"WORKER_SANDBOX_URL="+c.sbURL, "WORKER_OWNER="+name, "WORKER_LEASE="+lease.String())
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.errOut
	must(c.t, w.cmd.Start())
	go func() {
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	c.t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			_ = w.cmd.Process.Kill()
			<-w.exited
		}
		if c.t.Failed() {
			if s := w.errOut.String(); s != "" {
				c.t.Logf("%s stderr:\n%s", name, tail(s, 4000))
			}
		}
	})
	waitFor(c.t, time.Minute, name+" to start", func() bool {
		select {
		case <-w.exited:
			c.t.Fatalf("%s exited at start: %v\n%s", name, w.err, tail(w.errOut.String(), 4000))
		default:
		}
		return strings.Contains(w.out.String(), "ready\n")
	})
	return w
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// kill ends the worker with SIGKILL: no deferred code, no lease released.
func (w *worker) kill() {
	w.t.Helper()
	must(w.t, w.cmd.Process.Kill())
	<-w.exited
}

// stop ends the worker with SIGTERM and expects a clean exit.
func (w *worker) stop() {
	w.t.Helper()
	must(w.t, w.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-w.exited:
	case <-time.After(time.Minute):
		w.t.Fatalf("%s did not stop within a minute of SIGTERM", w.name)
	}
	if w.err != nil {
		w.t.Fatalf("%s: %v\n%s", w.name, w.err, tail(w.errOut.String(), 4000))
	}
}

// executions lists the worker's node executions as "run node" → keys.
func (w *worker) executions() map[string][]string {
	out := map[string][]string{}
	for line := range strings.Lines(w.out.String()) {
		f := strings.Fields(line)
		if len(f) == 4 && f[0] == "exec" {
			out[f[1]+" "+f[2]] = append(out[f[1]+" "+f[2]], f[3])
		}
	}
	return out
}

// runsOf counts the distinct runs the worker executed a step of.
func (w *worker) runsOf() int {
	seen := map[string]bool{}
	for k := range w.executions() {
		seen[strings.Fields(k)[0]] = true
	}
	return len(seen)
}

// verify checks that all n runs of wf completed, each with exactly one
// completed first attempt of each step, and that each posted exactly one
// message: as many messages as runs, each run's step naming its own.
func (c *cluster) verify(wf string, n int) {
	c.t.Helper()
	if got := c.count(wf, engine.StatusCompleted); got != n {
		c.t.Errorf("completed runs: got %d, want %d (failed %d, other %d)", got, n,
			c.count(wf, engine.StatusFailed), n-got-c.count(wf, engine.StatusFailed))
	}
	var notTwo int
	err := c.d.Read().QueryRowContext(c.ctx, `SELECT COUNT(*) FROM runs WHERE workflow_id = $1 AND steps_done <> 2`, wf).Scan(&notTwo)
	must(c.t, err)
	if notTwo != 0 {
		c.t.Errorf("runs whose steps_done is not 2: %d, want 0", notTwo)
	}
	rows, err := c.d.Read().QueryContext(c.ctx, `SELECT s.run_id, s.node_id, s.attempt, s.status, COALESCE(s.idempotency_key, s.run_id || ':' || s.node_id), COALESCE(s.output, '')
		FROM run_steps s JOIN runs r ON r.id = s.run_id WHERE r.workflow_id = $1`, wf)
	must(c.t, err)
	defer rows.Close()
	steps := map[string]int{}
	messages := map[string]string{} // message id → run
	keys := map[string]bool{}
	var bad []string
	for rows.Next() {
		var run, node, status, key, output string
		var attempt int
		must(c.t, rows.Scan(&run, &node, &attempt, &status, &key, &output))
		steps[run+" "+node]++
		if attempt != 1 || status != "completed" {
			bad = append(bad, fmt.Sprintf("%s %s: attempt %d %s", run, node, attempt, status))
		}
		if node != "post" {
			continue
		}
		keys[key] = true
		var out struct {
			Message struct {
				ID string `json:"id"`
			} `json:"message"`
		}
		_ = json.Unmarshal([]byte(output), &out)
		if other, dup := messages[out.Message.ID]; dup || out.Message.ID == "" {
			bad = append(bad, fmt.Sprintf("%s post: message %q (also run %s)", run, out.Message.ID, other))
		}
		messages[out.Message.ID] = run
	}
	must(c.t, rows.Err())
	if len(bad) > 0 {
		c.t.Errorf("%d unexpected steps, for example %v", len(bad), bad[:min(len(bad), 5)])
	}
	if len(steps) != 2*n {
		c.t.Errorf("distinct (run, step) pairs: got %d, want %d", len(steps), 2*n)
	}
	for k, v := range steps {
		if v != 1 {
			c.t.Errorf("%s: %d step rows, want 1", k, v)
			break
		}
	}
	if len(messages) != n {
		c.t.Errorf("distinct messages named by the runs' post steps: got %d, want %d", len(messages), n)
	}
	if got := c.sb.Stats().MessagesPosted; got != n {
		c.t.Errorf("messages the sandbox posted: got %d, want %d (one per run)", got, n)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.posts) != n {
		c.t.Errorf("idempotency keys the sandbox received: got %d, want %d", len(c.posts), n)
	}
	for k := range c.posts {
		if !keys[k] {
			c.t.Errorf("the sandbox received a post under key %q, which no step recorded", k)
			break
		}
	}
}

// sharedDatabases runs fn on a SQLite file and, when configured, on a
// PostgreSQL schema, each reachable by several processes through its dsn.
func sharedDatabases(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "taskjuice.db")) })
	base := os.Getenv(dbtest.PostgresEnv)
	if base == "" {
		return
	}
	t.Run("postgres", func(t *testing.T) { fn(t, dbtest.NewPostgresSchema(t, base)) })
}

// TestCrashMidFlight: 500 runs; the engine process is killed with SIGKILL
// after some but not all have completed, at the worst moment — its post was
// applied at the sandbox, the step not yet recorded. A second process takes
// over once the dead one's lease has lapsed. Every run completes, and every
// run's message is posted exactly once: the interrupted step is retried
// under the same idempotency key and the sandbox answers with the message
// it already posted.
func TestCrashMidFlight(t *testing.T) {
	const runs = 500
	sharedDatabases(t, func(t *testing.T, dsn string) {
		c := newCluster(t, dsn)
		wf := c.publish()
		c.startRuns(wf, runs)
		begin := time.Now()

		first := c.startWorker("first", 2*time.Second)
		waitFor(t, 2*time.Minute, fmt.Sprintf("%d completed runs", runs/5), func() bool { return c.count(wf, engine.StatusCompleted) >= runs/5 })
		trapped := c.trapNextPost()
		var key string
		select {
		case key = <-trapped:
		case <-time.After(time.Minute):
			t.Fatal("no post reached the sandbox within a minute")
		}
		completed := c.count(wf, engine.StatusCompleted)
		if completed >= runs*4/5 {
			t.Fatalf("%d of %d runs completed before the kill, want at most 80%%", completed, runs)
		}
		first.kill()
		t.Logf("killed the first process with %d of %d runs completed, mid-post under key %s", completed, runs, key)

		second := c.startWorker("second", 2*time.Second)
		waitFor(t, 2*time.Minute, "every run to finish", func() bool { return c.terminal(wf) == runs })
		second.stop()
		t.Logf("%d runs finished in %s: %d advanced by the first process, %d by the second",
			runs, time.Since(begin).Round(time.Millisecond), first.runsOf(), second.runsOf())

		c.verify(wf, runs)
		c.mu.Lock()
		resent := c.posts[key]
		c.mu.Unlock()
		if resent != 2 {
			t.Errorf("posts under the interrupted step's key: got %d, want 2 (the killed attempt and its retry)", resent)
		}
		run, _, _ := strings.Cut(key, ":")
		if got := second.executions()[run+" post"]; len(got) != 1 || got[0] != key {
			t.Errorf("the second process ran the interrupted post with keys %v, want [%s]", got, key)
		}
	})
}

// TestTwoProcessesShareTheWork: two engine processes on one PostgreSQL
// database, 2,000 runs. Each run is executed exactly once — one execution
// of each step, by one process — and both processes take a fair share.
// SQLite is for a single process, so this runs on PostgreSQL only.
func TestTwoProcessesShareTheWork(t *testing.T) {
	base := os.Getenv(dbtest.PostgresEnv)
	if base == "" {
		t.Skip(dbtest.PostgresEnv + " not set")
	}
	const runs = 2000
	c := newCluster(t, dbtest.NewPostgresSchema(t, base))
	wf := c.publish()
	a := c.startWorker("a", 30*time.Second)
	b := c.startWorker("b", 30*time.Second)
	begin := time.Now()
	c.startRuns(wf, runs)
	waitFor(t, 4*time.Minute, "every run to finish", func() bool { return c.terminal(wf) == runs })
	elapsed := time.Since(begin)
	a.stop()
	b.stop()

	c.verify(wf, runs)
	ea, eb := a.executions(), b.executions()
	for _, e := range []map[string][]string{ea, eb} {
		for k, keys := range e {
			if len(keys) != 1 {
				t.Fatalf("%s executed %d times in one process, want once", k, len(keys))
			}
		}
	}
	for k := range ea {
		if _, twice := eb[k]; twice {
			t.Fatalf("%s executed by both processes, want by one", k)
		}
	}
	if got := len(ea) + len(eb); got != 2*runs {
		t.Errorf("step executions: got %d, want %d", got, 2*runs)
	}
	na, nb := a.runsOf(), b.runsOf()
	t.Logf("%d runs in %s: %d by one process, %d by the other", runs, elapsed.Round(time.Millisecond), na, nb)
	if na < runs/5 || nb < runs/5 {
		t.Errorf("runs per process: %d and %d, want each at least %d", na, nb, runs/5)
	}
}
