package account_test

import (
	"bytes"
	"context"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/vault"
)

func withVault(t *testing.T, svc *account.Service) {
	t.Helper()
	key, _, err := vault.LoadKey("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc.UseVault(vault.NewKeyring(key))
}

func code(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mfaSetup is setup with a vault for MFA secrets and a clock tests move.
func mfaSetup(t *testing.T, d *db.DB) (fixture, *clock) {
	t.Helper()
	f := setup(t, d)
	withVault(t, f.svc)
	return f, newClock(f.svc)
}

// enroll turns MFA on for p and returns the secret and backup codes.
func enroll(t *testing.T, svc *account.Service, c *clock, p account.Principal) (string, []string) {
	t.Helper()
	ctx := context.Background()
	setup, err := svc.BeginMFASetup(ctx, p)
	if err != nil {
		t.Fatalf("begin setup: %v", err)
	}
	codes, err := svc.EnableMFA(ctx, p, code(t, setup.Key, c.Now()))
	if err != nil {
		t.Fatalf("enable: %v", err)
	}
	return setup.Key, codes
}

func TestMFASetupSealsTheSecret(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, c := mfaSetup(t, d)
		ctx := context.Background()
		setup, err := f.svc.BeginMFASetup(ctx, f.owner)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(setup.URL, "otpauth://totp/TaskJuice:") || !strings.Contains(setup.URL, "issuer=TaskJuice") {
			t.Fatalf("otpauth URL %q lacks the TaskJuice issuer", setup.URL)
		}
		if img, err := png.Decode(bytes.NewReader(setup.QR)); err != nil || img.Bounds().Dx() < 100 {
			t.Fatalf("QR code is not a PNG image: %v", err)
		}
		// The page shows the same key again until setup is finished.
		again, ok, err := f.svc.PendingMFASetup(ctx, f.owner)
		if err != nil || !ok || again.Key != setup.Key {
			t.Fatalf("pending setup: got %v %v, want the same key", ok, err)
		}
		var kind string
		var sealed []byte
		if err := d.Read().QueryRowContext(ctx, `SELECT kind, ciphertext FROM credentials`).Scan(&kind, &sealed); err != nil {
			t.Fatal(err)
		}
		if kind != string(vault.KindMFASecret) || bytes.Contains(sealed, []byte(setup.Key)) {
			t.Fatalf("vault row: kind %q, secret in clear %v", kind, bytes.Contains(sealed, []byte(setup.Key)))
		}
		if _, err := f.svc.EnableMFA(ctx, f.owner, "000000"); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("enable with a wrong code: got %v, want invalid", err)
		}
		codes, err := f.svc.EnableMFA(ctx, f.owner, code(t, setup.Key, c.Now()))
		if err != nil || len(codes) != account.BackupCodeCount {
			t.Fatalf("enable: got %d codes, %v", len(codes), err)
		}
		var stored int
		if err := d.Read().QueryRowContext(ctx, `SELECT count(*) FROM mfa_backup_codes WHERE code_hash IN ($1, $2)`, codes[0], strings.ReplaceAll(codes[0], "-", "")).Scan(&stored); err != nil || stored != 0 {
			t.Fatalf("backup codes stored in clear: %d, %v", stored, err)
		}
		// Once on, the secret is never shown again.
		if _, ok, err := f.svc.PendingMFASetup(ctx, f.owner); ok || err != nil {
			t.Fatalf("pending setup after enabling: got %v, %v; want none", ok, err)
		}
		if _, err := f.svc.BeginMFASetup(ctx, f.owner); !apperr.Is(err, apperr.KindConflict) {
			t.Fatalf("setup while on: got %v, want conflict", err)
		}
		st, err := f.svc.MFAStatusOf(ctx, f.owner)
		if err != nil || !st.Enabled || st.BackupCodesLeft != account.BackupCodeCount {
			t.Fatalf("status: got %+v, %v", st, err)
		}
	})
}

func TestMFASignInTakesACodeOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, c := mfaSetup(t, d)
		ctx := context.Background()
		secret, backups := enroll(t, f.svc, c, f.owner)
		enrollCode := code(t, secret, c.Now())

		if _, _, err := f.svc.SignIn(ctx, "owner@a.example", pw, "10.0.0.1", ""); !apperr.Is(err, apperr.KindUnauthorized) {
			t.Fatalf("password alone: got %v, want unauthorized", err)
		}
		step := passwordStep(t, f.svc, "owner@a.example")
		// The code that turned MFA on was used in this time step already.
		if _, _, err := f.svc.CompleteMFA(ctx, step.MFAToken, enrollCode, "10.0.0.1", ""); !apperr.Is(err, apperr.KindUnauthorized) {
			t.Fatalf("replayed enrollment code: got %v, want unauthorized", err)
		}
		c.Advance(30 * time.Second)
		now := code(t, secret, c.Now())
		sess, p, err := f.svc.CompleteMFA(ctx, step.MFAToken, now, "10.0.0.1", "")
		if err != nil || p.User.Email != "owner@a.example" || sess.Token == "" {
			t.Fatalf("right code: got %+v, %v", p, err)
		}
		if _, _, err := f.svc.CompleteMFA(ctx, step.MFAToken, now, "10.0.0.1", ""); !apperr.Is(err, apperr.KindGone) {
			t.Fatalf("finished challenge used again: got %v, want gone", err)
		}
		// The same code in a new sign-in, still inside its window: refused.
		step = passwordStep(t, f.svc, "owner@a.example")
		c.Advance(10 * time.Second)
		if _, _, err := f.svc.CompleteMFA(ctx, step.MFAToken, now, "10.0.0.1", ""); !apperr.Is(err, apperr.KindUnauthorized) {
			t.Fatalf("replayed code: got %v, want unauthorized", err)
		}
		// A backup code works once.
		if _, _, err := f.svc.CompleteMFA(ctx, step.MFAToken, strings.ToUpper(backups[3]), "10.0.0.1", ""); err != nil {
			t.Fatalf("backup code: %v", err)
		}
		step = passwordStep(t, f.svc, "owner@a.example")
		if _, _, err := f.svc.CompleteMFA(ctx, step.MFAToken, backups[3], "10.0.0.1", ""); !apperr.Is(err, apperr.KindUnauthorized) {
			t.Fatalf("backup code used twice: got %v, want unauthorized", err)
		}
		if st, _ := f.svc.MFAStatusOf(ctx, f.owner); st.BackupCodesLeft != account.BackupCodeCount-1 {
			t.Fatalf("backup codes left: got %d", st.BackupCodesLeft)
		}
		// A challenge expires.
		c.Advance(account.MFAChallengeTTL + time.Second)
		if _, _, err := f.svc.CompleteMFA(ctx, step.MFAToken, code(t, secret, c.Now()), "10.0.0.1", ""); !apperr.Is(err, apperr.KindGone) {
			t.Fatalf("expired challenge: got %v, want gone", err)
		}
	})
}

func passwordStep(t *testing.T, svc *account.Service, email string) account.SignInStep {
	t.Helper()
	step, err := svc.PasswordStep(context.Background(), email, pw, "10.0.0.1", "")
	if err != nil || step.MFAToken == "" || step.Session.Token != "" {
		t.Fatalf("password step: got %+v, %v; want a code awaited", step, err)
	}
	return step
}

func TestWrongMFACodesCountAgainstSigninLimits(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, c := mfaSetup(t, d)
		ctx := context.Background()
		enroll(t, f.svc, c, f.admin)
		step := passwordStep(t, f.svc, "admin@a.example")
		var err error
		for range account.FreePairFailures {
			_, _, err = f.svc.CompleteMFA(ctx, step.MFAToken, "123456", "10.0.0.1", "")
		}
		// The fifth wrong code ends the challenge and starts a back-off.
		if !apperr.Is(err, apperr.KindGone) {
			t.Fatalf("after %d wrong codes: got %v, want the sign-in ended", account.FreePairFailures, err)
		}
		if _, err := f.svc.PasswordStep(ctx, "admin@a.example", pw, "10.0.0.1", ""); !apperr.Is(err, apperr.KindTooMany) {
			t.Fatalf("password right after wrong codes: got %v, want a back-off", err)
		}
		if _, err := f.svc.PasswordStep(ctx, "admin@a.example", pw, "10.0.0.2", ""); err != nil {
			t.Fatalf("from another address: %v", err)
		}
	})
}

func TestMFATurnOffAndNewBackupCodesNeedACode(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, c := mfaSetup(t, d)
		ctx := context.Background()
		secret, old := enroll(t, f.svc, c, f.member)
		if _, err := f.svc.RegenerateBackupCodes(ctx, f.member, "000000", "10.0.0.1"); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("new codes with a wrong code: got %v, want invalid", err)
		}
		fresh, err := f.svc.RegenerateBackupCodes(ctx, f.member, old[0], "10.0.0.1")
		if err != nil || len(fresh) != account.BackupCodeCount {
			t.Fatalf("new codes: got %d, %v", len(fresh), err)
		}
		if err := f.svc.DisableMFA(ctx, f.member, old[1], "10.0.0.1"); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("turn off with a replaced backup code: got %v, want invalid", err)
		}
		c.Advance(time.Minute)
		if err := f.svc.DisableMFA(ctx, f.member, code(t, secret, c.Now()), "10.0.0.1"); err != nil {
			t.Fatalf("turn off: %v", err)
		}
		if st, _ := f.svc.MFAStatusOf(ctx, f.member); st.Enabled || st.Pending {
			t.Fatalf("status after turning off: %+v", st)
		}
		if n := count(t, d, "credentials"); n != 0 {
			t.Fatalf("vault rows after turning off: got %d, want 0", n)
		}
		if _, _, err := f.svc.SignIn(ctx, "member@a.example", pw, "10.0.0.3", ""); err != nil {
			t.Fatalf("password sign-in with MFA off: %v", err)
		}
	})
}

func TestMFAIsForStaffOnly(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		withVault(t, f.svc)
		ctx := context.Background()
		ws, err := f.svc.CreateWorkspace(ctx, f.owner, "Client Co", "client-co")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.CreateClient(ctx, ws.ID, account.NewUser{Email: "client@c.example", Password: pw}); err != nil {
			t.Fatal(err)
		}
		client := mustPrincipal(t, f.svc, "client@c.example")
		if _, err := f.svc.BeginMFASetup(ctx, client); !apperr.Is(err, apperr.KindForbidden) {
			t.Fatalf("client setup: got %v, want forbidden", err)
		}
		if err := f.svc.SetMFAPolicy(ctx, f.owner, true, 0); err != nil {
			t.Fatal(err)
		}
		sess, _, err := f.svc.SignIn(ctx, "client@c.example", pw, "10.0.0.1", "")
		if err != nil {
			t.Fatal(err)
		}
		if p, err := f.svc.SessionPrincipal(ctx, sess.Token); err != nil || p.MFAHold {
			t.Fatalf("client under a requirement: got hold %v, %v; clients are never enrolled", p.MFAHold, err)
		}
		roster, err := f.svc.MFARoster(ctx, f.owner)
		if err != nil || len(roster) != 3 {
			t.Fatalf("roster: got %d entries, %v; want the 3 staff", len(roster), err)
		}
	})
}

func TestRequiredMFAHoldsStaffAfterGrace(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, c := mfaSetup(t, d)
		ctx := context.Background()
		if err := f.svc.SetMFAPolicy(ctx, f.member, true, 3); !apperr.Is(err, apperr.KindForbidden) {
			t.Fatalf("member requires MFA: got %v, want forbidden", err)
		}
		if err := f.svc.SetMFAPolicy(ctx, f.admin, true, account.MaxGraceDays+1); !apperr.Is(err, apperr.KindInvalid) {
			t.Fatalf("grace too long: got %v, want invalid", err)
		}
		if err := f.svc.SetMFAPolicy(ctx, f.admin, true, 3); err != nil {
			t.Fatal(err)
		}
		enroll(t, f.svc, c, f.owner)
		member, _, err := f.svc.SignIn(ctx, "member@a.example", pw, "10.0.0.1", "")
		if err != nil {
			t.Fatal(err)
		}
		hold := func(tok string) bool {
			t.Helper()
			p, err := f.svc.SessionPrincipal(ctx, tok)
			if err != nil {
				t.Fatal(err)
			}
			return p.MFAHold
		}
		if hold(member.Token) {
			t.Fatal("member held during the grace period")
		}
		c.Advance(3*24*time.Hour + time.Second)
		if !hold(member.Token) {
			t.Fatal("member without MFA not held after the grace period")
		}
		roster, err := f.svc.MFARoster(ctx, f.admin)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range roster {
			if (e.EnabledAt != nil) != (e.User.Email == "owner@a.example") {
				t.Fatalf("roster entry %s: enabled %v", e.User.Email, e.EnabledAt)
			}
		}
		// Enrolling lifts the hold.
		m := mustPrincipal(t, f.svc, "member@a.example")
		enroll(t, f.svc, c, m)
		if hold(member.Token) {
			t.Fatal("member still held after enrolling")
		}
		if err := f.svc.SetMFAPolicy(ctx, f.owner, false, 0); err != nil {
			t.Fatal(err)
		}
		if pol, err := f.svc.MFAPolicyOf(ctx, f.owner); err != nil || pol.Required {
			t.Fatalf("policy after turning off: %+v, %v", pol, err)
		}
	})
}

// An operator can turn MFA off when the authenticator and backup codes are
// lost: the secret leaves the vault and the person's sessions end.
func TestResetMFA(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, c := mfaSetup(t, d)
		ctx := context.Background()
		enroll(t, f.svc, c, f.admin)
		step := passwordStep(t, f.svc, "admin@a.example")
		other, _, err := f.svc.SignIn(ctx, "member@a.example", pw, "10.0.0.1", "")
		if err != nil {
			t.Fatal(err)
		}
		own, _, err := f.svc.OpenSession(ctx, f.admin.User.ID, "10.0.0.1", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := f.svc.ResetMFA(ctx, "nobody@a.example"); !apperr.IsNotFound(err) {
			t.Fatalf("unknown email: got %v, want not found", err)
		}
		// A service without the vault (the command line) can do it.
		if err := account.NewService(d).ResetMFA(ctx, "Admin@A.example"); err != nil {
			t.Fatalf("reset: %v", err)
		}
		if st, _ := f.svc.MFAStatusOf(ctx, f.admin); st.Enabled || st.Pending || st.BackupCodesLeft != 0 {
			t.Fatalf("status after reset: %+v", st)
		}
		if n := count(t, d, "credentials"); n != 0 {
			t.Fatalf("vault rows after reset: got %d, want 0", n)
		}
		if _, _, err := f.svc.CompleteMFA(ctx, step.MFAToken, "123456", "10.0.0.1", ""); !apperr.Is(err, apperr.KindGone) {
			t.Fatalf("waiting sign-in after reset: got %v, want gone", err)
		}
		if _, err := f.svc.SessionPrincipal(ctx, own.Token); !apperr.Is(err, apperr.KindUnauthorized) {
			t.Fatalf("their session after reset: got %v, want ended", err)
		}
		if _, err := f.svc.SessionPrincipal(ctx, other.Token); err != nil {
			t.Fatalf("someone else's session after reset: %v", err)
		}
		if err := f.svc.ResetMFA(ctx, "admin@a.example"); !apperr.Is(err, apperr.KindConflict) {
			t.Fatalf("second reset: got %v, want conflict", err)
		}
		if _, _, err := f.svc.SignIn(ctx, "admin@a.example", pw, "10.0.0.3", ""); err != nil {
			t.Fatalf("password sign-in after reset: %v", err)
		}
	})
}
