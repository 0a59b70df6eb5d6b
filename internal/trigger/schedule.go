package trigger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	cron "github.com/netresearch/go-cron"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

// cronParser reads standard five-field expressions (minute hour
// day-of-month month day-of-week) and the @yearly, @monthly, @weekly,
// @daily and @hourly shorthands. DowOrDom keeps the classic cron rule: when
// both day fields are restricted, a day matching either one fires.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor | cron.DowOrDom)

// invalid is a user-facing validation error whose text is the message alone,
// so it reads well wherever it is shown.
func invalid(format string, args ...any) error {
	return &apperr.Error{Kind: apperr.KindInvalid, Code: "invalid", Message: fmt.Sprintf(format, args...)}
}

// ValidateCron checks a schedule's cron expression and IANA time zone (empty
// means UTC). It suits workflow.Checks.Cron.
func ValidateCron(expr, timezone string) error {
	_, _, err := parseSchedule(expr, timezone)
	return err
}

// schedule is a parsed cron expression in its time zone.
type schedule struct {
	spec cron.Schedule
	loc  *time.Location
	// fixedHours is true unless every hour matches: in the hour repeated
	// when clocks go back, such a schedule fires only the first time
	// (as cron does), while an hourly one fires in both.
	fixedHours bool
}

func parseSchedule(expr, timezone string) (schedule, string, error) {
	expr = strings.TrimSpace(expr)
	tz := strings.TrimSpace(timezone)
	if tz == "" {
		tz = "UTC"
	}
	if expr == "" {
		return schedule{}, "", invalid("Enter a cron expression, e.g. 0 9 * * 1-5")
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return schedule{}, "", invalid("Set the time zone in its own field, not inside the cron expression")
	}
	if strings.HasPrefix(expr, "@every") {
		return schedule{}, "", invalid("@every is not supported; use a cron expression such as */5 * * * * (every five minutes)")
	}
	if tz == "Local" {
		return schedule{}, "", invalid("Choose a named time zone such as Europe/Berlin or UTC")
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return schedule{}, "", invalid("Unknown time zone %q; use an IANA name such as Europe/Berlin, America/New_York or UTC", tz)
	}
	spec, err := cronParser.Parse(expr)
	if err != nil {
		return schedule{}, "", invalid("Cron expression %q is not valid: %s. Use five fields: minute hour day-of-month month day-of-week, e.g. 0 9 * * 1-5", expr, err.Error())
	}
	s := schedule{spec: spec, loc: loc}
	if ss, ok := spec.(*cron.SpecSchedule); ok {
		const allHours = 1<<24 - 1
		s.fixedHours = ss.Hour&allHours != allHours
	}
	if s.next(time.Now()).IsZero() {
		return schedule{}, "", invalid("Cron expression %q never matches a date", expr)
	}
	return s, tz, nil
}

// next is the first tick strictly after t, or the zero time if there is
// none within the library's search horizon.
func (s schedule) next(t time.Time) time.Time {
	n := s.spec.Next(t.In(s.loc))
	for i := 0; i < 4 && !n.IsZero() && s.fixedHours && repeatedWallClock(n); i++ {
		n = s.spec.Next(n)
	}
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// repeatedWallClock reports whether t's local date and time of day already
// happened earlier (t lies in the second pass of an hour repeated when the
// clocks went back).
func repeatedWallClock(t time.Time) bool {
	for _, d := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
		e := t.Add(-d)
		if e.Year() == t.Year() && e.YearDay() == t.YearDay() && e.Hour() == t.Hour() && e.Minute() == t.Minute() {
			return true
		}
	}
	return false
}

// SchedulerOptions tune the scheduler.
type SchedulerOptions struct {
	// Owner names this process in leases (default a random id).
	Owner string
	// Lease is how long a claimed row stays claimed (default 1 minute); a
	// process that dies mid-fire leaves it to another after that.
	Lease time.Duration
	// RetryAfter is how long a row waits after its run could not be
	// recorded before it is tried again (default 1 minute).
	RetryAfter time.Duration
	// Batch caps the rows claimed per Tick (default 100).
	Batch int
	// Now is the clock (default db.Now).
	Now func() time.Time
	// Log receives failures.
	Log *slog.Logger
}

// Scheduler fires schedule triggers. Any number of processes may run one
// against the same database: a due row is claimed with a lease, so each
// tick starts one run.
type Scheduler struct {
	db      *db.DB
	starter Starter
	o       SchedulerOptions
}

// NewScheduler returns a scheduler that starts runs through starter.
func NewScheduler(d *db.DB, starter Starter, o SchedulerOptions) *Scheduler {
	if o.Owner == "" {
		if t, err := newToken(); err == nil {
			o.Owner = t
		} else {
			o.Owner = fmt.Sprintf("scheduler-%d", time.Now().UnixNano())
		}
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Minute
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.Now == nil {
		o.Now = db.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Scheduler{db: d, starter: starter, o: o}
}

func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// Sync records the workflow's schedule, with its next tick computed from
// now. Syncing the same expression and time zone again changes nothing, so
// a tick that is due (missed while no server ran) still fires.
func (s *Scheduler) Sync(ctx context.Context, workflowID, expr, timezone string) error {
	sch, tz, err := parseSchedule(expr, timezone)
	if err != nil {
		return err
	}
	expr = strings.TrimSpace(expr)
	next := sch.next(s.o.Now())
	_, err = s.db.Write().ExecContext(ctx, `INSERT INTO schedule_state (workflow_id, cron, timezone, next_fire_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (workflow_id) DO UPDATE SET cron = excluded.cron, timezone = excluded.timezone, next_fire_at = excluded.next_fire_at
		WHERE schedule_state.cron <> excluded.cron OR schedule_state.timezone <> excluded.timezone`,
		workflowID, expr, tz, dbTime(next))
	if err != nil {
		return fmt.Errorf("sync schedule: %w", err)
	}
	return nil
}

// Remove stops the workflow's schedule (no error if there is none).
func (s *Scheduler) Remove(ctx context.Context, workflowID string) error {
	if _, err := s.db.Write().ExecContext(ctx, `DELETE FROM schedule_state WHERE workflow_id = $1`, workflowID); err != nil {
		return fmt.Errorf("remove schedule: %w", err)
	}
	return nil
}

// SchedulePayload is the trigger output of a scheduled run ($trigger).
// ScheduledAt is the tick being fired, in the schedule's time zone; when
// the server was down across several ticks the run stands for all of them,
// ScheduledAt is the first and Missed counts the later ones.
type SchedulePayload struct {
	ScheduledAt string `json:"scheduledAt"`
	FiredAt     string `json:"firedAt"`
	Cron        string `json:"cron"`
	Timezone    string `json:"timezone"`
	Missed      int    `json:"missed"`
}

// maxMissedCount bounds the count of missed ticks reported in a payload.
const maxMissedCount = 10000

// Tick fires every schedule due at now: one run per schedule however many
// ticks passed, then the next tick after now. It returns how many runs it
// started.
func (s *Scheduler) Tick(ctx context.Context, now time.Time) (int, error) {
	now = dbTime(now)
	ids, err := db.Strings(ctx, s.db.Read(), `SELECT workflow_id FROM schedule_state
		WHERE next_fire_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
		ORDER BY next_fire_at LIMIT $2`, now, s.o.Batch)
	if err != nil {
		return 0, fmt.Errorf("find due schedules: %w", err)
	}
	fired := 0
	var errs []error
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		ok, err := s.fire(ctx, id, now)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			fired++
		}
	}
	return fired, errors.Join(errs...)
}

// fire claims one due row and starts its run. ok reports a started run.
func (s *Scheduler) fire(ctx context.Context, workflowID string, now time.Time) (bool, error) {
	var (
		expr, tz string
		due      time.Time
	)
	// Compare-and-set: only one process turns a free, due row into a leased one.
	err := s.db.Write().QueryRowContext(ctx, `UPDATE schedule_state SET lease_owner = $1, lease_until = $2
		WHERE workflow_id = $3 AND next_fire_at <= $4 AND (lease_until IS NULL OR lease_until < $4)
		RETURNING cron, timezone, next_fire_at`,
		s.o.Owner, now.Add(s.o.Lease), workflowID, now).Scan(&expr, &tz, &due)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil // another process took it, or it was changed
	}
	if err != nil {
		return false, fmt.Errorf("claim schedule of workflow %s: %w", workflowID, err)
	}
	due = due.UTC()
	sch, _, err := parseSchedule(expr, tz)
	if err != nil {
		// Stored rows come through Sync, so this is a damaged row; retry later.
		s.release(ctx, workflowID, now.Add(s.o.RetryAfter))
		return false, fmt.Errorf("schedule of workflow %s: %w", workflowID, err)
	}
	missed := 0
	for t := sch.next(due); !t.IsZero() && !t.After(now) && missed < maxMissedCount; t = sch.next(t) {
		missed++
	}
	payload, err := json.Marshal(SchedulePayload{
		ScheduledAt: due.In(sch.loc).Format(time.RFC3339),
		FiredAt:     now.In(sch.loc).Format(time.RFC3339Nano),
		Cron:        expr,
		Timezone:    tz,
		Missed:      missed,
	})
	if err != nil {
		s.release(ctx, workflowID, time.Time{})
		return false, fmt.Errorf("encode schedule payload: %w", err)
	}
	// The key is the tick fired, as stored: a process that re-fires it
	// after another died between starting the run and moving on gets the
	// same run back.
	dedupKey := workflowID + "@" + due.Format(time.RFC3339)
	_, startErr := s.starter.StartRun(ctx, workflowID, payload, SourceSchedule, dedupKey)
	if startErr != nil && !apperr.Is(startErr, apperr.KindConflict) && !apperr.Is(startErr, apperr.KindInvalid) && !apperr.Is(startErr, apperr.KindBadRequest) {
		// Transient: keep the tick due and try again after RetryAfter.
		s.release(ctx, workflowID, now.Add(s.o.RetryAfter))
		return false, fmt.Errorf("start scheduled run of workflow %s: %w", workflowID, startErr)
	}
	if startErr != nil {
		// The engine refused this start for good (for example the
		// workflow is no longer published): skip the tick rather than
		// retry it forever.
		s.o.Log.WarnContext(ctx, "schedule: tick skipped", "workflow_id", workflowID, "scheduled_at", due, "err", startErr)
	}
	next := sch.next(now)
	if next.IsZero() {
		// No future tick: the schedule is finished.
		if _, err := s.db.Write().ExecContext(ctx, `DELETE FROM schedule_state WHERE workflow_id = $1 AND lease_owner = $2`, workflowID, s.o.Owner); err != nil {
			return startErr == nil, fmt.Errorf("remove finished schedule of workflow %s: %w", workflowID, err)
		}
		return startErr == nil, nil
	}
	res, err := s.db.Write().ExecContext(ctx, `UPDATE schedule_state SET last_fire_at = $1, next_fire_at = $2, lease_owner = '', lease_until = NULL
		WHERE workflow_id = $3 AND lease_owner = $4 AND next_fire_at = $5`,
		due, dbTime(next), workflowID, s.o.Owner, due)
	if err != nil {
		return startErr == nil, fmt.Errorf("advance schedule of workflow %s: %w", workflowID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// Re-synced while firing: its new state stands; free it now
		// rather than when the lease runs out.
		s.release(ctx, workflowID, time.Time{})
	}
	return startErr == nil, nil
}

// release frees a claimed row; with a non-zero until it stays claimed (as
// a back-off) until then.
func (s *Scheduler) release(ctx context.Context, workflowID string, until time.Time) {
	var arg any
	if !until.IsZero() {
		arg = dbTime(until)
	}
	if _, err := s.db.Write().ExecContext(ctx, `UPDATE schedule_state SET lease_until = $1 WHERE workflow_id = $2 AND lease_owner = $3`,
		arg, workflowID, s.o.Owner); err != nil {
		s.o.Log.WarnContext(ctx, "schedule: release lease", "workflow_id", workflowID, "err", err)
	}
}

// Run calls Tick at once and then every interval until ctx ends. It
// returns nil when ctx ends; Tick errors are logged and retried.
func (s *Scheduler) Run(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		every = 15 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.Tick(ctx, s.o.Now()); err != nil && ctx.Err() == nil {
			s.o.Log.WarnContext(ctx, "schedule: tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
