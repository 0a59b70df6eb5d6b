package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// Options tune the engine; zero values take the defaults.
type Options struct {
	// Owner names this process in leases.
	Owner string
	// Lease is how long a worker holds a run it is executing before another
	// process may take it over (extended before every step).
	Lease time.Duration
	// StepTimeout bounds one node execution.
	StepTimeout time.Duration
	// Poll is how often an idle worker looks for due runs.
	Poll time.Duration
	// Workers is how many runs Run works on at once.
	Workers int
	// MaxReplayDepth bounds replays of replays.
	MaxReplayDepth int
	// RetryBackoff is the first wait before retrying a retryable step
	// failure; it doubles each attempt.
	RetryBackoff time.Duration
	Log          *slog.Logger
}

// Engine records and executes runs.
type Engine struct {
	db        *db.DB
	workflows *workflow.Service
	exec      map[workflow.Kind]Executor
	eval      Evaluator
	o         Options
	now       func() time.Time
	wake      chan struct{}
}

// New returns an engine executing nodes with the given executors and
// evaluating configs with eval (nil leaves configs as written).
func New(d *db.DB, workflows *workflow.Service, exec map[workflow.Kind]Executor, eval Evaluator, o Options) *Engine {
	if o.Owner == "" {
		o.Owner = db.NewID()
	}
	if o.Lease == 0 {
		o.Lease = 2 * time.Minute
	}
	if o.StepTimeout == 0 {
		o.StepTimeout = 5 * time.Minute
	}
	if o.Poll == 0 {
		o.Poll = time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 32
	}
	if o.MaxReplayDepth == 0 {
		o.MaxReplayDepth = 5
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Engine{db: d, workflows: workflows, exec: exec, eval: eval, o: o, now: db.Now, wake: make(chan struct{}, 1)}
}

// Wake nudges idle workers of this process to look for due runs at once.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// runsChannel is the PostgreSQL notification channel that wakes idle
// workers of every process when a run becomes due.
const runsChannel = "taskjuice_runs"

// notify wakes this process's workers and, on PostgreSQL, every other
// process's.
func (e *Engine) notify(ctx context.Context) {
	e.Wake()
	if err := e.db.Notify(context.WithoutCancel(ctx), runsChannel); err != nil {
		e.o.Log.Warn("notify workers", "err", err)
	}
}

// ErrNotDispatching refuses a run for a workflow with no live version.
var ErrNotDispatching = apperr.Conflict("not_published", "", "This workflow is not published, so it cannot start runs. Publish it first.")

// StartRun records a run of the workflow's active version with the trigger
// payload, durably, and returns its id. A dedupKey makes the start
// idempotent: the same key returns the run it started before.
func (e *Engine) StartRun(ctx context.Context, workflowID string, payload json.RawMessage, source, dedupKey string) (string, error) {
	live, ok, err := e.workflows.Live(ctx, workflowID)
	if err != nil {
		return "", err
	}
	if !ok || !live.Status.Dispatching() {
		return "", ErrNotDispatching
	}
	if err := e.breaker(ctx, live); err != nil {
		return "", err
	}
	return e.start(ctx, live, payload, source, dedupKey, origin{})
}

// MsgBreakerTripped is the answer once the throughput breaker has paused a
// workflow.
const MsgBreakerTripped = "This workflow started more runs in the last minute than its limit allows, so it was paused for safety. Clear the safety pause on the workflow page to start runs again."

// breaker trips the throughput breaker of a workflow with a limit when the
// last minute already holds that many runs.
func (e *Engine) breaker(ctx context.Context, live workflow.Live) error {
	if live.MaxRunsPerMinute <= 0 {
		return nil
	}
	var n int
	if err := e.db.Read().QueryRowContext(ctx, `SELECT count(*) FROM runs WHERE workflow_id = $1 AND created_at > $2 AND parent_run_id IS NULL`,
		live.WorkflowID, e.now().Add(-time.Minute)).Scan(&n); err != nil {
		return fmt.Errorf("count recent runs: %w", err)
	}
	if n < live.MaxRunsPerMinute {
		return nil
	}
	if tripped, err := e.workflows.TripBreaker(ctx, live.WorkflowID); err != nil {
		return err
	} else if tripped {
		e.o.Log.Warn("throughput breaker tripped", "workflow", live.WorkflowID, "runs_last_minute", n, "limit", live.MaxRunsPerMinute)
	}
	return apperr.TooMany(MsgBreakerTripped)
}

// origin says where a run comes from besides its trigger: a replay of an
// earlier run, or a Call Workflow step of a parent run.
type origin struct {
	replayOf   string
	depth      int
	parentRun  string
	parentNode string
}

func (e *Engine) start(ctx context.Context, live workflow.Live, payload json.RawMessage, source, dedupKey string, o origin) (string, error) {
	g := live.Graph
	if len(payload) == 0 {
		payload = json.RawMessage(`{}`)
	}
	if !json.Valid(payload) {
		return "", apperr.BadRequest("invalid_payload", "The trigger payload must be JSON")
	}
	if g.Trigger == nil {
		return "", errors.New("start run: graph has no trigger")
	}
	frontier, _ := json.Marshal(g.Successors(g.Trigger.ID, ""))
	now := e.now()
	id := db.NewID()
	kind := KindWorkflow
	if live.Type == workflow.TypeAgent {
		kind = KindAgent
	}
	_, err := e.db.Write().ExecContext(ctx, `INSERT INTO runs (id, workspace_id, workflow_id, version_id, kind, status, source, trigger_payload,
		dedup_key, replay_of, replay_depth, parent_run_id, parent_node_id, frontier, due_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $14)`,
		id, live.WorkspaceID, live.WorkflowID, live.VersionID, kind, source, string(payload), db.NullString(dedupKey), db.NullString(o.replayOf), o.depth,
		db.NullString(o.parentRun), db.NullString(o.parentNode), string(frontier), now)
	if db.IsUniqueViolation(err) && dedupKey != "" {
		var existing string
		if err := e.db.Read().QueryRowContext(ctx, `SELECT id FROM runs WHERE workflow_id = $1 AND dedup_key = $2`, live.WorkflowID, dedupKey).Scan(&existing); err != nil {
			return "", fmt.Errorf("read deduplicated run: %w", err)
		}
		return existing, nil
	}
	if err != nil {
		return "", fmt.Errorf("record run: %w", err)
	}
	e.notify(ctx)
	return id, nil
}

// Run works on due runs until ctx ends. On PostgreSQL it also listens for
// other processes' notices, so an idle worker starts a new run at once
// rather than at its next poll.
func (e *Engine) Run(ctx context.Context) error {
	lctx, stopListening := context.WithCancel(ctx)
	listening := make(chan struct{})
	go func() {
		defer close(listening)
		_ = e.db.Listen(lctx, runsChannel, e.Wake)
	}()
	defer func() { stopListening(); <-listening }()
	var wg sync.WaitGroup
	for range e.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.workLoop(ctx)
		}()
	}
	wg.Wait()
	return nil
}

func (e *Engine) workLoop(ctx context.Context) error {
	t := time.NewTicker(e.o.Poll)
	defer t.Stop()
	for {
		for {
			did, err := e.Work(ctx)
			if err != nil && ctx.Err() == nil {
				e.o.Log.Warn("engine", "err", err)
			}
			if !did || ctx.Err() != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-e.wake:
		}
	}
}

// Work claims one due run and takes it as far as it goes (finished, parked,
// or due again later). It reports whether it found one.
func (e *Engine) Work(ctx context.Context) (bool, error) {
	id, err := e.claim(ctx)
	if err != nil || id == "" {
		return false, err
	}
	return true, e.advance(ctx, id)
}

func (e *Engine) claim(ctx context.Context) (string, error) {
	now := e.now()
	rows, err := e.db.Read().QueryContext(ctx, `SELECT id FROM runs WHERE due_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
		ORDER BY due_at LIMIT 8`, now)
	if err != nil {
		return "", fmt.Errorf("find due runs: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return "", err
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		// Compare-and-set: of several processes, one takes the lease.
		res, err := e.db.Write().ExecContext(ctx, `UPDATE runs SET lease_owner = $1, lease_until = $2
			WHERE id = $3 AND due_at <= $4 AND (lease_until IS NULL OR lease_until < $4)`, e.o.Owner, now.Add(e.o.Lease), id, now)
		if err != nil {
			return "", fmt.Errorf("claim run: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return id, nil
		}
	}
	return "", nil
}

// state is a run as the worker needs it.
type state struct {
	Run
	frontier []string
}

func (e *Engine) load(ctx context.Context, q db.Querier, id string) (state, error) {
	var st state
	var status, payload, frontier string
	var errJSON, pausedConn, replayOf sql.NullString
	var started, finished sql.NullTime
	err := q.QueryRowContext(ctx, `SELECT id, workspace_id, workflow_id, version_id, kind, status, source, trigger_payload, pause_reason,
		paused_connection_id, wait_reason, error, frontier, steps_done, replay_of, created_at, started_at, finished_at FROM runs WHERE id = $1`, id).
		Scan(&st.ID, &st.WorkspaceID, &st.WorkflowID, &st.VersionID, &st.Kind, &status, &st.Source, &payload, &st.PauseReason,
			&pausedConn, &st.WaitReason, &errJSON, &frontier, &st.StepsDone, &replayOf, &st.CreatedAt, &started, &finished)
	if errors.Is(err, sql.ErrNoRows) {
		return state{}, apperr.ErrNotFound
	}
	if err != nil {
		return state{}, fmt.Errorf("read run: %w", err)
	}
	st.Status, st.TriggerPayload = Status(status), json.RawMessage(payload)
	st.PausedConnectionID, st.ReplayOf = pausedConn.String, replayOf.String
	st.CreatedAt = st.CreatedAt.UTC()
	st.StartedAt, st.FinishedAt = timePtr(started), timePtr(finished)
	if errJSON.Valid {
		st.Error = &StepError{}
		_ = json.Unmarshal([]byte(errJSON.String), st.Error)
	}
	if err := json.Unmarshal([]byte(frontier), &st.frontier); err != nil {
		return state{}, fmt.Errorf("decode frontier: %w", err)
	}
	return st, nil
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}
