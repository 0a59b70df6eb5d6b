package connection

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/textcheck"
	"taskjuice/internal/vault"
)

// Service is the connection domain.
type Service struct {
	db    *db.DB
	keys  vault.Keyring
	vault *vault.Store
	now   func() time.Time
}

// NewService returns the connection service; keys seal and open secrets,
// kept in the one vault table with every other secret.
func NewService(d *db.DB, keys vault.Keyring) *Service {
	return &Service{db: d, keys: keys, vault: vault.NewStore(d, keys), now: db.Now}
}

// New is what it takes to store a connection.
type New struct {
	AppKey              string
	Label               string
	Status              Status
	Metadata            map[string]string
	ExternalAccountID   string
	ExternalAccountName string
	OwnerKind           OwnerKind
	OwnerUserID         string
	// Secret is the credential (token set or API key), sealed before it is
	// stored. Nil stores no secret (a pending connection).
	Secret          []byte
	AccessExpiresAt *time.Time
	RefreshDueAt    *time.Time
	Reason          string
}

func validLabel(label string) (string, error) {
	label = strings.TrimSpace(label)
	if n := utf8.RuneCountInString(label); n < 1 || n > 100 {
		return "", apperr.Invalid("label", "Label must be 1–100 characters")
	}
	if err := textcheck.Line("label", "A label", label); err != nil {
		return "", err
	}
	return label, nil
}

// Create stores a new connection in the workspace, its secret sealed in the
// vault, and the first entry of its history — all in one transaction.
func (s *Service) Create(ctx context.Context, ws account.Workspace, in New, actor Actor) (Connection, error) {
	label, err := validLabel(in.Label)
	if err != nil {
		return Connection{}, err
	}
	if !in.Status.Valid() {
		return Connection{}, apperr.Invalid("status", "Unknown status")
	}
	if in.OwnerKind == "" {
		in.OwnerKind = OwnerWorkspace
	}
	now := s.now()
	c := Connection{
		ID: db.NewID(), WorkspaceID: ws.ID, AppKey: in.AppKey, Label: label, Status: in.Status,
		StatusDescription: in.Status.Description(), StatusReason: in.Reason, StatusChangedAt: now,
		Metadata: in.Metadata, ExternalAccountID: in.ExternalAccountID, ExternalAccountName: in.ExternalAccountName,
		OwnerKind: in.OwnerKind, OwnerUserID: in.OwnerUserID, AccessExpiresAt: in.AccessExpiresAt,
		CreatedAt: now, UpdatedAt: now,
	}
	if c.Metadata == nil {
		c.Metadata = map[string]string{}
	}
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		var handle sql.NullString
		if in.Secret != nil {
			h, err := s.putSecret(ctx, tx, "", c.ID, in.Secret)
			if err != nil {
				return err
			}
			handle = sql.NullString{String: h, Valid: true}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO connections (id, workspace_id, app_key, label, status, status_reason,
			status_changed_at, metadata, external_account_id, external_account_name, owner_kind, owner_user_id,
			secret_handle, credential_version, access_expires_at, refresh_due_at, created_by, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $7, $7)`,
			c.ID, c.WorkspaceID, c.AppKey, c.Label, string(c.Status), c.StatusReason, now, encodeMap(c.Metadata),
			c.ExternalAccountID, c.ExternalAccountName, string(c.OwnerKind), db.NullString(c.OwnerUserID),
			handle, boolInt(handle.Valid), nullTime(in.AccessExpiresAt), nullTime(in.RefreshDueAt), db.NullString(actor.UserID))
		if err != nil {
			return fmt.Errorf("insert connection: %w", err)
		}
		return s.recordEvent(ctx, tx, c.ID, "", c.Status, orDefault(in.Reason, "created"), actor, nil)
	})
	if err != nil {
		return Connection{}, err
	}
	return c, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func nullTime(t *time.Time) sql.NullTime {
	if t == nil {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: t.UTC(), Valid: true}
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

// connectionColsOf lists the columns scanConnection reads, each qualified
// by alias (empty for none).
func connectionColsOf(alias string) string {
	a := alias
	return a + `id, ` + a + `workspace_id, ` + a + `app_key, ` + a + `label, ` + a + `status, ` + a + `status_reason, ` +
		a + `status_changed_at, ` + a + `metadata, ` + a + `external_account_id, ` + a + `external_account_name, ` +
		a + `owner_kind, COALESCE(` + a + `owner_user_id, ''), ` + a + `credential_version, ` + a + `access_expires_at, ` +
		a + `created_at, ` + a + `updated_at`
}

var connectionCols = connectionColsOf("")

func scanConnection(row interface{ Scan(...any) error }) (Connection, error) {
	var c Connection
	var status, owner, meta string
	var expires sql.NullTime
	err := row.Scan(&c.ID, &c.WorkspaceID, &c.AppKey, &c.Label, &status, &c.StatusReason, &c.StatusChangedAt, &meta,
		&c.ExternalAccountID, &c.ExternalAccountName, &owner, &c.OwnerUserID, &c.credentialVersion,
		&expires, &c.CreatedAt, &c.UpdatedAt)
	if err != nil {
		return Connection{}, err
	}
	c.Status, c.OwnerKind, c.Metadata = Status(status), OwnerKind(owner), decodeMap(meta)
	c.StatusDescription = c.Status.Description()
	c.AccessExpiresAt = timePtr(expires)
	c.StatusChangedAt, c.CreatedAt, c.UpdatedAt = c.StatusChangedAt.UTC(), c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return c, nil
}

// CreateWithCredential is Create with a credential to seal (an API key and
// its secret fields, or a token set).
func (s *Service) CreateWithCredential(ctx context.Context, ws account.Workspace, in New, cred Credential, actor Actor) (Connection, error) {
	raw, err := cred.marshal()
	if err != nil {
		return Connection{}, err
	}
	in.Secret = raw
	return s.Create(ctx, ws, in, actor)
}

// Get returns a connection of the workspace; another workspace's is not found.
func (s *Service) Get(ctx context.Context, ws account.Workspace, id string) (Connection, error) {
	return s.get(ctx, s.db.Read(), ws.ID, id)
}

// GetInAccount returns a connection of any workspace of the account, with
// its workspace; a connection of another account is not found.
func (s *Service) GetInAccount(ctx context.Context, accountID, id string) (Connection, error) {
	c, err := scanConnection(s.db.Read().QueryRowContext(ctx, `SELECT `+connectionColsOf("c.")+`
		FROM connections c JOIN workspaces w ON w.id = c.workspace_id WHERE w.account_id = $1 AND c.id = $2`, accountID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Connection{}, apperr.ErrNotFound
	}
	if err != nil {
		return Connection{}, fmt.Errorf("read connection: %w", err)
	}
	return c, nil
}

// byID reads a connection whatever its workspace: for server work (the
// refresher), never for a request.
func (s *Service) byID(ctx context.Context, id string) (Connection, error) {
	c, err := scanConnection(s.db.Read().QueryRowContext(ctx, `SELECT `+connectionCols+` FROM connections WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Connection{}, apperr.ErrNotFound
	}
	if err != nil {
		return Connection{}, fmt.Errorf("read connection: %w", err)
	}
	return c, nil
}

func (s *Service) get(ctx context.Context, q db.Querier, workspaceID, id string) (Connection, error) {
	c, err := scanConnection(q.QueryRowContext(ctx,
		`SELECT `+connectionCols+` FROM connections WHERE workspace_id = $1 AND id = $2`, workspaceID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Connection{}, apperr.ErrNotFound
	}
	if err != nil {
		return Connection{}, fmt.Errorf("read connection: %w", err)
	}
	return c, nil
}

// Lookup answers, for the publish gate, which app a connection of the
// workspace is for and its status (ok is false when the workspace has no
// such connection).
func (s *Service) Lookup(ctx context.Context, ws account.Workspace) (func(id string) (app, status string, ok bool), error) {
	conns, err := s.List(ctx, ws, "")
	if err != nil {
		return nil, err
	}
	byID := map[string]Connection{}
	for _, c := range conns {
		byID[c.ID] = c
	}
	return func(id string) (string, string, bool) {
		c, ok := byID[id]
		return c.AppKey, string(c.Status), ok
	}, nil
}

// List returns the workspace's connections, optionally only those in one
// status, ordered by app and label.
func (s *Service) List(ctx context.Context, ws account.Workspace, status Status) ([]Connection, error) {
	query := `SELECT ` + connectionCols + ` FROM connections WHERE workspace_id = $1`
	args := []any{ws.ID}
	if status != "" {
		if !status.Valid() {
			return nil, apperr.Invalid("status", "Status must be one of active, pending, error or revoked")
		}
		query += ` AND status = $2`
		args = append(args, string(status))
	}
	rows, err := s.db.Read().QueryContext(ctx, query+` ORDER BY app_key, label, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	defer rows.Close()
	var out []Connection
	for rows.Next() {
		c, err := scanConnection(rows)
		if err != nil {
			return nil, fmt.Errorf("scan connection: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	return out, nil
}

// Rename changes a connection's label.
func (s *Service) Rename(ctx context.Context, ws account.Workspace, id, label string) (Connection, error) {
	label, err := validLabel(label)
	if err != nil {
		return Connection{}, err
	}
	res, err := s.db.Write().ExecContext(ctx, `UPDATE connections SET label = $1, updated_at = $2 WHERE workspace_id = $3 AND id = $4`,
		label, s.now(), ws.ID, id)
	if err != nil {
		return Connection{}, fmt.Errorf("rename connection: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Connection{}, apperr.ErrNotFound
	}
	return s.Get(ctx, ws, id)
}

// Transition moves a connection to a new status with a reason, recording it
// in the health history. It changes nothing, and reports false, when the
// connection is already in that status, so each transition is recorded (and
// can raise its event) exactly once, even when several processes race.
func (s *Service) Transition(ctx context.Context, id string, to Status, reason string, actor Actor, detail map[string]string) (bool, error) {
	var changed bool
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		var err error
		changed, err = s.transition(ctx, tx, id, to, reason, actor, detail)
		return err
	})
	return changed, err
}

func (s *Service) transition(ctx context.Context, tx db.Querier, id string, to Status, reason string, actor Actor, detail map[string]string) (bool, error) {
	if !to.Valid() {
		return false, fmt.Errorf("transition to unknown status %q", to)
	}
	var from, workspaceID string
	err := tx.QueryRowContext(ctx, `SELECT status, workspace_id FROM connections WHERE id = $1`, id).Scan(&from, &workspaceID)
	if errors.Is(err, sql.ErrNoRows) {
		return false, apperr.ErrNotFound
	}
	if err != nil {
		return false, fmt.Errorf("read status: %w", err)
	}
	now := s.now()
	// The guard on the old status makes the update a compare-and-set: of two
	// racing transitions only one changes the row.
	res, err := tx.ExecContext(ctx, `UPDATE connections SET status = $1, status_reason = $2, status_changed_at = $3, updated_at = $3,
		refresh_due_at = CASE WHEN $1 = 'active' THEN refresh_due_at ELSE NULL END
		WHERE id = $4 AND status = $5 AND status <> $1`, string(to), reason, now, id, from)
	if err != nil {
		return false, fmt.Errorf("update status: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if err := s.recordEvent(ctx, tx, id, Status(from), to, reason, actor, detail); err != nil {
		return false, err
	}
	// The signals others act on ride in the same transaction as the change.
	var signal string
	switch {
	case to == StatusError:
		signal = SignalNeedsReauth
	case to == StatusActive && (Status(from) == StatusError || Status(from) == StatusRevoked):
		signal = SignalReauthorized
	}
	if signal != "" {
		_, err := tx.ExecContext(ctx, `INSERT INTO connection_signals (id, connection_id, workspace_id, kind, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			db.NewID(), id, workspaceID, signal, reason, now)
		if err != nil {
			return false, fmt.Errorf("raise %s: %w", signal, err)
		}
	}
	return true, nil
}

// Signal kinds raised by transitions.
const (
	SignalNeedsReauth  = "needs_reauth"
	SignalReauthorized = "reauthorized"
)

// Signal is a durable notice that a connection broke or came back.
type Signal struct {
	ID           string    `json:"id"`
	ConnectionID string    `json:"connectionId"`
	WorkspaceID  string    `json:"workspaceId"`
	Kind         string    `json:"kind"`
	Reason       string    `json:"reason"`
	CreatedAt    time.Time `json:"createdAt"`
}

// Signals lists the signals raised for a connection, oldest first.
func (s *Service) Signals(ctx context.Context, connID string) ([]Signal, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT id, connection_id, workspace_id, kind, reason, created_at
		FROM connection_signals WHERE connection_id = $1 ORDER BY created_at, id`, connID)
	if err != nil {
		return nil, fmt.Errorf("list signals: %w", err)
	}
	defer rows.Close()
	var out []Signal
	for rows.Next() {
		var sg Signal
		if err := rows.Scan(&sg.ID, &sg.ConnectionID, &sg.WorkspaceID, &sg.Kind, &sg.Reason, &sg.CreatedAt); err != nil {
			return nil, fmt.Errorf("scan signal: %w", err)
		}
		sg.CreatedAt = sg.CreatedAt.UTC()
		out = append(out, sg)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list signals: %w", err)
	}
	return out, nil
}

func (s *Service) recordEvent(ctx context.Context, tx db.Querier, connID string, from, to Status, reason string, actor Actor, detail map[string]string) error {
	if actor.Kind == "" {
		actor = System
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO connection_events (id, connection_id, at, from_status, to_status, reason, actor_kind, actor_user_id, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		db.NewID(), connID, s.now(), string(from), string(to), reason, string(actor.Kind), db.NullString(actor.UserID), encodeMap(detail))
	if err != nil {
		return fmt.Errorf("record connection event: %w", err)
	}
	if actor.UserID == "" || actor.Kind == ActorSystem {
		return nil // only a person's actions go to the audit log
	}
	var wsID, label string
	if err := tx.QueryRowContext(ctx, `SELECT workspace_id, label FROM connections WHERE id = $1`, connID).Scan(&wsID, &label); err != nil {
		return fmt.Errorf("read connection for the audit log: %w", err)
	}
	return account.WriteWorkspaceAudit(ctx, tx, s.now(), wsID, actor.UserID, auditAction(from, to, reason), label+" ("+connID+")", reason)
}

// auditAction names a person's change of a connection in the audit log.
func auditAction(from, to Status, reason string) string {
	switch {
	case from == "":
		return account.AuditConnectionCreated
	case strings.HasPrefix(reason, "Allowed domains changed"):
		return account.AuditConnectionDomains
	case strings.HasPrefix(reason, "held runs released"):
		return account.AuditConnectionChanged
	case to == StatusRevoked:
		return account.AuditConnectionRevoked
	case from == StatusPending && to == StatusActive:
		return account.AuditConnectionConnected
	case to == StatusActive:
		return account.AuditConnectionReconnected
	}
	return account.AuditConnectionChanged
}

// History returns a connection's health history, oldest first.
func (s *Service) History(ctx context.Context, ws account.Workspace, id string) ([]Event, error) {
	if _, err := s.Get(ctx, ws, id); err != nil {
		return nil, err
	}
	rows, err := s.db.Read().QueryContext(ctx, `SELECT id, connection_id, at, from_status, to_status, reason, actor_kind,
		COALESCE(actor_user_id, ''), detail FROM connection_events WHERE connection_id = $1 ORDER BY at, id`, id)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var from, to, kind, detail string
		if err := rows.Scan(&e.ID, &e.ConnectionID, &e.At, &from, &to, &e.Reason, &kind, &e.ActorUserID, &detail); err != nil {
			return nil, fmt.Errorf("scan event: %w", err)
		}
		e.At, e.From, e.To, e.ActorKind, e.Detail = e.At.UTC(), Status(from), Status(to), ActorKind(kind), decodeMap(detail)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	return out, nil
}
