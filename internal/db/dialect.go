package db

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect is the seam between the two engines. Everything that differs
// between SQLite and PostgreSQL is decided here, nowhere else.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// PlanWithValues returns the arguments of a query whose best plan depends on
// its values (how many rows a filter keeps, as on the runs list): on
// PostgreSQL the query is planned for these values at each execution (an
// unnamed statement), not with the generic plan the driver's cached
// statements fall back to after five executions, which for a rare filter
// can be a scan of the whole table. SQLite plans each statement with its
// values already.
func (d *DB) PlanWithValues(args []any) []any {
	if d.dialect != Postgres {
		return args
	}
	return append([]any{pgx.QueryExecModeDescribeExec}, args...)
}

// PostgreSQLOnly is the line of a migration after which the statements are
// PostgreSQL's alone.
const PostgreSQLOnly = "-- PostgreSQL only"

// schemaSQL adapts migration text written for PostgreSQL types to the
// engine. SQLite accepts any type name, but the driver only parses times
// back from columns declared TIMESTAMP, and stores bytes as BLOB.
//
// What follows a line reading PostgreSQLOnly (storage parameters, say,
// which SQLite has no syntax for) is PostgreSQL's alone: SQLite skips it.
func (d Dialect) schemaSQL(s string) string {
	if d != SQLite {
		return s
	}
	if i := strings.Index(s, PostgreSQLOnly+"\n"); i >= 0 {
		s = s[:i]
	}
	return strings.NewReplacer("TIMESTAMPTZ", "TIMESTAMP", "BYTEA", "BLOB").Replace(s)
}

// IsUniqueViolation reports whether err is a unique or primary-key
// constraint failure.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var sqlErr *sqlite.Error
	if errors.As(err, &sqlErr) {
		c := sqlErr.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// IsUnstorableText reports whether err is PostgreSQL refusing text: a NUL
// character or invalid UTF-8 (22021), or a \u0000 escape in JSON (22P05).
// SQLite stores both, so this only ever holds on PostgreSQL; the HTTP edge
// refuses such text first, and this catches what slips past it.
func IsUnstorableText(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "22021" || pgErr.Code == "22P05"
	}
	return false
}
