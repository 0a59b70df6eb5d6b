package connection

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/vault"
)

// ErrNeedsReauth means the connection's credential is dead (status error or
// revoked): only a reconnect brings it back. Callers hold their work.
var ErrNeedsReauth = errors.New("connection needs reauthorization")

// MsgCannotRefresh is the answer to a manual refresh of a connection that
// cannot be refreshed.
const MsgCannotRefresh = "Connection cannot be refreshed. Please reconnect your connection."

// OAuthConfigFunc gives the OAuth client configuration of a connection's
// app (token endpoint, client credentials). The catalog provides it.
type OAuthConfigFunc func(ctx context.Context, c Connection) (*oauth2.Config, error)

// RefresherOptions tune the refresher; zero values take the defaults.
type RefresherOptions struct {
	// Lead is the longest a token is refreshed ahead of its expiry; a
	// short-lived token gets a quarter of its lifetime instead (see dueAt).
	Lead time.Duration
	// Jitter spreads ahead-of-expiry refreshes over up to this much more,
	// scaled down with the lead for short-lived tokens.
	Jitter time.Duration
	// Attempts bounds the tries of one refresh against transient failures.
	Attempts int
	// Backoff is the first retry delay; it doubles each try (with jitter).
	Backoff time.Duration
	// MaxBackoff caps a retry delay, including one asked by Retry-After.
	MaxBackoff time.Duration
	// Skew treats a token this close to expiry as expired, so it does not
	// die on its way to the app; never more than the token's own lead.
	Skew time.Duration
	// Lease is how long a process may hold the right to refresh one
	// connection before another may take over.
	Lease time.Duration
	// HTTPClient calls the token endpoints.
	HTTPClient *http.Client
	// Owner names this process in leases.
	Owner string
	Log   *slog.Logger
	// Outcome, when set, hears of every refresh attempt: "ok", "transient"
	// (retried), "permanent" (the app rejected the grant) or "error".
	Outcome func(outcome string)
	// Now is the refresher's clock (default: the service's).
	Now func() time.Time
}

// DefaultLead is the longest a token is renewed ahead of expiry by default.
const DefaultLead = 5 * time.Minute

// leadShare is the part of a token's lifetime it is renewed ahead of expiry
// when that is less than the lead: a 5-minute token is renewed about 75s
// before it expires rather than on every pass.
const leadShare = 4

// Refresher keeps access tokens fresh: ahead of expiry in the background,
// and on demand. At most one refresh per connection runs at a time across
// every process sharing the database (a lease on the connection row);
// concurrent callers wait for it and reuse its result.
type Refresher struct {
	svc    *Service
	config OAuthConfigFunc
	o      RefresherOptions

	mu       sync.Mutex
	inflight map[flightKey]*flight // one refresh per connection and version in this process
	warned   sync.Map              // connection id -> struct{}: short-lived tokens already reported
}

// flightKey names a refresh by the credential version its callers found
// stale, so a caller that saw a newer version never joins an older refresh.
type flightKey struct {
	connID string
	seen   int64
}

type flight struct {
	done chan struct{}
	tok  *OAuthToken
	err  error
}

// NewRefresher returns a refresher for the service's connections.
func NewRefresher(svc *Service, config OAuthConfigFunc, o RefresherOptions) *Refresher {
	if o.Lead == 0 {
		o.Lead = DefaultLead
	}
	if o.Jitter == 0 {
		o.Jitter = o.Lead / 5
	}
	if o.Attempts == 0 {
		o.Attempts = 5
	}
	if o.Backoff == 0 {
		o.Backoff = 200 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Lease == 0 {
		o.Lease = 30 * time.Second
	}
	if o.Skew == 0 {
		o.Skew = 30 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 20 * time.Second}
	}
	if o.Owner == "" {
		o.Owner = db.NewID()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = svc.now
	}
	return &Refresher{svc: svc, config: config, o: o, inflight: map[flightKey]*flight{}}
}

func (r *Refresher) now() time.Time { return r.o.Now() }

// AccessToken returns a usable access token for the connection, refreshing
// it first when it has expired or is about to.
func (r *Refresher) AccessToken(ctx context.Context, connID string) (string, error) {
	tok, err := r.token(ctx, connID, false)
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// Refresh renews the connection's token now: a manual refresh, or a caller
// whose token the app just rejected with 401. On a connection in error or
// revoked it returns a 400 with MsgCannotRefresh.
func (r *Refresher) Refresh(ctx context.Context, connID string) error {
	_, err := r.token(ctx, connID, true)
	outcome := "refreshed"
	switch {
	case err == nil:
	case errors.Is(err, ErrNeedsReauth):
		err, outcome = apperr.BadRequest("cannot_refresh", MsgCannotRefresh), "refused: the connection needs to be reauthorized"
	case isTransient(err):
		r.o.Log.WarnContext(ctx, "manual refresh failed transiently", "connection", connID, "err", err)
		err, outcome = apperr.Upstream("The app could not be reached to refresh this connection. It stays connected; try again in a moment."), "failed: the app could not be reached"
	case apperr.IsNotFound(err):
		return err
	default:
		outcome = "failed"
	}
	if aerr := r.auditRefresh(ctx, connID, outcome); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// auditRefresh records a refresh asked for by a person, after it happened,
// with its outcome.
func (r *Refresher) auditRefresh(ctx context.Context, connID, outcome string) error {
	if account.ActorOf(ctx) == "" {
		return nil
	}
	var wsID, label string
	if err := r.svc.db.Read().QueryRowContext(ctx, `SELECT workspace_id, label FROM connections WHERE id = $1`, connID).Scan(&wsID, &label); err != nil {
		return fmt.Errorf("read connection for the audit log: %w", err)
	}
	return account.AuditByActor(ctx, r.svc.db.Write(), r.svc.now(), wsID, account.AuditConnectionRefreshed, label+" ("+connID+")", outcome)
}

type state struct {
	status  Status
	conn    Connection // id, app and workspace only
	cred    Credential
	version int64
	due     sql.NullTime // when the background pass renews the token
}

// read loads what a refresh decision needs in one query: the status, the
// app, and the decrypted credential with its version.
func (r *Refresher) read(ctx context.Context, q db.Querier, connID string) (state, error) {
	var st state
	var status, keyID string
	var ct []byte
	err := q.QueryRowContext(ctx, `SELECT n.status, n.app_key, n.workspace_id, n.credential_version, n.refresh_due_at, c.key_id, c.ciphertext
		FROM connections n JOIN credentials c ON c.handle = n.secret_handle WHERE n.id = $1`, connID).
		Scan(&status, &st.conn.AppKey, &st.conn.WorkspaceID, &st.version, &st.due, &keyID, &ct)
	if errors.Is(err, sql.ErrNoRows) {
		return state{}, apperr.ErrNotFound
	}
	if err != nil {
		return state{}, fmt.Errorf("read connection: %w", err)
	}
	st.status, st.conn.ID, st.conn.Status = Status(status), connID, Status(status)
	raw, err := r.svc.vault.Unseal(vault.Sealed{KeyID: keyID, Ciphertext: ct}, connID)
	if err != nil {
		return state{}, fmt.Errorf("open secret of connection %s: %w", connID, err)
	}
	if st.cred, err = unmarshalCredential(raw); err != nil {
		return state{}, err
	}
	return st, nil
}

func (r *Refresher) token(ctx context.Context, connID string, force bool) (*OAuthToken, error) {
	st, err := r.readOAuth(ctx, connID)
	if err != nil {
		return nil, err
	}
	if !force && r.fresh(st) {
		return st.cred.OAuth, nil
	}
	// The version read here is the moment this caller asked: any refresh
	// completing after it answers the caller too.
	return r.shared(ctx, connID, st.version)
}

// readOAuth reads the connection's state and checks it has a token that
// can be refreshed.
func (r *Refresher) readOAuth(ctx context.Context, connID string) (state, error) {
	st, err := r.read(ctx, r.svc.db.Read(), connID)
	if err != nil {
		return state{}, err
	}
	if !st.status.Refreshable() {
		return state{}, ErrNeedsReauth
	}
	if st.cred.OAuth == nil {
		return state{}, fmt.Errorf("connection %s has no OAuth token to refresh", connID)
	}
	return st, nil
}

// renewRejected renews the token an app just refused (sent as rejected),
// unless the stored token is already another one: then a refresh completed
// since the caller read its token, and that result is used.
func (r *Refresher) renewRejected(ctx context.Context, connID, rejected string) (*OAuthToken, error) {
	st, err := r.readOAuth(ctx, connID)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(st.cred.OAuth.AccessToken), []byte(rejected)) == 0 {
		return st.cred.OAuth, nil
	}
	return r.shared(ctx, connID, st.version)
}

// fresh says whether an on-demand caller may use the token as it is. The
// margin is the Skew, but never more than the token's own lead (expiry minus
// due time), so callers do not renew a short-lived token before the
// background pass would.
func (r *Refresher) fresh(st state) bool {
	t := st.cred.OAuth
	if t == nil || t.AccessToken == "" {
		return false
	}
	if t.Expiry.IsZero() {
		return true
	}
	skew := r.o.Skew
	if st.due.Valid {
		skew = max(0, min(skew, t.Expiry.Sub(st.due.Time)))
	}
	return t.Expiry.After(r.now().Add(skew))
}

// shared joins a refresh already running in this process for the
// connection from the same version, or starts one.
func (r *Refresher) shared(ctx context.Context, connID string, seen int64) (*OAuthToken, error) {
	key := flightKey{connID: connID, seen: seen}
	r.mu.Lock()
	f, ok := r.inflight[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		r.inflight[key] = f
		go func() {
			// Detached from the first caller: its cancellation must not fail
			// the others waiting on the same refresh.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			f.tok, f.err = r.refresh(rctx, connID, seen)
			r.mu.Lock()
			delete(r.inflight, key)
			r.mu.Unlock()
			close(f.done)
		}()
	}
	r.mu.Unlock()
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refresh renews the token once across all processes. seen is the
// credential version the caller found stale: if the stored version has moved
// past it, someone else already refreshed and that result is reused.
func (r *Refresher) refresh(ctx context.Context, connID string, seen int64) (*OAuthToken, error) {
	for {
		got, err := r.acquire(ctx, connID)
		if err != nil {
			return nil, err
		}
		if got {
			tok, err := r.refreshLeased(ctx, connID, seen)
			if errors.Is(err, errLeaseLost) {
				continue
			}
			return tok, err
		}
		tok, err := r.awaitOther(ctx, connID, seen)
		if err != nil || tok != nil {
			return tok, err
		}
		// The other holder's lease lapsed or was released without a new
		// credential: try to take over.
	}
}

// outcome tells Options.Outcome how a refresh attempt went.
func (r *Refresher) outcome(err error) {
	if r.o.Outcome == nil {
		return
	}
	switch {
	case err == nil:
		r.o.Outcome("ok")
	case isTransient(err):
		r.o.Outcome("transient")
	case errors.Is(err, ErrNeedsReauth):
		r.o.Outcome("permanent")
	default:
		r.o.Outcome("error")
	}
}

// errLeaseLost means the lease lapsed during a backoff and another process
// may have taken it.
var errLeaseLost = errors.New("refresh lease lost")

// refreshLeased refreshes while holding the lease, retrying transient
// failures. The lease is kept (and extended) through each backoff, so other
// processes wait for this refresh instead of calling an app that just asked
// to be left alone, and reuse its result.
func (r *Refresher) refreshLeased(ctx context.Context, connID string, seen int64) (*OAuthToken, error) {
	for attempt := 1; ; attempt++ {
		tok, retryAfter, err := r.refreshHeld(ctx, connID, seen)
		r.outcome(err)
		if err == nil || !isTransient(err) {
			return tok, err
		}
		if attempt >= r.o.Attempts {
			r.noteTransient(ctx, connID)
			return nil, fmt.Errorf("refresh connection %s: still failing after %d attempts: %w", connID, attempt, err)
		}
		delay := r.backoff(attempt, retryAfter)
		r.o.Log.Info("token refresh failed transiently; retrying", "connection", connID, "attempt", attempt, "retry_in", delay, "err", err)
		if err := r.extend(ctx, connID, delay); err != nil {
			if !errors.Is(err, errLeaseLost) {
				_ = r.release(ctx, r.svc.db.Write(), connID)
			}
			return nil, err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			_ = r.release(context.WithoutCancel(ctx), r.svc.db.Write(), connID)
			return nil, ctx.Err()
		}
	}
}

// extend keeps the lease through a backoff of delay.
func (r *Refresher) extend(ctx context.Context, connID string, delay time.Duration) error {
	res, err := r.svc.db.Write().ExecContext(ctx, `UPDATE connections SET refresh_lease_until = $1 WHERE id = $2 AND refresh_lease_owner = $3`,
		r.now().Add(delay+r.o.Lease), connID, r.o.Owner)
	if err != nil {
		return fmt.Errorf("extend refresh lease: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return errLeaseLost
	}
	return nil
}

func (r *Refresher) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := r.o.Backoff << (attempt - 1)
	d += time.Duration(rand.Int64N(int64(d)/2 + 1))
	if retryAfter > d {
		d = retryAfter
	}
	return min(d, r.o.MaxBackoff)
}

// acquire takes the connection's refresh lease if it is free (or lapsed).
func (r *Refresher) acquire(ctx context.Context, connID string) (bool, error) {
	now := r.now()
	res, err := r.svc.db.Write().ExecContext(ctx, `UPDATE connections SET refresh_lease_owner = $1, refresh_lease_until = $2
		WHERE id = $3 AND status IN ('active', 'pending') AND (refresh_lease_until IS NULL OR refresh_lease_until < $4)`,
		r.o.Owner, now.Add(r.o.Lease), connID, now)
	if err != nil {
		return false, fmt.Errorf("take refresh lease: %w", err)
	}
	n, _ := res.RowsAffected()
	if n == 1 {
		return true, nil
	}
	// Not taken: either someone holds it, or the connection is no longer
	// refreshable.
	var status string
	if err := r.svc.db.Read().QueryRowContext(ctx, `SELECT status FROM connections WHERE id = $1`, connID).Scan(&status); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return false, apperr.ErrNotFound
		}
		return false, fmt.Errorf("read connection: %w", err)
	}
	if !Status(status).Refreshable() {
		return false, ErrNeedsReauth
	}
	return false, nil
}

func (r *Refresher) release(ctx context.Context, q db.Querier, connID string) error {
	_, err := q.ExecContext(ctx, `UPDATE connections SET refresh_lease_owner = '', refresh_lease_until = NULL
		WHERE id = $1 AND refresh_lease_owner = $2`, connID, r.o.Owner)
	if err != nil {
		return fmt.Errorf("release refresh lease: %w", err)
	}
	return nil
}

// awaitOther waits while another process refreshes. It returns the new
// token once the stored credential moves past seen, nil (and no error) when
// the other's lease lapsed without a result, or ErrNeedsReauth if the other
// found the credential dead.
func (r *Refresher) awaitOther(ctx context.Context, connID string, seen int64) (*OAuthToken, error) {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		var status string
		var version int64
		var until sql.NullTime
		err := r.svc.db.Read().QueryRowContext(ctx, `SELECT status, credential_version, refresh_lease_until FROM connections WHERE id = $1`, connID).
			Scan(&status, &version, &until)
		if err != nil {
			return nil, fmt.Errorf("watch refresh: %w", err)
		}
		if !Status(status).Refreshable() {
			return nil, ErrNeedsReauth
		}
		if version > seen {
			st, err := r.read(ctx, r.svc.db.Read(), connID)
			if err != nil {
				return nil, err
			}
			return st.cred.OAuth, nil
		}
		if !until.Valid || until.Time.Before(r.now()) {
			return nil, nil
		}
	}
}

// refreshHeld runs one refresh while holding the lease.
func (r *Refresher) refreshHeld(ctx context.Context, connID string, seen int64) (tok *OAuthToken, retryAfter time.Duration, err error) {
	st, err := r.read(ctx, r.svc.db.Read(), connID)
	if err != nil {
		_ = r.release(ctx, r.svc.db.Write(), connID)
		return nil, 0, err
	}
	if st.version > seen {
		// A refresh completed after our callers asked: its result is theirs.
		return st.cred.OAuth, 0, r.release(ctx, r.svc.db.Write(), connID)
	}
	if st.cred.OAuth == nil {
		_ = r.release(ctx, r.svc.db.Write(), connID)
		return nil, 0, fmt.Errorf("connection %s has no OAuth token to refresh", connID)
	}
	c := st.conn
	cfg, err := r.config(ctx, c)
	if err != nil {
		_ = r.release(ctx, r.svc.db.Write(), connID)
		return nil, 0, fmt.Errorf("oauth config for %s: %w", c.AppKey, err)
	}
	if st.cred.OAuth.RefreshToken == "" {
		_ = r.release(ctx, r.svc.db.Write(), connID)
		tok, err := r.failOrWinner(ctx, connID, st.version, "no refresh token: the app did not grant offline access")
		return tok, 0, err
	}
	hctx := context.WithValue(ctx, oauth2.HTTPClient, r.o.HTTPClient)
	old := st.cred.OAuth.OAuth2()
	old.Expiry = time.Unix(1, 0) // force the refresh
	nt, err := cfg.TokenSource(hctx, old).Token()
	if err != nil {
		kind, ra, reason := classify(err)
		if kind == transient {
			// The lease stays with the retry loop.
			return nil, ra, &transientError{err: err}
		}
		_ = r.release(ctx, r.svc.db.Write(), connID)
		tok, err := r.failOrWinner(ctx, connID, st.version, reason)
		return tok, 0, err
	}
	next := FromOAuth2(nt)
	if nt.ExpiresIn > 0 {
		// The lifetime as the app stated it, on the refresher's clock.
		next.Expiry = r.now().Add(time.Duration(nt.ExpiresIn) * time.Second).UTC()
	}
	if next.RefreshToken == "" {
		next.RefreshToken = st.cred.OAuth.RefreshToken // the app did not rotate it
	}
	rotated := next.RefreshToken != st.cred.OAuth.RefreshToken
	st.cred.OAuth = next
	if err := r.save(ctx, connID, st.cred, next, rotated); err != nil {
		return nil, 0, err
	}
	return next, 0, nil
}

// save stores the renewed credential (with a rotated refresh token, if any)
// in one transaction with the new expiry, the next due time, and the lease
// release.
func (r *Refresher) save(ctx context.Context, connID string, cred Credential, tok *OAuthToken, rotated bool) error {
	raw, err := cred.marshal()
	if err != nil {
		return err
	}
	now := r.now()
	var expires, due sql.NullTime
	if !tok.Expiry.IsZero() {
		expires = sql.NullTime{Time: tok.Expiry.UTC(), Valid: true}
		due = sql.NullTime{Time: dueAt(now, tok.Expiry, r.o.Lead, r.o.Jitter), Valid: true}
		r.warnShortLived(ctx, connID, now, tok.Expiry)
	}
	// Two statements on the hot path: the connection's version, expiry,
	// next due time and lease together, then the secret sealed in place
	// through the vault.
	return r.svc.db.InTx(ctx, func(tx db.Querier) error {
		// A rotated refresh token starts its lifetime afresh; any use counts
		// against an inactivity limit.
		var handle string
		err := tx.QueryRowContext(ctx, `UPDATE connections SET credential_version = credential_version + 1, access_expires_at = $1,
			refresh_due_at = $2, refresh_failures = 0, refresh_lease_owner = '', refresh_lease_until = NULL, updated_at = $3,
			refresh_used_at = $3, refresh_issued_at = CASE WHEN $5 THEN $3 ELSE COALESCE(refresh_issued_at, $3) END WHERE id = $4
			RETURNING secret_handle`, expires, due, now, connID, rotated).Scan(&handle)
		if err != nil {
			return fmt.Errorf("schedule next refresh: %w", err)
		}
		if _, err := r.svc.putSecret(ctx, tx, handle, connID, raw); err != nil {
			return fmt.Errorf("store refreshed secret: %w", err)
		}
		return nil
	})
}

// dueAt is when a token issued at now and expiring at expiry should be
// renewed: lead before expiry (a quarter of the lifetime when that is less),
// minus up to a proportional share of jitter so many connections do not all
// renew at once, and never before the token is half-way through its life.
func dueAt(now, expiry time.Time, lead, jitter time.Duration) time.Time {
	life := expiry.Sub(now)
	if life <= 0 {
		return now.UTC()
	}
	l := min(lead, life/leadShare)
	var j time.Duration
	if lead > 0 && jitter > 0 {
		j = time.Duration(float64(jitter) * float64(l) / float64(lead))
	}
	if j > 0 {
		j = time.Duration(rand.Int64N(int64(j) + 1))
	}
	return latest(expiry.Add(-l-j), now.Add(life/2)).UTC()
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// warnShortLived reports, once per connection and process, a refresh whose
// new token is stale on arrival (it expires within the Skew): such an app
// would be renewed on nearly every use, which an operator should know.
func (r *Refresher) warnShortLived(ctx context.Context, connID string, now, expiry time.Time) {
	if expiry.After(now.Add(r.o.Skew)) {
		return
	}
	if _, seen := r.warned.LoadOrStore(connID, struct{}{}); seen {
		return
	}
	r.o.Log.WarnContext(ctx, "refreshed token is already due: the app issues tokens shorter-lived than the refresh margin",
		"connection", connID, "lifetime", expiry.Sub(now).Round(time.Millisecond), "margin", r.o.Skew)
}

// fail handles a permanent rejection: if the stored credential moved on
// since we read it (another worker rotated the refresh token first), this
// was a lost race and the stored token is used; otherwise the connection
// goes to error and raises needs_reauth, once.
func (r *Refresher) fail(ctx context.Context, connID string, readVersion int64, reason string) error {
	var lostRace bool
	err := r.svc.db.InTx(ctx, func(tx db.Querier) error {
		var version int64
		if err := tx.QueryRowContext(ctx, `SELECT credential_version FROM connections WHERE id = $1`, connID).Scan(&version); err != nil {
			return fmt.Errorf("re-read credential: %w", err)
		}
		if version != readVersion {
			lostRace = true
			return nil
		}
		_, err := r.svc.transition(ctx, tx, connID, StatusError, "Refresh rejected by the app: "+reason, System, nil)
		return err
	})
	if err != nil {
		return err
	}
	if lostRace {
		return nil
	}
	r.o.Log.Warn("connection needs reauthorization", "connection", connID, "reason", reason)
	return ErrNeedsReauth
}

// failOrWinner applies fail and, when it was a lost race, returns the
// winner's stored token.
func (r *Refresher) failOrWinner(ctx context.Context, connID string, readVersion int64, reason string) (*OAuthToken, error) {
	if err := r.fail(ctx, connID, readVersion, reason); err != nil {
		return nil, err
	}
	won, err := r.read(ctx, r.svc.db.Read(), connID)
	if err != nil {
		return nil, err
	}
	return won.cred.OAuth, nil
}

// noteTransient records a refresh that kept failing transiently: the
// connection stays active and the background pass tries again later.
func (r *Refresher) noteTransient(ctx context.Context, connID string) {
	if err := r.release(ctx, r.svc.db.Write(), connID); err != nil {
		r.o.Log.Warn("release refresh lease", "connection", connID, "err", err)
	}
	_, err := r.svc.db.Write().ExecContext(ctx, `UPDATE connections SET refresh_failures = refresh_failures + 1, refresh_due_at = $1
		WHERE id = $2 AND status = 'active'`, r.now().Add(r.o.MaxBackoff), connID)
	if err != nil {
		r.o.Log.Warn("record transient refresh failure", "connection", connID, "err", err)
	}
}

type failureKind int

const (
	transient failureKind = iota + 1
	permanent
)

type transientError struct{ err error }

func (e *transientError) Error() string { return "transient: " + e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func isTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

// classify tells a transient refresh failure (network, timeout, 5xx, 429)
// from a permanent one (the token endpoint rejected the grant).
func classify(err error) (failureKind, time.Duration, string) {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		code := re.Response.StatusCode
		if code == http.StatusTooManyRequests || code >= 500 || transientCodes[re.ErrorCode] {
			return transient, retryAfter(re.Response.Header.Get("Retry-After")), ""
		}
		// The code alone: descriptions are long, and some providers echo
		// request details into them.
		reason := re.ErrorCode
		if reason == "" {
			reason = fmt.Sprintf("HTTP %d", code)
		}
		return permanent, 0, reason
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return transient, 0, ""
	}
	// Anything else (an unreadable response, a refused connection) is
	// treated as transient: only an explicit rejection kills a credential.
	return transient, 0, ""
}

// transientCodes are OAuth error codes that say "not now" rather than "never",
// whatever the HTTP status they come with (some apps answer 200 or 400).
var transientCodes = map[string]bool{
	"temporarily_unavailable": true, // RFC 6749
	"server_error":            true, // RFC 6749
	"slow_down":               true, // RFC 8628
	"ratelimited":             true, // Slack, inside a 200 body
	"rate_limited":            true,
}

func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return time.Until(t)
	}
	return 0
}
