package connection

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/db"
	"taskjuice/internal/vault"
)

// seedBatch is how many connections SeedForBench writes per transaction.
// Each row takes at most four parameters of its own, so a batch stays far
// below SQLite's limit of 32,766 parameters per statement (and PostgreSQL's
// 65,535).
const seedBatch = 1000

// SeedForBench stores n active connections of the app appKey in the
// workspace, for benchmarks and load tests ("taskjuice bench"): the i-th
// connection holds cred(i), sealed in the vault like any credential, and is
// due for refresh at dueAt (nil: never). Each gets its "created" history
// entry, as Create gives it. Rows are written with multi-row INSERTs, a
// batch per transaction, so a hundred thousand connections take seconds
// rather than minutes. It returns the ids in order.
func (s *Service) SeedForBench(ctx context.Context, ws account.Workspace, appKey string, n int, cred func(i int) Credential, dueAt *time.Time) ([]string, error) {
	if n < 0 {
		return nil, fmt.Errorf("seed connections: n is %d", n)
	}
	ids := make([]string, 0, n)
	for start := 0; start < n; start += seedBatch {
		end := min(start+seedBatch, n)
		batch, err := s.seedBatch(ctx, ws, appKey, start, end, cred, dueAt)
		if err != nil {
			return ids, err
		}
		ids = append(ids, batch...)
	}
	return ids, nil
}

type seedRow struct {
	id, handle, label string
	sealed            []byte
	expires           any
}

func (s *Service) seedBatch(ctx context.Context, ws account.Workspace, appKey string, start, end int, cred func(i int) Credential, dueAt *time.Time) ([]string, error) {
	rows := make([]seedRow, 0, end-start)
	for i := start; i < end; i++ {
		c := cred(i)
		raw, err := c.marshal()
		if err != nil {
			return nil, err
		}
		id := db.NewID()
		// Sealed with the connection's id as additional data, exactly as
		// putSecret seals, so Secret opens it like any other.
		sealed, err := s.keys.Seal(raw, []byte(id))
		if err != nil {
			return nil, fmt.Errorf("seal secret: %w", err)
		}
		var expires *time.Time
		if c.OAuth != nil && !c.OAuth.Expiry.IsZero() {
			expires = &c.OAuth.Expiry
		}
		rows = append(rows, seedRow{id: id, handle: db.NewID(), label: "Bench " + strconv.Itoa(i+1),
			sealed: sealed.Ciphertext, expires: nullTime(expires)})
	}
	now := s.now()
	keyID := s.keys.Current.ID
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		// Shared values take the first parameters; each row adds its own.
		creds := multiRow(`INSERT INTO credentials (handle, key_id, ciphertext, owner, kind, created_at, updated_at) VALUES `,
			[]any{keyID, now, string(vault.KindConnection)}, rows, func(r seedRow, p func(any) string) string {
				return "(" + p(r.handle) + ", $1, " + p(r.sealed) + ", " + p(r.id) + ", $3, $2, $2)"
			})
		conns := multiRow(`INSERT INTO connections (id, workspace_id, app_key, label, status, status_reason, status_changed_at,
			metadata, owner_kind, secret_handle, credential_version, access_expires_at, refresh_due_at, created_at, updated_at) VALUES `,
			[]any{ws.ID, appKey, string(StatusActive), now, nullTime(dueAt), string(OwnerWorkspace)}, rows,
			func(r seedRow, p func(any) string) string {
				return "(" + p(r.id) + ", $1, $2, " + p(r.label) + ", $3, '', $4, '{}', $6, " + p(r.handle) + ", 1, " +
					p(r.expires) + ", $5, $4, $4)"
			})
		events := multiRow(`INSERT INTO connection_events (id, connection_id, at, from_status, to_status, reason, actor_kind, detail) VALUES `,
			[]any{now, string(StatusActive), string(ActorSystem)}, rows, func(r seedRow, p func(any) string) string {
				return "(" + p(db.NewID()) + ", " + p(r.id) + ", $1, '', $2, 'created', $3, '{}')"
			})
		for _, st := range []struct {
			what string
			stmt statement
		}{{"credentials", creds}, {"connections", conns}, {"history", events}} {
			if _, err := tx.ExecContext(ctx, st.stmt.sql, st.stmt.args...); err != nil {
				return fmt.Errorf("seed %s: %w", st.what, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.id
	}
	return ids, nil
}

type statement struct {
	sql  string
	args []any
}

// multiRow builds one INSERT of many rows: shared are $1..$k, and row
// renders a row's tuple, numbering its own values through p.
func multiRow[T any](head string, shared []any, rows []T, row func(r T, p func(any) string) string) statement {
	args := append([]any(nil), shared...)
	p := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	var b strings.Builder
	b.WriteString(head)
	for i, r := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row(r, p))
	}
	return statement{sql: b.String(), args: args}
}

// markBatch bounds the ids MarkDue puts in one statement.
const markBatch = 500

// MarkDue makes the given connections due for refresh at at, as if their
// tokens were about to expire; only active connections are scheduled (the
// others need a reconnect, not a refresh). It is for benchmarks and load
// tests, which need many refreshes due at once. It returns how many
// connections it scheduled.
func (s *Service) MarkDue(ctx context.Context, ids []string, at time.Time) (int, error) {
	total := 0
	for start := 0; start < len(ids); start += markBatch {
		batch := ids[start:min(start+markBatch, len(ids))]
		args := []any{at.UTC()}
		var in strings.Builder
		for i, id := range batch {
			if i > 0 {
				in.WriteString(", ")
			}
			args = append(args, id)
			in.WriteString("$" + strconv.Itoa(len(args)))
		}
		res, err := s.db.Write().ExecContext(ctx, `UPDATE connections SET refresh_due_at = $1
			WHERE status = 'active' AND id IN (`+in.String()+`)`, args...)
		if err != nil {
			return total, fmt.Errorf("schedule refreshes: %w", err)
		}
		n, _ := res.RowsAffected()
		total += int(n)
	}
	return total, nil
}
