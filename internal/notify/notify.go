// Package notify owns notifications: a workspace's bell, and the alert that
// a connection needs to be reauthorized — raised once when it breaks, with
// what it blocks, and resolved when it is reconnected.
package notify

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
	"taskjuice/internal/db"
	"taskjuice/internal/mail"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

// Severity of a notification.
type Severity string

const (
	Info     Severity = "info"
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

// Notification is one entry of the bell, as one person sees it.
type Notification struct {
	ID           string     `json:"id"`
	WorkspaceID  string     `json:"workspaceId"`
	Kind         string     `json:"kind"`
	Severity     Severity   `json:"severity"`
	Title        string     `json:"title"`
	Body         string     `json:"body"`
	Link         string     `json:"link"`
	ConnectionID string     `json:"connectionId,omitempty"`
	CreatedAt    time.Time  `json:"createdAt"`
	ResolvedAt   *time.Time `json:"resolvedAt,omitempty"`
	Read         bool       `json:"read"`
	// Seen: the person marked it read (Read is also true once resolved).
	Seen bool `json:"-"`
}

// Service is the notification domain.
type Service struct {
	db      *db.DB
	catalog *catalog.Catalog
	now     func() time.Time
	// mailBase, when set, is the public URL for links in alert emails, and
	// turns the emails on.
	mailBase string

	// The failure alerts' chat and webhook destinations (FailureAlerts).
	secrets   *vault.Store
	alertHTTP *http.Client
	chat      ChatPoster
	logger    *slog.Logger
}

func (s *Service) log() *slog.Logger {
	if s.logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.logger
}

// SetLog names where the service logs what went wrong in the background.
func (s *Service) SetLog(l *slog.Logger) { s.logger = l }

// EmailAlerts turns on emailing critical alerts to each account's owner
// and admins (unless the account turned it off), with links to baseURL.
func (s *Service) EmailAlerts(baseURL string) { s.mailBase = strings.TrimRight(baseURL, "/") }

// NewService returns the notification service.
func NewService(d *db.DB, cat *catalog.Catalog) *Service {
	return &Service{db: d, catalog: cat, now: db.Now}
}

const consumer = "notify"

// Consume acts on connection signals not yet seen: needs_reauth raises a
// critical notification (one per broken connection), reauthorized resolves
// it. Each signal is consumed once, whichever process gets it. It returns
// how many signals it handled.
func (s *Service) Consume(ctx context.Context) (int, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT g.id, g.kind, g.connection_id, g.workspace_id FROM connection_signals g
		WHERE NOT EXISTS (SELECT 1 FROM signal_consumption c WHERE c.signal_id = g.id AND c.consumer = $1)
		ORDER BY g.created_at, g.id LIMIT 100`, consumer)
	if err != nil {
		return 0, fmt.Errorf("read signals: %w", err)
	}
	type sig struct{ id, kind, conn, ws string }
	var sigs []sig
	for rows.Next() {
		var g sig
		if err := rows.Scan(&g.id, &g.kind, &g.conn, &g.ws); err != nil {
			rows.Close()
			return 0, err
		}
		sigs = append(sigs, g)
	}
	rows.Close()
	done := 0
	for _, g := range sigs {
		err := s.db.InTx(ctx, func(tx db.Querier) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO signal_consumption (signal_id, consumer, consumed_at) VALUES ($1, $2, $3)`, g.id, consumer, s.now())
			if db.IsUniqueViolation(err) {
				return errSeen
			}
			if err != nil {
				return err
			}
			switch g.kind {
			case "needs_reauth":
				return s.raise(ctx, tx, g.ws, g.conn)
			case "reauthorized":
				_, err := tx.ExecContext(ctx, `UPDATE notifications SET resolved_at = $1 WHERE connection_id = $2 AND kind = 'reauth' AND resolved_at IS NULL`, s.now(), g.conn)
				return err
			}
			return nil
		})
		if errors.Is(err, errSeen) {
			continue
		}
		if err != nil {
			return done, err
		}
		done++
	}
	return done, nil
}

var errSeen = errors.New("signal already consumed")

// raise writes the reauth notification of a connection, saying what it
// blocks: the workflows bound to it and the runs it holds.
func (s *Service) raise(ctx context.Context, tx db.Querier, workspaceID, connID string) error {
	var appKey, label, slug string
	err := tx.QueryRowContext(ctx, `SELECT c.app_key, c.label, w.slug FROM connections c JOIN workspaces w ON w.id = c.workspace_id WHERE c.id = $1`, connID).
		Scan(&appKey, &label, &slug)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return fmt.Errorf("read connection: %w", err)
	}
	app := appKey
	if a, ok := s.catalog.App(appKey); ok {
		app = a.Name
	}
	body, err := s.impact(ctx, tx, workspaceID, connID, app, label)
	if err != nil {
		return err
	}
	title, link := app+" reauth required", "/"+slug+"/connections/"+connID
	_, err = tx.ExecContext(ctx, `INSERT INTO notifications (id, workspace_id, kind, severity, title, body, link, connection_id, created_at)
		VALUES ($1, $2, 'reauth', 'critical', $3, $4, $5, $6, $7)`,
		db.NewID(), workspaceID, title, body, link, connID, s.now())
	if db.IsUniqueViolation(err) {
		return nil // already raised while it stays broken
	}
	if err != nil {
		return fmt.Errorf("raise notification: %w", err)
	}
	return s.emailAlert(ctx, tx, workspaceID, "reauth-alert", title, body, link, "Reconnect it here:", "Runs held on it go on once it is reconnected.")
}

// impact says what a broken connection blocks, as things stand: the
// workflows bound to it and the runs it holds now.
func (s *Service) impact(ctx context.Context, q db.Querier, workspaceID, connID, app, label string) (string, error) {
	workflows, err := s.blocked(ctx, q, workspaceID, connID)
	if err != nil {
		return "", err
	}
	var held int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM runs WHERE paused_connection_id = $1 AND status = 'paused'`, connID).Scan(&held); err != nil {
		return "", fmt.Errorf("count held runs: %w", err)
	}
	body := fmt.Sprintf("The %s connection %q needs to be reconnected.", app, label)
	if len(workflows) > 0 {
		body += " It blocks " + strings.Join(workflows, ", ") + "."
	} else {
		body += " No published workflow uses it."
	}
	if held > 0 {
		body += fmt.Sprintf(" %d %s held until then.", held, plural(held, "run is", "runs are"))
	}
	return body, nil
}

// refreshImpact rewrites the body of each reauth alert from the state as
// it is now: an open one counts the runs held since it was raised, a
// resolved one says the connection works again.
func (s *Service) refreshImpact(ctx context.Context, ns []Notification) error {
	for i := range ns {
		n := &ns[i]
		if n.Kind != "reauth" || n.ConnectionID == "" {
			continue
		}
		var appKey, label string
		err := s.db.Read().QueryRowContext(ctx, `SELECT app_key, label FROM connections WHERE id = $1`, n.ConnectionID).Scan(&appKey, &label)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read connection of an alert: %w", err)
		}
		app := appKey
		if a, ok := s.catalog.App(appKey); ok {
			app = a.Name
		}
		if n.ResolvedAt != nil {
			n.Body = fmt.Sprintf("The %s connection %q needed to be reconnected. It works again since %s.", app, label, n.ResolvedAt.Format("2 Jan 2006 15:04 UTC"))
			continue
		}
		if n.Body, err = s.impact(ctx, s.db.Read(), n.WorkspaceID, n.ConnectionID, app, label); err != nil {
			return err
		}
	}
	return nil
}

// emailAlert queues a critical alert's email to the owner and admins of the
// workspace's account, in the transaction that raised it. It says what
// broke and links to where it is fixed; it never holds a credential.
func (s *Service) emailAlert(ctx context.Context, tx db.Querier, workspaceID, kind, title, body, link, where, after string) error {
	if s.mailBase == "" {
		return nil
	}
	var wsName, accountName, contact string
	var on bool
	err := tx.QueryRowContext(ctx, `SELECT w.name, a.name, a.alert_emails, a.contact_email FROM workspaces w JOIN accounts a ON a.id = w.account_id WHERE w.id = $1`, workspaceID).
		Scan(&wsName, &accountName, &on, &contact)
	if err != nil {
		return fmt.Errorf("read workspace for alert email: %w", err)
	}
	if !on {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT u.email FROM account_members m JOIN users u ON u.id = m.user_id JOIN workspaces w ON w.account_id = m.account_id
		WHERE w.id = $1 AND m.role IN ('account-owner', 'account-admin') ORDER BY u.email`, workspaceID)
	if err != nil {
		return fmt.Errorf("read alert recipients: %w", err)
	}
	var to []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			rows.Close()
			return err
		}
		to = append(to, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if contact != "" && !slices.Contains(to, contact) {
		to = append(to, contact)
	}
	text := fmt.Sprintf("%s in %s\n\n%s\n\n%s\n%s%s\n\n%s\n\n"+
		"You get this email as an owner, admin or the contact address of %s. Turn these emails off under General settings: %s/settings/general\n",
		title, wsName, body, where, s.mailBase, link, after, accountName, s.mailBase)
	for _, addr := range to {
		if err := mail.Enqueue(ctx, tx, kind, mail.Message{To: addr, Subject: title + " (" + wsName + ")", Text: text}); err != nil {
			return err
		}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// blocked names the workspace's live workflows and agents whose active
// version uses the connection.
func (s *Service) blocked(ctx context.Context, tx db.Querier, workspaceID, connID string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT w.name, v.graph FROM workflows w JOIN workflow_versions v ON v.id = w.active_version_id
		WHERE w.workspace_id = $1`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("read workflows: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, graph string
		if err := rows.Scan(&name, &graph); err != nil {
			return nil, err
		}
		var g workflow.Graph
		if json.Unmarshal([]byte(graph), &g) != nil {
			continue
		}
		if g.Uses(connID) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, rows.Err()
}

// List returns the workspace's notifications for a person, newest first.
func (s *Service) List(ctx context.Context, workspaceID, userID string, limit int) ([]Notification, error) {
	if limit <= 0 || limit > 200 {
		limit = 50
	}
	rows, err := s.db.Read().QueryContext(ctx, `SELECT n.id, n.workspace_id, n.kind, n.severity, n.title, n.body, n.link, COALESCE(n.connection_id, ''),
		n.created_at, n.resolved_at, r.user_id IS NOT NULL
		FROM notifications n LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.user_id = $2
		WHERE n.workspace_id = $1 ORDER BY n.created_at DESC, n.id DESC LIMIT $3`, workspaceID, userID, limit)
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		var n Notification
		var sev string
		var resolved sql.NullTime
		if err := rows.Scan(&n.ID, &n.WorkspaceID, &n.Kind, &sev, &n.Title, &n.Body, &n.Link, &n.ConnectionID, &n.CreatedAt, &resolved, &n.Read); err != nil {
			return nil, fmt.Errorf("scan notification: %w", err)
		}
		n.Severity, n.CreatedAt = Severity(sev), n.CreatedAt.UTC()
		if resolved.Valid {
			t := resolved.Time.UTC()
			n.ResolvedAt = &t
		}
		n.Seen = n.Read
		n.Read = n.Read || resolved.Valid
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	return out, s.refreshImpact(ctx, out)
}

// Unread counts a person's unread, open notifications in a workspace (the
// bell's number) and fingerprints them: the signature changes whenever the
// bell or the banner would show something else.
func (s *Service) Unread(ctx context.Context, workspaceID, userID string) (count int, signature string, err error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT n.id, EXISTS (SELECT 1 FROM notification_reads r WHERE r.notification_id = n.id AND r.user_id = $2)
		FROM notifications n WHERE n.workspace_id = $1 AND n.resolved_at IS NULL ORDER BY n.id`, workspaceID, userID)
	if err != nil {
		return 0, "", fmt.Errorf("read unread notifications: %w", err)
	}
	defer rows.Close()
	h := sha256.New()
	for rows.Next() {
		var id string
		var read bool
		if err := rows.Scan(&id, &read); err != nil {
			return 0, "", err
		}
		h.Write([]byte(id))
		if read {
			h.Write([]byte{1})
		} else {
			h.Write([]byte{0})
			count++
		}
	}
	if err := rows.Err(); err != nil {
		return 0, "", err
	}
	return count, hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// Reauth lists the workspace's open reauth alerts, oldest first: banner
// holds those the person has not marked read (the banner's rows), quiet
// those they marked read while the connection is still broken (a quieter
// reminder that stays until it is mended).
func (s *Service) Reauth(ctx context.Context, workspaceID, userID string) (banner, quiet []Notification, err error) {
	all, err := s.List(ctx, workspaceID, userID, 200)
	if err != nil {
		return nil, nil, err
	}
	for i := len(all) - 1; i >= 0; i-- {
		n := all[i]
		switch {
		case n.Kind != "reauth" || n.ResolvedAt != nil:
		case n.Seen:
			quiet = append(quiet, n)
		default:
			banner = append(banner, n)
		}
	}
	return banner, quiet, nil
}

// MarkRead marks one notification (or, with id "", all of the workspace's)
// read for the person.
func (s *Service) MarkRead(ctx context.Context, workspaceID, userID, id string) error {
	query := `INSERT INTO notification_reads (notification_id, user_id, read_at)
		SELECT n.id, $2, $3 FROM notifications n WHERE n.workspace_id = $1
		AND NOT EXISTS (SELECT 1 FROM notification_reads r WHERE r.notification_id = n.id AND r.user_id = $2)`
	args := []any{workspaceID, userID, s.now()}
	if id != "" {
		query += ` AND n.id = $4`
		args = append(args, id)
		var one int
		err := s.db.Read().QueryRowContext(ctx, `SELECT 1 FROM notifications WHERE workspace_id = $1 AND id = $2`, workspaceID, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return apperr.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read notification: %w", err)
		}
	}
	if _, err := s.db.Write().ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("mark read: %w", err)
	}
	return nil
}

// SpendAlert emails a critical spend alert (95% of the cap) to the owner
// and admins of the workspace's account, in the transaction that raised it
// (spend's Alerter).
func (s *Service) SpendAlert(ctx context.Context, tx db.Querier, workspaceID, title, body, link string) error {
	return s.emailAlert(ctx, tx, workspaceID, "spend-alert", title, body, link, "See the spend here:",
		"Raise the cap under the workspace's costs, or model calls stop at the cap until the next period begins.")
}
