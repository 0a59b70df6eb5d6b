package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// Notify wakes the processes listening on channel. On PostgreSQL it is
// NOTIFY (delivered when the calling transaction, if any, commits; here it
// is sent on its own); on SQLite, which serves one process, it does
// nothing — that process wakes itself.
func (d *DB) Notify(ctx context.Context, channel string) error {
	if d.dialect != Postgres {
		return nil
	}
	if _, err := d.write.ExecContext(ctx, `SELECT pg_notify($1, '')`, channel); err != nil {
		return fmt.Errorf("notify %s: %w", channel, err)
	}
	return nil
}

// Listen calls wake each time another process notifies channel, until ctx
// ends. On SQLite it returns at once (nil): there are no other processes.
// A dropped connection is re-established after a pause.
func (d *DB) Listen(ctx context.Context, channel string, wake func()) error {
	if d.dialect != Postgres {
		return nil
	}
	for ctx.Err() == nil {
		err := d.listenOnce(ctx, channel, wake)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(2 * time.Second):
			}
		}
	}
	return nil
}

func (d *DB) listenOnce(ctx context.Context, channel string, wake func()) error {
	conn, err := d.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errors.New("listen: not a pgx connection")
		}
		pc := sc.Conn()
		if _, err := pc.Exec(ctx, "LISTEN "+quoteIdent(channel)); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		for {
			if _, err := pc.WaitForNotification(ctx); err != nil {
				return err
			}
			wake()
		}
	})
}

func quoteIdent(s string) string {
	out := []byte{'"'}
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			out = append(out, '"')
		}
		out = append(out, s[i])
	}
	return string(append(out, '"'))
}
