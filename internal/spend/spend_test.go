package spend_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/llm"
	"taskjuice/internal/spend"
)

// clock is a settable time for the service.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

type fixture struct {
	ctx   context.Context
	d     *db.DB
	ws    account.Workspace
	other account.Workspace
	clock *clock
	svc   *spend.Service
}

func setup(t *testing.T, d *db.DB) *fixture {
	t.Helper()
	f := &fixture{ctx: context.Background(), d: d, clock: &clock{t: time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)}}
	accounts := account.NewService(d)
	a, _, err := accounts.CreateAccount(f.ctx, "Agency", account.NewUser{Email: "o@a.example", Password: "correct horse battery"})
	must(t, err)
	f.ws, err = accounts.CreateWorkspaceForAccount(f.ctx, a.ID, "Acme", "acme")
	must(t, err)
	f.other, err = accounts.CreateWorkspaceForAccount(f.ctx, a.ID, "Beta", "beta")
	must(t, err)
	f.svc = spend.NewService(d, spend.Options{Now: f.clock.now})
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func usd(s string) llm.Money {
	m, err := llm.ParseMoney(s)
	if err != nil {
		panic(err)
	}
	return m
}

// spent is the settled spend of the workspace in the clock's period.
func (f *fixture) spent(t *testing.T, wsID string) llm.Money {
	t.Helper()
	s, err := f.svc.Summary(f.ctx, wsID, f.clock.now())
	must(t, err)
	return s.Spent
}

// reserveSettle makes one call of cost c.
func (f *fixture) reserveSettle(t *testing.T, wsID, ref string, c llm.Money) {
	t.Helper()
	res, err := f.svc.Reserve(f.ctx, wsID, ref, c, spend.Call{Model: "sandbox-small"})
	must(t, err)
	must(t, f.svc.Settle(f.ctx, res, c, llm.Usage{PromptTokens: 10, CompletionTokens: 5}))
}

func TestReserveAgainstCap(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		// Without a cap anything goes.
		f.reserveSettle(t, f.ws.ID, "free-1", usd("3.00"))
		if got := f.spent(t, f.ws.ID); got != usd("3.00") {
			t.Fatalf("spent without cap: got %v, want $3.00", got)
		}
		must(t, f.svc.SetCap(f.ctx, f.ws.ID, usd("5.00")))
		a, err := f.svc.Reserve(f.ctx, f.ws.ID, "a", usd("1.50"), spend.Call{RunID: "run-1", StepKey: "agent", ProviderID: "p", Model: "m"})
		must(t, err)
		if a.Settled() || a.Status != spend.StatusReserved || a.Amount != usd("1.50") || a.Period != "2026-11" {
			t.Fatalf("reservation: got %+v", a)
		}
		// $3.00 spent + $1.50 held + $0.51 > $5.00.
		_, err = f.svc.Reserve(f.ctx, f.ws.ID, "b", usd("0.51"), spend.Call{})
		if !errors.Is(err, spend.ErrCapReached) {
			t.Fatalf("over the cap: got %v, want ErrCapReached", err)
		}
		var ce *spend.CapError
		if !errors.As(err, &ce) || ce.Spent != usd("3.00") || ce.Held != usd("1.50") || ce.Cap != usd("5.00") {
			t.Fatalf("cap error: got %+v", ce)
		}
		if apperr.Status(err) != 409 {
			t.Fatalf("cap error status: got %d, want 409", apperr.Status(err))
		}
		e, _ := apperr.As(err)
		want := "This call could cost up to $0.51, which would take the workspace over its spend cap of $5.00 for November 2026 ($3.00 spent, $1.50 held for calls in progress). Raise the cap or wait for the next period."
		if e == nil || e.Code != "spend_cap_reached" || e.Message != want {
			t.Fatalf("cap message:\n got %v\nwant %q", e, want)
		}
		// Exactly at the cap is allowed.
		b, err := f.svc.Reserve(f.ctx, f.ws.ID, "b", usd("0.50"), spend.Call{})
		must(t, err)
		// Settling below the worst case frees the difference.
		must(t, f.svc.Settle(f.ctx, a, usd("0.40"), llm.Usage{PromptTokens: 100, CompletionTokens: 20}))
		must(t, f.svc.Release(f.ctx, b))
		c, err := f.svc.Reserve(f.ctx, f.ws.ID, "c", usd("1.60"), spend.Call{})
		must(t, err)
		if _, err := f.svc.Reserve(f.ctx, f.ws.ID, "d", usd("0.01"), spend.Call{}); !errors.Is(err, spend.ErrCapReached) {
			t.Fatalf("$3.40 spent + $1.60 held + $0.01: got %v, want refused", err)
		}
		// Another workspace's cap is its own.
		f.reserveSettle(t, f.other.ID, "x", usd("50"))
		must(t, f.svc.Release(f.ctx, c))

		sum, err := f.svc.Summary(f.ctx, f.ws.ID, f.clock.now())
		must(t, err)
		if sum.Spent != usd("3.40") || sum.Held != 0 || sum.Cap != usd("5.00") || sum.Status != spend.UnderCap || sum.Percent != 68 {
			t.Fatalf("summary: got spent %v held %v cap %v status %q percent %d", sum.Spent, sum.Held, sum.Cap, sum.Status, sum.Percent)
		}
		var row struct {
			run, step, provider, model, status string
			prompt, completion                 int
		}
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT run_id, step_key, provider_id, model, status, prompt_tokens, completion_tokens FROM spend_entries WHERE ref = 'a'`).
			Scan(&row.run, &row.step, &row.provider, &row.model, &row.status, &row.prompt, &row.completion))
		if row.run != "run-1" || row.step != "agent" || row.provider != "p" || row.model != "m" || row.status != "settled" || row.prompt != 100 || row.completion != 20 {
			t.Fatalf("entry: got %+v", row)
		}

		// Caps are checked as given.
		if err := f.svc.SetCap(f.ctx, f.ws.ID, -1); apperr.Status(err) != 422 {
			t.Fatalf("negative cap: got %v, want 422", err)
		}
		must(t, f.svc.SetCap(f.ctx, f.ws.ID, 0))
		if sum, _ := f.svc.Summary(f.ctx, f.ws.ID, f.clock.now()); sum.Status != spend.NoCap || sum.Cap != 0 || sum.Percent != 0 {
			t.Fatalf("no cap: got %+v", sum)
		}
		f.reserveSettle(t, f.ws.ID, "big", usd("100"))
	})
}

func TestIdempotentRef(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		must(t, f.svc.SetCap(f.ctx, f.ws.ID, usd("1.00")))
		res, err := f.svc.Reserve(f.ctx, f.ws.ID, "run-1/agent/turn-1", usd("0.60"), spend.Call{})
		must(t, err)
		// The same step reserved again (a retry after a crash before the
		// call) renews its reservation, not a second one.
		again, err := f.svc.Reserve(f.ctx, f.ws.ID, "run-1/agent/turn-1", usd("0.70"), spend.Call{})
		must(t, err)
		if again.ID != res.ID || again.Amount != usd("0.70") {
			t.Fatalf("renewed reservation: got %+v, want the same entry at $0.70", again)
		}
		if sum, _ := f.svc.Summary(f.ctx, f.ws.ID, f.clock.now()); sum.Held != usd("0.70") {
			t.Fatalf("held after renewal: got %v, want $0.70 once", sum.Held)
		}
		must(t, f.svc.Settle(f.ctx, again, usd("0.30"), llm.Usage{}))
		// Settled twice (a crash after settling), or reserved again after
		// it settled: counted once, and the caller is told not to call.
		must(t, f.svc.Settle(f.ctx, again, usd("0.30"), llm.Usage{}))
		done, err := f.svc.Reserve(f.ctx, f.ws.ID, "run-1/agent/turn-1", usd("0.90"), spend.Call{})
		must(t, err)
		if !done.Settled() || done.Cost != usd("0.30") || done.ID != res.ID {
			t.Fatalf("reserve of a settled ref: got %+v, want the settled one", done)
		}
		must(t, f.svc.Settle(f.ctx, done, usd("0.90"), llm.Usage{}))
		if got := f.spent(t, f.ws.ID); got != usd("0.30") {
			t.Fatalf("spent: got %v, want $0.30 once", got)
		}
		// Release does not undo a settlement.
		must(t, f.svc.Release(f.ctx, done))
		if got := f.spent(t, f.ws.ID); got != usd("0.30") {
			t.Fatalf("spent after releasing a settled call: got %v, want $0.30", got)
		}
		// A released ref may be reserved again (the call is retried).
		r2, err := f.svc.Reserve(f.ctx, f.ws.ID, "run-1/agent/turn-2", usd("0.50"), spend.Call{})
		must(t, err)
		must(t, f.svc.Release(f.ctx, r2))
		if _, err := f.svc.Reserve(f.ctx, f.ws.ID, "run-1/agent/turn-2", usd("0.80"), spend.Call{}); !errors.Is(err, spend.ErrCapReached) {
			t.Fatalf("retry of a released call over the cap: got %v, want refused", err)
		}
		r2, err = f.svc.Reserve(f.ctx, f.ws.ID, "run-1/agent/turn-2", usd("0.70"), spend.Call{})
		must(t, err)
		if r2.Status != spend.StatusReserved {
			t.Fatalf("re-reserved: got %+v", r2)
		}
		var n int
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT count(*) FROM spend_entries WHERE workspace_id = $1`, f.ws.ID).Scan(&n))
		if n != 2 {
			t.Fatalf("entries: got %d, want one per ref (2)", n)
		}
	})
}

func TestConcurrentReservationsNeverExceedCap(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		must(t, f.svc.SetCap(f.ctx, f.ws.ID, usd("1.00")))
		// Two services stand for two processes sharing the database.
		other := spend.NewService(d, spend.Options{Now: f.clock.now})
		const workers, each = 8, 6
		cost := usd("0.07")
		var wg sync.WaitGroup
		var mu sync.Mutex
		granted, refused := 0, 0
		var failures []error
		for w := range workers {
			svc := f.svc
			if w%2 == 1 {
				svc = other
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					res, err := svc.Reserve(f.ctx, f.ws.ID, fmt.Sprintf("w%d-%d", w, i), cost, spend.Call{})
					mu.Lock()
					switch {
					case errors.Is(err, spend.ErrCapReached):
						refused++
					case err != nil:
						failures = append(failures, err)
					default:
						granted++
					}
					mu.Unlock()
					if err != nil {
						continue
					}
					// Half settle at the worst case, half stay open.
					if i%2 == 0 {
						if err := svc.Settle(f.ctx, res, cost, llm.Usage{}); err != nil {
							mu.Lock()
							failures = append(failures, err)
							mu.Unlock()
						}
					}
				}
			}()
		}
		wg.Wait()
		if len(failures) > 0 {
			t.Fatalf("unexpected errors: %v", failures)
		}
		// $1.00 / $0.07 = 14 calls fit, whatever the interleaving.
		if granted != 14 || refused != workers*each-14 {
			t.Fatalf("granted %d, refused %d; want 14 and %d", granted, refused, workers*each-14)
		}
		sum, err := f.svc.Summary(f.ctx, f.ws.ID, f.clock.now())
		must(t, err)
		if sum.Spent+sum.Held > usd("1.00") || sum.Spent+sum.Held != 14*cost {
			t.Fatalf("spent %v + held %v: want 14 × $0.07 and never over $1.00", sum.Spent, sum.Held)
		}
		// The notifications the settled spend reached went out once each.
		var dup int
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT count(*) FROM (SELECT kind FROM notifications WHERE workspace_id = $1 GROUP BY kind HAVING count(*) > 1) x`, f.ws.ID).Scan(&dup))
		if dup != 0 {
			t.Fatalf("%d notification kinds raised more than once", dup)
		}
	})
}

// notes lists the workspace's spend notifications as "kind|severity|title|link".
func (f *fixture) notes(t *testing.T, wsID string) []string {
	t.Helper()
	rows, err := f.d.Read().QueryContext(f.ctx, `SELECT kind, severity, title, link, body FROM notifications WHERE workspace_id = $1 ORDER BY created_at, kind`, wsID)
	must(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var kind, sev, title, link, body string
		must(t, rows.Scan(&kind, &sev, &title, &link, &body))
		out = append(out, kind+"|"+sev+"|"+title+"|"+link)
	}
	return out
}

func TestSoftNotifications(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		must(t, f.svc.SetCap(f.ctx, f.ws.ID, usd("10.00")))
		steps := []struct {
			cost string
			want []string
		}{
			{"4.00", nil},
			{"0.99", nil},
			{"0.01", []string{"spend-50|warning|Spend at 50% of the cap|/acme/analytics/costs"}},
			{"2.00", nil},
			{"1.00", []string{"spend-80|warning|Spend at 80% of the cap|/acme/analytics/costs"}},
			{"1.49", nil},
			{"0.01", []string{"spend-95|critical|Spend at 95% of the cap|/acme/analytics/costs"}},
			{"0.50", nil},
		}
		var want []string
		for i, st := range steps {
			f.reserveSettle(t, f.ws.ID, fmt.Sprintf("call-%d", i), usd(st.cost))
			want = append(want, st.want...)
			if got := f.notes(t, f.ws.ID); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("after step %d ($%s): notifications\n got %q\nwant %q", i, st.cost, got, want)
			}
		}
		var body string
		must(t, d.Read().QueryRowContext(f.ctx, `SELECT body FROM notifications WHERE kind = 'spend-80'`).Scan(&body))
		if !strings.Contains(body, "$8.00 of its $10.00 spend cap for November 2026") {
			t.Fatalf("80%% body: %q", body)
		}
		// Raising and lowering the cap in the period raises nothing again.
		must(t, f.svc.SetCap(f.ctx, f.ws.ID, usd("100")))
		must(t, f.svc.SetCap(f.ctx, f.ws.ID, usd("10")))
		if got := f.notes(t, f.ws.ID); len(got) != 3 {
			t.Fatalf("after changing the cap: got %q, want the same 3", got)
		}

		// One jump past all three says so once, at 95%.
		must(t, f.svc.SetCap(f.ctx, f.other.ID, usd("1.00")))
		f.reserveSettle(t, f.other.ID, "jump", usd("0.97"))
		if got := f.notes(t, f.other.ID); len(got) != 1 || !strings.HasPrefix(got[0], "spend-95|critical|") || !strings.HasSuffix(got[0], "/beta/analytics/costs") {
			t.Fatalf("jump to 97%%: got %q, want only the 95%% one", got)
		}
		f.reserveSettle(t, f.other.ID, "more", usd("0.01"))
		if got := f.notes(t, f.other.ID); len(got) != 1 {
			t.Fatalf("after the jump: got %q, want no more", got)
		}
	})
}

func TestPeriodRollsOver(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		must(t, f.svc.SetCap(f.ctx, f.ws.ID, usd("1.00")))
		f.clock.set(time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC))
		f.reserveSettle(t, f.ws.ID, "nov-1", usd("0.55"))
		f.clock.set(time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC))
		f.reserveSettle(t, f.ws.ID, "nov-2", usd("0.35"))
		open, err := f.svc.Reserve(f.ctx, f.ws.ID, "nov-open", usd("0.05"), spend.Call{})
		must(t, err)
		_, err = f.svc.Reserve(f.ctx, f.ws.ID, "nov-3", usd("0.20"), spend.Call{})
		if !errors.Is(err, spend.ErrCapReached) || !strings.Contains(err.Error(), "November 2026") {
			t.Fatalf("end of November: got %v, want refused for November 2026", err)
		}

		f.clock.set(time.Date(2026, 12, 1, 0, 1, 0, 0, time.UTC))
		dec, err := f.svc.Reserve(f.ctx, f.ws.ID, "dec-1", usd("0.95"), spend.Call{})
		must(t, err)
		must(t, f.svc.Settle(f.ctx, dec, usd("0.60"), llm.Usage{}))
		must(t, f.svc.Settle(f.ctx, open, usd("0.05"), llm.Usage{})) // November's call, settled late

		sum, err := f.svc.Summary(f.ctx, f.ws.ID, f.clock.now())
		must(t, err)
		if sum.Period.Key() != "2026-12" || sum.Spent != usd("0.60") || sum.Status != spend.UnderCap {
			t.Fatalf("December: got %s spent %v status %q", sum.Period.Key(), sum.Spent, sum.Status)
		}
		if sum.Previous.Period.Label() != "November 2026" || sum.Previous.Spent != usd("0.95") || len(sum.Previous.Days) != 30 {
			t.Fatalf("November: got %s spent %v over %d days", sum.Previous.Period.Label(), sum.Previous.Spent, len(sum.Previous.Days))
		}
		if len(sum.Days) != 31 || sum.Days[0].Spent != usd("0.60") || !sum.Days[0].Date.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("December days: got %d, first %+v", len(sum.Days), sum.Days[0])
		}
		if nov := sum.Previous.Days; nov[2].Spent != usd("0.55") || nov[29].Spent != usd("0.40") {
			t.Fatalf("November days: 3rd %v, 30th %v; want $0.55 and $0.40", nov[2].Spent, nov[29].Spent)
		}
		// November's alerts (50%, 80%, 95% reached) do not stop December's.
		kinds := map[string]int{}
		for _, n := range f.notes(t, f.ws.ID) {
			kinds[strings.SplitN(n, "|", 2)[0]]++
		}
		if kinds["spend-50"] != 2 || kinds["spend-80"] != 1 || kinds["spend-95"] != 1 {
			t.Fatalf("notifications by kind: got %v, want 50%% in each month, 80%% and 95%% in November", kinds)
		}
	})
}

func TestStaleReservationStopsCounting(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		must(t, f.svc.SetCap(f.ctx, f.ws.ID, usd("1.00")))
		_, err := f.svc.Reserve(f.ctx, f.ws.ID, "lost", usd("0.90"), spend.Call{})
		must(t, err)
		if _, err := f.svc.Reserve(f.ctx, f.ws.ID, "next", usd("0.20"), spend.Call{}); !errors.Is(err, spend.ErrCapReached) {
			t.Fatalf("with $0.90 held: got %v, want refused", err)
		}
		// The process holding it died; after the TTL it no longer counts.
		f.clock.set(f.clock.now().Add(61 * time.Minute))
		if _, err := f.svc.Reserve(f.ctx, f.ws.ID, "next", usd("0.20"), spend.Call{}); err != nil {
			t.Fatalf("after the reservation went stale: %v", err)
		}
	})
}

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		spent, cap string
		want       spend.CapStatus
	}{
		{"5", "0", spend.NoCap},
		{"0", "10", spend.UnderCap},
		{"7.99", "10", spend.UnderCap},
		{"8", "10", spend.NearCap},
		{"9.99", "10", spend.NearCap},
		{"10", "10", spend.CapReached},
	} {
		if got := spend.StatusOf(usd(tc.spent), usd(tc.cap)); got != tc.want {
			t.Errorf("StatusOf(%s, %s): got %q, want %q", tc.spent, tc.cap, got, tc.want)
		}
	}
}

type alertRecorder struct{ calls []string }

func (a *alertRecorder) SpendAlert(_ context.Context, _ db.Querier, workspaceID, title, _, link string) error {
	a.calls = append(a.calls, workspaceID+"|"+title+"|"+link)
	return nil
}

// The critical alert (95%) is also handed to the Alerter, which emails
// it; the 50% and 80% ones are not.
func TestCriticalSpendAlertIsEmailed(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		rec := &alertRecorder{}
		f.svc = spend.NewService(d, spend.Options{Now: f.clock.now, Alerts: rec})
		must(t, f.svc.SetCap(f.ctx, f.ws.ID, usd("10.00")))
		for i, cost := range []string{"5.00", "3.00", "1.50", "0.40"} {
			f.reserveSettle(t, f.ws.ID, fmt.Sprintf("call-%d", i), usd(cost))
		}
		if len(rec.calls) != 1 || rec.calls[0] != f.ws.ID+"|Spend at 95% of the cap|/acme/analytics/costs" {
			t.Fatalf("emailed alerts: %q, want the 95%% one once", rec.calls)
		}
	})
}
