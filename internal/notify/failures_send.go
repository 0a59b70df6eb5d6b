package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/db"
	tjmail "taskjuice/internal/mail"
	"taskjuice/internal/vault"
)

// ChatPoster posts text to a channel through a chat connection (Slack,
// Sandbox Chat), the key telling a retried post from a new one.
type ChatPoster func(ctx context.Context, connectionID, channel, text, key string) error

// FailureAlerts turns on the alerts' chat and webhook destinations: the
// vault for the webhooks' signing secrets, the client that calls the
// webhooks (the egress-guarded one HTTP steps use) and the chat poster.
func (s *Service) FailureAlerts(secrets *vault.Store, hc *http.Client, chat ChatPoster) {
	s.secrets, s.alertHTTP, s.chat = secrets, hc, chat
}

// incidentLink is where an incident is looked into: its first failed run.
func incidentLink(f failedRun, inc Incident) string {
	return "/" + f.slug + "/monitoring/workflow-runs/" + f.workflowID + "/" + inc.FirstRunID
}

// alertMessage is one alert as each destination gets it.
type alertMessage struct {
	event, title, body, link string
	kind                     string
	severity                 Severity
	incidents                []Incident
}

// alert tells an incident's failure or recovery to each destination of
// the settings, in the transaction that raised it.
func (s *Service) alert(ctx context.Context, tx db.Querier, a AlertSettings, f failedRun, inc Incident, event string) error {
	m := alertMessage{event: event, link: incidentLink(f, inc), incidents: []Incident{inc}, kind: "failure", severity: Warning,
		title: fmt.Sprintf("%s failed: %s", f.workflow, inc.ErrorCode), body: inc.Message}
	if inc.Failures > 1 {
		m.body = fmt.Sprintf("%s (%d failed runs since %s)", inc.Message, inc.Failures, inc.OpenedAt.UTC().Format("2006-01-02 15:04 UTC"))
	}
	if event == "recovery" {
		m.title, m.kind, m.severity = f.workflow+" recovered", "recovery", Info
		m.body = fmt.Sprintf("It succeeded again after %s with %s.", plural(inc.Failures, "1 failed run", fmt.Sprintf("%d failed runs", inc.Failures)), inc.ErrorCode)
	}
	return s.tell(ctx, tx, a, f, m)
}

// tell sends an alert to each destination: the bell and email at once,
// chat and webhook as deliveries sent with retries.
func (s *Service) tell(ctx context.Context, tx db.Querier, a AlertSettings, f failedRun, m alertMessage) error {
	if a.Bell {
		_, err := tx.ExecContext(ctx, `INSERT INTO notifications (id, workspace_id, kind, severity, title, body, link, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			db.NewID(), f.workspaceID, m.kind, string(m.severity), m.title, m.body, m.link, s.now())
		if err != nil {
			return fmt.Errorf("ring the bell: %w", err)
		}
	}
	text := fmt.Sprintf("%s\n\n%s\n\nWorkspace: %s\n", m.title, m.body, f.wsName)
	if s.mailBase != "" {
		text += "Look into it: " + s.mailBase + m.link + "\n"
		for _, to := range a.Emails {
			msg := tjmail.Message{To: to, Subject: m.title + " (" + f.wsName + ")", Text: text + "\nYou get this email because this workflow's failure alerts name you.\n"}
			if err := tjmail.Enqueue(ctx, tx, "failure-alert", msg); err != nil {
				return err
			}
		}
	}
	if a.ChatConnectionID != "" {
		if err := s.queueDelivery(ctx, tx, f.workspaceID, "chat", a.ChatConnectionID, a.ChatChannel, "", "", []byte(text)); err != nil {
			return err
		}
	}
	if a.WebhookURL == "" || a.secretHandle == "" {
		return nil
	}
	var incidents []map[string]any
	for _, inc := range m.incidents {
		incidents = append(incidents, map[string]any{"id": inc.ID, "errorCode": inc.ErrorCode, "message": inc.Message, "failures": inc.Failures,
			"firstRunId": inc.FirstRunID, "lastRunId": inc.LastRunID, "openedAt": inc.OpenedAt, "lastFailedAt": inc.LastFailedAt, "recoveredAt": inc.RecoveredAt})
	}
	body := map[string]any{
		"event":     m.event,
		"workspace": map[string]any{"id": f.workspaceID, "name": f.wsName},
		"workflow":  map[string]any{"id": f.workflowID, "name": f.workflow},
		"title":     m.title,
		"link":      s.mailBase + m.link,
	}
	if m.event == "digest" {
		body["incidents"] = incidents
	} else {
		body["incident"] = incidents[0]
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode alert: %w", err)
	}
	owner := f.workflowID
	if a.Inherited {
		owner = ""
	}
	return s.queueDelivery(ctx, tx, f.workspaceID, "webhook", a.WebhookURL, "", a.secretHandle, alertSecretOwner(f.workspaceID, owner), payload)
}

func (s *Service) queueDelivery(ctx context.Context, tx db.Querier, workspaceID, kind, target, channel, handle, owner string, payload []byte) error {
	now := s.now()
	_, err := tx.ExecContext(ctx, `INSERT INTO alert_deliveries (id, workspace_id, kind, target, channel, secret_handle, secret_owner, payload, created_at, next_attempt_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)`, db.NewID(), workspaceID, kind, target, channel, handle, owner, string(payload), now)
	if err != nil {
		return fmt.Errorf("queue %s alert: %w", kind, err)
	}
	return nil
}

// Delivery attempts: the first retry after alertBackoff, doubling, at most
// alertAttempts in all.
const (
	alertAttempts = 8
	alertBackoff  = 15 * time.Second
	alertLease    = time.Minute
)

// DeliverAlerts sends the chat and webhook alerts that are due, each
// claimed with a lease so that one process sends it. It returns how many
// went out.
func (s *Service) DeliverAlerts(ctx context.Context) (int, error) {
	now := s.now()
	ids, err := db.Strings(ctx, s.db.Read(), `SELECT id FROM alert_deliveries WHERE next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
		ORDER BY next_attempt_at LIMIT 50`, now)
	if err != nil {
		return 0, fmt.Errorf("find due alerts: %w", err)
	}
	sent := 0
	for _, id := range ids {
		ok, err := s.deliverAlert(ctx, id)
		if err != nil {
			return sent, err
		}
		if ok {
			sent++
		}
	}
	return sent, nil
}

type delivery struct {
	id, kind, target, channel, handle, owner, payload string
	attempts                                          int
}

func (s *Service) deliverAlert(ctx context.Context, id string) (bool, error) {
	now := s.now()
	res, err := s.db.Write().ExecContext(ctx, `UPDATE alert_deliveries SET lease_until = $1 WHERE id = $2 AND next_attempt_at IS NOT NULL
		AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)`, now.Add(alertLease), id, now)
	if err != nil {
		return false, fmt.Errorf("claim alert: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil // another process has it
	}
	var d delivery
	err = s.db.Read().QueryRowContext(ctx, `SELECT id, kind, target, channel, secret_handle, secret_owner, payload, attempts FROM alert_deliveries WHERE id = $1`, id).
		Scan(&d.id, &d.kind, &d.target, &d.channel, &d.handle, &d.owner, &d.payload, &d.attempts)
	if err != nil {
		return false, fmt.Errorf("read alert: %w", err)
	}
	sendErr := s.send(ctx, d)
	if sendErr == nil {
		_, err = s.db.Write().ExecContext(ctx, `UPDATE alert_deliveries SET sent_at = $1, next_attempt_at = NULL, lease_until = NULL, attempts = attempts + 1, last_error = '' WHERE id = $2`, s.now(), id)
		return err == nil, err
	}
	var next sql.NullTime
	if d.attempts+1 < alertAttempts {
		next = sql.NullTime{Time: s.now().Add(alertBackoff << d.attempts), Valid: true}
	}
	s.log().Warn("alert delivery failed", "delivery", id, "kind", d.kind, "attempt", d.attempts+1, "err", sendErr)
	_, err = s.db.Write().ExecContext(ctx, `UPDATE alert_deliveries SET attempts = attempts + 1, next_attempt_at = $1, lease_until = NULL, last_error = $2 WHERE id = $3`,
		next, clipError(sendErr), id)
	return false, err
}

func clipError(err error) string {
	s := err.Error()
	if len(s) > 500 {
		s = s[:500]
	}
	return s
}

func (s *Service) send(ctx context.Context, d delivery) error {
	switch d.kind {
	case "chat":
		if s.chat == nil {
			return errors.New("chat alerts are not set up on this server")
		}
		return s.chat(ctx, d.target, d.channel, d.payload, "alert:"+d.id)
	case "webhook":
		return s.sendWebhook(ctx, d)
	}
	return fmt.Errorf("unknown alert kind %q", d.kind)
}

// SignatureHeader carries an outgoing alert webhook's signature:
// "sha256=" and the hex HMAC-SHA256, under the signing secret, of the
// timestamp (TimestampHeader, Unix seconds), a dot and the body.
const (
	SignatureHeader = "X-TaskJuice-Signature"
	TimestampHeader = "X-TaskJuice-Timestamp"
	DeliveryHeader  = "X-TaskJuice-Delivery"
)

// Sign is the signature of an alert webhook's body at timestamp ts.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (s *Service) sendWebhook(ctx context.Context, d delivery) error {
	if s.secrets == nil || s.alertHTTP == nil {
		return errors.New("alert webhooks are not set up on this server")
	}
	secret, err := s.secrets.Open(ctx, s.db.Read(), d.handle, d.owner)
	if err != nil {
		return fmt.Errorf("open signing secret: %w", err)
	}
	body := []byte(d.payload)
	ts := strconv.FormatInt(s.now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "TaskJuice-Alerts")
	req.Header.Set(TimestampHeader, ts)
	req.Header.Set(DeliveryHeader, d.id)
	req.Header.Set(SignatureHeader, Sign(secret, ts, body))
	res, err := s.alertHTTP.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("the webhook answered HTTP %d", res.StatusCode)
	}
	return nil
}

// digestEvery is how often a workflow in digest mode hears of its
// incidents.
const digestEvery = 24 * time.Hour

// Digests sends each workflow in digest mode, at most once a day, the
// incidents no digest has told yet. Workflows in the other modes were told
// at once; theirs are only marked. It returns how many digests it sent.
func (s *Service) Digests(ctx context.Context) (int, error) {
	workflows, err := db.Strings(ctx, s.db.Read(), `SELECT DISTINCT workflow_id FROM failure_incidents WHERE digested_at IS NULL`)
	if err != nil {
		return 0, fmt.Errorf("read undigested incidents: %w", err)
	}
	sent := 0
	for _, wf := range workflows {
		var told bool
		err := s.db.InTx(ctx, func(tx db.Querier) error {
			var err error
			told, err = s.digest(ctx, tx, wf)
			return err
		})
		if err != nil {
			return sent, err
		}
		if told {
			sent++
		}
	}
	return sent, nil
}

func (s *Service) digest(ctx context.Context, tx db.Querier, workflowID string) (bool, error) {
	now := s.now()
	var f failedRun
	err := tx.QueryRowContext(ctx, `SELECT w.workspace_id, w.id, w.name, s.slug, s.name FROM workflows w JOIN workspaces s ON s.id = w.workspace_id WHERE w.id = $1`,
		workflowID).Scan(&f.workspaceID, &f.workflowID, &f.workflow, &f.slug, &f.wsName)
	if err != nil {
		return false, fmt.Errorf("read workflow: %w", err)
	}
	a, err := s.alertsOf(ctx, tx, f.workspaceID, workflowID)
	if err != nil {
		return false, err
	}
	if a.Mode != AlertDigest {
		_, err := tx.ExecContext(ctx, `UPDATE failure_incidents SET digested_at = $1 WHERE workflow_id = $2 AND digested_at IS NULL`, now, workflowID)
		return false, err
	}
	var lastAt time.Time
	err = tx.QueryRowContext(ctx, `SELECT digested_at FROM failure_incidents WHERE workflow_id = $1 AND digested_at IS NOT NULL ORDER BY digested_at DESC LIMIT 1`, workflowID).Scan(&lastAt)
	if err == nil && now.Sub(lastAt) < digestEvery {
		return false, nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("read last digest: %w", err)
	}
	var incidents []Incident
	ids, err := db.Strings(ctx, tx, `SELECT id FROM failure_incidents WHERE workflow_id = $1 AND digested_at IS NULL ORDER BY opened_at`, workflowID)
	if err != nil {
		return false, fmt.Errorf("read incidents: %w", err)
	}
	// Times are told in the account's default time zone.
	loc := time.UTC
	if tz, err := account.WorkspaceTimezone(ctx, tx, f.workspaceID); err == nil {
		if l, err := time.LoadLocation(tz); err == nil {
			loc = l
		}
	}
	var lines []string
	for _, id := range ids {
		inc, err := readIncident(ctx, tx, `id = $1`, id)
		if err != nil {
			return false, err
		}
		state := "still failing"
		if inc.RecoveredAt != nil {
			state = "recovered"
		}
		lines = append(lines, fmt.Sprintf("%s: %s (%s, %s; first %s)", inc.ErrorCode, inc.Message, plural(inc.Failures, "1 failed run", fmt.Sprintf("%d failed runs", inc.Failures)), state,
			inc.OpenedAt.In(loc).Format("Mon 2 Jan 15:04 MST")))
		incidents = append(incidents, inc)
	}
	if len(incidents) == 0 {
		return false, nil
	}
	m := alertMessage{event: "digest", kind: "digest", severity: Warning, incidents: incidents, link: "/" + f.slug + "/workflows/" + f.workflowID,
		title: fmt.Sprintf("%s: %s since the last digest", f.workflow, plural(len(incidents), "1 incident", fmt.Sprintf("%d incidents", len(incidents)))),
		body:  strings.Join(lines, "\n")}
	if err := s.tell(ctx, tx, a, f, m); err != nil {
		return false, err
	}
	for _, inc := range incidents {
		if _, err := tx.ExecContext(ctx, `UPDATE failure_incidents SET digested_at = $1 WHERE id = $2`, now, inc.ID); err != nil {
			return false, fmt.Errorf("mark digested: %w", err)
		}
	}
	return true, nil
}
