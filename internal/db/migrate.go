package db

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one numbered schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations lists the embedded migrations in order. File names are
// NNNN_name.sql; the number is the version.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		if !ok {
			return nil, fmt.Errorf("migration %q: want NNNN_name.sql", name)
		}
		v, err := strconv.Atoi(num)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %q: bad version number", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %q and %q share version %d", prev, name, v)
		}
		seen[v] = name
		body, err := migrationFiles.ReadFile("migrations/" + name)
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", name, err)
		}
		out = append(out, Migration{Version: v, Name: rest, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Migrate applies every embedded migration not yet recorded, each in its own
// transaction together with its row in schema_migrations. It is safe to run
// from several processes at once: on PostgreSQL an advisory lock serializes
// them, on SQLite the immediate write lock does.
func (d *DB) Migrate(ctx context.Context) (applied []Migration, err error) {
	return d.MigrateTo(ctx, 0)
}

// MigrateTo is Migrate stopping after version upTo (0: no limit); tests of
// a migration use it to write data in the schema before it.
func (d *DB) MigrateTo(ctx context.Context, upTo int) (applied []Migration, err error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if upTo > 0 && m.Version > upTo {
			break
		}
		did := false
		err := d.InTx(ctx, func(tx Querier) error {
			if d.dialect == Postgres {
				// Any constant works; it only has to be the same in every process.
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7301201)`); err != nil {
					return fmt.Errorf("lock migrations: %w", err)
				}
			}
			// Created under the lock: concurrent CREATE TABLE IF NOT EXISTS
			// races on PostgreSQL.
			if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version INTEGER PRIMARY KEY,
				name TEXT NOT NULL,
				applied_at `+d.dialect.schemaSQL("TIMESTAMPTZ")+` NOT NULL
			)`); err != nil {
				return fmt.Errorf("create schema_migrations: %w", err)
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, m.Version).Scan(&n); err != nil {
				return fmt.Errorf("read schema_migrations: %w", err)
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, d.dialect.schemaSQL(m.SQL)); err != nil {
				return fmt.Errorf("apply migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, m.Version, m.Name, Now()); err != nil {
				return fmt.Errorf("record migration %d: %w", m.Version, err)
			}
			did = true
			return nil
		})
		if err != nil {
			return applied, err
		}
		if did {
			applied = append(applied, m)
		}
	}
	return applied, nil
}

// SchemaVersion returns the highest applied migration version (0 if none).
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := d.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}
