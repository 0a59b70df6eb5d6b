package trigger

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/engine"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

// DefaultMaxBody is the default limit on a webhook request body.
const DefaultMaxBody = 1 << 20

// MaxIdempotencyKey is the longest Idempotency-Key header accepted.
const MaxIdempotencyKey = 255

// Webhook authentication modes, as the trigger config names them.
const (
	AuthNone       = "none"
	AuthBearer     = "bearer"
	AuthHeader     = "header"
	AuthHMACSHA256 = "hmac-sha256"
	AuthHMACSHA512 = "hmac-sha512"
)

// Options tune the webhook service.
type Options struct {
	// MaxBody limits a request body in bytes (default DefaultMaxBody);
	// larger bodies get 413.
	MaxBody int64
	// Log receives failures that the caller only sees as a status.
	Log *slog.Logger
	// Now is the clock (default db.Now).
	Now func() time.Time
	// Responder, when set, lets a workflow with a Respond to Webhook step
	// decide the delivery's answer.
	Responder Responder
}

// Responder tells how long a delivery may wait for its run's answer, and
// the answer once there is one (see engine.WebhookResponse).
type Responder interface {
	WebhookResponse(ctx context.Context, runID string) (a *engine.WebhookAnswer, wait time.Duration, done bool, err error)
}

// Webhooks manages webhook endpoints and serves /webhooks/{token}.
type Webhooks struct {
	db      *db.DB
	vault   *vault.Store
	starter Starter
	wfs     Workflows
	o       Options
}

// New returns the webhook service.
func New(d *db.DB, keys vault.Keyring, starter Starter, wfs Workflows, o Options) *Webhooks {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = db.Now
	}
	return &Webhooks{db: d, vault: vault.NewStore(d, keys), starter: starter, wfs: wfs, o: o}
}

func (s *Webhooks) now() time.Time { return s.o.Now().UTC().Truncate(time.Microsecond) }

// Endpoint returns the workflow's endpoint token, creating the endpoint on
// first use. The URL is /webhooks/{token}.
func (s *Webhooks) Endpoint(ctx context.Context, workflowID string) (string, error) {
	var token string
	err := s.db.Read().QueryRowContext(ctx, `SELECT token FROM webhook_endpoints WHERE workflow_id = $1`, workflowID).Scan(&token)
	if err == nil {
		return token, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("read webhook endpoint: %w", err)
	}
	if err := s.create(ctx, workflowID); err != nil {
		return "", err
	}
	// Read from the write pool: a concurrent first call may have won the
	// insert, and the read pool might not see it yet.
	if err := s.db.Write().QueryRowContext(ctx, `SELECT token FROM webhook_endpoints WHERE workflow_id = $1`, workflowID).Scan(&token); err != nil {
		return "", fmt.Errorf("read webhook endpoint: %w", err)
	}
	return token, nil
}

// create inserts an endpoint with a fresh token unless one exists.
func (s *Webhooks) create(ctx context.Context, workflowID string) error {
	return s.db.InTx(ctx, func(tx db.Querier) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM workflows WHERE id = $1`, workflowID).Scan(&n); err != nil {
			return fmt.Errorf("find workflow: %w", err)
		}
		if n == 0 {
			return apperr.ErrNotFound
		}
		token, err := newToken()
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_endpoints (workflow_id, token, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (workflow_id) DO NOTHING`, workflowID, token, s.now()); err != nil {
			return fmt.Errorf("create webhook endpoint: %w", err)
		}
		return nil
	})
}

// Regenerate replaces the workflow's token; the old URL answers 404 from
// this moment on. The secret, if any, is kept.
func (s *Webhooks) Regenerate(ctx context.Context, workflowID string) (string, error) {
	if _, err := s.Endpoint(ctx, workflowID); err != nil {
		return "", err
	}
	token, err := newToken()
	if err != nil {
		return "", err
	}
	res, err := s.db.Write().ExecContext(ctx, `UPDATE webhook_endpoints SET token = $1, rotated_at = $2 WHERE workflow_id = $3`, token, s.now(), workflowID)
	if err != nil {
		return "", fmt.Errorf("regenerate webhook token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return "", fmt.Errorf("regenerate webhook token: %w", err)
	} else if n == 0 {
		// The workflow was deleted in between.
		return "", apperr.ErrNotFound
	}
	return token, nil
}

// SetSecret stores the shared secret of the bearer, header and HMAC modes,
// sealed in the vault and bound to the workflow. GenerateSecret is how the
// pages set one; this is for a secret the sender issues itself.
func (s *Webhooks) SetSecret(ctx context.Context, workflowID, secret string) error {
	if strings.TrimSpace(secret) == "" {
		return apperr.Invalid("secret", "Enter a secret")
	}
	if len(secret) > 4096 {
		return apperr.Invalid("secret", "The secret is too long (at most 4096 bytes)")
	}
	if _, err := s.Endpoint(ctx, workflowID); err != nil {
		return err
	}
	return s.db.InTx(ctx, func(tx db.Querier) error {
		var handle sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT secret_handle FROM webhook_endpoints WHERE workflow_id = $1`, workflowID).Scan(&handle)
		if errors.Is(err, sql.ErrNoRows) {
			return apperr.ErrNotFound // the workflow was deleted in between
		}
		if err != nil {
			return fmt.Errorf("read webhook endpoint: %w", err)
		}
		h, err := s.vault.Put(ctx, tx, handle.String, vault.KindWebhookSecret, workflowID, []byte(secret))
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_endpoints SET secret_handle = $1 WHERE workflow_id = $2`, h, workflowID); err != nil {
			return fmt.Errorf("store webhook secret: %w", err)
		}
		return nil
	})
}

// GenerateSecret makes a new random secret for the workflow's webhook,
// replacing any other at once, and returns it.
func (s *Webhooks) GenerateSecret(ctx context.Context, workflowID string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate webhook secret: %w", err)
	}
	// Hex travels unchanged in a header and in every sender's settings.
	secret := "whsec_" + hex.EncodeToString(b)
	if err := s.SetSecret(ctx, workflowID, secret); err != nil {
		return "", err
	}
	return secret, nil
}

// Secret returns the workflow's webhook secret for its trigger panel, the
// one place it is shown; ok is false when none is set.
func (s *Webhooks) Secret(ctx context.Context, workflowID string) (secret string, ok bool, err error) {
	var handle sql.NullString
	err = s.db.Read().QueryRowContext(ctx, `SELECT secret_handle FROM webhook_endpoints WHERE workflow_id = $1`, workflowID).Scan(&handle)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !handle.Valid) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read webhook endpoint: %w", err)
	}
	pt, err := s.vault.Open(ctx, s.db.Read(), handle.String, workflowID)
	if err != nil {
		return "", false, fmt.Errorf("open webhook secret of workflow %s: %w", workflowID, err)
	}
	return string(pt), true, nil
}

// HasSecret reports whether a shared secret is set for the workflow.
func (s *Webhooks) HasSecret(ctx context.Context, workflowID string) (bool, error) {
	var set bool
	err := s.db.Read().QueryRowContext(ctx, `SELECT secret_handle IS NOT NULL FROM webhook_endpoints WHERE workflow_id = $1`, workflowID).Scan(&set)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read webhook endpoint: %w", err)
	}
	return set, nil
}

func newToken() (string, error) {
	u, err := uuid.NewRandom()
	if err != nil {
		return "", fmt.Errorf("new webhook token: %w", err)
	}
	return u.String(), nil
}

// endpoint is what the handler needs of a token's row.
type endpoint struct {
	workflowID string
	secret     []byte // opened; nil when none is set
}

func (s *Webhooks) lookup(ctx context.Context, token string) (endpoint, error) {
	var (
		e      endpoint
		handle sql.NullString
	)
	err := s.db.Read().QueryRowContext(ctx, `SELECT workflow_id, secret_handle FROM webhook_endpoints WHERE token = $1`, token).
		Scan(&e.workflowID, &handle)
	if errors.Is(err, sql.ErrNoRows) {
		return endpoint{}, apperr.ErrNotFound
	}
	if err != nil {
		return endpoint{}, fmt.Errorf("read webhook endpoint: %w", err)
	}
	if handle.Valid {
		pt, err := s.vault.Open(ctx, s.db.Read(), handle.String, e.workflowID)
		if err != nil {
			return endpoint{}, fmt.Errorf("open webhook secret of workflow %s: %w", e.workflowID, err)
		}
		e.secret = pt
	}
	return e, nil
}

// Signed-timestamp schemes of the HMAC modes (webhookConfig.Timestamp).
const (
	// TimestampStripe: "Stripe-Signature: t=<unix>,v1=<hex>", the HMAC of
	// "<t>.<body>"; several v1 entries may be sent during a secret change.
	TimestampStripe = "stripe"
	// TimestampSlack: "X-Slack-Request-Timestamp: <unix>" and
	// "X-Slack-Signature: v0=<hex>", the HMAC of "v0:<ts>:<body>".
	TimestampSlack = "slack"
	// TimestampHeader: the Unix time in the configured header and the HMAC
	// of "<ts>.<body>" in the signature header.
	TimestampHeader = "header"
)

// TimestampTolerance is how far a signed timestamp may be from now, either
// way: a captured request re-sent later than this is refused.
const TimestampTolerance = 5 * time.Minute

// webhookConfig mirrors the webhook trigger's config in the graph document.
type webhookConfig struct {
	Auth   string `json:"auth"`
	Header string `json:"header,omitempty"`
	// DeliveryHeader names a header carrying a unique id per delivery
	// (X-GitHub-Delivery): a delivery already received starts nothing new
	// and is answered with the first run's id.
	DeliveryHeader string `json:"deliveryHeader,omitempty"`
	// Timestamp is the signed-timestamp scheme of an HMAC mode, if any.
	Timestamp       string `json:"timestamp,omitempty"`
	TimestampHeader string `json:"timestampHeader,omitempty"`
}

// signatureHeader is the header carrying the signature: the configured one,
// else the scheme's own.
func (c webhookConfig) signatureHeader() string {
	if c.Header != "" {
		return c.Header
	}
	switch c.Timestamp {
	case TimestampStripe:
		return "Stripe-Signature"
	case TimestampSlack:
		return "X-Slack-Signature"
	}
	return ""
}

func (c webhookConfig) hmac() (func() hash.Hash, string, bool) {
	switch c.Auth {
	case AuthHMACSHA256:
		return sha256.New, "sha256=", true
	case AuthHMACSHA512:
		return sha512.New, "sha512=", true
	}
	return nil, "", false
}

// ServeHTTP answers /webhooks/{token}: it authenticates the request per the
// workflow's published trigger, records a run, and answers
// 202 {"runId": "..."} once the run is durably recorded.
func (s *Webhooks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Webhooks accept GET and POST only.")
		return
	}
	token := r.PathValue("token")
	if u, err := uuid.Parse(token); err != nil || u.String() != token {
		writeError(w, http.StatusNotFound, "not_found", "No webhook at this address.")
		return
	}
	ep, err := s.lookup(ctx, token)
	if apperr.IsNotFound(err) {
		writeError(w, http.StatusNotFound, "not_found", "No webhook at this address.")
		return
	}
	if err != nil {
		s.unavailable(w, r, "", err)
		return
	}
	log := s.o.Log.With("workflow_id", ep.workflowID)

	kind, raw, ok, err := s.wfs.ActiveTrigger(ctx, ep.workflowID)
	if err != nil {
		s.unavailable(w, r, ep.workflowID, err)
		return
	}
	if !ok || kind != KindWebhook {
		writeError(w, http.StatusConflict, "not_published", "This workflow is not published with a webhook trigger, so it cannot start runs.")
		return
	}
	var cfg webhookConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		log.ErrorContext(ctx, "webhook: read trigger config", "err", err)
		writeError(w, http.StatusInternalServerError, "misconfigured", "This webhook is not configured correctly.")
		return
	}
	hashFn, prefix, isHMAC := cfg.hmac()
	switch cfg.Auth {
	case AuthNone, AuthBearer, AuthHeader, AuthHMACSHA256, AuthHMACSHA512:
	default:
		log.ErrorContext(ctx, "webhook: unknown authentication mode", "auth", cfg.Auth)
		writeError(w, http.StatusInternalServerError, "misconfigured", "This webhook is not configured correctly.")
		return
	}
	if isHMAC && r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "This webhook is signed with an HMAC of the request body, so it accepts POST only.")
		return
	}
	if cfg.Auth != AuthNone && ep.secret == nil {
		// Fail closed: nobody can authenticate until the secret is set.
		log.WarnContext(ctx, "webhook: request refused, no secret is set for mode "+cfg.Auth)
		writeError(w, http.StatusUnauthorized, "unauthorized", "The request could not be authenticated.")
		return
	}

	// Credentials in headers are checked before the body is read.
	authorized := true
	switch cfg.Auth {
	case AuthBearer:
		authorized = equalSecret(bearerToken(r.Header.Get("Authorization")), ep.secret)
	case AuthHeader:
		authorized = equalSecret(r.Header.Get(cfg.Header), ep.secret)
	}
	if !authorized {
		writeError(w, http.StatusUnauthorized, "unauthorized", "The request could not be authenticated.")
		return
	}

	body, err := s.readBody(w, r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("The request body is over the limit of %d bytes.", s.o.MaxBody))
			return
		}
		writeError(w, http.StatusBadRequest, "bad_request", "The request body could not be read.")
		return
	}
	var signedAt string // the signed timestamp and signature, when the scheme has one
	if isHMAC {
		ok, stale := false, false
		if cfg.Timestamp == "" {
			ok = validSignature(hashFn, prefix, ep.secret, body, r.Header.Get(cfg.Header))
		} else {
			var ts time.Time
			ts, signedAt, ok = validTimestamped(hashFn, prefix, cfg, ep.secret, body, r.Header)
			if d := s.o.Now().Sub(ts); ok && (d > TimestampTolerance || d < -TimestampTolerance) {
				ok, stale = false, true
			}
		}
		if !ok {
			if stale {
				log.InfoContext(ctx, "webhook: signed timestamp outside the tolerance, request refused")
			}
			writeError(w, http.StatusUnauthorized, "unauthorized", "The request could not be authenticated.")
			return
		}
	}

	dedupKey, bad := deliveryKey(cfg, r.Header, signedAt)
	if bad != "" {
		writeError(w, http.StatusBadRequest, "bad_request", bad)
		return
	}
	payload, err := buildPayload(r, body, cfg)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "The body is sent as JSON but is not valid JSON.")
		return
	}
	runID, err := s.starter.StartRun(ctx, ep.workflowID, payload, SourceWebhook, dedupKey)
	if err != nil {
		if e, ok := apperr.As(err); ok && e.Code == "not_published" {
			writeError(w, http.StatusConflict, "not_published", "This workflow is not published, so it cannot start runs.")
			return
		}
		s.unavailable(w, r, ep.workflowID, err)
		return
	}
	if s.answered(w, r, runID) {
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"runId": runID})
}

// answerPoll is how often a held delivery looks for its run's answer.
const answerPoll = 20 * time.Millisecond

// answered holds the delivery while the workflow's Respond to Webhook step
// may answer it, and writes that answer; false means none came (the
// workflow has no such step, the run ended or parked without it, or the
// wait ran out) and the caller gets 202.
func (s *Webhooks) answered(w http.ResponseWriter, r *http.Request, runID string) bool {
	if s.o.Responder == nil {
		return false
	}
	ctx := r.Context()
	start := time.Now()
	tick := time.NewTicker(answerPoll)
	defer tick.Stop()
	for {
		a, wait, done, err := s.o.Responder.WebhookResponse(ctx, runID)
		if err != nil {
			s.o.Log.WarnContext(ctx, "webhook: reading the run's answer", "run", runID, "err", err)
			return false
		}
		if a != nil {
			writeAnswer(w, runID, a)
			return true
		}
		if done || time.Since(start) >= wait {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// writeAnswer writes a Respond to Webhook step's answer: a JSON body as
// JSON, a text body as text (unless the step set the type).
func writeAnswer(w http.ResponseWriter, runID string, a *engine.WebhookAnswer) {
	h := w.Header()
	for k, v := range a.Headers {
		if workflow.ResponseHeaderAllowed(k) {
			h.Set(k, v)
		}
	}
	h.Set("TaskJuice-Run-Id", runID)
	var body []byte
	var text string
	switch {
	case len(a.Body) == 0 || string(a.Body) == "null":
	case json.Unmarshal(a.Body, &text) == nil:
		body = []byte(text)
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "text/plain; charset=utf-8")
		}
	default:
		body = a.Body
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "application/json")
		}
	}
	w.WriteHeader(a.Status)
	_, _ = w.Write(body)
}

// unavailable logs err once and answers 503: the run was not recorded and
// the sender should retry.
func (s *Webhooks) unavailable(w http.ResponseWriter, r *http.Request, workflowID string, err error) {
	s.o.Log.ErrorContext(r.Context(), "webhook: run not recorded", "workflow_id", workflowID, "err", err)
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, "unavailable", "The run could not be recorded. Try again shortly.")
}

func (s *Webhooks) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	// A GET's payload is its query; a body sent along is not read.
	if r.Body == nil || r.Method != http.MethodPost {
		return nil, nil
	}
	if r.ContentLength > s.o.MaxBody {
		return nil, &http.MaxBytesError{Limit: s.o.MaxBody}
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, s.o.MaxBody))
}

// deliveryKey is the dedup key of a request, in order of preference: the
// configured delivery header (required when configured, so leaving it out
// cannot start a second run), the signed timestamp and signature of a
// timestamped HMAC (so a request replayed inside the tolerance starts
// nothing new), or the caller's Idempotency-Key. Each is namespaced apart.
// bad is a message for a 400.
func deliveryKey(cfg webhookConfig, h http.Header, signedAt string) (key, bad string) {
	if cfg.DeliveryHeader != "" {
		id := strings.TrimSpace(h.Get(cfg.DeliveryHeader))
		if id == "" {
			return "", fmt.Sprintf("The %s header is missing; this webhook needs it to tell deliveries apart.", cfg.DeliveryHeader)
		}
		if len(id) > MaxIdempotencyKey {
			return "", fmt.Sprintf("The %s header is longer than %d characters.", cfg.DeliveryHeader, MaxIdempotencyKey)
		}
		if !utf8.ValidString(id) {
			// Stored as text, which PostgreSQL refuses when it is not UTF-8.
			return "", fmt.Sprintf("The %s header is not valid UTF-8 text.", cfg.DeliveryHeader)
		}
		return "delivery:" + id, ""
	}
	k := h.Get("Idempotency-Key")
	if len(k) > MaxIdempotencyKey {
		return "", fmt.Sprintf("The Idempotency-Key header is longer than %d characters.", MaxIdempotencyKey)
	}
	if signedAt != "" {
		// Ahead of Idempotency-Key, which is not signed: a replay could
		// otherwise add a fresh one.
		sum := sha256.Sum256([]byte(signedAt))
		return "signed:" + hex.EncodeToString(sum[:]), ""
	}
	return k, ""
}

// validTimestamped checks a signature over a signed timestamp and the body
// per cfg.Timestamp. It returns the timestamp (for the tolerance check) and
// the timestamp with the signature that matched, which names the request.
func validTimestamped(hashFn func() hash.Hash, prefix string, cfg webhookConfig, secret, body []byte, h http.Header) (time.Time, string, bool) {
	var ts string
	var sigs []string
	sigHeader := h.Get(cfg.signatureHeader())
	switch cfg.Timestamp {
	case TimestampStripe:
		for _, part := range strings.Split(sigHeader, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch k {
			case "t":
				ts = v
			case "v1":
				sigs = append(sigs, v)
			}
		}
	case TimestampSlack:
		ts = h.Get("X-Slack-Request-Timestamp")
		sigs = []string{strings.TrimPrefix(strings.TrimSpace(sigHeader), "v0=")}
	case TimestampHeader:
		if cfg.TimestampHeader == "" {
			return time.Time{}, "", false
		}
		ts = h.Get(cfg.TimestampHeader)
		sigs = []string{sigHeader}
	default:
		return time.Time{}, "", false
	}
	ts = strings.TrimSpace(ts)
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || unix <= 0 {
		return time.Time{}, "", false
	}
	var msg []byte
	if cfg.Timestamp == TimestampSlack {
		msg = append([]byte("v0:"+ts+":"), body...)
	} else {
		msg = append([]byte(ts+"."), body...)
	}
	for _, sig := range sigs {
		if validSignature(hashFn, prefix, secret, msg, sig) {
			return time.Unix(unix, 0), ts + ":" + strings.ToLower(strings.TrimSpace(sig)), true
		}
	}
	return time.Time{}, "", false
}

func bearerToken(h string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// equalSecret compares in constant time. Both sides are hashed first so
// the time taken does not depend on the secret's length either.
func equalSecret(got string, secret []byte) bool {
	if got == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256(secret)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// validSignature checks a hex HMAC of the raw body, optionally prefixed with
// the algorithm ("sha256=" / "sha512=").
func validSignature(hashFn func() hash.Hash, prefix string, secret, body []byte, header string) bool {
	sig := strings.TrimSpace(header)
	if len(sig) >= len(prefix) && strings.EqualFold(sig[:len(prefix)], prefix) {
		sig = sig[len(prefix):]
	}
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) == 0 {
		return false
	}
	mac := hmac.New(hashFn, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// Payload is the trigger output of a webhook run ($trigger in expressions):
//
//	{
//	  "method": "POST",
//	  "query": {"page": "2", "tag": ["a", "b"]},
//	  "headers": {"content-type": "application/json", "x-event": "push"},
//	  "contentType": "application/json",
//	  "body": {...}
//	}
//
// query holds the URL's query parameters (a string, or an array of strings
// when a name repeats). headers holds the request headers with lower-case
// names, repeated values joined with ", "; Authorization, Cookie,
// Proxy-Authorization and the header carrying the secret or signature are
// left out. contentType and body appear for a POST with a body: body is the
// JSON document as sent (any JSON value) when the body is JSON (a JSON
// content type, or none given and the body parses as JSON); an object of
// fields for application/x-www-form-urlencoded; the text for other UTF-8
// bodies; and base64 of the bytes, with "bodyEncoding": "base64", for
// anything else. A POST without a body has "body": null.
type Payload struct {
	Method       string            `json:"method"`
	Query        map[string]any    `json:"query"`
	Headers      map[string]string `json:"headers"`
	ContentType  string            `json:"contentType,omitempty"`
	Body         json.RawMessage   `json:"body,omitempty"`
	BodyEncoding string            `json:"bodyEncoding,omitempty"`
}

// dropHeaders never reach a run.
var dropHeaders = map[string]bool{"authorization": true, "cookie": true, "proxy-authorization": true}

var errInvalidJSON = errors.New("body is not valid JSON")

func buildPayload(r *http.Request, body []byte, cfg webhookConfig) (json.RawMessage, error) {
	p := Payload{Method: r.Method, Query: values(r.URL.Query()), Headers: map[string]string{}}
	secretHeader := strings.ToLower(cfg.signatureHeader())
	for name, vs := range r.Header {
		n := strings.ToLower(name)
		if dropHeaders[n] || (cfg.Auth != AuthNone && cfg.Auth != AuthBearer && n == secretHeader) {
			continue
		}
		p.Headers[n] = strings.Join(vs, ", ")
	}
	if r.Method == http.MethodPost {
		p.Body = json.RawMessage("null")
		if len(body) > 0 {
			ct := r.Header.Get("Content-Type")
			mt, _, _ := mime.ParseMediaType(ct)
			p.ContentType = ct
			switch {
			case mt == "application/json" || strings.HasSuffix(mt, "+json"):
				if !json.Valid(body) {
					return nil, errInvalidJSON
				}
				p.Body = body
			case mt == "" && json.Valid(body):
				p.Body = body
			case mt == "application/x-www-form-urlencoded":
				if form, err := url.ParseQuery(string(body)); err == nil {
					p.Body = mustJSON(values(form))
					break
				}
				p.Body = mustJSON(string(body))
			case utf8.Valid(body):
				p.Body = mustJSON(string(body))
			default:
				p.Body = mustJSON(base64.StdEncoding.EncodeToString(body))
				p.BodyEncoding = "base64"
			}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("encode webhook payload: %w", err)
	}
	return json.RawMessage(bytes.TrimSpace(buf.Bytes())), nil
}

func values(v url.Values) map[string]any {
	out := make(map[string]any, len(v))
	for k, vs := range v {
		if len(vs) == 1 {
			out[k] = vs[0]
		} else {
			out[k] = vs
		}
	}
	return out
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v) // strings and string maps always encode
	return b
}
