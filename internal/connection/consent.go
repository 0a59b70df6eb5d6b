package connection

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"golang.org/x/oauth2"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/vault"
)

// ConsentTTL is how long a person has to finish the provider's consent
// screen.
const ConsentTTL = 15 * time.Minute

// ExternalAccount is who the credential belongs to at the app.
type ExternalAccount struct {
	ID   string
	Name string
}

// IdentifyFunc reads the external account a fresh token belongs to.
type IdentifyFunc func(ctx context.Context, c Connection, tok *oauth2.Token) (ExternalAccount, error)

// ConsentRequest starts a consent flow: for a new connection of an app, or
// to reconnect an existing one (ReconnectID).
type ConsentRequest struct {
	Workspace   account.Workspace
	AppKey      string
	Label       string
	ReconnectID string
	Actor       Actor
	// SessionBinding identifies the signed-in session; the callback must
	// come from the same one.
	SessionBinding string
	ReturnTo       string
	OwnerKind      OwnerKind
}

// BeginConsent records a single-use state and a PKCE verifier and returns
// the provider's authorization URL to send the person to. A new connection
// is created as pending; a reconnect keeps the connection as it is until
// the consent succeeds.
func (s *Service) BeginConsent(ctx context.Context, cfg *oauth2.Config, in ConsentRequest, opts ...oauth2.AuthCodeOption) (string, Connection, error) {
	if in.SessionBinding == "" || in.Actor.UserID == "" {
		return "", Connection{}, errors.New("begin consent: no signed-in session")
	}
	var c Connection
	var err error
	if in.ReconnectID != "" {
		if c, err = s.Get(ctx, in.Workspace, in.ReconnectID); err != nil {
			return "", Connection{}, err
		}
	} else {
		c, err = s.Create(ctx, in.Workspace, New{AppKey: in.AppKey, Label: in.Label, Status: StatusPending,
			OwnerKind: in.OwnerKind, OwnerUserID: in.Actor.UserID, Reason: "consent started"}, in.Actor)
		if err != nil {
			return "", Connection{}, err
		}
	}
	state := randomToken()
	verifier := oauth2.GenerateVerifier()
	now := s.now()
	// The verifier is sealed in the vault like every secret, bound to the
	// state's hash.
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		handle, err := s.vault.Put(ctx, tx, "", vault.KindPKCEVerifier, hashState(state), []byte(verifier))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO oauth_states (state_hash, session_binding, user_id, workspace_id, connection_id,
			reconnect, verifier_handle, return_to, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			hashState(state), in.SessionBinding, in.Actor.UserID, in.Workspace.ID, c.ID, in.ReconnectID != "",
			handle, in.ReturnTo, now, now.Add(ConsentTTL))
		if err != nil {
			return fmt.Errorf("record consent state: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", Connection{}, err
	}
	opts = append(opts, oauth2.S256ChallengeOption(verifier))
	return cfg.AuthCodeURL(state, opts...), c, nil
}

// decideHold settles, in a reconnect's transaction, what happens to the
// runs held on the connection: another account than the one they were
// made with keeps them held (the engine resumes nothing until someone
// decides); the original account again lets them go on as usual.
func (s *Service) decideHold(ctx context.Context, tx db.Querier, c Connection, out ConsentResult, ext ExternalAccount, actor Actor) error {
	if out.AccountChanged {
		n, err := heldRuns(ctx, tx, c.ID)
		if err != nil || n == 0 {
			return err
		}
		return s.holdForAccount(ctx, tx, c.ID, out.Previous, ext)
	}
	if !out.Reconnect {
		return nil
	}
	// Releasing raises a reauthorized signal, which the engine acts on
	// even when the connection was active already.
	_, err := s.releaseHold(ctx, tx, c.ID, releasedByOriginal, actor)
	return err
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashState(state string) string {
	sum := sha256.Sum256([]byte(state))
	return hex.EncodeToString(sum[:])
}

// Consent callback errors, each a page a person can act on.
var (
	errStateMissing = apperr.BadRequest("consent_state_missing", "This return from the app is incomplete (no state). Start connecting again from the Connections page.")
	errStateUnknown = apperr.BadRequest("consent_state_invalid", "This connection attempt is not recognised, or was already completed. Start connecting again from the Connections page.")
	errStateExpired = apperr.BadRequest("consent_state_expired", "This connection attempt expired. Start connecting again from the Connections page.")
	errStateForeign = apperr.BadRequest("consent_state_session", "This connection attempt was started in another sign-in session. Start connecting again from this browser.")
	errCodeMissing  = apperr.BadRequest("consent_code_missing", "The app did not return an authorization code. Start connecting again from the Connections page.")
)

// ConsentResult says how a consent ended.
type ConsentResult struct {
	Connection Connection
	ReturnTo   string
	Reconnect  bool
	// AccountChanged is set on a reconnect that authorized a different
	// external account than before.
	AccountChanged bool
	Previous       ExternalAccount
}

// CompleteConsent handles the provider's redirect back: it checks the
// state (known, unused, unexpired, same session), exchanges the code with
// the PKCE verifier, reads the external account, and stores the credential
// — setting the connection active and recording it in the history. Any
// failure changes nothing but spending the state.
func (s *Service) CompleteConsent(ctx context.Context, query url.Values, sessionBinding string, cfgFor func(Connection) (*oauth2.Config, error), identify IdentifyFunc) (ConsentResult, error) {
	state := query.Get("state")
	if state == "" {
		return ConsentResult{}, errStateMissing
	}
	var st struct {
		binding, userID, workspaceID, connID, returnTo string
		reconnect                                      bool
		verifier                                       sql.NullString // its handle in the vault
		expires                                        time.Time
		used                                           sql.NullTime
	}
	h := hashState(state)
	err := s.db.Read().QueryRowContext(ctx, `SELECT session_binding, user_id, workspace_id, connection_id, return_to,
		reconnect, verifier_handle, expires_at, used_at FROM oauth_states WHERE state_hash = $1`, h).
		Scan(&st.binding, &st.userID, &st.workspaceID, &st.connID, &st.returnTo, &st.reconnect, &st.verifier, &st.expires, &st.used)
	if errors.Is(err, sql.ErrNoRows) {
		return ConsentResult{}, errStateUnknown
	}
	if err != nil {
		return ConsentResult{}, fmt.Errorf("read consent state: %w", err)
	}
	switch {
	case st.used.Valid:
		return ConsentResult{}, errStateUnknown
	case st.binding != sessionBinding:
		return ConsentResult{}, errStateForeign
	case !s.now().Before(st.expires):
		return ConsentResult{}, errStateExpired
	}
	// Spend the state before anything else: of two racing callbacks only
	// one proceeds. The verifier is read and dropped from the vault in the
	// same transaction: once spent, the state never needs it again.
	var verifier []byte
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		res, err := tx.ExecContext(ctx, `UPDATE oauth_states SET used_at = $1, verifier_handle = NULL WHERE state_hash = $2 AND used_at IS NULL`, s.now(), h)
		if err != nil {
			return fmt.Errorf("spend consent state: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errStateUnknown
		}
		if verifier, err = s.vault.Open(ctx, tx, st.verifier.String, h); err != nil {
			return fmt.Errorf("open verifier: %w", err)
		}
		return s.vault.Delete(ctx, tx, st.verifier.String)
	})
	if err != nil {
		return ConsentResult{}, err
	}
	out := ConsentResult{ReturnTo: st.returnTo, Reconnect: st.reconnect}
	if e := query.Get("error"); e != "" {
		msg := "The app did not grant access (" + e + ")."
		if d := query.Get("error_description"); d != "" {
			msg = "The app did not grant access: " + d + " (" + e + ")."
		}
		return out, apperr.BadRequest("consent_denied", msg+" Nothing was changed; you can try again.")
	}
	code := query.Get("code")
	if code == "" {
		return out, errCodeMissing
	}
	c, err := s.byID(ctx, st.connID)
	if err != nil {
		return out, err
	}
	cfg, err := cfgFor(c)
	if err != nil {
		return out, err
	}
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(string(verifier)))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return out, apperr.BadRequest("consent_exchange_failed", "The app refused to complete the connection ("+orDefault(re.ErrorCode, re.Response.Status)+"). Nothing was changed; try connecting again.")
		}
		return out, fmt.Errorf("exchange authorization code: %w", err)
	}
	ext, err := identify(ctx, c, tok)
	if err != nil {
		return out, fmt.Errorf("read the connected account: %w", err)
	}
	// The account to compare with is the one the connection was made with;
	// while a reconnect as another account keeps runs held, it is the
	// account those runs were made with.
	out.Previous = ExternalAccount{ID: c.ExternalAccountID, Name: c.ExternalAccountName}
	hold, held, err := openHold(ctx, s.db.Read(), c.ID)
	if err != nil {
		return out, err
	}
	if held {
		out.Previous = hold.Previous
	}
	out.AccountChanged = st.reconnect && out.Previous.ID != "" && out.Previous.ID != ext.ID
	cred, err := Credential{OAuth: FromOAuth2(tok)}.marshal()
	if err != nil {
		return out, err
	}
	actor := Actor{Kind: ActorUser, UserID: st.userID}
	if c.OwnerKind == OwnerClient {
		actor.Kind = ActorClient
	}
	reason, detail := "connected", map[string]string{"externalAccount": ext.Name}
	if st.reconnect {
		reason = "reconnected"
		detail["externalAccountChanged"] = fmt.Sprint(out.AccountChanged)
		if out.AccountChanged {
			detail["previousExternalAccount"] = out.Previous.Name
		}
	}
	var expires, due sql.NullTime
	if !tok.Expiry.IsZero() {
		expires = sql.NullTime{Time: tok.Expiry.UTC(), Valid: true}
		due = sql.NullTime{Time: dueAt(s.now(), tok.Expiry, DefaultLead, DefaultLead/5), Valid: true}
	}
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		if _, err := s.storeSecret(ctx, tx, c.ID, cred); err != nil {
			return err
		}
		var issued sql.NullTime
		if tok.RefreshToken != "" {
			issued = sql.NullTime{Time: s.now(), Valid: true}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE connections SET external_account_id = $1, external_account_name = $2,
			access_expires_at = $3, refresh_due_at = $4, refresh_failures = 0, refresh_lease_owner = '', refresh_lease_until = NULL,
			refresh_issued_at = $6, refresh_used_at = $6
			WHERE id = $5`, ext.ID, ext.Name, expires, due, c.ID, issued); err != nil {
			return fmt.Errorf("record connected account: %w", err)
		}
		changed, err := s.transition(ctx, tx, c.ID, StatusActive, reason, actor, detail)
		if err != nil {
			return err
		}
		if !changed {
			// Already active (a reconnect ahead of a break): the fresh
			// credential is still worth a history line.
			if err := s.recordEvent(ctx, tx, c.ID, StatusActive, StatusActive, reason, actor, detail); err != nil {
				return err
			}
		}
		return s.decideHold(ctx, tx, c, out, ext, actor)
	})
	if err != nil {
		return out, err
	}
	out.Connection, err = s.byID(ctx, c.ID)
	return out, err
}
