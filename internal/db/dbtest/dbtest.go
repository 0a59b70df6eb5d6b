// Package dbtest gives tests a real, empty, migrated database: a SQLite file
// in the test's temporary folder, and — when TASKJUICE_TEST_POSTGRES_URL is
// set — a PostgreSQL schema of its own, dropped when the test ends.
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"taskjuice/internal/db"
)

// PostgresEnv names the variable holding the PostgreSQL URL for tests.
const PostgresEnv = "TASKJUICE_TEST_POSTGRES_URL"

// Each runs fn once per available engine, as subtests named "sqlite" and
// "postgres", so every store test proves both.
func Each(t *testing.T, fn func(t *testing.T, d *db.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		fn(t, SQLite(t))
	})
	if os.Getenv(PostgresEnv) == "" {
		return
	}
	t.Run("postgres", func(t *testing.T) {
		fn(t, Postgres(t))
	})
}

// SQLite returns a migrated database in a fresh file: a copy of a file
// migrated once per set of migrations (see sqliteTemplate), then brought up
// to date by Migrate as any database is, which finds nothing left to do.
func SQLite(t testing.TB) *db.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "taskjuice.db")
	tmpl, err := sqliteTemplate()
	if err != nil {
		t.Fatalf("migrated sqlite template: %v", err)
	}
	if err := copyFile(tmpl, path); err != nil {
		t.Fatalf("copy sqlite template: %v", err)
	}
	return open(t, path)
}

// Postgres returns a migrated database in a fresh schema, or skips the test
// when no PostgreSQL is configured.
func Postgres(t testing.TB) *db.DB {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		t.Skip(PostgresEnv + " not set")
	}
	return open(t, NewPostgresSchema(t, base))
}

// NewPostgresSchema creates an empty schema, dropped at cleanup, and returns
// base with its search_path pointing there.
func NewPostgresSchema(t testing.TB, base string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "tjtest_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", PostgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func open(t testing.TB, dsn string) *db.DB {
	t.Helper()
	ctx := context.Background()
	d, err := db.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return d
}

// The migrated SQLite file every test copies. Migrating a new file runs
// every migration through SQLite's parser, which under the race detector
// costs about a second per test; copying a migrated file costs a
// millisecond. The file is named by a hash of the migrations, so test
// processes share it and a changed migration builds a new one.
var template struct {
	once sync.Once
	path string
	err  error
}

func sqliteTemplate() (string, error) {
	template.once.Do(func() {
		template.path, template.err = buildSQLiteTemplate()
	})
	return template.path, template.err
}

func buildSQLiteTemplate() (string, error) {
	ms, err := db.Migrations()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, m := range ms {
		fmt.Fprintf(h, "%d %s %d\n%s\n", m.Version, m.Name, len(m.SQL), m.SQL)
	}
	final := filepath.Join(os.TempDir(), "taskjuice-test-"+hex.EncodeToString(h.Sum(nil))[:16]+".db")
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	dir, err := os.MkdirTemp("", "taskjuice-template-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "template.db")
	ctx := context.Background()
	d, err := db.Open(ctx, path)
	if err != nil {
		return "", err
	}
	if _, err := d.Migrate(ctx); err != nil {
		d.Close()
		return "", err
	}
	// Fold the WAL into the main file so the file alone is the database.
	if _, err := d.Write().ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		d.Close()
		return "", err
	}
	if err := d.Close(); err != nil {
		return "", err
	}
	// Another process may build the same file at the same time; the copy
	// and the rename make either one whole.
	staged := final + ".tmp-" + strconv.Itoa(os.Getpid())
	if err := copyFile(path, staged); err != nil {
		return "", err
	}
	if err := os.Rename(staged, final); err != nil {
		os.Remove(staged)
		return "", err
	}
	return final, nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}
