package trigger

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

func TestValidateCron(t *testing.T) {
	cases := []struct {
		expr, tz string
		wantErr  string // a fragment of the message; "" for valid
	}{
		{"* * * * *", "", ""},
		{"0 9 * * 1-5", "Europe/Berlin", ""},
		{"*/15 8-18 * * MON-FRI", "America/New_York", ""},
		{"0 0 1 1 *", "UTC", ""},
		{"@daily", "Asia/Tokyo", ""},
		{"  30 2 * * *  ", " Europe/Berlin ", ""},
		{"", "UTC", "Enter a cron expression"},
		{"   ", "", "Enter a cron expression"},
		{"61 * * * *", "", "is not valid"},
		{"* * *", "", "is not valid"},
		{"0 0 * * * *", "", "is not valid"},
		{"hello", "", "is not valid"},
		{"0 25 * * *", "", "is not valid"},
		{"0 0 30 2 *", "", "never matches"},
		{"@every 5m", "", "@every is not supported"},
		{"CRON_TZ=Europe/Berlin 0 9 * * *", "", "its own field"},
		{"0 9 * * *", "Mars/Olympus_Mons", "Unknown time zone"},
		{"0 9 * * *", "Local", "named time zone"},
		{"0 9 * * *", "../../etc/passwd", "Unknown time zone"},
	}
	for _, tc := range cases {
		t.Run(tc.expr+"|"+tc.tz, func(t *testing.T) {
			err := ValidateCron(tc.expr, tc.tz)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
			if !apperr.Is(err, apperr.KindInvalid) {
				t.Errorf("got kind %v, want invalid", err)
			}
			if strings.HasPrefix(err.Error(), "cron:") {
				t.Errorf("message carries a field prefix: %q", err)
			}
		})
	}
}

func TestNextFireTime(t *testing.T) {
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	cases := []struct {
		name, expr, tz string
		from           string
		want           []string // successive ticks, UTC
	}{
		{"UTC daily", "0 9 * * *", "", "2026-03-28T12:00:00Z", []string{"2026-03-29T09:00:00Z", "2026-03-30T09:00:00Z"}},
		// 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
		{"Berlin across spring forward", "0 9 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", []string{"2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"}},
		{"Berlin winter", "0 9 * * *", "Europe/Berlin", "2026-01-10T12:00:00Z", []string{"2026-01-11T08:00:00Z"}},
		{"Berlin across fall back", "0 9 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", []string{"2026-10-25T08:00:00Z"}},
		// 02:30 does not exist on 29 March 2026 in Berlin: it fires at 03:30 CEST.
		{"Berlin skipped hour", "30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", []string{"2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"}},
		// 02:30 happens twice on 25 October 2026 in Berlin: it fires once.
		{"Berlin repeated hour, fixed time", "30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", []string{"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},
		// An hourly schedule fires in both passes of the repeated hour.
		{"Berlin repeated hour, hourly", "0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", []string{"2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"}},
		{"New York weekdays", "0 9 * * 1-5", "America/New_York", "2026-03-06T15:00:00Z", []string{"2026-03-09T13:00:00Z"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _, err := parseSchedule(tc.expr, tc.tz)
			if err != nil {
				t.Fatal(err)
			}
			at := utc(tc.from)
			for i, w := range tc.want {
				at = s.next(at)
				if !at.Equal(utc(w)) {
					t.Fatalf("tick %d: got %s, want %s", i+1, at.Format(time.RFC3339), w)
				}
			}
		})
	}
}

type scheduleRow struct {
	next       time.Time
	last       *time.Time
	leaseUntil *time.Time
}

func readSchedule(t *testing.T, d *db.DB, workflowID string) (scheduleRow, bool) {
	t.Helper()
	var (
		r         scheduleRow
		last, lse *time.Time
	)
	err := d.Write().QueryRowContext(context.Background(), `SELECT next_fire_at, last_fire_at, lease_until FROM schedule_state WHERE workflow_id = $1`, workflowID).
		Scan(&r.next, &last, &lse)
	if err != nil {
		if strings.Contains(err.Error(), "no rows") {
			return scheduleRow{}, false
		}
		t.Fatalf("read schedule: %v", err)
	}
	r.next, r.last, r.leaseUntil = r.next.UTC(), last, lse
	return r, true
}

func TestSchedulerCatchUpFiresOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		wf := newWorkflow(t, d)
		clk := &clock{t: time.Date(2026, 3, 2, 10, 0, 30, 0, time.UTC)}
		starter := &fakeStarter{}
		s := NewScheduler(d, starter, SchedulerOptions{Now: clk.Now})
		if err := s.Sync(ctx, wf, "* * * * *", ""); err != nil {
			t.Fatal(err)
		}
		row, _ := readSchedule(t, d, wf)
		if want := time.Date(2026, 3, 2, 10, 1, 0, 0, time.UTC); !row.next.Equal(want) {
			t.Fatalf("next after Sync: got %s, want %s", row.next, want)
		}
		// Nothing is due yet.
		if n, err := s.Tick(ctx, clk.Now()); err != nil || n != 0 {
			t.Fatalf("Tick before due: got %d, %v; want 0", n, err)
		}

		// The server was down for ten minutes.
		now := time.Date(2026, 3, 2, 10, 10, 30, 0, time.UTC)
		clk.Set(now)
		// Re-syncing the same schedule at start-up keeps the missed tick.
		if err := s.Sync(ctx, wf, "* * * * *", "UTC"); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Tick(ctx, now); err != nil || n != 1 {
			t.Fatalf("Tick after downtime: got %d, %v; want 1", n, err)
		}
		calls := starter.Calls()
		if len(calls) != 1 {
			t.Fatalf("StartRun calls: got %d, want 1", len(calls))
		}
		c := calls[0]
		if c.WorkflowID != wf || c.Source != SourceSchedule || c.DedupKey != wf+"@2026-03-02T10:01:00Z" {
			t.Errorf("StartRun: got (%q, %q, %q), want (%q, schedule, %q)", c.WorkflowID, c.Source, c.DedupKey, wf, wf+"@2026-03-02T10:01:00Z")
		}
		var p SchedulePayload
		if err := json.Unmarshal(c.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if p.ScheduledAt != "2026-03-02T10:01:00Z" || p.Missed != 9 || p.Cron != "* * * * *" || p.Timezone != "UTC" {
			t.Errorf("payload: got %+v, want scheduledAt 10:01, 9 missed", p)
		}
		row, _ = readSchedule(t, d, wf)
		if !row.next.After(now) || !row.next.Equal(time.Date(2026, 3, 2, 10, 11, 0, 0, time.UTC)) {
			t.Errorf("next after catch-up: got %s, want 10:11:00 (after now)", row.next)
		}
		if row.last == nil || !row.last.Equal(time.Date(2026, 3, 2, 10, 1, 0, 0, time.UTC)) {
			t.Errorf("last_fire_at: got %v, want 10:01:00", row.last)
		}
		if row.leaseUntil != nil {
			t.Errorf("lease not released: until %v", row.leaseUntil)
		}
		// A second tick at the same moment finds nothing due.
		if n, err := s.Tick(ctx, now); err != nil || n != 0 {
			t.Fatalf("second Tick: got %d, %v; want 0", n, err)
		}
		// The next minute fires again, normally.
		if n, err := s.Tick(ctx, now.Add(31*time.Second)); err != nil || n != 1 {
			t.Fatalf("Tick at 10:11: got %d, %v; want 1", n, err)
		}
		if got := starter.Calls()[1].DedupKey; got != wf+"@2026-03-02T10:11:00Z" {
			t.Errorf("second run dedupKey: got %q", got)
		}
	})
}

func TestSchedulerConcurrentTicksFireOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)}
		starter := &fakeStarter{delay: 5 * time.Millisecond}
		a := NewScheduler(d, starter, SchedulerOptions{Owner: "process-a", Now: clk.Now})
		b := NewScheduler(d, starter, SchedulerOptions{Owner: "process-b", Now: clk.Now})
		var wfs []string
		for i := 0; i < 5; i++ {
			wf := newWorkflow(t, d)
			if err := a.Sync(ctx, wf, "*/5 * * * *", "Europe/Berlin"); err != nil {
				t.Fatal(err)
			}
			wfs = append(wfs, wf)
		}
		now := clk.Now().Add(2 * time.Hour)
		for round := 0; round < 3; round++ {
			before := len(starter.Calls())
			var (
				wg           sync.WaitGroup
				firedA, firB int
				errA, errB   error
			)
			start := make(chan struct{})
			wg.Add(2)
			go func() { defer wg.Done(); <-start; firedA, errA = a.Tick(ctx, now) }()
			go func() { defer wg.Done(); <-start; firB, errB = b.Tick(ctx, now) }()
			close(start)
			wg.Wait()
			if errA != nil || errB != nil {
				t.Fatalf("round %d: Tick errors: %v, %v", round, errA, errB)
			}
			if firedA+firB != len(wfs) {
				t.Errorf("round %d: fired %d + %d, want %d in all", round, firedA, firB, len(wfs))
			}
			calls := starter.Calls()[before:]
			seen := map[string]int{}
			for _, c := range calls {
				seen[c.WorkflowID]++
			}
			for _, wf := range wfs {
				if seen[wf] != 1 {
					t.Errorf("round %d: workflow %s started %d runs, want 1", round, wf, seen[wf])
				}
			}
			now = now.Add(5 * time.Minute)
		}
	})
}

func TestSchedulerLeaseHeldElsewhere(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		wf := newWorkflow(t, d)
		clk := &clock{t: time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)}
		starter := &fakeStarter{}
		s := NewScheduler(d, starter, SchedulerOptions{Owner: "b", Now: clk.Now, Lease: time.Minute})
		if err := s.Sync(ctx, wf, "0 * * * *", ""); err != nil {
			t.Fatal(err)
		}
		now := time.Date(2026, 5, 1, 9, 0, 10, 0, time.UTC)
		// Another process claimed the row and is still within its lease.
		if _, err := d.Write().ExecContext(ctx, `UPDATE schedule_state SET lease_owner = 'a', lease_until = $1 WHERE workflow_id = $2`, now.Add(30*time.Second), wf); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.Tick(ctx, now); n != 0 {
			t.Fatalf("Tick under another lease: got %d, want 0", n)
		}
		// It died: once the lease runs out the tick fires here, with the
		// same dedup key it would have used.
		if n, err := s.Tick(ctx, now.Add(31*time.Second)); err != nil || n != 1 {
			t.Fatalf("Tick after the lease ran out: got %d, %v; want 1", n, err)
		}
		if got := starter.Calls()[0].DedupKey; got != wf+"@2026-05-01T09:00:00Z" {
			t.Errorf("dedupKey: got %q", got)
		}
	})
}

func TestSchedulerStartFailures(t *testing.T) {
	cases := []struct {
		name        string
		err         error
		wantAdvance bool // the tick is skipped (permanent) rather than retried
	}{
		{"transient", errDown, false},
		{"not published", apperr.Conflict("not_published", "", "not published"), true},
	}
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ctx := context.Background()
				wf := newWorkflow(t, d)
				clk := &clock{t: time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)}
				starter := &fakeStarter{err: tc.err}
				log := &logBuffer{}
				s := NewScheduler(d, starter, SchedulerOptions{Now: clk.Now, RetryAfter: 2 * time.Minute, Log: log.logger()})
				if err := s.Sync(ctx, wf, "0 9 * * *", ""); err != nil {
					t.Fatal(err)
				}
				now := time.Date(2026, 5, 1, 9, 0, 5, 0, time.UTC)
				n, err := s.Tick(ctx, now)
				if n != 0 {
					t.Errorf("fired: got %d, want 0", n)
				}
				if (err != nil) == tc.wantAdvance {
					t.Errorf("Tick error: got %v", err)
				}
				row, _ := readSchedule(t, d, wf)
				if tc.wantAdvance {
					if want := time.Date(2026, 5, 2, 9, 0, 0, 0, time.UTC); !row.next.Equal(want) {
						t.Errorf("next: got %s, want %s", row.next, want)
					}
					if !strings.Contains(log.String(), "tick skipped") {
						t.Errorf("no log of the skipped tick:\n%s", log)
					}
					return
				}
				if want := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC); !row.next.Equal(want) {
					t.Errorf("next: got %s, want it kept at %s", row.next, want)
				}
				// Backing off: not retried before RetryAfter, retried after.
				starter.mu.Lock()
				starter.err = nil
				starter.mu.Unlock()
				if n, _ := s.Tick(ctx, now.Add(time.Minute)); n != 0 {
					t.Errorf("retry within back-off: fired %d, want 0", n)
				}
				if n, err := s.Tick(ctx, now.Add(2*time.Minute+time.Second)); err != nil || n != 1 {
					t.Errorf("retry after back-off: got %d, %v; want 1", n, err)
				}
				calls := starter.Calls()
				if len(calls) != 2 || calls[0].DedupKey != calls[1].DedupKey {
					t.Errorf("calls: got %+v, want two with the same dedup key", calls)
				}
			})
		}
	})
}

func TestSchedulerSyncAndRemove(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		wf := newWorkflow(t, d)
		clk := &clock{t: time.Date(2026, 10, 24, 12, 0, 0, 0, time.UTC)}
		s := NewScheduler(d, &fakeStarter{}, SchedulerOptions{Now: clk.Now})
		if err := s.Sync(ctx, wf, "0 25 * * *", ""); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("Sync with a bad expression: got %v, want invalid", err)
		}
		if _, ok := readSchedule(t, d, wf); ok {
			t.Fatalf("a bad expression left a row")
		}
		if err := s.Sync(ctx, wf, "0 9 * * *", "Europe/Berlin"); err != nil {
			t.Fatal(err)
		}
		row, _ := readSchedule(t, d, wf)
		// 09:00 CEST on 25 October is after the clocks go back: 08:00 UTC.
		if want := time.Date(2026, 10, 25, 8, 0, 0, 0, time.UTC); !row.next.Equal(want) {
			t.Errorf("next in Berlin: got %s, want %s", row.next, want)
		}
		// A changed expression recomputes from now.
		clk.Set(time.Date(2026, 10, 26, 12, 0, 0, 0, time.UTC))
		if err := s.Sync(ctx, wf, "0 18 * * *", "Europe/Berlin"); err != nil {
			t.Fatal(err)
		}
		row, _ = readSchedule(t, d, wf)
		if want := time.Date(2026, 10, 26, 17, 0, 0, 0, time.UTC); !row.next.Equal(want) {
			t.Errorf("next after change: got %s, want %s", row.next, want)
		}
		// So does a changed time zone.
		if err := s.Sync(ctx, wf, "0 18 * * *", "UTC"); err != nil {
			t.Fatal(err)
		}
		row, _ = readSchedule(t, d, wf)
		if want := time.Date(2026, 10, 26, 18, 0, 0, 0, time.UTC); !row.next.Equal(want) {
			t.Errorf("next after zone change: got %s, want %s", row.next, want)
		}
		if err := s.Remove(ctx, wf); err != nil {
			t.Fatal(err)
		}
		if _, ok := readSchedule(t, d, wf); ok {
			t.Errorf("row left after Remove")
		}
		if err := s.Remove(ctx, wf); err != nil {
			t.Errorf("Remove twice: %v", err)
		}
	})
}

// Run fires on the injected clock, not the wall clock, and fires each
// tick once however many loops pass: the test waits for loops it can
// count (each reads the clock once), never for a fixed sleep.
func TestSchedulerRunFiresAndStops(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		wf := newWorkflow(t, d)
		clk := &clock{t: time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)}
		var readsMu sync.Mutex
		reads := 0
		now := func() time.Time {
			readsMu.Lock()
			reads++
			readsMu.Unlock()
			return clk.Now()
		}
		loops := func() int {
			readsMu.Lock()
			defer readsMu.Unlock()
			return reads
		}
		starter := &fakeStarter{}
		s := NewScheduler(d, starter, SchedulerOptions{Now: now})
		if err := s.Sync(ctx, wf, "0 9 * * *", ""); err != nil {
			t.Fatal(err)
		}
		clk.Set(time.Date(2026, 5, 3, 7, 0, 0, 0, time.UTC)) // two days missed
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx, time.Millisecond) }()
		waitFor := func(what string, cond func() bool) {
			t.Helper()
			deadline := time.Now().Add(30 * time.Second)
			for !cond() {
				if time.Now().After(deadline) {
					t.Fatalf("waited 30 s for %s", what)
				}
				time.Sleep(time.Millisecond)
			}
		}
		waitFor("the missed ticks' run", func() bool { return len(starter.Calls()) == 1 })
		// Several more loops on the same clock: still one run.
		after := loops()
		waitFor("five more loops", func() bool { return loops() >= after+5 })
		if n := len(starter.Calls()); n != 1 {
			t.Fatalf("runs after more loops at 07:00: got %d, want 1", n)
		}
		// The injected clock reaches the next tick: one more run.
		clk.Set(time.Date(2026, 5, 3, 9, 0, 30, 0, time.UTC))
		waitFor("the 09:00 run", func() bool { return len(starter.Calls()) == 2 })
		after = loops()
		waitFor("five more loops", func() bool { return loops() >= after+5 })
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not stop when its context ended")
		}
		// Run has returned, so every loop it began is finished.
		if n := len(starter.Calls()); n != 2 {
			t.Errorf("runs: got %d, want 2", n)
		}
	})
}
