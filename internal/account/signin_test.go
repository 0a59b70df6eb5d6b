package account_test

import (
	"context"
	"strings"
	"testing"

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

func TestSignInFailuresAreLimited(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		for i := range account.MaxFailuresPerEmail {
			_, _, err := f.svc.SignIn(ctx, "owner@a.example", "wrong password", "10.0.0.1", "")
			if e, ok := apperr.As(err); !ok || e.Message != account.MsgBadCredentials {
				t.Fatalf("attempt %d: got %v, want %q", i+1, err, account.MsgBadCredentials)
			}
		}
		// Even the right password is refused while locked.
		_, _, err := f.svc.SignIn(ctx, "owner@a.example", pw, "10.0.0.1", "")
		if !apperr.Is(err, apperr.KindTooMany) {
			t.Fatalf("locked sign-in: got %v, want too many attempts", err)
		}
		// Another person is not affected.
		if _, _, err := f.svc.SignIn(ctx, "admin@a.example", pw, "10.0.0.2", ""); err != nil {
			t.Fatalf("other user: %v", err)
		}
		// An admin reset clears the lock.
		if err := f.svc.ResetPassword(ctx, "owner@a.example", "a brand new password"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.SignIn(ctx, "owner@a.example", "a brand new password", "10.0.0.1", ""); err != nil {
			t.Fatalf("after reset: %v", err)
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
