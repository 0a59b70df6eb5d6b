package mail

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/config"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/mail/mailtest"
)

func TestOutboxDeliversOverSMTP(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		srv := mailtest.Start(t)
		sender, err := NewSMTP(srv.Config())
		if err != nil {
			t.Fatal(err)
		}
		o := NewOutbox(d, sender, nil)
		if err := d.InTx(ctx, func(tx db.Querier) error {
			return Enqueue(ctx, tx, "test", Message{To: "ada@example.com", Subject: "Slack reauth\nrequired", Text: "Reconnect it: https://tj.example/acme/connections/1\nThanks — TaskJuice"})
		}); err != nil {
			t.Fatal(err)
		}
		n, err := o.Deliver(ctx)
		if err != nil || n != 1 {
			t.Fatalf("deliver: %d, %v; want 1 sent", n, err)
		}
		got := srv.Wait(1, 5*time.Second)
		if len(got) != 1 {
			t.Fatalf("messages: %d, want 1", len(got))
		}
		m := got[0]
		if m.To[0] != "ada@example.com" || m.Subject != "Slack reauth required" || !strings.Contains(m.Text, "https://tj.example/acme/connections/1") || !strings.Contains(m.Text, "Thanks — TaskJuice") {
			t.Fatalf("message: %+v", m)
		}
		if n, _ := o.Deliver(ctx); n != 0 || len(srv.Messages()) != 1 {
			t.Fatal("a sent message went out again")
		}
	})
}

func TestOutboxRetriesThenGivesUp(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		// A port nothing listens on.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		sender, err := NewSMTP(config.SMTP{Host: "127.0.0.1", Port: port, From: "a@b.example", TLS: "none"})
		if err != nil {
			t.Fatal(err)
		}
		o := NewOutbox(d, sender, nil)
		o.MaxAttempts = 2
		if err := Enqueue(ctx, d.Write(), "test", Message{To: "ada@example.com", Subject: "s", Text: "t"}); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC().Add(time.Second)
		o.now = func() time.Time { return now }
		if n, err := o.Deliver(ctx); err != nil || n != 0 {
			t.Fatalf("deliver to a closed port: %d, %v", n, err)
		}
		var attempts int
		var next *time.Time
		var lastErr string
		read := func() {
			if err := d.Read().QueryRowContext(ctx, `SELECT attempts, next_attempt_at, last_error FROM outbound_emails`).Scan(&attempts, &next, &lastErr); err != nil {
				t.Fatal(err)
			}
		}
		read()
		if attempts != 1 || next == nil || !next.After(now) || lastErr == "" {
			t.Fatalf("after a failure: attempts %d, next %v, error %q; want a retry later", attempts, next, lastErr)
		}
		if n, _ := o.Deliver(ctx); n != 0 {
			t.Fatal("retried before its time")
		}
		read()
		if attempts != 1 {
			t.Fatalf("attempts %d before the backoff passed, want 1", attempts)
		}
		now = now.Add(time.Hour)
		_, _ = o.Deliver(ctx)
		read()
		if attempts != 2 || next != nil {
			t.Fatalf("after the last attempt: attempts %d, next %v; want given up", attempts, next)
		}
	})
}

func TestEnqueueRefusesBadAddress(t *testing.T) {
	d := dbtest.SQLite(t)
	if err := Enqueue(context.Background(), d.Write(), "test", Message{To: "not an address", Subject: "s", Text: "t"}); err == nil {
		t.Fatal("a malformed recipient was queued")
	}
}
