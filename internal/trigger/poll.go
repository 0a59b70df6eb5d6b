package trigger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
)

// SourcePoll is the source of runs a polling app trigger starts.
const SourcePoll = "poll"

// ConnectionStatus reads a connection's status (connection.Service.StatusOf).
type ConnectionStatus interface {
	StatusOf(ctx context.Context, id string) (connection.Status, error)
}

// PollerOptions tune the poller.
type PollerOptions struct {
	// Owner names this process in leases (default a random id).
	Owner string
	// Lease is how long a claimed trigger stays claimed (default 2
	// minutes); a process that dies mid-poll leaves it to another then.
	Lease time.Duration
	// DefaultInterval is the pause between polls of a trigger that sets
	// none (default 1 minute).
	DefaultInterval time.Duration
	// MinInterval is the floor of a trigger's interval (default 1 minute;
	// lower it only for a local sandbox).
	MinInterval time.Duration
	// MaxBackoff caps the pause after failures (default 1 hour).
	MaxBackoff time.Duration
	// MaxPages bounds the pages read in one poll (default 20); a trigger
	// with more waiting is polled again at once.
	MaxPages int
	// RecentItems is how many items "include recent items" starts runs for
	// at the first poll (default 10).
	RecentItems int
	// Batch caps the triggers claimed per Tick (default 50).
	Batch int
	// Now is the clock (default db.Now).
	Now func() time.Time
	// Log receives failures.
	Log *slog.Logger
}

// Poller polls the apps of published app triggers and starts one run per
// new item. Any number of processes may run one against the same database:
// a due trigger is claimed with a lease, and each run is keyed by its
// item's app-side id, so an item starts one run however often it is read.
type Poller struct {
	db      *db.DB
	starter Starter
	api     AppAPI
	conns   ConnectionStatus
	apps    *catalog.Catalog
	o       PollerOptions
	claims  atomic.Int64
}

// NewPoller returns a poller that reads apps through api and starts runs
// through starter.
func NewPoller(d *db.DB, starter Starter, api AppAPI, conns ConnectionStatus, apps *catalog.Catalog, o PollerOptions) *Poller {
	if o.Owner == "" {
		if t, err := newToken(); err == nil {
			o.Owner = t
		} else {
			o.Owner = fmt.Sprintf("poller-%d", time.Now().UnixNano())
		}
	}
	if o.Lease <= 0 {
		o.Lease = 2 * time.Minute
	}
	if o.DefaultInterval <= 0 {
		o.DefaultInterval = time.Minute
	}
	if o.MinInterval <= 0 {
		o.MinInterval = time.Minute
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Hour
	}
	if o.MaxPages <= 0 {
		o.MaxPages = 20
	}
	if o.RecentItems <= 0 {
		o.RecentItems = 10
	}
	if o.Batch <= 0 {
		o.Batch = 50
	}
	if o.Now == nil {
		o.Now = db.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Poller{db: d, starter: starter, api: api, conns: conns, apps: apps, o: o}
}

// PollTrigger is a published app trigger as the poller registers it.
type PollTrigger struct {
	WorkflowID    string
	NodeID        string
	App           string
	Trigger       string
	ConnectionID  string
	Inputs        map[string]string
	IncludeRecent bool
	// Interval is the wished pause between polls (0: the default).
	Interval time.Duration
}

func (p *Poller) interval(d time.Duration) time.Duration {
	if d <= 0 {
		d = p.o.DefaultInterval
	}
	return max(d, p.o.MinInterval)
}

// Sync registers the workflow's live app trigger. Registering the same
// trigger again (same app, trigger, connection and inputs) keeps its
// cursor, so a re-publish misses and repeats nothing; anything else starts
// it afresh: its first poll records where the app stands.
func (p *Poller) Sync(ctx context.Context, t PollTrigger) error {
	if !CanPoll(t.App, t.Trigger) {
		return fmt.Errorf("sync poll trigger: TaskJuice cannot poll %s's %s trigger", t.App, t.Trigger)
	}
	inputs, err := json.Marshal(t.Inputs) // map keys sorted: a stable form to compare
	if err != nil {
		return fmt.Errorf("sync poll trigger: %w", err)
	}
	now := dbTime(p.o.Now())
	every := p.interval(t.Interval).Milliseconds()
	return p.db.InTx(ctx, func(tx db.Querier) error {
		var app, key, conn, in string
		var recent bool
		err := tx.QueryRowContext(ctx, `SELECT app, trigger_key, connection_id, inputs, include_recent FROM poll_triggers WHERE workflow_id = $1`,
			t.WorkflowID).Scan(&app, &key, &conn, &in, &recent)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, `INSERT INTO poll_triggers (workflow_id, node_id, app, trigger_key, connection_id, inputs, include_recent, interval_ms, next_poll_at, created_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)`,
				t.WorkflowID, t.NodeID, t.App, t.Trigger, t.ConnectionID, string(inputs), t.IncludeRecent, every, now)
		case err != nil:
		case app == t.App && key == t.Trigger && conn == t.ConnectionID && in == string(inputs) && recent == t.IncludeRecent:
			_, err = tx.ExecContext(ctx, `UPDATE poll_triggers SET node_id = $1, interval_ms = $2 WHERE workflow_id = $3`, t.NodeID, every, t.WorkflowID)
		default:
			_, err = tx.ExecContext(ctx, `UPDATE poll_triggers SET node_id = $1, app = $2, trigger_key = $3, connection_id = $4, inputs = $5,
				include_recent = $6, interval_ms = $7, cursor_value = '', cursor_at = NULL, primed = FALSE, generation = generation + 1, next_poll_at = $8,
				lease_owner = '', lease_until = NULL, held = FALSE, failures = 0, last_error = ''
				WHERE workflow_id = $9`,
				t.NodeID, t.App, t.Trigger, t.ConnectionID, string(inputs), t.IncludeRecent, every, now, t.WorkflowID)
		}
		if err != nil {
			return fmt.Errorf("sync poll trigger: %w", err)
		}
		return nil
	})
}

// Remove stops polling for the workflow (no error if it did not poll).
func (p *Poller) Remove(ctx context.Context, workflowID string) error {
	if _, err := p.db.Write().ExecContext(ctx, `DELETE FROM poll_triggers WHERE workflow_id = $1`, workflowID); err != nil {
		return fmt.Errorf("remove poll trigger: %w", err)
	}
	return nil
}

// PollState is what the workflow page shows of a polling trigger.
type PollState struct {
	ConnectionID string
	// Held is true while the connection needs reauthorization: the app is
	// not polled until it is active again.
	Held bool
	// Primed is false until the first poll recorded where the app stands.
	Primed     bool
	LastPollAt *time.Time
	NextPollAt time.Time
	// CursorAt is when the cursor last moved (nil before the first poll):
	// how long the app has had nothing new.
	CursorAt    *time.Time
	LastError   string
	Failures    int
	RunsStarted int64
}

// State reads the workflow's polling trigger; ok is false when it has none.
func (p *Poller) State(ctx context.Context, workflowID string) (PollState, bool, error) {
	var s PollState
	var last, moved sql.NullTime
	err := p.db.Read().QueryRowContext(ctx, `SELECT connection_id, held, primed, last_poll_at, next_poll_at, cursor_at, last_error, failures, runs_started
		FROM poll_triggers WHERE workflow_id = $1`, workflowID).
		Scan(&s.ConnectionID, &s.Held, &s.Primed, &last, &s.NextPollAt, &moved, &s.LastError, &s.Failures, &s.RunsStarted)
	if errors.Is(err, sql.ErrNoRows) {
		return PollState{}, false, nil
	}
	if err != nil {
		return PollState{}, false, fmt.Errorf("read poll trigger: %w", err)
	}
	if last.Valid {
		t := last.Time.UTC()
		s.LastPollAt = &t
	}
	if moved.Valid {
		t := moved.Time.UTC()
		s.CursorAt = &t
	}
	s.NextPollAt = s.NextPollAt.UTC()
	return s, true, nil
}

// claimedPoll is a trigger this process holds the lease of.
type claimedPoll struct {
	workflowID, nodeID, app, key, conn string
	inputs                             map[string]string
	includeRecent, primed              bool
	interval                           time.Duration
	cursor                             string
	generation                         int64
	failures                           int
	token                              string
}

// Tick releases held triggers whose connection is active again, then polls
// every trigger due at now. It returns how many runs it started.
func (p *Poller) Tick(ctx context.Context, now time.Time) (int, error) {
	now = dbTime(now)
	var errs []error
	if err := p.release(ctx, now); err != nil {
		errs = append(errs, err)
	}
	due, err := p.claim(ctx, now)
	if err != nil {
		return 0, errors.Join(append(errs, err)...)
	}
	started := 0
	for _, c := range due {
		if ctx.Err() != nil {
			break
		}
		n, err := p.poll(ctx, c, now)
		started += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return started, errors.Join(errs...)
}

// release makes held triggers due again once their connection is active:
// they resume from their cursor.
func (p *Poller) release(ctx context.Context, now time.Time) error {
	conns, err := db.Strings(ctx, p.db.Read(), `SELECT DISTINCT connection_id FROM poll_triggers WHERE held`)
	if err != nil {
		return fmt.Errorf("find held poll triggers: %w", err)
	}
	for _, id := range conns {
		st, err := p.conns.StatusOf(ctx, id)
		if err != nil || st != connection.StatusActive {
			continue
		}
		if _, err := p.db.Write().ExecContext(ctx, `UPDATE poll_triggers SET held = FALSE, failures = 0, last_error = '', next_poll_at = $1
			WHERE connection_id = $2 AND held`, now, id); err != nil {
			return fmt.Errorf("resume poll triggers: %w", err)
		}
	}
	return nil
}

// claim takes the lease of up to Batch due, unheld triggers. On
// PostgreSQL processes claiming at once skip each other's rows; on SQLite
// the one writer serializes claims.
func (p *Poller) claim(ctx context.Context, now time.Time) ([]claimedPoll, error) {
	token := fmt.Sprintf("%s#%d", p.o.Owner, p.claims.Add(1))
	lock := ""
	if p.db.Dialect() == db.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	rows, err := p.db.Write().QueryContext(ctx, `UPDATE poll_triggers SET lease_owner = $1, lease_until = $2
		WHERE workflow_id IN (SELECT workflow_id FROM poll_triggers WHERE NOT held AND next_poll_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
			ORDER BY next_poll_at LIMIT $4`+lock+`)
		AND NOT held AND next_poll_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
		RETURNING workflow_id, node_id, app, trigger_key, connection_id, inputs, include_recent, primed, interval_ms, cursor_value, generation, failures`,
		token, now.Add(p.o.Lease), now, p.o.Batch)
	if err != nil {
		return nil, fmt.Errorf("claim poll triggers: %w", err)
	}
	defer rows.Close()
	var out []claimedPoll
	for rows.Next() {
		c := claimedPoll{token: token}
		var inputs string
		var ms int64
		if err := rows.Scan(&c.workflowID, &c.nodeID, &c.app, &c.key, &c.conn, &inputs, &c.includeRecent, &c.primed, &ms, &c.cursor, &c.generation, &c.failures); err != nil {
			return nil, fmt.Errorf("claim poll triggers: %w", err)
		}
		if err := json.Unmarshal([]byte(inputs), &c.inputs); err != nil {
			return nil, fmt.Errorf("poll trigger of workflow %s: inputs: %w", c.workflowID, err)
		}
		c.interval = time.Duration(ms) * time.Millisecond
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim poll triggers: %w", err)
	}
	return out, nil
}

// poll reads one claimed trigger's new items and starts their runs, in the
// app's order, saving the cursor past each page whose runs are recorded.
func (p *Poller) poll(ctx context.Context, c claimedPoll, now time.Time) (int, error) {
	src, ok := pollSources[[2]string{c.app, c.key}]
	app, inCatalog := p.apps.App(c.app)
	if !ok || !inCatalog {
		return 0, p.fail(ctx, c, now, fmt.Errorf("TaskJuice cannot poll %s's %s trigger", c.app, c.key), 0)
	}
	// A broken connection is not called at all: the trigger waits for the
	// reconnect instead of knocking on a revoked grant.
	st, err := p.conns.StatusOf(ctx, c.conn)
	if apperr.IsNotFound(err) {
		return 0, p.fail(ctx, c, now, errors.New("the trigger's connection was deleted"), 0)
	}
	if err != nil {
		return 0, p.fail(ctx, c, now, err, 0)
	}
	if st != connection.StatusActive {
		return 0, p.hold(ctx, c, now, fmt.Sprintf("the connection is in %s", st))
	}
	call := pollCall{api: p.api, app: app, conn: c.conn, inputs: c.inputs}
	if cf, ok := p.conns.(connectionFields); ok {
		if call.fields, err = cf.FieldsOf(ctx, c.conn); err != nil {
			return 0, p.fail(ctx, c, now, err, 0)
		}
	}
	started := 0
	if !c.primed {
		n := 0
		if c.includeRecent {
			n = p.o.RecentItems
		}
		items, cursor, err := src.latest(ctx, call, n)
		if err != nil {
			return 0, p.failOrHold(ctx, c, now, err)
		}
		for _, it := range items {
			if err := p.start(ctx, c, it); err != nil {
				return started, p.fail(ctx, c, now, err, 0)
			}
			started++
		}
		if err := p.save(ctx, &c, cursor, started, now); err != nil {
			return started, err
		}
		return started, p.done(ctx, c, now, false)
	}
	more := false
	for page := 0; page < p.o.MaxPages; page++ {
		items, next, m, err := src.after(ctx, call, c.cursor)
		if err != nil {
			return started, p.failOrHold(ctx, c, now, err)
		}
		n := 0
		for _, it := range items {
			if err := p.start(ctx, c, it); err != nil {
				// The cursor moves past the items whose runs are recorded.
				if serr := p.save(ctx, &c, it0(items, n, c.cursor), n, now); serr != nil {
					return started + n, serr
				}
				return started + n, p.fail(ctx, c, now, err, 0)
			}
			n++
		}
		started += n
		if err := p.save(ctx, &c, next, n, now); err != nil {
			return started, err
		}
		more = m
		if !m {
			break
		}
	}
	return started, p.done(ctx, c, now, more)
}

// it0 is the cursor after the first n items (the id of the nth), or the
// cursor before them when n is 0.
func it0(items []Item, n int, before string) string {
	if n == 0 {
		return before
	}
	if items[n-1].Cursor != "" {
		return items[n-1].Cursor
	}
	return items[n-1].ID
}

// start records the run of one item, keyed by the item's app-side id.
func (p *Poller) start(ctx context.Context, c claimedPoll, it Item) error {
	key := "poll:" + c.app + ":" + c.key + ":" + it.ID
	if _, err := p.starter.StartRun(ctx, c.workflowID, it.Payload, SourcePoll, key); err != nil {
		return fmt.Errorf("start the run of item %s: %w", it.ID, err)
	}
	return nil
}

// errLeaseLost means another process (or a re-publish) took the trigger
// over mid-poll: this poll stops writing.
var errLeaseLost = errors.New("poll trigger: lease lost or settings changed")

// save stores the cursor (the trigger primed) while this poll still holds
// the lease of the same settings; cursor_at records when it last moved.
func (p *Poller) save(ctx context.Context, c *claimedPoll, cursor string, runs int, now time.Time) error {
	res, err := p.db.Write().ExecContext(ctx, `UPDATE poll_triggers SET cursor_value = $1, primed = TRUE, runs_started = runs_started + $2,
		cursor_at = CASE WHEN cursor_at IS NULL OR NOT primed OR cursor_value <> $1 THEN $3 ELSE cursor_at END
		WHERE workflow_id = $4 AND lease_owner = $5 AND generation = $6`,
		cursor, runs, now, c.workflowID, c.token, c.generation)
	if err != nil {
		return fmt.Errorf("save poll cursor of workflow %s: %w", c.workflowID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errLeaseLost
	}
	c.cursor, c.primed = cursor, true
	return nil
}

// done ends a good poll: the next one after the interval (at once when
// more items wait).
func (p *Poller) done(ctx context.Context, c claimedPoll, now time.Time, more bool) error {
	next := now.Add(c.interval)
	if more {
		next = now
	}
	return p.finish(ctx, c, `last_poll_at = $1, next_poll_at = $2, failures = 0, last_error = '', held = FALSE`, now, dbTime(next))
}

// failOrHold holds the trigger when the app refused the credential for
// good, and backs off otherwise.
func (p *Poller) failOrHold(ctx context.Context, c claimedPoll, now time.Time, err error) error {
	if errors.Is(err, errHeld) {
		return p.hold(ctx, c, now, "the app refused the connection's credential")
	}
	var te *transientError
	if errors.As(err, &te) {
		return p.fail(ctx, c, now, err, te.retryAfter)
	}
	return p.fail(ctx, c, now, err, 0)
}

// fail backs off, keeping the cursor: the interval doubled per failure in
// a row, at least what the app asked for, at most MaxBackoff.
func (p *Poller) fail(ctx context.Context, c claimedPoll, now time.Time, cause error, retryAfter time.Duration) error {
	if errors.Is(cause, errLeaseLost) {
		return cause
	}
	wait := c.interval << min(c.failures, 10)
	wait = min(max(wait, retryAfter), max(p.o.MaxBackoff, retryAfter))
	msg := cause.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	p.o.Log.WarnContext(ctx, "poll trigger failed", "workflow_id", c.workflowID, "app", c.app, "failures", c.failures+1, "retry_in", wait, "err", cause)
	if err := p.finish(ctx, c, `last_poll_at = $1, next_poll_at = $2, failures = failures + 1, last_error = $3`, now, dbTime(now.Add(wait)), msg); err != nil {
		return err
	}
	return nil
}

// hold stops polling until the connection is active again (release).
func (p *Poller) hold(ctx context.Context, c claimedPoll, now time.Time, why string) error {
	p.o.Log.InfoContext(ctx, "poll trigger held for reauthorization", "workflow_id", c.workflowID, "connection_id", c.conn)
	return p.finish(ctx, c, `held = TRUE, last_poll_at = $1, next_poll_at = $2, last_error = $3`, now, now, why)
}

// finish writes the outcome of a poll and frees the lease. set's
// placeholders are $1.. ; the row's key follows them.
func (p *Poller) finish(ctx context.Context, c claimedPoll, set string, args ...any) error {
	n := len(args)
	args = append(args, c.workflowID, c.token, c.generation)
	_, err := p.db.Write().ExecContext(ctx, `UPDATE poll_triggers SET `+set+`, lease_owner = '', lease_until = NULL
		WHERE workflow_id = $`+fmt.Sprint(n+1)+` AND lease_owner = $`+fmt.Sprint(n+2)+` AND generation = $`+fmt.Sprint(n+3), args...)
	if err != nil {
		return fmt.Errorf("finish poll of workflow %s: %w", c.workflowID, err)
	}
	return nil
}

// Run calls Tick at once and then every interval until ctx ends. It
// returns nil when ctx ends; Tick errors are logged.
func (p *Poller) Run(ctx context.Context, every time.Duration) error {
	return runTicks(ctx, every, p.o.Now, p.o.Log, "poll triggers: tick", p.Tick)
}

// runTicks calls tick at once and then every interval (default 5
// seconds) until ctx ends, logging its errors under msg.
func runTicks(ctx context.Context, every time.Duration, now func() time.Time, log *slog.Logger, msg string, tick func(context.Context, time.Time) (int, error)) error {
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := tick(ctx, now()); err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, msg, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
