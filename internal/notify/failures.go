package notify

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/vault"
)

// When a workflow's failures are told.
const (
	AlertOff    = "off"    // never
	AlertFirst  = "first"  // the first failure after a success (the default)
	AlertEvery  = "every"  // every failure
	AlertDigest = "digest" // once a day, the incidents of the day
)

// AlertSettings say when and to whom a workflow's failures are told. A
// workflow without settings of its own has its workspace's default.
type AlertSettings struct {
	Mode             string   `json:"mode"`
	Bell             bool     `json:"bell"`
	Emails           []string `json:"emails"`
	ChatConnectionID string   `json:"chatConnectionId,omitempty"`
	ChatChannel      string   `json:"chatChannel,omitempty"`
	WebhookURL       string   `json:"webhookUrl,omitempty"`
	// HasWebhookSecret: the webhook's signing secret is set (it is shown
	// once, when made, and never again).
	HasWebhookSecret bool `json:"hasWebhookSecret"`
	// Inherited: these are the workspace's default, the workflow has none
	// of its own.
	Inherited bool `json:"inherited"`

	secretHandle string
}

// DefaultAlerts is a workspace's default before anyone sets one: the bell
// rings at the first failure after a success.
var DefaultAlerts = AlertSettings{Mode: AlertFirst, Bell: true}

// Alerts reads a workflow's alert settings (workflowID "" for the
// workspace's default).
func (s *Service) Alerts(ctx context.Context, workspaceID, workflowID string) (AlertSettings, error) {
	return s.alertsOf(ctx, s.db.Read(), workspaceID, workflowID)
}

func (s *Service) alertsOf(ctx context.Context, q db.Querier, workspaceID, workflowID string) (AlertSettings, error) {
	for _, wf := range []string{workflowID, ""} {
		a, err := scanAlerts(q.QueryRowContext(ctx, `SELECT mode, bell, emails, COALESCE(chat_connection_id, ''), chat_channel, webhook_url, webhook_secret
			FROM failure_alert_settings WHERE workspace_id = $1 AND workflow_id = $2`, workspaceID, wf))
		if err == nil {
			a.Inherited = wf != workflowID
			return a, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return AlertSettings{}, fmt.Errorf("read alert settings: %w", err)
		}
		if wf == "" {
			break
		}
	}
	a := DefaultAlerts
	a.Inherited = workflowID != ""
	return a, nil
}

func scanAlerts(row *sql.Row) (AlertSettings, error) {
	var a AlertSettings
	var emails string
	if err := row.Scan(&a.Mode, &a.Bell, &emails, &a.ChatConnectionID, &a.ChatChannel, &a.WebhookURL, &a.secretHandle); err != nil {
		return a, err
	}
	if emails != "" {
		a.Emails = strings.Split(emails, ",")
	}
	a.HasWebhookSecret = a.secretHandle != ""
	return a, nil
}

// AlertChange is a change of alert settings; NewSecret asks for a new
// webhook signing secret (one is made anyway for a first webhook).
type AlertChange struct {
	AlertSettings
	NewSecret bool `json:"newWebhookSecret"`
}

// ChatTargets tells which of a workspace's connections can post alerts:
// it returns the connection's app when it can.
type ChatTargets func(ctx context.Context, workspaceID, connectionID string) (app string, ok bool)

// SetAlerts saves a workflow's alert settings (workflowID "" for the
// workspace's default). It returns the webhook's new signing secret when
// it made one: shown to the person once, sealed in the vault.
func (s *Service) SetAlerts(ctx context.Context, workspaceID, workflowID string, c AlertChange, chats ChatTargets) (string, error) {
	a, err := s.checkAlerts(ctx, workspaceID, c.AlertSettings, chats)
	if err != nil {
		return "", err
	}
	old, err := s.alertsOf(ctx, s.db.Read(), workspaceID, workflowID)
	if err != nil {
		return "", err
	}
	var secret string
	handle := ""
	if !old.Inherited {
		handle = old.secretHandle
	}
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		if a.WebhookURL != "" && (handle == "" || c.NewSecret) {
			if s.secrets == nil {
				return apperr.Invalid("webhookUrl", "Outgoing alert webhooks need the vault, which this server has not set up")
			}
			secret = "tjsec_" + randomHex(24)
			if handle, err = s.secrets.Put(ctx, tx, handle, vault.KindWebhookSecret, alertSecretOwner(workspaceID, workflowID), []byte(secret)); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO failure_alert_settings (workspace_id, workflow_id, mode, bell, emails, chat_connection_id, chat_channel, webhook_url, webhook_secret)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (workspace_id, workflow_id) DO UPDATE SET mode = excluded.mode, bell = excluded.bell, emails = excluded.emails,
				chat_connection_id = excluded.chat_connection_id, chat_channel = excluded.chat_channel, webhook_url = excluded.webhook_url,
				webhook_secret = excluded.webhook_secret`,
			workspaceID, workflowID, a.Mode, a.Bell, strings.Join(a.Emails, ","), db.NullString(a.ChatConnectionID), a.ChatChannel, a.WebhookURL, handle)
		if err != nil {
			return fmt.Errorf("save alert settings: %w", err)
		}
		return nil
	})
	return secret, err
}

// ClearAlerts gives a workflow its workspace's default again.
func (s *Service) ClearAlerts(ctx context.Context, workspaceID, workflowID string) error {
	_, err := s.db.Write().ExecContext(ctx, `DELETE FROM failure_alert_settings WHERE workspace_id = $1 AND workflow_id = $2`, workspaceID, workflowID)
	return err
}

func alertSecretOwner(workspaceID, workflowID string) string {
	return "alert-webhook:" + workspaceID + ":" + workflowID
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// checkAlerts validates settings: the mode, staff of the workspace's
// account as email recipients, a chat connection of the workspace that
// can post, and an http(s) webhook address.
func (s *Service) checkAlerts(ctx context.Context, workspaceID string, a AlertSettings, chats ChatTargets) (AlertSettings, error) {
	if !slices.Contains([]string{AlertOff, AlertFirst, AlertEvery, AlertDigest}, a.Mode) {
		return a, apperr.Invalid("mode", `Choose when to alert: "first" (the first failure after a success), "every", "digest" or "off"`)
	}
	staff, err := s.staffEmails(ctx, workspaceID)
	if err != nil {
		return a, err
	}
	var emails []string
	for _, e := range a.Emails {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" || slices.Contains(emails, e) {
			continue
		}
		if _, err := mail.ParseAddress(e); err != nil || !slices.Contains(staff, e) {
			return a, apperr.Invalid("emails", fmt.Sprintf("%q is not a staff member of this account; alerts go to staff only", e))
		}
		emails = append(emails, e)
	}
	a.Emails = emails
	a.ChatChannel = strings.TrimSpace(a.ChatChannel)
	if a.ChatConnectionID != "" {
		if _, ok := chats(ctx, workspaceID, a.ChatConnectionID); !ok {
			return a, apperr.Invalid("chatConnectionId", "Choose a chat connection of this workspace (Slack or Sandbox Chat)")
		}
		if a.ChatChannel == "" {
			return a, apperr.Invalid("chatChannel", "Name the channel the alerts are posted to")
		}
	} else {
		a.ChatChannel = ""
	}
	a.WebhookURL = strings.TrimSpace(a.WebhookURL)
	if a.WebhookURL != "" {
		u, err := url.Parse(a.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return a, apperr.Invalid("webhookUrl", "The alert webhook must be an http:// or https:// address")
		}
	}
	return a, nil
}

// staffEmails are the email addresses of the staff of a workspace's account.
func (s *Service) staffEmails(ctx context.Context, workspaceID string) ([]string, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT LOWER(u.email) FROM account_members m JOIN users u ON u.id = m.user_id
		JOIN workspaces w ON w.account_id = m.account_id WHERE w.id = $1`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("read staff: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Incident is one open (or recovered) run of failures of a workflow with
// one error code.
type Incident struct {
	ID           string     `json:"id"`
	WorkspaceID  string     `json:"workspaceId"`
	WorkflowID   string     `json:"workflowId"`
	ErrorCode    string     `json:"errorCode"`
	Message      string     `json:"message"`
	Failures     int        `json:"failures"`
	FirstRunID   string     `json:"firstRunId"`
	LastRunID    string     `json:"lastRunId"`
	OpenedAt     time.Time  `json:"openedAt"`
	LastFailedAt time.Time  `json:"lastFailedAt"`
	RecoveredAt  *time.Time `json:"recoveredAt,omitempty"`
}

// RunFailed records a failed run on its workflow's open incident for its
// error code, opening one if there is none, and raises the alert the
// settings ask for, in the transaction that records the failure (the
// engine's failure hook).
func (s *Service) RunFailed(ctx context.Context, tx db.Querier, runID, code, message string) error {
	var f failedRun
	err := tx.QueryRowContext(ctx, `SELECT r.workspace_id, r.workflow_id, w.name, s.slug, s.name FROM runs r JOIN workflows w ON w.id = r.workflow_id
		JOIN workspaces s ON s.id = r.workspace_id WHERE r.id = $1`, runID).Scan(&f.workspaceID, &f.workflowID, &f.workflow, &f.slug, &f.wsName)
	if err != nil {
		return fmt.Errorf("read failed run: %w", err)
	}
	a, err := s.alertsOf(ctx, tx, f.workspaceID, f.workflowID)
	if err != nil || a.Mode == AlertOff {
		return err
	}
	if code == "" {
		code = "FAILED"
	}
	now := s.now()
	inc, opened, err := s.countFailure(ctx, tx, f, runID, code, message, now)
	if err != nil {
		return err
	}
	if (a.Mode == AlertFirst && opened) || a.Mode == AlertEvery {
		return s.alert(ctx, tx, a, f, inc, "failure")
	}
	return nil
}

type failedRun struct{ workspaceID, workflowID, workflow, slug, wsName string }

// countFailure adds the failure to the open incident, or opens one. It
// reports whether it opened it.
func (s *Service) countFailure(ctx context.Context, tx db.Querier, f failedRun, runID, code, message string, now time.Time) (Incident, bool, error) {
	for range 2 {
		res, err := tx.ExecContext(ctx, `UPDATE failure_incidents SET failures = failures + 1, last_run_id = $1, last_failed_at = $2, message = $3
			WHERE workflow_id = $4 AND error_code = $5 AND recovered_at IS NULL`, runID, now, message, f.workflowID, code)
		if err != nil {
			return Incident{}, false, fmt.Errorf("count failure: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			inc, err := readIncident(ctx, tx, `workflow_id = $1 AND error_code = $2 AND recovered_at IS NULL`, f.workflowID, code)
			return inc, false, err
		}
		inc := Incident{ID: db.NewID(), WorkspaceID: f.workspaceID, WorkflowID: f.workflowID, ErrorCode: code, Message: message, Failures: 1,
			FirstRunID: runID, LastRunID: runID, OpenedAt: now, LastFailedAt: now}
		res, err = tx.ExecContext(ctx, `INSERT INTO failure_incidents (id, workspace_id, workflow_id, error_code, message, failures, first_run_id, last_run_id, opened_at, last_failed_at)
			VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $7, $7) ON CONFLICT DO NOTHING`, inc.ID, inc.WorkspaceID, inc.WorkflowID, code, message, runID, now)
		if err != nil {
			return Incident{}, false, fmt.Errorf("open incident: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return inc, true, nil
		}
		// Another process opened it meanwhile: count on it.
	}
	return Incident{}, false, errors.New("count failure: the incident changed twice")
}

func readIncident(ctx context.Context, q db.Querier, where string, args ...any) (Incident, error) {
	var i Incident
	var recovered sql.NullTime
	err := q.QueryRowContext(ctx, `SELECT id, workspace_id, workflow_id, error_code, message, failures, first_run_id, last_run_id, opened_at, last_failed_at, recovered_at
		FROM failure_incidents WHERE `+where, args...).Scan(&i.ID, &i.WorkspaceID, &i.WorkflowID, &i.ErrorCode, &i.Message, &i.Failures,
		&i.FirstRunID, &i.LastRunID, &i.OpenedAt, &i.LastFailedAt, &recovered)
	if err != nil {
		return i, fmt.Errorf("read incident: %w", err)
	}
	if recovered.Valid {
		t := recovered.Time
		i.RecoveredAt = &t
	}
	return i, nil
}

// Incidents lists a workspace's incidents, open ones first, newest first.
func (s *Service) Incidents(ctx context.Context, workspaceID string, limit int) ([]Incident, error) {
	ids, err := db.Strings(ctx, s.db.Read(), `SELECT id FROM failure_incidents WHERE workspace_id = $1
		ORDER BY CASE WHEN recovered_at IS NULL THEN 0 ELSE 1 END, last_failed_at DESC LIMIT $2`, workspaceID, limit)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	var out []Incident
	for _, id := range ids {
		inc, err := readIncident(ctx, s.db.Read(), `id = $1`, id)
		if err != nil {
			return nil, err
		}
		out = append(out, inc)
	}
	return out, nil
}

// Recoveries closes the open incidents of workflows that succeeded since
// their last failure (a run created after the last failed one completed)
// and announces each recovery as its settings ask. It returns how many it
// closed.
func (s *Service) Recoveries(ctx context.Context) (int, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT i.id, i.workflow_id, r.created_at FROM failure_incidents i JOIN runs r ON r.id = i.last_run_id
		WHERE i.recovered_at IS NULL ORDER BY i.last_failed_at LIMIT 500`)
	if err != nil {
		return 0, fmt.Errorf("read open incidents: %w", err)
	}
	type open struct {
		id, workflow string
		after        time.Time
	}
	var opens []open
	for rows.Next() {
		var o open
		if err := rows.Scan(&o.id, &o.workflow, &o.after); err != nil {
			rows.Close()
			return 0, err
		}
		opens = append(opens, o)
	}
	rows.Close()
	closed := 0
	for _, o := range opens {
		var ok int
		err := s.db.Read().QueryRowContext(ctx, `SELECT 1 FROM runs WHERE workflow_id = $1 AND created_at > $2 AND status = 'completed' LIMIT 1`, o.workflow, o.after).Scan(&ok)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return closed, fmt.Errorf("look for a success: %w", err)
		}
		if err := s.db.InTx(ctx, func(tx db.Querier) error { return s.recover(ctx, tx, o.id) }); err != nil {
			return closed, err
		}
		closed++
	}
	return closed, nil
}

func (s *Service) recover(ctx context.Context, tx db.Querier, id string) error {
	res, err := tx.ExecContext(ctx, `UPDATE failure_incidents SET recovered_at = $1 WHERE id = $2 AND recovered_at IS NULL`, s.now(), id)
	if err != nil {
		return fmt.Errorf("close incident: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil // another process closed it
	}
	inc, err := readIncident(ctx, tx, `id = $1`, id)
	if err != nil {
		return err
	}
	var f failedRun
	err = tx.QueryRowContext(ctx, `SELECT w.workspace_id, w.id, w.name, s.slug, s.name FROM workflows w JOIN workspaces s ON s.id = w.workspace_id WHERE w.id = $1`,
		inc.WorkflowID).Scan(&f.workspaceID, &f.workflowID, &f.workflow, &f.slug, &f.wsName)
	if err != nil {
		return fmt.Errorf("read workflow: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE notifications SET resolved_at = $1 WHERE kind = 'failure' AND link = $2 AND resolved_at IS NULL`,
		s.now(), incidentLink(f, inc)); err != nil {
		return fmt.Errorf("resolve failure notification: %w", err)
	}
	a, err := s.alertsOf(ctx, tx, f.workspaceID, f.workflowID)
	if err != nil || (a.Mode != AlertFirst && a.Mode != AlertEvery) {
		return err
	}
	return s.alert(ctx, tx, a, f, inc, "recovery")
}
