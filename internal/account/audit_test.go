package account_test

import (
	"context"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// Audit entries are kept for the account's retention and pruned after it;
// a shorter retention prunes at the next pass, and another account's
// entries keep their own.
func TestAuditRetention(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		f.svc.SetClock(func() time.Time { return now })
		_, _, err := f.svc.CreateAccount(ctx, "Agency B", account.NewUser{Email: "owner@b.example", Name: "Bob", Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		bob := mustPrincipal(t, f.svc, "owner@b.example")
		name := "Renamed"
		for _, p := range []account.Principal{f.owner, bob} {
			if _, err := f.svc.UpdateSettings(ctx, p, account.SettingsChange{Name: &name}); err != nil {
				t.Fatal(err)
			}
		}
		entries := func(p account.Principal) int {
			t.Helper()
			l, err := f.svc.AuditLog(ctx, p, account.AuditFilter{})
			if err != nil {
				t.Fatal(err)
			}
			return len(l)
		}
		if entries(f.owner) != 1 || entries(bob) != 1 {
			t.Fatalf("entries before pruning: %d, %d", entries(f.owner), entries(bob))
		}
		now = now.AddDate(0, 0, 300)
		if _, err := f.svc.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if entries(f.owner) != 1 {
			t.Fatal("an entry younger than the retention was pruned")
		}
		// Agency B keeps 30 days; the change itself is recorded now.
		days := 30
		if _, err := f.svc.UpdateSettings(ctx, bob, account.SettingsChange{AuditRetentionDays: &days}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if entries(bob) != 1 || entries(f.owner) != 1 {
			t.Fatalf("after Agency B shortened its retention: A %d, B %d entries; want 1 and 1", entries(f.owner), entries(bob))
		}
		now = now.AddDate(0, 0, 66) // 366 days after the first entries
		if _, err := f.svc.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if entries(f.owner) != 0 {
			t.Fatal("an entry older than 365 days was kept")
		}
		if entries(bob) != 0 {
			t.Fatal("an entry older than 30 days was kept")
		}
	})
}
