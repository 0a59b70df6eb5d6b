package engine_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// publishPosts publishes: manual trigger → n posts in a chain (post1 …).
func (c *cluster) publishPosts(n int) string {
	c.t.Helper()
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual}}
	prev := "start"
	for i := 1; i <= n; i++ {
		p := post(fmt.Sprintf("Effect %d", i))
		p.ID = fmt.Sprintf("post%d", i)
		p.Connection = &workflow.Binding{ID: c.connID}
		g.Nodes = append(g.Nodes, p)
		g.Edges = append(g.Edges, workflow.Edge{From: prev, To: p.ID})
		prev = p.ID
	}
	return c.publishGraph("Three effects", &g)
}

// verifyOnce checks that every one of the workflow's n runs completed and
// that the app received each of its effects exactly once: one request per
// effect's idempotency key, as many keys as effects.
func (c *cluster) verifyOnce(wf string, runs, effects int) {
	c.t.Helper()
	if got := c.count(wf, engine.StatusCompleted); got != runs {
		c.t.Errorf("completed runs: got %d, want %d (failed %d)", got, runs, c.count(wf, engine.StatusFailed))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	repeated := 0
	for _, n := range c.posts {
		if n > 1 {
			repeated += n - 1
		}
	}
	if repeated != 0 || len(c.posts) != runs*effects {
		c.t.Errorf("effects the app received: %d distinct, %d repeated; want %d distinct, 0 repeated", len(c.posts), repeated, runs*effects)
	}
	if got := c.sb.Stats().MessagesPosted; got != runs*effects {
		c.t.Errorf("messages posted: got %d, want %d", got, runs*effects)
	}
}

// TestGracefulRestartsRepeatNoEffect: 300 runs of three posts each, while
// the engine process is stopped with SIGTERM three times in the middle of
// the work (with the default two-minute lease) and started again. Each stop
// finishes the posts in flight, records them and gives the runs up, so the
// next process goes on at once: no effect is repeated, no run is lost.
func TestGracefulRestartsRepeatNoEffect(t *testing.T) {
	const runs, effects = 300, 3
	sharedDatabases(t, func(t *testing.T, dsn string) {
		c := newCluster(t, dsn)
		c.postDelay = 30 * time.Millisecond
		wf := c.publishPosts(effects)
		c.startRuns(wf, runs)
		begin := time.Now()
		posted := func() int {
			c.mu.Lock()
			defer c.mu.Unlock()
			return len(c.posts)
		}
		for i, share := range []int{20, 45, 70} {
			w := c.startWorker(fmt.Sprintf("w%d", i+1), 2*time.Minute)
			want := runs * effects * share / 100
			waitFor(t, 2*time.Minute, fmt.Sprintf("%d effects", want), func() bool { return posted() >= want })
			stopped := time.Now()
			w.stop()
			t.Logf("SIGTERM %d with %d of %d effects made: stopped in %s", i+1, posted(), runs*effects, time.Since(stopped).Round(time.Millisecond))
			if n := c.leased(wf); n != 0 {
				t.Errorf("after SIGTERM %d: %d runs still leased, want every run given up", i+1, n)
			}
		}
		last := c.startWorker("w4", 2*time.Minute)
		waitFor(t, 2*time.Minute, "every run to finish", func() bool { return c.terminal(wf) == runs })
		last.stop()
		t.Logf("%d runs of %d effects in %s with 3 graceful restarts", runs, effects, time.Since(begin).Round(time.Millisecond))
		c.verifyOnce(wf, runs, effects)
	})
}

// leased counts the workflow's runs some process holds a lease on.
func (c *cluster) leased(wf string) int {
	c.t.Helper()
	var n int
	err := c.d.Read().QueryRowContext(c.ctx, `SELECT COUNT(*) FROM runs WHERE workflow_id = $1 AND lease_until IS NOT NULL`, wf).Scan(&n)
	must(c.t, err)
	return n
}

// leasedBy lists the runs whose lease a process holds.
func (c *cluster) leasedBy(owner string) []string {
	c.t.Helper()
	rows, err := c.d.Read().QueryContext(c.ctx, `SELECT id FROM runs WHERE lease_owner LIKE $1`, owner+"#%")
	must(c.t, err)
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		must(c.t, rows.Scan(&id))
		ids = append(ids, id)
	}
	must(c.t, rows.Err())
	return ids
}

// movingAgain reports whether none of the runs is still held by a lease of
// owner and each has been claimed again (or finished) since.
func (c *cluster) movingAgain(owner string, ids []string) bool {
	for _, id := range ids {
		var lease string
		var status engine.Status
		err := c.d.Read().QueryRowContext(c.ctx, `SELECT lease_owner, status FROM runs WHERE id = $1`, id).Scan(&lease, &status)
		must(c.t, err)
		if strings.HasPrefix(lease, owner+"#") || (lease == "" && !status.Terminal()) {
			return false
		}
	}
	return true
}

// recoveryTarget is the target for runs in flight to move again
// after a process is killed; the lease (two minutes) is far longer.
const recoveryTarget = 10 * time.Second

// checkRecovery checks that the runs in flight at a kill moved again
// within the target, then that every run completes.
func (c *cluster) checkRecovery(how, wf string, runs int, inFlight []string, took time.Duration) {
	c.t.Helper()
	c.t.Logf("%s: %d runs in flight at the kill moved again %s after it", how, len(inFlight), took.Round(time.Millisecond))
	if len(inFlight) == 0 {
		c.t.Fatal("no run was in flight at the kill")
	}
	if took > recoveryTarget {
		c.t.Errorf("runs in flight moved again after %s, want within %s", took, recoveryTarget)
	}
	waitFor(c.t, 2*time.Minute, "every run to finish", func() bool { return c.terminal(wf) == runs })
	if got := c.count(wf, engine.StatusCompleted); got != runs {
		c.t.Errorf("completed runs: got %d, want %d", got, runs)
	}
}

// TestKilledProcessRunsMoveWithinSeconds: with the default two-minute
// lease, the engine process is killed (SIGKILL) with runs in flight. On
// SQLite the restarted process takes every lease over at start; on
// PostgreSQL a second process running beside it sees the heartbeat stop
// and takes the dead one's runs over. Either way every run in flight is
// claimed again within seconds, not after the lease, and all complete.
func TestKilledProcessRunsMoveWithinSeconds(t *testing.T) {
	const runs = 200
	t.Run("sqlite restart", func(t *testing.T) {
		c := newCluster(t, t.TempDir()+"/taskjuice.db")
		c.postDelay = 30 * time.Millisecond
		wf := c.publishPosts(3)
		c.startRuns(wf, runs)
		first := c.startWorker("first", 2*time.Minute)
		waitFor(t, 2*time.Minute, "runs in flight", func() bool { return c.count(wf, engine.StatusCompleted) >= runs/5 })
		first.kill()
		killed := time.Now()
		inFlight := c.leasedBy("first")
		c.startWorker("second", 2*time.Minute)
		waitFor(t, time.Minute, "the runs in flight to move again", func() bool { return c.movingAgain("first", inFlight) })
		c.checkRecovery("SQLite, restart included", wf, runs, inFlight, time.Since(killed))
	})
	t.Run("postgres second process", func(t *testing.T) {
		base := os.Getenv(dbtest.PostgresEnv)
		if base == "" {
			t.Skip(dbtest.PostgresEnv + " not set")
		}
		c := newCluster(t, dbtest.NewPostgresSchema(t, base))
		c.postDelay = 30 * time.Millisecond
		wf := c.publishPosts(3)
		a := c.startWorker("a", 2*time.Minute)
		c.startWorker("b", 2*time.Minute)
		c.startRuns(wf, runs)
		waitFor(t, 2*time.Minute, "runs in flight", func() bool { return c.count(wf, engine.StatusCompleted) >= runs/5 && len(c.leasedBy("a")) > 0 })
		a.kill()
		killed := time.Now()
		inFlight := c.leasedBy("a")
		waitFor(t, time.Minute, "the runs in flight to move again", func() bool { return c.movingAgain("a", inFlight) })
		c.checkRecovery("PostgreSQL, second process", wf, runs, inFlight, time.Since(killed))
	})
}

// TestStopFinishesTheStepInFlight: when Run's context ends, the step being
// executed is let finish and recorded, no further step starts, the run is
// given up (no lease left) and Run returns; a step that outlasts the drain
// timeout is cancelled and later retried as the same attempt, under the
// same idempotency key.
func TestStopFinishesTheStepInFlight(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		entered := make(chan string, 4)
		release := make(chan struct{})
		var mu sync.Mutex
		var keys []string
		slow := func(ctx context.Context, c engine.Call) (engine.Outcome, error) {
			mu.Lock()
			keys = append(keys, c.IdempotencyKey)
			mu.Unlock()
			entered <- c.Node.ID
			select {
			case <-release:
				return engine.Outcome{Output: map[string]any{"ok": true}}, nil
			case <-ctx.Done():
				return engine.Outcome{}, ctx.Err()
			}
		}
		exec := map[workflow.Kind]engine.Executor{workflow.NodeHTTP: slow}
		wf := f.publish([]workflow.Node{
			{ID: "one", Kind: workflow.NodeHTTP, Config: json.RawMessage(`{"method": "GET", "url": "https://example.com/1"}`)},
			{ID: "two", Kind: workflow.NodeHTTP, Config: json.RawMessage(`{"method": "GET", "url": "https://example.com/2"}`)},
		})
		id, err := f.eng.StartRun(f.ctx, wf, nil, "manual", "")
		must(t, err)

		// A stop while "one" runs: "one" finishes and is recorded, "two"
		// does not start, the run is given up.
		eng := engine.New(d, f.wfs, exec, nil, engine.Options{Owner: "stopping", Poll: 10 * time.Millisecond, DrainTimeout: time.Minute})
		ctx, cancel := context.WithCancel(f.ctx)
		done := make(chan error, 1)
		go func() { done <- eng.Run(ctx) }()
		waitStep(t, entered, "one")
		cancel()
		select {
		case <-done:
			t.Fatal("Run returned while its step was still executing")
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		select {
		case err := <-done:
			must(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return once its step finished")
		}
		steps, _ := f.eng.Steps(f.ctx, f.ws.ID, id)
		if len(steps) != 1 || steps[0].NodeID != "one" || steps[0].Status != engine.StepCompleted {
			t.Fatalf("steps after the stop: %+v, want one completed step", steps)
		}
		assertGivenUp(t, d, id)

		// A stop whose step outlasts the drain timeout: cancelled, left as
		// it was, and retried as the same attempt under the same key.
		release = make(chan struct{})
		eng = engine.New(d, f.wfs, exec, nil, engine.Options{Owner: "impatient", Poll: 10 * time.Millisecond, DrainTimeout: 100 * time.Millisecond})
		ctx, cancel = context.WithCancel(f.ctx)
		go func() { done <- eng.Run(ctx) }()
		waitStep(t, entered, "two")
		cancel()
		select {
		case err := <-done:
			must(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after its drain timeout")
		}
		assertGivenUp(t, d, id)
		close(release)
		retry := engine.New(d, f.wfs, exec, nil, engine.Options{Owner: "next"})
		if did, err := retry.Work(f.ctx); err != nil || !did {
			t.Fatalf("the next process found no work (%v, %v), want the interrupted run", did, err)
		}
		waitStep(t, entered, "two")
		if r := f.run(id); r.Status != engine.StatusCompleted {
			t.Fatalf("run: %s, want completed", r.Status)
		}
		steps, _ = f.eng.Steps(f.ctx, f.ws.ID, id)
		mu.Lock()
		defer mu.Unlock()
		if len(steps) != 2 || steps[1].Attempt != 1 || len(keys) != 3 || keys[1] != keys[2] || keys[2] != id+":two" {
			t.Fatalf("steps %+v, keys %q: want step two's one attempt run twice under %q", steps, keys, id+":two")
		}
	})
}

func waitStep(t *testing.T, entered <-chan string, want string) {
	t.Helper()
	select {
	case got := <-entered:
		if got != want {
			t.Fatalf("step %q started, want %q", got, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("step %q never started", want)
	}
}

func assertGivenUp(t *testing.T, d *db.DB, id string) {
	t.Helper()
	var owner string
	var until sql.NullTime
	must(t, d.Read().QueryRowContext(context.Background(), `SELECT lease_owner, lease_until FROM runs WHERE id = $1`, id).Scan(&owner, &until))
	if owner != "" || until.Valid {
		t.Fatalf("lease after the stop: %q until %v, want none", owner, until)
	}
}
