package trigger

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
	"taskjuice/internal/db"
	"taskjuice/internal/vault"
)

// SourceInstant is the source of runs an instant app trigger starts.
const SourceInstant = "instant"

// Instant trigger states, as instant_triggers.state and InstantState.State
// name them.
const (
	InstantSubscribing   = "subscribing"
	InstantSubscribed    = "subscribed"
	InstantManual        = "manual"
	InstantFailed        = "failed"
	InstantUnsubscribing = "unsubscribing"
)

// Delivery addresses, under the server's base URL.
const (
	// TriggerDeliveryPath is a trigger's own address: POST
	// /webhooks/triggers/{token}.
	TriggerDeliveryPath = "/webhooks/triggers/"
	// AppDeliveryPath is an app-wide address (sharedInstantSource): POST
	// /webhooks/apps/{app}.
	AppDeliveryPath = "/webhooks/apps/"
)

// ListenerOptions tune the Listener.
type ListenerOptions struct {
	// BaseURL is the server's public URL; delivery addresses are built on
	// it.
	BaseURL string
	// MaxBody limits a delivery's body (default DefaultMaxBody): larger
	// ones get 413.
	MaxBody int64
	// SharedSecrets returns an app's app-wide signing secret (Slack's
	// signing secret, from the server's configuration) for deliveries to
	// /webhooks/apps/{app}; "" refuses them. Nil: the catalog's
	// (TASKJUICE_APP_<KEY>_SIGNING_SECRET, see SharedSecret).
	SharedSecrets func(app string) string
	// Accounts reads a connection's external account id (Slack: the team
	// id), which apps with an app-wide address route deliveries by. Nil:
	// subscribing passes none.
	Accounts func(ctx context.Context, connID string) (string, error)
	// Lease is how long a subscribe or unsubscribe in flight keeps others
	// off its row (default 2 minutes).
	Lease time.Duration
	// MinBackoff and MaxBackoff bound the pause after a failed subscribe
	// or unsubscribe (defaults 10 seconds and 1 hour); it doubles per
	// failure in a row.
	MinBackoff, MaxBackoff time.Duration
	// CallTimeout bounds one call to an app (default 30 seconds).
	CallTimeout time.Duration
	// Batch caps the rows retried per Tick (default 50).
	Batch int
	// Now is the clock (default db.Now).
	Now func() time.Time
	// Log receives failures, never a secret.
	Log *slog.Logger
}

// Listener keeps the subscriptions of published instant app triggers at
// their apps and turns verified deliveries into runs, one per app-side
// event id. It owns the instant_triggers table; any number of processes
// may run one against the same database.
type Listener struct {
	db      *db.DB
	vault   *vault.Store
	starter Starter
	api     AppAPI
	apps    *catalog.Catalog
	o       ListenerOptions
	mux     *http.ServeMux
	// Refused counts deliveries that failed verification.
	refused atomic.Int64
}

// NewListener returns a Listener that calls apps through api and starts
// runs through starter.
func NewListener(d *db.DB, keys vault.Keyring, starter Starter, api AppAPI, apps *catalog.Catalog, o ListenerOptions) *Listener {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Lease <= 0 {
		o.Lease = 2 * time.Minute
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 10 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Hour
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 50
	}
	if o.Now == nil {
		o.Now = db.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.SharedSecrets == nil {
		o.SharedSecrets = func(app string) string { return SharedSecret(apps, app) }
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	l := &Listener{db: d, vault: vault.NewStore(d, keys), starter: starter, api: api, apps: apps, o: o}
	l.mux = http.NewServeMux()
	l.mux.HandleFunc("POST "+TriggerDeliveryPath+"{token}", l.deliverTrigger)
	l.mux.HandleFunc("POST "+AppDeliveryPath+"{app}", l.deliverApp)
	l.mux.HandleFunc(TriggerDeliveryPath+"{token}", methodNotAllowed)
	l.mux.HandleFunc(AppDeliveryPath+"{app}", methodNotAllowed)
	return l
}

func methodNotAllowed(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Allow", http.MethodPost)
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Deliveries are sent with POST.")
}

func (l *Listener) now() time.Time { return dbTime(l.o.Now()) }

// Refused is how many deliveries failed verification since start.
func (l *Listener) Refused() int64 { return l.refused.Load() }

// InstantTrigger is a published instant app trigger as the Listener
// registers it.
type InstantTrigger struct {
	WorkflowID   string
	NodeID       string
	App          string
	Trigger      string
	ConnectionID string
	Inputs       map[string]string
}

// DeliveryURL is the address of a trigger's deliveries.
func (l *Listener) DeliveryURL(token string) string {
	return l.o.BaseURL + TriggerDeliveryPath + token
}

// Sync registers the workflow's live instant trigger and subscribes at
// the app. The same settings again keep the subscription (and its
// address); changed settings leave the old subscription to be deleted at
// the app and subscribe anew. A failure at the app is no error here: the
// trigger shows it and Tick retries.
func (l *Listener) Sync(ctx context.Context, t InstantTrigger) error {
	if !CanListen(t.App, t.Trigger) {
		return fmt.Errorf("sync instant trigger: TaskJuice cannot listen to %s's %s trigger", t.App, t.Trigger)
	}
	inputs, err := json.Marshal(t.Inputs) // map keys sorted: a stable form to compare
	if err != nil {
		return fmt.Errorf("sync instant trigger: %w", err)
	}
	now := l.now()
	var fresh, old string
	err = l.db.InTx(ctx, func(tx db.Querier) error {
		var token, app, key, conn, in string
		err := tx.QueryRowContext(ctx, `SELECT token, app, trigger_key, connection_id, inputs FROM instant_triggers
			WHERE workflow_id = $1 AND state <> 'unsubscribing'`, t.WorkflowID).Scan(&token, &app, &key, &conn, &in)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("sync instant trigger: %w", err)
		case app == t.App && key == t.Trigger && conn == t.ConnectionID && in == string(inputs):
			if _, err := tx.ExecContext(ctx, `UPDATE instant_triggers SET node_id = $1 WHERE token = $2`, t.NodeID, token); err != nil {
				return fmt.Errorf("sync instant trigger: %w", err)
			}
			return nil
		default:
			if err := tombstone(ctx, tx, token, now); err != nil {
				return err
			}
			old = token
		}
		tok, err := newAddressToken()
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO instant_triggers (token, workflow_id, node_id, app, trigger_key, connection_id, inputs, state, next_attempt_at, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)`,
			tok, t.WorkflowID, t.NodeID, t.App, t.Trigger, t.ConnectionID, string(inputs), InstantSubscribing, now); err != nil {
			return fmt.Errorf("sync instant trigger: %w", err)
		}
		fresh = tok
		return nil
	})
	if err != nil {
		return err
	}
	if old != "" {
		l.attempt(ctx, old)
	}
	if fresh != "" {
		l.attempt(ctx, fresh)
	}
	return nil
}

// tombstone marks a row to be unsubscribed at the app, now.
func tombstone(ctx context.Context, tx db.Querier, token string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE instant_triggers SET state = 'unsubscribing', failures = 0, last_error = '', next_attempt_at = $1,
		generation = generation + 1 WHERE token = $2`, now, token); err != nil {
		return fmt.Errorf("retire instant trigger: %w", err)
	}
	return nil
}

// Remove stops listening for the workflow: its subscription is deleted at
// the app. When the app cannot be reached or the connection is broken, a
// tombstone stays and Tick retries; deliveries to the address are answered
// 410 from now on.
func (l *Listener) Remove(ctx context.Context, workflowID string) error {
	now := l.now()
	var tokens []string
	err := l.db.InTx(ctx, func(tx db.Querier) error {
		var err error
		tokens, err = db.Strings(ctx, tx, `SELECT token FROM instant_triggers WHERE workflow_id = $1 AND state <> 'unsubscribing'`, workflowID)
		if err != nil {
			return fmt.Errorf("remove instant trigger: %w", err)
		}
		for _, t := range tokens {
			if err := tombstone(ctx, tx, t, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, t := range tokens {
		l.attempt(ctx, t)
	}
	return nil
}

// InstantState is what the workflow page shows of an instant trigger.
type InstantState struct {
	ConnectionID string
	// State is one of the Instant* states.
	State     string
	LastError string
	Failures  int
	// Address is the delivery address (the app-wide one for an app that
	// routes by account).
	Address       string
	Manual        bool
	SubscribedAt  *time.Time
	LastEventAt   *time.Time
	NextAttemptAt *time.Time
	// EventsReceived counts verified deliveries (a redelivery counts
	// again); RunsStarted the runs their events started (a redelivery
	// starts none).
	EventsReceived int64
	RunsStarted    int64
}

// State reads the workflow's live instant trigger; ok is false when it
// has none.
func (l *Listener) State(ctx context.Context, workflowID string) (InstantState, bool, error) {
	var s InstantState
	var token, app, route string
	var sub, last, next sql.NullTime
	err := l.db.Read().QueryRowContext(ctx, `SELECT token, app, route_key, connection_id, state, last_error, failures, manual, subscribed_at, last_event_at,
		next_attempt_at, events_received, runs_started FROM instant_triggers WHERE workflow_id = $1 AND state <> 'unsubscribing'`, workflowID).
		Scan(&token, &app, &route, &s.ConnectionID, &s.State, &s.LastError, &s.Failures, &s.Manual, &sub, &last, &next, &s.EventsReceived, &s.RunsStarted)
	if errors.Is(err, sql.ErrNoRows) {
		return InstantState{}, false, nil
	}
	if err != nil {
		return InstantState{}, false, fmt.Errorf("read instant trigger: %w", err)
	}
	s.Address = l.DeliveryURL(token)
	if route != "" {
		s.Address = l.o.BaseURL + AppDeliveryPath + app
	}
	s.SubscribedAt, s.LastEventAt, s.NextAttemptAt = timePtr(sub), timePtr(last), timePtr(next)
	return s, true, nil
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

// Tick retries the subscribes and unsubscribes that are due at now. It
// returns how many it attempted.
func (l *Listener) Tick(ctx context.Context, now time.Time) (int, error) {
	now = dbTime(now)
	tokens, err := db.Strings(ctx, l.db.Read(), `SELECT token FROM instant_triggers
		WHERE state IN ('subscribing', 'failed', 'unsubscribing') AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
		ORDER BY next_attempt_at LIMIT $2`, now, l.o.Batch)
	if err != nil {
		return 0, fmt.Errorf("find pending instant triggers: %w", err)
	}
	for _, t := range tokens {
		if ctx.Err() != nil {
			break
		}
		l.attempt(ctx, t)
	}
	return len(tokens), nil
}

// Run calls Tick at once and then every interval until ctx ends.
func (l *Listener) Run(ctx context.Context, every time.Duration) error {
	return runTicks(ctx, every, l.o.Now, l.o.Log, "instant triggers: tick", l.Tick)
}

// instantRow is a row claimed for a subscribe or unsubscribe.
type instantRow struct {
	token, workflowID, app, key, conn string
	inputs                            map[string]string
	subscriptionID, secretHandle      string
	route                             string
	state                             string
	failures                          int
	generation                        int64
}

// attempt claims the row and subscribes or unsubscribes it; failures are
// recorded on the row (and retried by Tick), never returned.
func (l *Listener) attempt(ctx context.Context, token string) {
	now := l.now()
	var r instantRow
	var inputs string
	var handle sql.NullString
	err := l.db.Write().QueryRowContext(ctx, `UPDATE instant_triggers SET lease_until = $1
		WHERE token = $2 AND state IN ('subscribing', 'failed', 'unsubscribing') AND (lease_until IS NULL OR lease_until < $3)
		RETURNING token, workflow_id, app, trigger_key, connection_id, inputs, subscription_id, secret_handle, route_key, state, failures, generation`,
		now.Add(l.o.Lease), token, now).
		Scan(&r.token, &r.workflowID, &r.app, &r.key, &r.conn, &inputs, &r.subscriptionID, &handle, &r.route, &r.state, &r.failures, &r.generation)
	if errors.Is(err, sql.ErrNoRows) {
		return // done, or in another's hands
	}
	if err != nil {
		l.o.Log.WarnContext(ctx, "claim instant trigger", "err", err)
		return
	}
	r.secretHandle = handle.String
	if err := json.Unmarshal([]byte(inputs), &r.inputs); err != nil {
		r.inputs = map[string]string{}
	}
	cctx, cancel := context.WithTimeout(ctx, l.o.CallTimeout)
	defer cancel()
	if r.state == InstantUnsubscribing {
		l.unsubscribe(cctx, ctx, r, now)
		return
	}
	l.subscribe(cctx, ctx, r, now)
}

func (l *Listener) source(app, key string) (instantSource, catalog.App, error) {
	src, ok := instantSources[[2]string{app, key}]
	a, inCatalog := l.apps.App(app)
	if !ok || !inCatalog {
		return nil, catalog.App{}, fmt.Errorf("TaskJuice cannot listen to %s's %s trigger", app, key)
	}
	return src, a, nil
}

// subscribe creates the webhook at the app and seals its secret. cctx
// bounds the app call; ctx the writes after it.
func (l *Listener) subscribe(cctx, ctx context.Context, r instantRow, now time.Time) {
	src, app, err := l.source(r.app, r.key)
	if err != nil {
		l.failed(ctx, r, now, err)
		return
	}
	secret, err := newSecret()
	if err != nil {
		l.failed(ctx, r, now, err)
		return
	}
	args := SubscribeArgs{DeliveryURL: l.DeliveryURL(r.token), Secret: secret}
	if l.o.Accounts != nil {
		if args.Account, err = l.o.Accounts(ctx, r.conn); err != nil {
			l.failed(ctx, r, now, err)
			return
		}
	}
	sub, err := src.subscribe(cctx, pollCall{api: l.api, app: app, conn: r.conn, inputs: r.inputs}, args)
	if err != nil {
		l.failed(ctx, r, now, err)
		return
	}
	if sub.Secret != "" {
		secret = sub.Secret
	} else if sub.Route != "" {
		secret = "" // signed with the app-wide secret
	}
	state := InstantSubscribed
	if sub.Manual {
		state = InstantManual
	}
	err = l.db.InTx(ctx, func(tx db.Querier) error {
		var h any
		if secret != "" {
			sealed, err := l.vault.Put(ctx, tx, r.secretHandle, vault.KindWebhookSecret, secretOwner(r.token), []byte(secret))
			if err != nil {
				return err
			}
			h = sealed
		}
		// A Remove during the call left a tombstone: it keeps its state
		// and learns what to delete.
		_, err := tx.ExecContext(ctx, `UPDATE instant_triggers SET subscription_id = $1, secret_handle = $2, route_key = $3, manual = $4,
			state = CASE WHEN state = 'unsubscribing' THEN state ELSE $5 END,
			next_attempt_at = CASE WHEN state = 'unsubscribing' THEN next_attempt_at ELSE NULL END,
			subscribed_at = $6, failures = 0, last_error = '', lease_until = NULL WHERE token = $7`,
			sub.ID, h, sub.Route, sub.Manual, state, now, r.token)
		return err
	})
	if err != nil {
		l.o.Log.ErrorContext(ctx, "record instant subscription", "workflow_id", r.workflowID, "app", r.app, "err", err)
		return
	}
	l.o.Log.InfoContext(ctx, "instant trigger subscribed", "workflow_id", r.workflowID, "app", r.app, "trigger", r.key, "manual", sub.Manual)
}

// unsubscribe deletes the webhook at the app, then the row and its secret.
func (l *Listener) unsubscribe(cctx, ctx context.Context, r instantRow, now time.Time) {
	if r.subscriptionID != "" {
		src, app, err := l.source(r.app, r.key)
		if err == nil {
			err = src.unsubscribe(cctx, pollCall{api: l.api, app: app, conn: r.conn, inputs: r.inputs}, Subscription{ID: r.subscriptionID, Route: r.route})
		}
		if err != nil {
			l.failed(ctx, r, now, err)
			return
		}
	}
	err := l.db.InTx(ctx, func(tx db.Querier) error {
		if err := l.vault.Delete(ctx, tx, r.secretHandle); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM instant_triggers WHERE token = $1`, r.token)
		return err
	})
	if err != nil {
		l.o.Log.ErrorContext(ctx, "drop instant trigger", "workflow_id", r.workflowID, "err", err)
		return
	}
	l.o.Log.InfoContext(ctx, "instant trigger unsubscribed", "workflow_id", r.workflowID, "app", r.app, "trigger", r.key)
}

// failed records a failed subscribe or unsubscribe and when to try again.
func (l *Listener) failed(ctx context.Context, r instantRow, now time.Time, cause error) {
	wait := min(l.o.MinBackoff<<min(r.failures, 16), l.o.MaxBackoff)
	var te *transientError
	if errors.As(cause, &te) && te.retryAfter > wait {
		wait = te.retryAfter
	}
	msg := cause.Error()
	if errors.Is(cause, errHeld) {
		msg = "the connection needs reauthorization"
	}
	if len(msg) > 500 {
		msg = msg[:500]
	}
	l.o.Log.WarnContext(ctx, "instant trigger: the app call failed", "workflow_id", r.workflowID, "app", r.app, "state", r.state,
		"failures", r.failures+1, "retry_in", wait, "err", msg)
	if _, err := l.db.Write().ExecContext(ctx, `UPDATE instant_triggers SET
		state = CASE WHEN state = 'unsubscribing' THEN state ELSE 'failed' END,
		failures = failures + 1, last_error = $1, next_attempt_at = $2, lease_until = NULL WHERE token = $3`,
		msg, dbTime(now.Add(wait)), r.token); err != nil {
		l.o.Log.ErrorContext(ctx, "record instant trigger failure", "workflow_id", r.workflowID, "err", err)
	}
}

func secretOwner(token string) string { return "instant:" + token }

// newAddressToken is the unguessable part of a delivery address: 128
// random bits.
func newAddressToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new delivery address: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new signing secret: %w", err)
	}
	return "whsec_" + hex.EncodeToString(b), nil
}

// ServeHTTP serves deliveries: POST /webhooks/triggers/{token} and POST
// /webhooks/apps/{app}.
func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) { l.mux.ServeHTTP(w, r) }

// readDelivery reads the body within the size limit; false means the
// answer was written.
func (l *Listener) readDelivery(w http.ResponseWriter, r *http.Request) (Delivery, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, l.o.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("The delivery is too large (at most %d bytes).", l.o.MaxBody))
		} else {
			writeError(w, http.StatusBadRequest, "unreadable", "The delivery's body could not be read.")
		}
		return Delivery{}, false
	}
	return Delivery{Header: r.Header, Body: body, Now: l.o.Now()}, true
}

// liveRow is what a delivery needs of a trigger's row.
type liveRow struct {
	token, workflowID, app, key, state string
	inputs                             map[string]string
	secret                             string
}

func (l *Listener) refuse(w http.ResponseWriter, r *http.Request, workflowID, app string, err error) {
	l.refused.Add(1)
	// The reason names the header or window at fault, never a secret.
	l.o.Log.WarnContext(r.Context(), "instant delivery refused", "workflow_id", workflowID, "app", app, "reason", err.Error())
	writeError(w, http.StatusUnauthorized, "invalid_signature", "The delivery's signature could not be verified.")
}

func (l *Listener) deliverTrigger(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token := r.PathValue("token")
	var row liveRow
	var inputs string
	var keyID sql.NullString
	var ciphertext []byte
	err := l.db.Read().QueryRowContext(ctx, `SELECT i.token, i.workflow_id, i.app, i.trigger_key, i.state, i.inputs, c.key_id, c.ciphertext
		FROM instant_triggers i LEFT JOIN credentials c ON c.handle = i.secret_handle WHERE i.token = $1`, token).
		Scan(&row.token, &row.workflowID, &row.app, &row.key, &row.state, &inputs, &keyID, &ciphertext)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && len(token) > 200) {
		writeError(w, http.StatusNotFound, "not_found", "No trigger listens at this address.")
		return
	}
	if err != nil {
		l.o.Log.ErrorContext(ctx, "read instant trigger", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "The delivery could not be received now; send it again later.")
		return
	}
	if row.state == InstantUnsubscribing {
		writeError(w, http.StatusGone, "gone", "This trigger no longer listens: its workflow is not published.")
		return
	}
	src, _, err := l.source(row.app, row.key)
	if err != nil {
		writeError(w, http.StatusGone, "gone", "This trigger no longer listens.")
		return
	}
	d, ok := l.readDelivery(w, r)
	if !ok {
		return
	}
	if !keyID.Valid {
		l.refuse(w, r, row.workflowID, row.app, errors.New("no signing secret is known yet"))
		return
	}
	pt, err := l.vault.Unseal(vault.Sealed{KeyID: keyID.String, Ciphertext: ciphertext}, secretOwner(row.token))
	if err != nil {
		l.o.Log.ErrorContext(ctx, "open instant trigger secret", "workflow_id", row.workflowID, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "The delivery could not be received now; send it again later.")
		return
	}
	if err := src.verify(d, string(pt)); err != nil {
		l.refuse(w, r, row.workflowID, row.app, err)
		return
	}
	if err := json.Unmarshal([]byte(inputs), &row.inputs); err != nil {
		row.inputs = map[string]string{}
	}
	l.handle(w, r, src, d, []liveRow{row})
}

func (l *Listener) deliverApp(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	app := r.PathValue("app")
	var shared sharedInstantSource
	for k, s := range instantSources {
		if k[0] != app {
			continue
		}
		if ss, ok := s.(sharedInstantSource); ok {
			shared = ss
			break
		}
	}
	if shared == nil {
		writeError(w, http.StatusNotFound, "not_found", "No app receives events at this address.")
		return
	}
	secret := ""
	if l.o.SharedSecrets != nil {
		secret = l.o.SharedSecrets(app)
	}
	if secret == "" {
		writeError(w, http.StatusNotFound, "not_configured", "This app's signing secret is not configured on this server.")
		return
	}
	d, ok := l.readDelivery(w, r)
	if !ok {
		return
	}
	if err := shared.verify(d, secret); err != nil {
		l.refuse(w, r, "", app, err)
		return
	}
	key, err := shared.route(d)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_event", "The event could not be read.")
		return
	}
	if key == "" { // a handshake
		_, reply, err := shared.parse(d, nil)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_event", "The event could not be read.")
			return
		}
		writeReply(w, reply, nil)
		return
	}
	rows, err := l.db.Read().QueryContext(ctx, `SELECT token, workflow_id, trigger_key, state, inputs FROM instant_triggers
		WHERE app = $1 AND route_key = $2 AND state IN ('subscribed', 'manual')`, app, key)
	if err != nil {
		l.o.Log.ErrorContext(ctx, "route instant delivery", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "The delivery could not be received now; send it again later.")
		return
	}
	var live []liveRow
	for rows.Next() {
		lr := liveRow{app: app}
		var in string
		if err := rows.Scan(&lr.token, &lr.workflowID, &lr.key, &lr.state, &in); err != nil {
			rows.Close()
			writeError(w, http.StatusServiceUnavailable, "unavailable", "The delivery could not be received now; send it again later.")
			return
		}
		if err := json.Unmarshal([]byte(in), &lr.inputs); err != nil {
			lr.inputs = map[string]string{}
		}
		live = append(live, lr)
	}
	rows.Close()
	l.handle(w, r, shared, d, live)
}

// handle parses a verified delivery for each trigger it reaches and starts
// one run per event, keyed by the event's app-side id; it answers 200 once
// every run is recorded (a redelivery finds them and starts nothing).
func (l *Listener) handle(w http.ResponseWriter, r *http.Request, fallback instantSource, d Delivery, rows []liveRow) {
	ctx := r.Context()
	var runs []string
	var reply *Reply
	for _, row := range rows {
		src, ok := instantSources[[2]string{row.app, row.key}]
		if !ok {
			src = fallback
		}
		items, rep, err := src.parse(d, row.inputs)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_event", "The event could not be read: "+err.Error())
			return
		}
		if rep != nil {
			reply = rep
		}
		started := 0
		for _, it := range items {
			key := "instant:" + row.app + ":" + row.key + ":" + it.ID
			if !l.recorded(ctx, row.workflowID, key) {
				started++
			}
			id, err := l.starter.StartRun(ctx, row.workflowID, it.Payload, SourceInstant, key)
			if err != nil {
				l.o.Log.ErrorContext(ctx, "start instant run", "workflow_id", row.workflowID, "event", it.ID, "err", err)
				if e, ok := apperr.As(err); apperr.IsNotFound(err) || (ok && e.Code == "not_published") {
					writeError(w, http.StatusGone, "gone", "This trigger's workflow is not published, so it cannot start runs.")
					return
				}
				writeError(w, http.StatusServiceUnavailable, "unavailable", "The run could not be recorded now; send the event again later.")
				return
			}
			runs = append(runs, id)
		}
		if _, err := l.db.Write().ExecContext(ctx, `UPDATE instant_triggers SET events_received = events_received + 1,
			runs_started = runs_started + $1, last_event_at = $2 WHERE token = $3`, started, l.now(), row.token); err != nil {
			l.o.Log.WarnContext(ctx, "count instant delivery", "workflow_id", row.workflowID, "err", err)
		}
	}
	writeReply(w, reply, runs)
}

// recorded reports whether a run with the event's key was recorded before
// (a redelivery), for the trigger's count of runs started; the run's own
// unique key is what keeps a redelivery from starting a second run.
func (l *Listener) recorded(ctx context.Context, workflowID, key string) bool {
	var n int
	err := l.db.Read().QueryRowContext(ctx, `SELECT count(*) FROM runs WHERE workflow_id = $1 AND dedup_key = $2`, workflowID, key).Scan(&n)
	return err == nil && n > 0
}

func writeReply(w http.ResponseWriter, reply *Reply, runs []string) {
	if reply != nil {
		ct := reply.ContentType
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Cache-Control", "no-store")
		st := reply.Status
		if st == 0 {
			st = http.StatusOK
		}
		w.WriteHeader(st)
		_, _ = w.Write(reply.Body)
		return
	}
	if runs == nil {
		runs = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "runs": runs})
}
