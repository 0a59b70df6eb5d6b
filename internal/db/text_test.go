package db_test

import (
	"context"
	"errors"
	"testing"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// TestIsUnstorableText: PostgreSQL refuses a NUL character and invalid
// UTF-8 in text, and the error is recognised as such; SQLite stores both.
func TestIsUnstorableText(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		if _, err := d.Write().ExecContext(ctx, `CREATE TABLE text_probe (v TEXT NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"a\x00b", "a\xffb"} {
			_, err := d.Write().ExecContext(ctx, `INSERT INTO text_probe (v) VALUES ($1)`, v)
			switch d.Dialect() {
			case db.Postgres:
				if !db.IsUnstorableText(err) {
					t.Errorf("insert %q: got %v, want an error IsUnstorableText recognises", v, err)
				}
			default:
				if err != nil {
					t.Errorf("insert %q on %s: %v", v, d.Dialect(), err)
				}
			}
		}
		if db.IsUnstorableText(errors.New("invalid byte sequence")) || db.IsUnstorableText(nil) {
			t.Error("IsUnstorableText holds for an error that is not PostgreSQL's")
		}
	})
}
