// Package db opens the product's database — SQLite by default, PostgreSQL
// when several processes share work — applies the embedded migrations and
// runs transactions. Everything that differs between the two engines sits in
// dialect.go; the rest of the product writes one SQL for both.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// Querier is what both *sql.DB and *sql.Tx offer; store functions take it so
// they run the same inside or outside a transaction.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// DB is an open database. On SQLite, writes go through a pool of exactly one
// connection (SQLite allows one writer at a time; queueing in Go beats
// SQLITE_BUSY) and reads through a separate read-only pool. On PostgreSQL
// both are the same pool.
type DB struct {
	dialect Dialect
	write   *sql.DB
	read    *sql.DB
	url     string
}

// Open opens the database named by url: a postgres:// or postgresql:// URL
// selects PostgreSQL, anything else is a SQLite file path (optionally
// prefixed with sqlite: or file:).
func Open(ctx context.Context, rawURL string) (*DB, error) {
	if isPostgresURL(rawURL) {
		return openPostgres(ctx, rawURL)
	}
	return openSQLite(ctx, rawURL)
}

func isPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

func openPostgres(ctx context.Context, rawURL string) (*DB, error) {
	pool, err := sql.Open("pgx", rawURL)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	// As many idle as open: with fewer, a burst of concurrent requests
	// closes each connection beyond the idle limit on release and dials
	// (and PostgreSQL forks) a new one for the next, which cost webhook
	// intake three quarters of its throughput.
	pool.SetMaxOpenConns(20)
	pool.SetMaxIdleConns(20)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	d := &DB{dialect: Postgres, write: pool, read: pool, url: rawURL}
	if err := d.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return d, nil
}

// sqlitePragmas are applied to every SQLite connection, in one place.
var sqlitePragmas = []string{
	"journal_mode(WAL)",
	"busy_timeout(10000)",
	"foreign_keys(1)",
	"synchronous(NORMAL)",
}

func sqliteDSN(path string, readOnly bool) string {
	q := url.Values{}
	for _, p := range sqlitePragmas {
		q.Add("_pragma", p)
	}
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		// Take the write lock when the transaction starts, so two
		// writers never deadlock upgrading a read lock.
		q.Set("_txlock", "immediate")
	}
	q.Set("_time_format", "sqlite")
	return "file:" + path + "?" + q.Encode()
}

func openSQLite(ctx context.Context, rawURL string) (*DB, error) {
	path := strings.TrimPrefix(strings.TrimPrefix(rawURL, "sqlite:"), "file:")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path == "" {
		return nil, errors.New("open sqlite: empty path")
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("open sqlite: create folder: %w", err)
		}
	}
	write, err := sql.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	// The first connection creates the file and switches it to WAL before
	// any reader opens it.
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	read, err := sql.Open("sqlite", sqliteDSN(path, true))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	read.SetMaxOpenConns(8)
	read.SetMaxIdleConns(8)
	d := &DB{dialect: SQLite, write: write, read: read, url: path}
	if err := d.Ping(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Dialect names the engine.
func (d *DB) Dialect() Dialect { return d.dialect }

// Read returns the pool for queries that change nothing.
func (d *DB) Read() Querier { return d.read }

// Write returns the pool for single statements that change data. Use InTx
// when more than one statement must land together.
func (d *DB) Write() Querier { return d.write }

// Ping checks that both pools reach the database.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.write.PingContext(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	if d.read != d.write {
		if err := d.read.PingContext(ctx); err != nil {
			return fmt.Errorf("ping database: %w", err)
		}
	}
	return nil
}

// Close closes both pools.
func (d *DB) Close() error {
	err := d.write.Close()
	if d.read != d.write {
		err = errors.Join(err, d.read.Close())
	}
	return err
}

// InTx runs fn in a write transaction, committing if it returns nil and
// rolling back otherwise (also when fn panics), so nothing half-written stays.
func (d *DB) InTx(ctx context.Context, fn func(tx Querier) error) (err error) {
	tx, err := d.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// Now is the database layer's clock: UTC, at the microsecond precision both
// engines store, so a time written and read back compares equal.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// NewID returns a new record id: a UUIDv7, so ids sort by creation time
// (lists page by id alone).
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// NullString is s as a nullable column value: NULL when empty.
func NullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// Strings runs a query whose rows are one text column and returns them.
func Strings(ctx context.Context, q Querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
