package account_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

func TestSignInAndSessions(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		sess, p, err := f.svc.SignIn(ctx, " OWNER@a.example ", pw, "10.0.0.1", "test")
		if err != nil {
			t.Fatalf("sign in: %v", err)
		}
		if p.Role != account.RoleOwner {
			t.Fatalf("role: got %q", p.Role)
		}
		got, err := f.svc.SessionPrincipal(ctx, sess.Token)
		if err != nil || got.User.ID != p.User.ID {
			t.Fatalf("session principal: got %+v, %v", got, err)
		}
		// Only the hash is stored.
		var stored string
		if err := d.Read().QueryRowContext(ctx, `SELECT token_hash FROM sessions`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(stored, sess.Token) {
			t.Fatal("session token stored in clear")
		}
		if err := f.svc.SignOut(ctx, sess.Token); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.SessionPrincipal(ctx, sess.Token); !apperr.Is(err, apperr.KindUnauthorized) {
			t.Fatalf("after sign-out: got %v, want unauthorized", err)
		}
	})
}

// clock is a settable time for the service.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock(svc *account.Service) *clock {
	c := &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	svc.SetClock(c.Now)
	return c
}

// tryPassword is a persistent guesser: it waits out every back-off and
// returns the verdict on the password itself.
func tryPassword(t *testing.T, svc *account.Service, c *clock, email, password, ip string) error {
	t.Helper()
	for range 100 {
		_, _, err := svc.SignIn(context.Background(), email, password, ip, "")
		wait, ok := account.RetryAfter(err)
		if !ok {
			return err
		}
		if wait <= 0 || wait > account.MaxBackoff {
			t.Fatalf("back-off %v, want between 0 and %v", wait, account.MaxBackoff)
		}
		c.Advance(wait)
	}
	t.Fatal("still backed off after 100 waits")
	return nil
}

// The test: a flood of failures from one address slows that
// address down, but the right password from elsewhere signs in at once,
// and from the failing address once its back-off is over.
func TestSignInBackoffSlowsAttackersNotUsers(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		c := newClock(f.svc)
		ctx := context.Background()
		const attacker, elsewhere = "203.0.113.9", "198.51.100.4"
		for i := range 30 {
			if err := tryPassword(t, f.svc, c, "owner@a.example", fmt.Sprintf("guess %d!!", i), attacker); !apperr.Is(err, apperr.KindUnauthorized) {
				t.Fatalf("wrong password %d: got %v, want unauthorized", i+1, err)
			}
		}
		for i := range 60 {
			email := fmt.Sprintf("someone%d@a.example", i%7)
			if i%3 == 0 {
				email = "member@a.example"
			}
			if err := tryPassword(t, f.svc, c, email, "not the password", attacker); !apperr.Is(err, apperr.KindUnauthorized) {
				t.Fatalf("wrong password for %s: got %v, want unauthorized", email, err)
			}
		}
		// The right password from an address that has not been failing.
		if _, _, err := f.svc.SignIn(ctx, "owner@a.example", pw, elsewhere, ""); err != nil {
			t.Fatalf("right password from another address: got %v, want signed in", err)
		}
		// From the failing address: not yet, then after its back-off.
		_, _, err := f.svc.SignIn(ctx, "owner@a.example", pw, attacker, "")
		wait, ok := account.RetryAfter(err)
		if !ok || !apperr.Is(err, apperr.KindTooMany) {
			t.Fatalf("right password from the failing address at once: got %v, want a back-off", err)
		}
		if e, _ := apperr.As(err); !strings.HasPrefix(e.Message, account.MsgTooManyAttempts) {
			t.Fatalf("back-off message %q", e.Message)
		}
		if wait > account.MaxBackoff {
			t.Fatalf("back-off %v, want at most %v", wait, account.MaxBackoff)
		}
		c.Advance(wait)
		if _, _, err := f.svc.SignIn(ctx, "owner@a.example", pw, attacker, ""); err != nil {
			t.Fatalf("right password after the back-off: got %v, want signed in", err)
		}
		// The address's failures stay: its next wrong guess waits again.
		if err := tryPassword(t, f.svc, c, "member@a.example", "still guessing", attacker); !apperr.Is(err, apperr.KindUnauthorized) {
			t.Fatalf("wrong password: got %v", err)
		}
		if _, _, err := f.svc.SignIn(ctx, "admin@a.example", "another guess", attacker, ""); !apperr.Is(err, apperr.KindTooMany) {
			t.Fatalf("guess right after a failure from a flooding address: got %v, want a back-off", err)
		}
	})
}

// A few typing mistakes cost nothing; more cost a short wait that grows,
// and the wait is per address: another address is not slowed.
func TestSignInBackoffGrows(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		c := newClock(f.svc)
		ctx := context.Background()
		for i := range account.FreePairFailures - 1 {
			if _, _, err := f.svc.SignIn(ctx, "member@a.example", "typo typo typo", "10.0.0.1", ""); !apperr.Is(err, apperr.KindUnauthorized) {
				t.Fatalf("attempt %d: got %v, want unauthorized", i+1, err)
			}
		}
		if _, _, err := f.svc.SignIn(ctx, "member@a.example", pw, "10.0.0.1", ""); err != nil {
			t.Fatalf("right password after %d typos: %v", account.FreePairFailures-1, err)
		}
		for range account.FreePairFailures - 1 {
			_ = tryPassword(t, f.svc, c, "member@a.example", "wrong wrong", "10.0.0.1")
		}
		var last time.Duration
		for i := range 4 {
			if err := tryPassword(t, f.svc, c, "member@a.example", "wrong wrong", "10.0.0.1"); !apperr.Is(err, apperr.KindUnauthorized) {
				t.Fatalf("attempt %d: got %v", i+1, err)
			}
			_, _, err := f.svc.SignIn(ctx, "member@a.example", pw, "10.0.0.1", "")
			wait, ok := account.RetryAfter(err)
			if !ok || wait <= last {
				t.Fatalf("after %d failures: back-off %v (%v), want more than %v", account.FreePairFailures+i, wait, err, last)
			}
			last = wait
			if _, _, err := f.svc.SignIn(ctx, "member@a.example", pw, "10.0.0.2", ""); err != nil {
				t.Fatalf("right password from another address: %v", err)
			}
		}
		// An admin reset clears the person's back-offs.
		if err := f.svc.ResetPassword(ctx, "member@a.example", "a brand new password"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.SignIn(ctx, "member@a.example", "a brand new password", "10.0.0.1", ""); err != nil {
			t.Fatalf("after reset: %v", err)
		}
	})
}

// An IPv6 machine holds a whole /64: its addresses share one count.
func TestSignInBackoffCountsIPv6By64(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		c := newClock(f.svc)
		for i := range account.FreePairFailures {
			if err := tryPassword(t, f.svc, c, "admin@a.example", "nope nope", fmt.Sprintf("2001:db8::%x", i+1)); !apperr.Is(err, apperr.KindUnauthorized) {
				t.Fatalf("attempt %d: got %v", i+1, err)
			}
		}
		ctx := context.Background()
		if _, _, err := f.svc.SignIn(ctx, "admin@a.example", pw, "2001:db8::ffff", ""); !apperr.Is(err, apperr.KindTooMany) {
			t.Fatalf("same /64: got %v, want a back-off", err)
		}
		if _, _, err := f.svc.SignIn(ctx, "admin@a.example", pw, "2001:db8:0:1::1", ""); err != nil {
			t.Fatalf("another /64: got %v, want signed in", err)
		}
	})
}

// A burst of parallel guesses gets no more tries than guesses one after
// another: each attempt is counted when it is let through.
func TestParallelGuessesGetNoExtraTries(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		newClock(f.svc)
		const n = 24
		verdicts := make(chan error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, _, err := f.svc.SignIn(context.Background(), "owner@a.example", fmt.Sprintf("guess number %d", i), "10.9.9.9", "")
				verdicts <- err
			})
		}
		wg.Wait()
		close(verdicts)
		checked := 0
		for err := range verdicts {
			switch {
			case apperr.Is(err, apperr.KindUnauthorized):
				checked++
			case !apperr.Is(err, apperr.KindTooMany):
				t.Fatalf("parallel guess: got %v", err)
			}
		}
		if checked > account.FreePairFailures {
			t.Fatalf("%d of %d parallel guesses were checked, want at most %d", checked, n, account.FreePairFailures)
		}
		if checked == 0 {
			t.Fatal("no parallel guess was checked")
		}
	})
}

func TestUnknownEmailGetsSameMessage(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		_, _, err := f.svc.SignIn(context.Background(), "nobody@a.example", pw, "10.0.0.1", "")
		if e, ok := apperr.As(err); !ok || e.Message != account.MsgBadCredentials {
			t.Fatalf("unknown email: got %v, want %q", err, account.MsgBadCredentials)
		}
	})
}

func TestResetPasswordEndsSessions(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		sess, _, err := f.svc.SignIn(ctx, "member@a.example", pw, "10.0.0.1", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := f.svc.ResetPassword(ctx, "member@a.example", "short"); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("short password: got %v, want invalid", err)
		}
		if err := f.svc.ResetPassword(ctx, "member@a.example", "another long password"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.SessionPrincipal(ctx, sess.Token); !apperr.Is(err, apperr.KindUnauthorized) {
			t.Fatalf("old session after reset: got %v, want unauthorized", err)
		}
		if _, _, err := f.svc.SignIn(ctx, "member@a.example", pw, "10.0.0.1", ""); !apperr.Is(err, apperr.KindUnauthorized) {
			t.Fatalf("old password after reset: got %v, want unauthorized", err)
		}
	})
}

func TestAPITokens(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		secret, tok, err := f.svc.CreateAPIToken(ctx, f.member, "CI")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(secret, account.APITokenPrefix) || !strings.HasPrefix(secret, tok.Prefix) {
			t.Fatalf("token %q does not start with its prefix %q", secret, tok.Prefix)
		}
		p, err := f.svc.TokenPrincipal(ctx, secret)
		if err != nil || p.User.ID != f.member.User.ID || p.Via != "token" {
			t.Fatalf("token principal: got %+v, %v", p, err)
		}
		// Someone else cannot revoke it.
		if err := f.svc.RevokeAPIToken(ctx, f.owner, tok.ID); !apperr.IsNotFound(err) {
			t.Fatalf("owner revokes member's token: got %v, want not found", err)
		}
		if err := f.svc.RevokeAPIToken(ctx, f.member, tok.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.TokenPrincipal(ctx, secret); !apperr.Is(err, apperr.KindUnauthorized) {
			t.Fatalf("revoked token: got %v, want unauthorized", err)
		}
		list, err := f.svc.APITokens(ctx, f.member)
		if err != nil || len(list) != 1 || list[0].RevokedAt == nil || list[0].LastUsedAt == nil {
			t.Fatalf("token list: got %+v, %v", list, err)
		}
		if _, err := f.svc.TokenPrincipal(ctx, "tjp_madeup"); !apperr.Is(err, apperr.KindUnauthorized) {
			t.Fatalf("unknown token: got %v, want unauthorized", err)
		}
	})
}
