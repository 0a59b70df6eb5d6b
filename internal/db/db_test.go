package db_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

func TestMigrateIsIdempotent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		ms, err := db.Migrations()
		if err != nil {
			t.Fatal(err)
		}
		v, err := d.SchemaVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := ms[len(ms)-1].Version; v != want {
			t.Fatalf("schema version: got %d, want %d", v, want)
		}
		applied, err := d.Migrate(ctx)
		if err != nil {
			t.Fatalf("second migrate: %v", err)
		}
		if len(applied) != 0 {
			t.Fatalf("second migrate applied %d migrations, want 0", len(applied))
		}
	})
}

func TestConcurrentMigrateOnPostgres(t *testing.T) {
	// Several processes starting at once against one empty database must
	// end with each migration applied exactly once.
	if testing.Short() {
		t.Skip("short")
	}
	base := dbtestPostgresURL(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := db.Open(ctx, base)
			if err != nil {
				errs <- err
				return
			}
			defer d.Close()
			_, err = d.Migrate(ctx)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	d, err := db.Open(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var n int
	if err := d.Read().QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	ms, _ := db.Migrations()
	if n != len(ms) {
		t.Fatalf("schema_migrations rows: got %d, want %d", n, len(ms))
	}
}

func dbtestPostgresURL(t *testing.T) string {
	t.Helper()
	base := os.Getenv(dbtest.PostgresEnv)
	if base == "" {
		t.Skip(dbtest.PostgresEnv + " not set")
	}
	return dbtest.NewPostgresSchema(t, base)
}

func TestInTxRollsBackOnError(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		boom := errors.New("boom")
		err := d.InTx(ctx, func(tx db.Querier) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)`, "a1", "Half", db.Now()); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("InTx error: got %v, want %v", err, boom)
		}
		var n int
		if err := d.Read().QueryRowContext(ctx, `SELECT count(*) FROM accounts`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("accounts after rollback: got %d, want 0", n)
		}
	})
}

func TestInTxRollsBackOnPanic(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		func() {
			defer func() { _ = recover() }()
			_ = d.InTx(ctx, func(tx db.Querier) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)`, "a1", "Half", db.Now()); err != nil {
					return err
				}
				panic("mid-transaction")
			})
		}()
		var n int
		if err := d.Read().QueryRowContext(ctx, `SELECT count(*) FROM accounts`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("accounts after panic: got %d, want 0", n)
		}
		// The single write connection must be usable again.
		if _, err := d.Write().ExecContext(ctx, `INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)`, "a2", "Whole", db.Now()); err != nil {
			t.Fatalf("write after panic: %v", err)
		}
	})
}

func TestIsUniqueViolation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		q := `INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)`
		if _, err := d.Write().ExecContext(ctx, q, "dup", "One", db.Now()); err != nil {
			t.Fatal(err)
		}
		_, err := d.Write().ExecContext(ctx, q, "dup", "Two", db.Now())
		if !db.IsUniqueViolation(err) {
			t.Fatalf("IsUniqueViolation(%v): got false, want true", err)
		}
		if db.IsUniqueViolation(errors.New("other")) {
			t.Fatal("IsUniqueViolation(other): got true, want false")
		}
	})
}

func TestTimesRoundTrip(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		now := db.Now()
		if _, err := d.Write().ExecContext(ctx, `INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)`, "t", "T", now); err != nil {
			t.Fatal(err)
		}
		var got time.Time
		if err := d.Read().QueryRowContext(ctx, `SELECT created_at FROM accounts WHERE id = $1 AND created_at <= $2`, "t", now).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if !got.Equal(now) {
			t.Fatalf("created_at: got %v, want %v", got, now)
		}
	})
}

func TestListenNotify(t *testing.T) {
	d := dbtestPostgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	woke := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Listen(ctx, "taskjuice_test", func() {
			select {
			case woke <- struct{}{}:
			default:
			}
		})
	}()
	deadline := time.After(10 * time.Second)
	for {
		if err := d.Notify(context.Background(), "taskjuice_test"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-woke:
			cancel()
			<-done
			return
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("no notification arrived")
		}
	}
}

func dbtestPostgres(t *testing.T) *db.DB {
	t.Helper()
	return dbtest.Postgres(t)
}

// A query run with PlanWithValues gives the same rows, and on PostgreSQL
// is planned for its values each time: it is never kept as a prepared
// statement, whose generic plan would serve every value alike.
func TestPlanWithValues(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		const q = `SELECT COUNT(*) FROM schema_migrations WHERE version >= $1`
		const qp = q + ` -- planned for its values`
		err := d.InTx(ctx, func(tx db.Querier) error {
			for range 7 {
				var plain, planned int
				if err := tx.QueryRowContext(ctx, q, 1).Scan(&plain); err != nil {
					return err
				}
				if err := tx.QueryRowContext(ctx, qp, d.PlanWithValues([]any{1})...).Scan(&planned); err != nil {
					return err
				}
				if plain == 0 || plain != planned {
					t.Fatalf("counted %d with PlanWithValues, %d without", planned, plain)
				}
			}
			if d.Dialect() != db.Postgres {
				return nil
			}
			var plain, planned int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FILTER (WHERE statement = $1), COUNT(*) FILTER (WHERE statement = $2) FROM pg_prepared_statements`,
				q, qp).Scan(&plain, &planned); err != nil {
				return err
			}
			if plain != 1 || planned != 0 {
				t.Fatalf("prepared statements: %d of the plain query (want 1), %d of the planned one (want 0)", plain, planned)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
