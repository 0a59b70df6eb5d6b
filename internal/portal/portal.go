// Package portal owns what the agency asks of its clients: requests to
// connect an app (for a node whose source is "Client provides the
// connection", or to reconnect a client's connection), queued per
// workspace and dispatched to a client as one batched email with a single
// sign-in link; the link itself (random, single-use, stored hashed, minted
// when the email is sent); and the progress of each request as the client
// connects the apps through the providers' consent screens.
package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/mail"
	"taskjuice/internal/workflow"
)

// Lifetimes: an emailed link works for LinkTTL and once; a request in the
// client's inbox works for InboxTTL after it was sent (or after its link
// was opened, which brings it back to the inbox).
const (
	LinkTTL  = 7 * 24 * time.Hour
	InboxTTL = 4 * time.Hour
	// MaxNote bounds the agency's note.
	MaxNote = 1000
)

// MailRequest is the outbox kind of a request email; its link is minted
// when it is sent (LinkExpander).
const MailRequest = "client-request"

// linkPrefix marks request sign-in links, for people and secret scanners.
const linkPrefix = "tjl_"

// Refusals people see.
var (
	ErrLinkUnknown  = apperr.NotFound("This sign-in link is not valid. It may have been replaced by a newer email; use the link in the latest one, or ask for a new request.")
	ErrLinkUsed     = apperr.Gone("link_used", "This sign-in link was already used. Sign in with your email and password to see your requests, or ask for a new request.")
	ErrLinkExpired  = apperr.Gone("link_expired", "This sign-in link has expired. Ask the agency to send the request again.")
	ErrLinkForeign  = apperr.Conflict("link_other_person", "", "This sign-in link is for someone else. Sign out first if you want to use it.")
	ErrInboxExpired = apperr.Gone("request_expired", "This request has expired. Ask the agency to send it again; nothing can be connected from it any more.")
	errNotFound     = apperr.NotFound("There is no such request.")
	errQueueEmpty   = apperr.Conflict("queue_empty", "", "The request queue is empty: add a step to it first")
	errNoClient     = apperr.Invalid("client", "Choose a client of this workspace to send the request to; invite one from Members first")
	errWrite        = apperr.Forbidden("Only staff who build workflows can send requests to clients")
)

// Waker sets going runs that wait for a client's connection (the engine).
type Waker interface {
	ResumeClientWaits(ctx context.Context, workflowID string) (int, error)
}

// Service is the portal domain.
type Service struct {
	db        *db.DB
	accounts  *account.Service
	conns     *connection.Service
	workflows *workflow.Service
	cat       *catalog.Catalog
	waker     Waker
	now       func() time.Time
}

// NewService returns the portal service; waker may be nil (no engine).
func NewService(d *db.DB, accounts *account.Service, conns *connection.Service, workflows *workflow.Service, cat *catalog.Catalog, waker Waker) *Service {
	return &Service{db: d, accounts: accounts, conns: conns, workflows: workflows, cat: cat, waker: waker, now: db.Now}
}

// Request is one app a client is asked to connect.
type Request struct {
	ID           string     `json:"id"`
	WorkspaceID  string     `json:"workspaceId"`
	BatchID      string     `json:"batchId,omitempty"`
	AppKey       string     `json:"app"`
	AppName      string     `json:"appName"`
	Permissions  []string   `json:"permissions"`
	WorkflowID   string     `json:"workflowId,omitempty"`
	NodeID       string     `json:"nodeId,omitempty"`
	Reconnect    bool       `json:"reconnect"`
	ConnectionID string     `json:"connectionId,omitempty"`
	CreatedAt    time.Time  `json:"createdAt"`
	ConnectedAt  *time.Time `json:"connectedAt,omitempty"`
}

// Connected reports whether the client has connected the app.
func (r Request) Connected() bool { return r.ConnectedAt != nil }

// Batch is one dispatch to a client: one email, one link, its requests.
type Batch struct {
	ID            string     `json:"id"`
	WorkspaceID   string     `json:"workspaceId"`
	ClientUserID  string     `json:"clientUserId"`
	ClientName    string     `json:"clientName"`
	ClientEmail   string     `json:"clientEmail"`
	Note          string     `json:"note"`
	SentAt        time.Time  `json:"sentAt"`
	ExpiresAt     time.Time  `json:"expiresAt"`
	LinkExpiresAt time.Time  `json:"linkExpiresAt"`
	LinkUsedAt    *time.Time `json:"linkUsedAt,omitempty"`
	Requests      []Request  `json:"requests"`
}

// Progress counts the requests connected, of all.
func (b Batch) Progress() (connected, total int) {
	for _, r := range b.Requests {
		if r.Connected() {
			connected++
		}
	}
	return connected, len(b.Requests)
}

// Done reports whether every app of the batch is connected.
func (b Batch) Done() bool { x, y := b.Progress(); return x == y }

// Expired reports whether the request has left the client's inbox.
func (b Batch) Expired(now time.Time) bool { return !now.Before(b.ExpiresAt) }

func (s *Service) appOf(key string) (catalog.App, bool) {
	if s.cat == nil {
		return catalog.App{Key: key, Name: key}, false
	}
	return s.cat.App(key)
}

func (s *Service) decorate(r *Request) {
	app, ok := s.appOf(r.AppKey)
	r.AppName = app.Name
	if ok {
		r.Permissions = app.Scopes()
	}
	if r.AppName == "" {
		r.AppName = r.AppKey
	}
}

func staffWrite(p account.Principal, ws account.Workspace) error {
	if !p.Role.IsStaff() || p.AccountID != ws.AccountID {
		return apperr.ErrNotFound
	}
	if !p.Can(account.CapWrite) {
		return errWrite
	}
	return nil
}

// clientNode finds a node of the workflow (its draft or any version, the
// newest first) whose client provides the connection, and its app: an
// app action, or the app trigger.
func (s *Service) clientNode(ctx context.Context, ws account.Workspace, workflowID, nodeID string) (catalog.App, error) {
	versions, err := s.workflows.Versions(ctx, ws, workflowID)
	if err != nil {
		return catalog.App{}, apperr.Explain(err, "There is no such workflow in this workspace.")
	}
	for _, v := range versions {
		n, ok := v.Graph.Node(nodeID)
		if !ok || (n.Kind != workflow.NodeAction && n.Kind != workflow.TriggerApp) {
			continue
		}
		if n.Connection == nil || !n.Connection.ClientProvides {
			return catalog.App{}, apperr.Conflict("not_client_provided", "", "This step's connection is not provided by the client; choose \"Client provides the connection\" first")
		}
		cfg, err := workflow.DecodeConfig(n)
		if err != nil {
			return catalog.App{}, apperr.Invalid("node", "This step's configuration cannot be read")
		}
		var appKey string
		switch c := cfg.(type) {
		case *workflow.ActionConfig:
			appKey = c.App
		case *workflow.AppTriggerConfig:
			appKey = c.App
		}
		app, ok := s.appOf(appKey)
		if !ok || !app.IsOAuth() {
			return catalog.App{}, apperr.Conflict("not_oauth", "", "Clients can provide only apps they sign in to (OAuth)")
		}
		return app, nil
	}
	return catalog.App{}, apperr.NotFound("There is no such step in this workflow.")
}

// Queue adds a request for a node whose client provides the connection to
// the workspace's queue. It sends nothing; queuing the same node twice
// keeps one request.
func (s *Service) Queue(ctx context.Context, p account.Principal, ws account.Workspace, workflowID, nodeID string) (Request, error) {
	if err := staffWrite(p, ws); err != nil {
		return Request{}, err
	}
	app, err := s.clientNode(ctx, ws, workflowID, nodeID)
	if err != nil {
		return Request{}, err
	}
	r := Request{ID: db.NewID(), WorkspaceID: ws.ID, AppKey: app.Key, WorkflowID: workflowID, NodeID: nodeID, CreatedAt: s.now()}
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		var existing string
		err := tx.QueryRowContext(ctx, `SELECT id FROM client_requests WHERE workspace_id = $1 AND workflow_id = $2 AND node_id = $3 AND batch_id IS NULL`,
			ws.ID, workflowID, nodeID).Scan(&existing)
		if err == nil {
			r.ID = existing
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read queue: %w", err)
		}
		return s.insert(ctx, tx, r, p.User.ID)
	})
	if err != nil {
		return Request{}, err
	}
	s.decorate(&r)
	return r, nil
}

func (s *Service) insert(ctx context.Context, tx db.Querier, r Request, by string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO client_requests (id, workspace_id, batch_id, app_key, workflow_id, node_id, reconnect, connection_id, requested_by, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		r.ID, r.WorkspaceID, db.NullString(r.BatchID), r.AppKey, db.NullString(r.WorkflowID), r.NodeID, r.Reconnect,
		db.NullString(r.ConnectionID), db.NullString(by), r.CreatedAt)
	if err != nil {
		return fmt.Errorf("queue request: %w", err)
	}
	return nil
}

// Unqueue removes a request from the queue before it is sent.
func (s *Service) Unqueue(ctx context.Context, p account.Principal, ws account.Workspace, id string) error {
	if err := staffWrite(p, ws); err != nil {
		return err
	}
	res, err := s.db.Write().ExecContext(ctx, `DELETE FROM client_requests WHERE id = $1 AND workspace_id = $2 AND batch_id IS NULL`, id, ws.ID)
	if err != nil {
		return fmt.Errorf("unqueue request: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	return nil
}

const requestCols = `id, workspace_id, COALESCE(batch_id, ''), app_key, COALESCE(workflow_id, ''), node_id, reconnect,
	COALESCE(connection_id, ''), created_at, connected_at`

func (s *Service) scanRequests(rows *sql.Rows, err error) ([]Request, error) {
	if err != nil {
		return nil, fmt.Errorf("read requests: %w", err)
	}
	defer rows.Close()
	var out []Request
	for rows.Next() {
		var r Request
		var connected sql.NullTime
		if err := rows.Scan(&r.ID, &r.WorkspaceID, &r.BatchID, &r.AppKey, &r.WorkflowID, &r.NodeID, &r.Reconnect,
			&r.ConnectionID, &r.CreatedAt, &connected); err != nil {
			return nil, fmt.Errorf("read requests: %w", err)
		}
		r.CreatedAt = r.CreatedAt.UTC()
		if connected.Valid {
			t := connected.Time.UTC()
			r.ConnectedAt = &t
		}
		s.decorate(&r)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Queued lists the workspace's queue: requests not sent yet.
func (s *Service) Queued(ctx context.Context, ws account.Workspace) ([]Request, error) {
	return s.scanRequests(s.db.Read().QueryContext(ctx, `SELECT `+requestCols+` FROM client_requests
		WHERE workspace_id = $1 AND batch_id IS NULL ORDER BY created_at, id`, ws.ID))
}

// NodeStates tells, for each client-provided node of a workflow, whether a
// request for it has been sent and not yet answered (for the publish gate
// and the editor) and whether one waits in the queue.
func (s *Service) NodeStates(ctx context.Context, ws account.Workspace, workflowID string) (map[string]NodeState, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT node_id, batch_id IS NOT NULL, connected_at IS NOT NULL FROM client_requests
		WHERE workspace_id = $1 AND workflow_id = $2`, ws.ID, workflowID)
	if err != nil {
		return nil, fmt.Errorf("read node requests: %w", err)
	}
	defer rows.Close()
	out := map[string]NodeState{}
	for rows.Next() {
		var node string
		var sent, connected bool
		if err := rows.Scan(&node, &sent, &connected); err != nil {
			return nil, fmt.Errorf("read node requests: %w", err)
		}
		st := out[node]
		switch {
		case !sent:
			st.Queued = true
		case !connected:
			st.Sent = true
		}
		out[node] = st
	}
	return out, rows.Err()
}

// NodeState is where a client-provided node's request stands.
type NodeState struct {
	Queued bool // waiting in the queue, not sent
	Sent   bool // sent to the client, not connected yet
}

// Dispatch sends the workspace's queue to a client as one email: one
// sign-in link, the apps, the permissions each asks for, and the note.
func (s *Service) Dispatch(ctx context.Context, p account.Principal, ws account.Workspace, clientUserID, note string) (Batch, error) {
	return s.dispatch(ctx, p, ws, clientUserID, note, "")
}

// DispatchByLink sends the queue as Dispatch does on a server whose email
// is off: nothing is queued for email; the sign-in link's token is minted
// now and returned for staff to hand over themselves (only its hash is
// stored). The request enters the client's inbox at once.
func (s *Service) DispatchByLink(ctx context.Context, p account.Principal, ws account.Workspace, clientUserID, note string) (Batch, string, error) {
	token := newLinkToken()
	b, err := s.dispatch(ctx, p, ws, clientUserID, note, token)
	if err != nil {
		return Batch{}, "", err
	}
	return b, token, nil
}

// LinkPath is the address of a request's sign-in link, under the server's
// base URL.
func LinkPath(token string) string { return "/portal/link/" + token }

func newLinkToken() string { return linkPrefix + randomToken() }

// dispatch sends the queue by email, or by the link whose token is given.
func (s *Service) dispatch(ctx context.Context, p account.Principal, ws account.Workspace, clientUserID, note, token string) (Batch, error) {
	if err := staffWrite(p, ws); err != nil {
		return Batch{}, err
	}
	note = strings.TrimSpace(note)
	if utf8.RuneCountInString(note) > MaxNote {
		return Batch{}, apperr.Invalid("note", fmt.Sprintf("The note holds at most %d characters", MaxNote))
	}
	client, err := s.clientOf(ctx, p, ws, clientUserID)
	if err != nil {
		return Batch{}, err
	}
	b := s.newBatch(ws, client, note, p.User.ID)
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		if err := s.insertBatch(ctx, tx, b, p.User.ID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE client_requests SET batch_id = $1 WHERE workspace_id = $2 AND batch_id IS NULL`, b.ID, ws.ID)
		if err != nil {
			return fmt.Errorf("dispatch queue: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errQueueEmpty
		}
		return s.deliver(ctx, tx, b.ID, p.AccountName, token)
	})
	if err != nil {
		return Batch{}, err
	}
	return s.batch(ctx, ws.ID, b.ID)
}

func (s *Service) clientOf(ctx context.Context, p account.Principal, ws account.Workspace, userID string) (account.User, error) {
	clients, err := s.accounts.Clients(ctx, p, ws)
	if err != nil {
		return account.User{}, err
	}
	if userID == "" && len(clients) == 1 {
		return clients[0], nil
	}
	for _, c := range clients {
		if c.ID == userID {
			return c, nil
		}
	}
	return account.User{}, errNoClient
}

func (s *Service) newBatch(ws account.Workspace, client account.User, note, by string) Batch {
	now := s.now()
	return Batch{ID: db.NewID(), WorkspaceID: ws.ID, ClientUserID: client.ID, ClientName: client.Name, ClientEmail: client.Email,
		Note: note, SentAt: now, ExpiresAt: now.Add(InboxTTL), LinkExpiresAt: now.Add(LinkTTL)}
}

func (s *Service) insertBatch(ctx context.Context, tx db.Querier, b Batch, by string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO client_request_batches (id, workspace_id, client_user_id, note, sent_by, sent_at, expires_at, link_expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, b.ID, b.WorkspaceID, b.ClientUserID, b.Note, db.NullString(by), b.SentAt, b.ExpiresAt, b.LinkExpiresAt)
	if err != nil {
		return fmt.Errorf("record dispatch: %w", err)
	}
	return nil
}

// deliver sends a batch: by email when token is empty, else by the link
// of that token, which staff hand over themselves (email off): its hash
// is stored at once, and no email is queued.
func (s *Service) deliver(ctx context.Context, tx db.Querier, batchID, agency, token string) error {
	if token == "" {
		return s.enqueueEmail(ctx, tx, batchID, agency)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE client_request_batches SET link_hash = $1 WHERE id = $2`, hashToken(token), batchID); err != nil {
		return fmt.Errorf("mint request link: %w", err)
	}
	return nil
}

// enqueueEmail writes the batch's email, its link left to be minted when
// it is sent. It names apps and permissions, never a credential.
func (s *Service) enqueueEmail(ctx context.Context, tx db.Querier, batchID, agency string) error {
	var to, name, note, workspace string
	var linkExpires time.Time
	err := tx.QueryRowContext(ctx, `SELECT u.email, u.name, b.note, w.name, b.link_expires_at FROM client_request_batches b
		JOIN users u ON u.id = b.client_user_id JOIN workspaces w ON w.id = b.workspace_id WHERE b.id = $1`, batchID).
		Scan(&to, &name, &note, &workspace, &linkExpires)
	if err != nil {
		return fmt.Errorf("read dispatch: %w", err)
	}
	reqs, err := s.scanRequests(tx.QueryContext(ctx, `SELECT `+requestCols+` FROM client_requests WHERE batch_id = $1 ORDER BY created_at, id`, batchID))
	if err != nil {
		return err
	}
	var t strings.Builder
	fmt.Fprintf(&t, "Hello %s,\n\n%s asks you to connect ", name, agency)
	if len(reqs) == 1 {
		t.WriteString("an app")
	} else {
		fmt.Fprintf(&t, "%d apps", len(reqs))
	}
	fmt.Fprintf(&t, " for %s. You sign in to each app on its own page; TaskJuice never sees your passwords.\n\n", workspace)
	if note != "" {
		fmt.Fprintf(&t, "A note from %s:\n\n  %s\n\n", agency, strings.ReplaceAll(note, "\n", "\n  "))
	}
	var names []string
	for _, r := range reqs {
		names = append(names, r.AppName)
		if r.Reconnect {
			fmt.Fprintf(&t, "- %s (reconnect)\n", r.AppName)
		} else {
			fmt.Fprintf(&t, "- %s\n", r.AppName)
		}
		if len(r.Permissions) > 0 {
			fmt.Fprintf(&t, "  Permissions asked: %s\n", strings.Join(r.Permissions, "; "))
		}
	}
	fmt.Fprintf(&t, "\nSign in and connect them here:\n\n%s\n\n", mail.LinkPlaceholder)
	fmt.Fprintf(&t, "The link signs you in once and works until %s. Once opened, the request stays in your portal for %d hours.\n",
		linkExpires.UTC().Format("2 Jan 2006 15:04 UTC"), int(InboxTTL/time.Hour))
	subject := agency + " asks you to connect " + strings.Join(names, ", ")
	return mail.EnqueueRef(ctx, tx, MailRequest, batchID, mail.Message{To: to, Subject: subject, Text: t.String()})
}

// LinkExpander mints a request email's sign-in link when it is sent: a
// fresh random token whose hash replaces the batch's, so only the latest
// email's link works. The request enters the client's inbox then. A batch
// whose link was used or expired meanwhile is not emailed.
func (s *Service) LinkExpander(baseURL string) mail.Expander {
	return func(ctx context.Context, ref string, m mail.Message) (mail.Message, error) {
		token := newLinkToken()
		now := s.now()
		res, err := s.db.Write().ExecContext(ctx, `UPDATE client_request_batches SET link_hash = $1, sent_at = $2, expires_at = $3
			WHERE id = $4 AND link_used_at IS NULL AND link_expires_at > $2`, hashToken(token), now, now.Add(InboxTTL), ref)
		if err != nil {
			return m, fmt.Errorf("mint request link: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return m, mail.ErrDrop
		}
		m.Text = strings.ReplaceAll(m.Text, mail.LinkPlaceholder, strings.TrimRight(baseURL, "/")+LinkPath(token))
		return m, nil
	}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte("client-request-link:" + tok))
	return hex.EncodeToString(sum[:])
}

// Resend emails a batch again with a new link (valid LinkTTL); the earlier
// link stops working at once.
func (s *Service) Resend(ctx context.Context, p account.Principal, ws account.Workspace, batchID string) (Batch, error) {
	return s.resend(ctx, p, ws, batchID, "")
}

// ResendByLink renews a batch as Resend does on a server whose email is
// off, returning the new link's token instead of emailing it; the earlier
// link stops working at once.
func (s *Service) ResendByLink(ctx context.Context, p account.Principal, ws account.Workspace, batchID string) (Batch, string, error) {
	token := newLinkToken()
	b, err := s.resend(ctx, p, ws, batchID, token)
	if err != nil {
		return Batch{}, "", err
	}
	return b, token, nil
}

func (s *Service) resend(ctx context.Context, p account.Principal, ws account.Workspace, batchID, token string) (Batch, error) {
	if err := staffWrite(p, ws); err != nil {
		return Batch{}, err
	}
	b, err := s.batch(ctx, ws.ID, batchID)
	if err != nil {
		return Batch{}, err
	}
	if b.Done() {
		return Batch{}, apperr.Conflict("request_done", "", "Every app of this request is connected; there is nothing to resend")
	}
	now := s.now()
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		if _, err := tx.ExecContext(ctx, `UPDATE client_request_batches SET link_hash = NULL, link_used_at = NULL, sent_at = $1, expires_at = $2,
			link_expires_at = $3 WHERE id = $4`, now, now.Add(InboxTTL), now.Add(LinkTTL), batchID); err != nil {
			return fmt.Errorf("renew request: %w", err)
		}
		return s.deliver(ctx, tx, batchID, p.AccountName, token)
	})
	if err != nil {
		return Batch{}, err
	}
	return s.batch(ctx, ws.ID, batchID)
}

// OpenLink spends an emailed sign-in link: it must be known, unused and
// unexpired. The request comes back to the client's inbox for InboxTTL.
// It returns the batch and the client the link signs in.
func (s *Service) OpenLink(ctx context.Context, token string) (Batch, error) {
	if !strings.HasPrefix(token, linkPrefix) {
		return Batch{}, ErrLinkUnknown
	}
	h := hashToken(token)
	var id, workspaceID string
	var linkExpires time.Time
	var used sql.NullTime
	err := s.db.Read().QueryRowContext(ctx, `SELECT id, workspace_id, link_expires_at, link_used_at FROM client_request_batches WHERE link_hash = $1`, h).
		Scan(&id, &workspaceID, &linkExpires, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return Batch{}, ErrLinkUnknown
	}
	if err != nil {
		return Batch{}, fmt.Errorf("read link: %w", err)
	}
	now := s.now()
	switch {
	case used.Valid:
		return Batch{}, ErrLinkUsed
	case !now.Before(linkExpires):
		return Batch{}, ErrLinkExpired
	}
	res, err := s.db.Write().ExecContext(ctx, `UPDATE client_request_batches SET link_used_at = $1, expires_at = $2
		WHERE link_hash = $3 AND link_used_at IS NULL`, now, now.Add(InboxTTL), h)
	if err != nil {
		return Batch{}, fmt.Errorf("spend link: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Batch{}, ErrLinkUsed
	}
	return s.batch(ctx, workspaceID, id)
}

// PeekLink reads which client a link is for without spending it, so a
// browser signed in as someone else is refused before anything changes.
func (s *Service) PeekLink(ctx context.Context, token string) (string, error) {
	var user string
	err := s.db.Read().QueryRowContext(ctx, `SELECT client_user_id FROM client_request_batches WHERE link_hash = $1`, hashToken(token)).Scan(&user)
	if errors.Is(err, sql.ErrNoRows) || !strings.HasPrefix(token, linkPrefix) {
		return "", ErrLinkUnknown
	}
	if err != nil {
		return "", fmt.Errorf("read link: %w", err)
	}
	return user, nil
}

const batchCols = `b.id, b.workspace_id, b.client_user_id, u.name, u.email, b.note, b.sent_at, b.expires_at, b.link_expires_at, b.link_used_at`

func (s *Service) batches(ctx context.Context, where string, args ...any) ([]Batch, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT `+batchCols+` FROM client_request_batches b JOIN users u ON u.id = b.client_user_id
		WHERE `+where+` ORDER BY b.sent_at DESC, b.id LIMIT 100`, args...)
	if err != nil {
		return nil, fmt.Errorf("read requests: %w", err)
	}
	var out []Batch
	for rows.Next() {
		var b Batch
		var used sql.NullTime
		if err := rows.Scan(&b.ID, &b.WorkspaceID, &b.ClientUserID, &b.ClientName, &b.ClientEmail, &b.Note, &b.SentAt, &b.ExpiresAt,
			&b.LinkExpiresAt, &used); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read requests: %w", err)
		}
		b.SentAt, b.ExpiresAt, b.LinkExpiresAt = b.SentAt.UTC(), b.ExpiresAt.UTC(), b.LinkExpiresAt.UTC()
		if used.Valid {
			t := used.Time.UTC()
			b.LinkUsedAt = &t
		}
		out = append(out, b)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		reqs, err := s.scanRequests(s.db.Read().QueryContext(ctx, `SELECT `+requestCols+` FROM client_requests WHERE batch_id = $1 ORDER BY created_at, id`, out[i].ID))
		if err != nil {
			return nil, err
		}
		out[i].Requests = reqs
	}
	return out, nil
}

func (s *Service) batch(ctx context.Context, workspaceID, id string) (Batch, error) {
	bs, err := s.batches(ctx, `b.workspace_id = $1 AND b.id = $2`, workspaceID, id)
	if err != nil {
		return Batch{}, err
	}
	if len(bs) == 0 {
		return Batch{}, errNotFound
	}
	return bs[0], nil
}

// Sent lists the requests sent to the workspace's clients, newest first,
// with their progress (for staff).
func (s *Service) Sent(ctx context.Context, p account.Principal, ws account.Workspace) ([]Batch, error) {
	if !p.Role.IsStaff() || p.AccountID != ws.AccountID {
		return nil, apperr.ErrNotFound
	}
	return s.batches(ctx, `b.workspace_id = $1`, ws.ID)
}

// Inbox lists the requests sent to this client, newest first.
func (s *Service) Inbox(ctx context.Context, p account.Principal) ([]Batch, error) {
	if !p.IsClient() {
		return nil, apperr.ErrNotFound
	}
	return s.batches(ctx, `b.workspace_id = $1 AND b.client_user_id = $2`, p.WorkspaceID, p.User.ID)
}

// ForClient returns one of the client's own requests; anyone else's is
// not found.
func (s *Service) ForClient(ctx context.Context, p account.Principal, id string) (Batch, error) {
	if !p.IsClient() {
		return Batch{}, errNotFound
	}
	bs, err := s.batches(ctx, `b.workspace_id = $1 AND b.client_user_id = $2 AND b.id = $3`, p.WorkspaceID, p.User.ID, id)
	if err != nil {
		return Batch{}, err
	}
	if len(bs) == 0 {
		return Batch{}, errNotFound
	}
	return bs[0], nil
}

// ToConnect returns the request of the client's batch they are about to
// connect: the batch must be theirs and in their inbox still, the app not
// connected yet.
func (s *Service) ToConnect(ctx context.Context, p account.Principal, batchID, requestID string) (Batch, Request, error) {
	b, err := s.ForClient(ctx, p, batchID)
	if err != nil {
		return Batch{}, Request{}, err
	}
	if b.Expired(s.now()) {
		return Batch{}, Request{}, ErrInboxExpired
	}
	for _, r := range b.Requests {
		if r.ID == requestID {
			if r.Connected() {
				return Batch{}, Request{}, apperr.Conflict("already_connected", "", r.AppName+" is connected already")
			}
			return b, r, nil
		}
	}
	return Batch{}, Request{}, errNotFound
}

// Started records the connection a client's consent is creating (or
// reconnecting) for a request, so its completion finds the request.
func (s *Service) Started(ctx context.Context, requestID, connectionID string) error {
	if _, err := s.db.Write().ExecContext(ctx, `UPDATE client_requests SET connection_id = $1 WHERE id = $2 AND connected_at IS NULL`,
		connectionID, requestID); err != nil {
		return fmt.Errorf("record request connection: %w", err)
	}
	return nil
}

// Connected is told that a client's consent succeeded for a connection: the
// requests it answers flip to connected, the nodes they were for are bound
// to it, and runs waiting for it go on.
func (s *Service) Connected(ctx context.Context, connectionID string) error {
	var workflows []string
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, COALESCE(workflow_id, ''), node_id FROM client_requests WHERE connection_id = $1 AND connected_at IS NULL`, connectionID)
		if err != nil {
			return fmt.Errorf("read answered requests: %w", err)
		}
		type node struct{ id, workflow, node string }
		var nodes []node
		for rows.Next() {
			var n node
			if err := rows.Scan(&n.id, &n.workflow, &n.node); err != nil {
				rows.Close()
				return err
			}
			nodes = append(nodes, n)
		}
		rows.Close()
		now := s.now()
		for _, n := range nodes {
			if _, err := tx.ExecContext(ctx, `UPDATE client_requests SET connected_at = $1 WHERE id = $2`, now, n.id); err != nil {
				return fmt.Errorf("mark request connected: %w", err)
			}
			if n.workflow == "" {
				continue
			}
			if err := s.workflows.BindClientConnection(ctx, tx, n.workflow, n.node, connectionID); err != nil {
				return err
			}
			workflows = append(workflows, n.workflow)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if s.waker != nil {
		for _, wf := range workflows {
			if _, err := s.waker.ResumeClientWaits(ctx, wf); err != nil {
				return err
			}
		}
	}
	return nil
}

// ReconnectByEmail sends the client a fresh request email to reconnect
// one of their connections through its app's consent screen.
func (s *Service) ReconnectByEmail(ctx context.Context, p account.Principal, connectionID string) (Batch, error) {
	if !p.IsClient() {
		return Batch{}, apperr.ErrNotFound
	}
	ws, err := s.accounts.WorkspaceByID(ctx, p, p.WorkspaceID)
	if err != nil {
		return Batch{}, err
	}
	c, err := s.conns.Get(ctx, ws, connectionID)
	if err != nil || c.OwnerKind != connection.OwnerClient || c.OwnerUserID != p.User.ID {
		return Batch{}, apperr.NotFound("There is no such connection among yours.")
	}
	if app, ok := s.appOf(c.AppKey); !ok || !app.IsOAuth() {
		return Batch{}, apperr.Conflict("not_oauth", "", "This app does not use a consent screen")
	}
	return s.reconnectBatch(ctx, ws, p.User, c, p.User.ID, "You asked to reconnect "+c.Label+".", p.AccountName, "")
}

// ReconnectNow is the client's reconnect on a server whose email is off:
// the same request as ReconnectByEmail, put straight into the client's
// inbox (they are signed in already: no email, no link), for them to go
// through the app's consent screen at once. It returns the batch; its one
// request is the reconnect.
func (s *Service) ReconnectNow(ctx context.Context, p account.Principal, connectionID string) (Batch, error) {
	if !p.IsClient() {
		return Batch{}, apperr.ErrNotFound
	}
	ws, err := s.accounts.WorkspaceByID(ctx, p, p.WorkspaceID)
	if err != nil {
		return Batch{}, err
	}
	c, err := s.conns.Get(ctx, ws, connectionID)
	if err != nil || c.OwnerKind != connection.OwnerClient || c.OwnerUserID != p.User.ID {
		return Batch{}, apperr.NotFound("There is no such connection among yours.")
	}
	if app, ok := s.appOf(c.AppKey); !ok || !app.IsOAuth() {
		return Batch{}, apperr.Conflict("not_oauth", "", "This app does not use a consent screen")
	}
	b := s.newBatch(ws, p.User, "You asked to reconnect "+c.Label+".", p.User.ID)
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		if err := s.insertBatch(ctx, tx, b, p.User.ID); err != nil {
			return err
		}
		// No link was sent: the batch counts as opened by the client.
		if _, err := tx.ExecContext(ctx, `UPDATE client_request_batches SET link_used_at = $1 WHERE id = $2`, b.SentAt, b.ID); err != nil {
			return fmt.Errorf("record reconnect: %w", err)
		}
		r := Request{ID: db.NewID(), WorkspaceID: ws.ID, BatchID: b.ID, AppKey: c.AppKey, Reconnect: true, ConnectionID: c.ID, CreatedAt: s.now()}
		return s.insert(ctx, tx, r, p.User.ID)
	})
	if err != nil {
		return Batch{}, err
	}
	return s.batch(ctx, ws.ID, b.ID)
}

// RequestReconnect is the staff side of ReconnectByEmail: it emails the
// owner of a client connection a fresh request to reconnect it.
func (s *Service) RequestReconnect(ctx context.Context, p account.Principal, ws account.Workspace, connectionID, note string) (Batch, error) {
	return s.requestReconnect(ctx, p, ws, connectionID, note, "")
}

// RequestReconnectByLink asks as RequestReconnect does on a server whose
// email is off, returning the sign-in link's token for staff to hand over
// instead of emailing it.
func (s *Service) RequestReconnectByLink(ctx context.Context, p account.Principal, ws account.Workspace, connectionID, note string) (Batch, string, error) {
	token := newLinkToken()
	b, err := s.requestReconnect(ctx, p, ws, connectionID, note, token)
	if err != nil {
		return Batch{}, "", err
	}
	return b, token, nil
}

func (s *Service) requestReconnect(ctx context.Context, p account.Principal, ws account.Workspace, connectionID, note, token string) (Batch, error) {
	if err := staffWrite(p, ws); err != nil {
		return Batch{}, err
	}
	c, err := s.conns.Get(ctx, ws, connectionID)
	if err != nil {
		return Batch{}, err
	}
	if c.OwnerKind != connection.OwnerClient || c.OwnerUserID == "" {
		return Batch{}, apperr.Conflict("not_client_owned", "", "Only a connection a client owns is reconnected by the client")
	}
	client, err := s.clientOf(ctx, p, ws, c.OwnerUserID)
	if err != nil {
		return Batch{}, err
	}
	return s.reconnectBatch(ctx, ws, client, c, p.User.ID, strings.TrimSpace(note), p.AccountName, token)
}

func (s *Service) reconnectBatch(ctx context.Context, ws account.Workspace, client account.User, c connection.Connection, by, note, agency, token string) (Batch, error) {
	b := s.newBatch(ws, client, note, by)
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		if err := s.insertBatch(ctx, tx, b, by); err != nil {
			return err
		}
		r := Request{ID: db.NewID(), WorkspaceID: ws.ID, BatchID: b.ID, AppKey: c.AppKey, Reconnect: true, ConnectionID: c.ID, CreatedAt: s.now()}
		if err := s.insert(ctx, tx, r, by); err != nil {
			return err
		}
		return s.deliver(ctx, tx, b.ID, agency, token)
	})
	if err != nil {
		return Batch{}, err
	}
	return s.batch(ctx, ws.ID, b.ID)
}
