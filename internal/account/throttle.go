package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
)

// Sign-in limits slow guessing down instead of locking people out.
// Failures are counted for the (email, address) pair and for the address;
// past a number of free failures, each further one doubles the wait before
// the next attempt for that key, up to a ceiling. Nothing is counted per
// email alone, so failures from one place never stop the right password
// from another. Kept in the database so every process agrees.
const (
	// SigninWindow is how long a key's failures are remembered after the
	// last one.
	SigninWindow = time.Hour
	// FreePairFailures and FreeAddressFailures are the failures allowed
	// before any wait.
	FreePairFailures    = 5
	FreeAddressFailures = 30
	// MaxBackoff is the longest wait between attempts.
	MaxBackoff = 10 * time.Minute
)

// MsgTooManyAttempts starts the message shown while a back-off lasts.
const MsgTooManyAttempts = "Too many failed sign-in attempts from this address."

// backoff is the wait after the failures'th failure of a key allowing free
// failures without one: one second, doubling, up to MaxBackoff.
func backoff(failures, free int) time.Duration {
	if failures < free {
		return 0
	}
	d := time.Second
	for range failures - free {
		d *= 2
		if d >= MaxBackoff {
			return MaxBackoff
		}
	}
	return d
}

// throttleKey is one counter: a pair (email set) or an address (email "").
type throttleKey struct {
	email, ip string
	free      int
}

func throttleKeys(email, ip string) []throttleKey {
	ip = addressKey(ip)
	return []throttleKey{{email: "", ip: ip, free: FreeAddressFailures}, {email: email, ip: ip, free: FreePairFailures}}
}

// addressKey is what an address counts as: itself, or for IPv6 its /64,
// which one machine usually holds whole (counting each of its addresses
// apart would give it endless fresh starts).
func addressKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}

// throttled is a refused attempt: the user-facing error and how long to
// wait.
type throttled struct {
	err  *apperr.Error
	wait time.Duration
}

func (t *throttled) Error() string { return t.err.Error() }
func (t *throttled) Unwrap() error { return t.err }

// RetryAfter says how long to wait when err is a sign-in back-off.
func RetryAfter(err error) (time.Duration, bool) {
	var t *throttled
	if errors.As(err, &t) {
		return t.wait, true
	}
	return 0, false
}

func tooMany(wait time.Duration) error {
	secs := int((wait + time.Second - 1) / time.Second) // whole seconds, rounded up
	if secs < 1 {
		secs = 1
	}
	when := fmt.Sprintf("%d seconds", secs)
	switch {
	case secs == 1:
		when = "1 second"
	case secs >= 90:
		when = fmt.Sprintf("%d minutes", (secs+59)/60)
	}
	return &throttled{err: apperr.TooMany(MsgTooManyAttempts + " Try again in " + when + "."), wait: time.Duration(secs) * time.Second}
}

// attempt is an admitted try at a password or code. It counts as a
// failure from the moment it is admitted, so parallel guesses cannot slip
// in between a check and its verdict; release takes it back when it turns
// out right.
type attempt struct {
	claims []claim
}

// claim is one key's count raised by an attempt.
type claim struct {
	k        throttleKey
	failures int       // the count with this attempt in it
	prevLast time.Time // the last failure before it
}

// maxClaimTries bounds the retries of a count that other attempts keep
// changing under us.
const maxClaimTries = 5

// admit lets an attempt through, counting it as a failure against every
// key, or refuses it while any key's back-off lasts.
func (s *Service) admit(ctx context.Context, email, ip string) (*attempt, error) {
	a := &attempt{}
	for _, k := range throttleKeys(email, ip) {
		c, err := s.claim(ctx, k)
		if err != nil {
			if rerr := s.release(ctx, s.db.Write(), a, false); rerr != nil {
				return nil, rerr
			}
			return nil, err
		}
		a.claims = append(a.claims, c)
	}
	return a, nil
}

// claim raises one key's count by compare-and-swap: of attempts racing on
// the same count one wins, and the others read again and meet the wait
// the winner started.
func (s *Service) claim(ctx context.Context, k throttleKey) (claim, error) {
	for range maxClaimTries {
		now := s.now()
		var failures int
		var last time.Time
		err := s.db.Write().QueryRowContext(ctx, `SELECT failures, last_failure_at FROM signin_throttle WHERE email = $1 AND ip = $2`,
			k.email, k.ip).Scan(&failures, &last)
		if errors.Is(err, sql.ErrNoRows) {
			res, err := s.db.Write().ExecContext(ctx, `INSERT INTO signin_throttle (email, ip, failures, last_failure_at) VALUES ($1, $2, 1, $3)
				ON CONFLICT (email, ip) DO NOTHING`, k.email, k.ip, now)
			if err != nil {
				return claim{}, fmt.Errorf("count sign-in attempt: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				return claim{k: k, failures: 1}, nil
			}
			continue
		}
		if err != nil {
			return claim{}, fmt.Errorf("read sign-in limits: %w", err)
		}
		next := failures + 1
		if !last.After(now.Add(-SigninWindow)) {
			next = 1 // the old failures are forgotten
		} else if until := last.Add(backoff(failures, k.free)); until.After(now) {
			return claim{}, tooMany(until.Sub(now))
		}
		res, err := s.db.Write().ExecContext(ctx, `UPDATE signin_throttle SET failures = $1, last_failure_at = $2
			WHERE email = $3 AND ip = $4 AND failures = $5`, next, now, k.email, k.ip, failures)
		if err != nil {
			return claim{}, fmt.Errorf("count sign-in attempt: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return claim{k: k, failures: next, prevLast: last}, nil
		}
	}
	return claim{}, tooMany(time.Second)
}

// release takes an attempt back: it did not fail. Each count drops by one
// (and its last failure is restored when no attempt counted since); when
// the sign-in is complete the pair's failures are forgotten altogether
// (the address's stay).
func (s *Service) release(ctx context.Context, q db.Querier, a *attempt, complete bool) error {
	for _, c := range a.claims {
		if complete && c.k.email != "" {
			if _, err := q.ExecContext(ctx, `DELETE FROM signin_throttle WHERE email = $1 AND ip = $2`, c.k.email, c.k.ip); err != nil {
				return fmt.Errorf("clear sign-in failures: %w", err)
			}
			continue
		}
		if _, err := q.ExecContext(ctx, `UPDATE signin_throttle SET failures = failures - 1,
			last_failure_at = CASE WHEN failures = $1 AND failures > 1 THEN $2 ELSE last_failure_at END
			WHERE email = $3 AND ip = $4 AND failures > 0`, c.failures, c.prevLast, c.k.email, c.k.ip); err != nil {
			return fmt.Errorf("release sign-in attempt: %w", err)
		}
		if _, err := q.ExecContext(ctx, `DELETE FROM signin_throttle WHERE email = $1 AND ip = $2 AND failures = 0`, c.k.email, c.k.ip); err != nil {
			return fmt.Errorf("release sign-in attempt: %w", err)
		}
	}
	return nil
}
