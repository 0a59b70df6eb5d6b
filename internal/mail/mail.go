// Package mail sends email over SMTP through a durable outbox: a message is
// enqueued in the transaction of whatever it tells of, and a mailer in any
// process delivers it, retrying with backoff when the server is away.
package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"taskjuice/internal/config"
	"taskjuice/internal/db"
)

// Message is one email to one recipient, plain text.
type Message struct {
	To      string
	Subject string
	Text    string
}

// Sender delivers a message.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// SMTP sends over an SMTP server.
type SMTP struct {
	cfg  config.SMTP
	from string
}

// NewSMTP returns a sender for the configured server; it fails on a sender
// address that cannot be parsed.
func NewSMTP(cfg config.SMTP) (*SMTP, error) {
	if cfg.Host == "" {
		return nil, errors.New("mail: no SMTP host configured")
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("mail: sender address %q: %w", cfg.From, err)
	}
	return &SMTP{cfg: cfg, from: from.String()}, nil
}

// Send delivers m in one SMTP session.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg := gomail.NewMsg()
	if err := msg.From(s.from); err != nil {
		return fmt.Errorf("sender: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return fmt.Errorf("recipient: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)

	opts := []gomail.Option{gomail.WithPort(s.cfg.Port), gomail.WithTimeout(30 * time.Second)}
	switch s.cfg.TLS {
	case "none":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case "tls":
		opts = append(opts, gomail.WithSSL(), gomail.WithTLSConfig(&tls.Config{ServerName: s.cfg.Host, MinVersion: tls.VersionTLS12}))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory), gomail.WithTLSConfig(&tls.Config{ServerName: s.cfg.Host, MinVersion: tls.VersionTLS12}))
	}
	if s.cfg.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover), gomail.WithUsername(s.cfg.Username), gomail.WithPassword(s.cfg.Password))
	}
	c, err := gomail.NewClient(s.cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("smtp %s:%d: %w", s.cfg.Host, s.cfg.Port, err)
	}
	return nil
}

// Enqueue records a message for delivery, in the caller's transaction.
func Enqueue(ctx context.Context, q db.Querier, kind string, m Message) error {
	return EnqueueRef(ctx, q, kind, "", m)
}

// LinkPlaceholder stands, in an enqueued message, for a link whose secret
// token is minted only when the message is sent, by the expander registered
// for its kind (Outbox.Expand).
const LinkPlaceholder = "{{link}}"

// EnqueueRef records a message whose text carries LinkPlaceholder; ref
// tells the kind's expander what the link is for (an invitation's id, a
// client request's id).
//
// Why at delivery rather than encrypting the outbox: a sign-in link is a
// bearer secret. Minted at the moment of sending, it exists only in the
// SMTP session and in the recipient's mailbox; the database holds its hash
// alone, as for sessions and API tokens, and a copy of the outbox table
// (or a backup) opens nothing. A retry mints a new token and the unsent
// one never worked.
func EnqueueRef(ctx context.Context, q db.Querier, kind, ref string, m Message) error {
	if _, err := mail.ParseAddress(m.To); err != nil {
		return fmt.Errorf("mail: recipient %q: %w", m.To, err)
	}
	now := db.Now()
	_, err := q.ExecContext(ctx, `INSERT INTO outbound_emails (id, kind, to_address, subject, text_body, created_at, next_attempt_at, ref)
		VALUES ($1, $2, $3, $4, $5, $6, $6, $7)`, db.NewID(), kind, m.To, oneLine(m.Subject), m.Text, now, ref)
	if err != nil {
		return fmt.Errorf("enqueue email: %w", err)
	}
	return nil
}

// Expander completes a message of one kind just before it is sent: it
// mints the link's token, stores what it needs (the token's hash), and
// returns the message with LinkPlaceholder replaced. ErrDrop says the
// message is no longer wanted (the invitation was revoked, the request
// superseded): it is not sent.
type Expander func(ctx context.Context, ref string, m Message) (Message, error)

// ErrDrop is returned by an expander for a message that must not go out.
var ErrDrop = errors.New("mail: message no longer wanted")

// Expand registers the expander of a kind. Call it before Run.
func (o *Outbox) Expand(kind string, fn Expander) {
	if o.expanders == nil {
		o.expanders = map[string]Expander{}
	}
	o.expanders[kind] = fn
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Outbox delivers enqueued messages.
type Outbox struct {
	db     *db.DB
	sender Sender
	log    *slog.Logger
	now    func() time.Time
	// expanders complete messages with links (Expand).
	expanders map[string]Expander
	// MaxAttempts is how often a message is tried before it is given up.
	MaxAttempts int
	// Backoff is the wait after the first failure; it doubles each time.
	Backoff time.Duration
}

// NewOutbox returns an outbox delivering with sender.
func NewOutbox(d *db.DB, sender Sender, log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Outbox{db: d, sender: sender, log: log, now: db.Now, MaxAttempts: 8, Backoff: 30 * time.Second}
}

// lease is how long a mailer holds a message it is sending.
const lease = 2 * time.Minute

// Deliver sends every message that is due, and reports how many went out.
func (o *Outbox) Deliver(ctx context.Context) (int, error) {
	now := o.now()
	rows, err := o.db.Read().QueryContext(ctx, `SELECT id FROM outbound_emails WHERE next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
		ORDER BY next_attempt_at LIMIT 50`, now)
	if err != nil {
		return 0, fmt.Errorf("find due email: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	sent := 0
	for _, id := range ids {
		ok, err := o.deliver(ctx, id)
		if err != nil {
			return sent, err
		}
		if ok {
			sent++
		}
	}
	return sent, nil
}

func (o *Outbox) deliver(ctx context.Context, id string) (bool, error) {
	now := o.now()
	// Compare-and-set: of several mailers, one takes the message.
	res, err := o.db.Write().ExecContext(ctx, `UPDATE outbound_emails SET lease_until = $1
		WHERE id = $2 AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)`, now.Add(lease), id, now)
	if err != nil {
		return false, fmt.Errorf("claim email: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return false, nil
	}
	var m Message
	var kind, ref string
	var attempts int
	if err := o.db.Write().QueryRowContext(ctx, `SELECT kind, ref, to_address, subject, text_body, attempts FROM outbound_emails WHERE id = $1`, id).
		Scan(&kind, &ref, &m.To, &m.Subject, &m.Text, &attempts); err != nil {
		return false, fmt.Errorf("read email: %w", err)
	}
	var sendErr error
	if fn, ok := o.expanders[kind]; ok {
		m, sendErr = fn(ctx, ref, m)
	} else if strings.Contains(m.Text, LinkPlaceholder) {
		sendErr = fmt.Errorf("no expander registered for %q email", kind)
	}
	if errors.Is(sendErr, ErrDrop) {
		o.log.Info("email dropped: no longer wanted", "kind", kind, "id", id)
		_, err := o.db.Write().ExecContext(context.WithoutCancel(ctx), `UPDATE outbound_emails SET next_attempt_at = NULL, lease_until = NULL,
			last_error = 'dropped: no longer wanted' WHERE id = $1`, id)
		return false, err
	}
	if sendErr == nil {
		sendErr = o.sender.Send(ctx, m)
	}
	if sendErr == nil {
		_, err := o.db.Write().ExecContext(context.WithoutCancel(ctx), `UPDATE outbound_emails SET sent_at = $1, next_attempt_at = NULL, lease_until = NULL,
			attempts = attempts + 1, last_error = '' WHERE id = $2`, o.now(), id)
		o.log.Info("email sent", "kind", kind, "id", id)
		return err == nil, err
	}
	attempts++
	var next any
	if attempts < o.MaxAttempts {
		next = o.now().Add(o.Backoff << (attempts - 1))
		o.log.Warn("email not sent; will retry", "kind", kind, "id", id, "attempt", attempts, "err", sendErr)
	} else {
		o.log.Error("email given up", "kind", kind, "id", id, "attempts", attempts, "err", sendErr)
	}
	_, err = o.db.Write().ExecContext(context.WithoutCancel(ctx), `UPDATE outbound_emails SET attempts = $1, next_attempt_at = $2, lease_until = NULL,
		last_error = $3 WHERE id = $4`, attempts, next, truncate(sendErr.Error(), 500), id)
	return false, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Run delivers due messages until ctx ends, looking every poll interval.
func (o *Outbox) Run(ctx context.Context, poll time.Duration) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if _, err := o.Deliver(ctx); err != nil && ctx.Err() == nil {
			o.log.Warn("mailer", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Backlog is what the outbox holds: messages waiting to go out (a range of
// outbound_emails_due) and messages given up after their last attempt.
func Backlog(ctx context.Context, d *db.DB) (queued, failed int64, err error) {
	err = d.Read().QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM outbound_emails WHERE next_attempt_at IS NOT NULL),
		(SELECT COUNT(*) FROM outbound_emails WHERE next_attempt_at IS NULL AND sent_at IS NULL)`).Scan(&queued, &failed)
	if err != nil {
		return 0, 0, fmt.Errorf("read outbox: %w", err)
	}
	return queued, failed, nil
}
