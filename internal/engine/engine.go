package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/workflow"
)

// Options tune the engine; zero values take the defaults.
type Options struct {
	// Owner names this process in leases.
	Owner string
	// Lease is how long a worker holds a run it is executing before another
	// process may take it over (extended with every step, and while a long
	// step runs).
	Lease time.Duration
	// StepTimeout bounds one node execution.
	StepTimeout time.Duration
	// Poll is how often an idle worker looks for due runs.
	Poll time.Duration
	// Workers is how many runs Run works on at once (default 32).
	Workers int
	// MaxReplayDepth bounds replays of replays.
	MaxReplayDepth int
	// RetryBackoff is the first wait before retrying a retryable step
	// failure; it doubles each attempt.
	RetryBackoff time.Duration
	// DrainTimeout bounds a graceful stop: once Run's context ends, steps
	// already executing get this long to finish and be recorded (default
	// 30 s) before they are cancelled.
	DrainTimeout time.Duration
	// Heartbeat is how often a running engine records that it is alive and
	// looks for processes that are not (default 1 s); HeartbeatTimeout is
	// how old a heartbeat may be before the process is taken for dead and
	// its runs are taken over (default 5 s).
	Heartbeat        time.Duration
	HeartbeatTimeout time.Duration
	// Now is the clock (default db.Now): due times, leases and heartbeats
	// are read through it, so tests can move time instead of sleeping.
	Now func() time.Time
	Log *slog.Logger
	// Observer hears of runs started and finished and steps executed
	// (default: nobody).
	Observer Observer
	// BaseURL is the server's public address, for the run links in an
	// error workflow's payload.
	BaseURL string
	// Failures hears of each failed run in the transaction that records
	// it (the failure alerts); nil: nobody.
	Failures FailureHook
}

// FailureHook is told of a failed run inside the transaction recording
// the failure, with the run's error code and message.
type FailureHook interface {
	RunFailed(ctx context.Context, tx db.Querier, runID, code, message string) error
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
	// claims numbers lease tokens.
	claims atomic.Uint64
	// claimCount counts the claims and what they found (ClaimStats).
	claimCount claimCounter
	// commits gathers the steps of several runs into one transaction,
	// starts the new runs of concurrent StartRun calls.
	commits committer
	// longestBatch is the longest pruning transaction of the last pass
	// (nanoseconds), for its report.
	longestBatch atomic.Int64
	starts       starter
	stmts        stmtCache
	graphs       graphCache
	// models makes AI steps' and agents' model calls (UseModels).
	models Models
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
	if o.Observer == nil {
		o.Observer = noObserver{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = time.Second
	}
	if o.HeartbeatTimeout == 0 {
		o.HeartbeatTimeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = db.Now
	}
	return &Engine{db: d, workflows: workflows, exec: exec, eval: eval, o: o, now: o.Now, wake: make(chan struct{}, 1)}
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
	r, err := e.newStart(live, payload, source, dedupKey, origin{})
	if err != nil {
		return "", err
	}
	return e.groupStart(ctx, r)
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
	r, err := e.newStart(live, payload, source, dedupKey, o)
	if err != nil {
		return "", err
	}
	return e.insertRun(ctx, r)
}

// newStart checks a run's trigger payload and makes its row, ready to be
// recorded alone (insertRun) or in a group commit (groupStart).
func (e *Engine) newStart(live workflow.Live, payload json.RawMessage, source, dedupKey string, o origin) (*runStart, error) {
	g := live.Graph
	if len(payload) == 0 {
		payload = json.RawMessage(`{}`)
	}
	if !json.Valid(payload) {
		return nil, apperr.BadRequest("invalid_payload", "The trigger payload must be JSON")
	}
	if g.Trigger == nil {
		return nil, errors.New("start run: graph has no trigger")
	}
	frontier, _ := json.Marshal(g.Successors(g.Trigger.ID, ""))
	kind := KindWorkflow
	if live.Type == workflow.TypeAgent {
		kind = KindAgent
	}
	return &runStart{id: newRunID(), workspaceID: live.WorkspaceID, workflowID: live.WorkflowID, versionID: live.VersionID, kind: kind,
		source: source, payload: string(payload), dedupKey: dedupKey, o: o, frontier: string(frontier), at: e.now()}, nil
}

// newRunID is a new run's id. Random, not time-ordered: people tell runs
// apart by the first 8 characters of their id, which for a time-ordered id
// would be the same for every run of the same minute.
func newRunID() string { return uuid.NewString() }

// insertRun records one run in a transaction of its own.
func (e *Engine) insertRun(ctx context.Context, r *runStart) (string, error) {
	_, err := e.db.Write().ExecContext(ctx, insertRunSQL, r.args()...)
	if db.IsUniqueViolation(err) && r.dedupKey != "" {
		var existing string
		if err := e.db.Read().QueryRowContext(ctx, `SELECT id FROM runs WHERE workflow_id = $1 AND dedup_key = $2`, r.workflowID, r.dedupKey).Scan(&existing); err != nil {
			return "", fmt.Errorf("read deduplicated run: %w", err)
		}
		return existing, nil
	}
	if err != nil {
		return "", fmt.Errorf("record run: %w", err)
	}
	e.o.Observer.RunStarted(r.workspaceID)
	e.notify(ctx)
	return r.id, nil
}

const insertRunSQL = `INSERT INTO runs (id, workspace_id, workflow_id, version_id, kind, status, source, trigger_payload,
		dedup_key, replay_of, replay_depth, parent_run_id, parent_node_id, frontier, due_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $14)`

// Run works on due runs until ctx ends: it claims due runs, several at a
// time, whenever some of its Options.Workers are free, and works on each in
// a goroutine of its own for as long as it holds the run (a run that waits
// or is held costs a row, not a goroutine). On PostgreSQL it also listens
// for other processes' notices, so an idle engine starts a new run at once
// rather than at its next poll.
//
// When ctx ends Run stops claiming, lets each worker finish and record the
// step it is executing (for up to Options.DrainTimeout), gives every run it
// holds up for another process to take at once, and returns: a graceful
// stop neither loses a run nor repeats an effect. Meanwhile it keeps its
// heartbeat, and takes over the runs of processes whose heartbeat stopped.
func (e *Engine) Run(ctx context.Context) error {
	// Steps in flight outlive ctx, up to the drain timeout.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	if err := e.beat(work); err != nil {
		return err
	}
	if _, err := e.takeOver(work, e.db.Dialect() == db.SQLite); err != nil {
		e.o.Log.Warn("engine", "err", err)
	}
	beating, stopBeating := context.WithCancel(work)
	beat := make(chan struct{})
	go func() {
		defer close(beat)
		e.heartbeat(beating)
	}()
	defer func() {
		stopBeating()
		<-beat
		e.signOff(work)
	}()

	lctx, stopListening := context.WithCancel(ctx)
	listening := make(chan struct{})
	go func() {
		defer close(listening)
		_ = e.db.Listen(lctx, runsChannel, e.Wake)
	}()
	defer func() { stopListening(); <-listening }()

	var wg sync.WaitGroup
	e.claimUntil(ctx, work, &wg)
	drained := make(chan struct{})
	go func() {
		wg.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(e.o.DrainTimeout):
		e.o.Log.Warn("engine: steps still running after the drain timeout are cancelled; they are retried under the same idempotency key", "timeout", e.o.DrainTimeout)
		cancelWork()
		<-drained
	}
	return nil
}

// claimUntil claims due runs for free workers until ctx ends, and starts a
// worker (added to wg) for each, working with work and told by ctx's end to
// stop after its current step.
func (e *Engine) claimUntil(ctx, work context.Context, wg *sync.WaitGroup) {
	t := time.NewTicker(e.o.Poll)
	defer t.Stop()
	freed := make(chan struct{}, e.o.Workers)
	busy := 0
	// While nearly every worker is busy, a claim waits until a few are free,
	// so that one statement claims several runs rather than one each; the
	// poll claims for whatever is free.
	batch := max(1, e.o.Workers/8)
	claim := true
	for {
		if free := e.o.Workers - busy; claim && free > 0 && ctx.Err() == nil {
			runs, err := e.claim(work, free)
			if err != nil {
				e.o.Log.Warn("engine: claim runs", "err", err)
			}
			for _, c := range runs {
				busy++
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := e.advance(work, c, ctx.Done()); err != nil && work.Err() == nil {
						e.o.Log.Warn("engine", "run", c.ID, "err", err)
					}
					freed <- struct{}{}
				}()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-freed:
			busy--
			// Whoever else finished meanwhile: claim for all of them at once.
			for drained := false; !drained; {
				select {
				case <-freed:
					busy--
				default:
					drained = true
				}
			}
			claim = e.o.Workers-busy >= batch
		case <-t.C:
			claim = true
		case <-e.wake:
			claim = true
		}
	}
}

// Work claims one due run and takes it as far as it goes (finished, parked,
// or due again later). It reports whether it found one.
func (e *Engine) Work(ctx context.Context) (bool, error) {
	runs, err := e.claim(ctx, 1)
	if err != nil || len(runs) == 0 {
		return false, err
	}
	return true, e.advance(ctx, runs[0], nil)
}

// claim takes the lease of up to limit due runs and returns them as they
// are now. Each claim gets a lease token of its own (the process's owner
// name and a number), which fences every later write of the worker: a
// worker of this process whose lease lapsed cannot write over the worker
// that took the run over, even in the same process.
func (e *Engine) claim(ctx context.Context, limit int) ([]claimed, error) {
	now := e.now()
	token := fmt.Sprintf("%s%d", leasePrefix(e.o.Owner), e.claims.Add(1))
	// On PostgreSQL, processes claiming at once skip each other's rows
	// instead of queueing on them; on SQLite the one writer serializes
	// claims anyway.
	lock := ""
	if e.db.Dialect() == db.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	query := `UPDATE runs SET lease_owner = $1, lease_until = $2
		WHERE id IN (SELECT id FROM runs WHERE due_at <= $3 AND (lease_until IS NULL OR lease_until < $3) ORDER BY due_at LIMIT $4` + lock + `)
		AND due_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
		RETURNING ` + runColumns
	q, err := e.writer(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, query, token, now.Add(e.o.Lease), now, limit)
	if err != nil {
		return nil, fmt.Errorf("claim runs: %w", err)
	}
	defer rows.Close()
	var out []claimed
	for rows.Next() {
		st, err := scanState(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, claimed{state: st, token: token})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim runs: %w", err)
	}
	e.claimCount.add(len(out))
	return out, nil
}

// state is a run as the worker needs it.
type state struct {
	Run
	frontier []string
	// called says the run was started by a Call Workflow step, whose run
	// its end wakes.
	called bool
	due    sql.NullTime
}

// runColumns are what scanState reads.
const runColumns = `id, workspace_id, workflow_id, version_id, kind, status, source, trigger_payload, pause_reason,
	paused_connection_id, wait_reason, error, frontier, steps_done, replay_of, created_at, started_at, finished_at, parent_run_id, due_at, retry_of`

func (e *Engine) load(ctx context.Context, q db.Querier, id string) (state, error) {
	st, err := scanState(q.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return state{}, apperr.ErrNotFound
	}
	return st, err
}

func scanState(row interface{ Scan(...any) error }) (state, error) {
	var st state
	var status, payload, frontier string
	var errJSON, pausedConn, replayOf, parent, retryOf sql.NullString
	var started, finished sql.NullTime
	err := row.Scan(&st.ID, &st.WorkspaceID, &st.WorkflowID, &st.VersionID, &st.Kind, &status, &st.Source, &payload, &st.PauseReason,
		&pausedConn, &st.WaitReason, &errJSON, &frontier, &st.StepsDone, &replayOf, &st.CreatedAt, &started, &finished, &parent, &st.due, &retryOf)
	if errors.Is(err, sql.ErrNoRows) {
		return state{}, err
	}
	if err != nil {
		return state{}, fmt.Errorf("read run: %w", err)
	}
	st.Status, st.TriggerPayload = Status(status), json.RawMessage(payload)
	st.PausedConnectionID, st.ReplayOf, st.RetryOf, st.called = pausedConn.String, replayOf.String, retryOf.String, parent.Valid
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
