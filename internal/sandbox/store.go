package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oautherrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/models"
)

// state is everything the sandbox remembers; with Options.StatePath it is
// the JSON file's content.
type state struct {
	Accounts map[string]*account   `json:"accounts"`
	Grants   map[string]*grantRec  `json:"grants"`
	Tokens   map[string]*tokenRec  `json:"tokens"`
	Messages map[string][]*Message `json:"messages"` // by channel id
	Idem     map[string]idemRec    `json:"idempotency"`
	Webhooks subscriptionsStore    `json:"webhooks"`
}

type account struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Channels []Channel `json:"channels"`
	Created  time.Time `json:"created"`
}

type grantRec struct {
	ID        string    `json:"id"`
	AccountID string    `json:"account_id"`
	ClientID  string    `json:"client_id"`
	Scopes    []string  `json:"scopes"`
	Created   time.Time `json:"created"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// tokenRec is one stored code or access/refresh pair. The library's model
// keeps the grant id in UserID: for the library the "user" is the grant.
type tokenRec struct {
	models.Token
}

type idemRec struct {
	AccountID string    `json:"account_id"`
	ChannelID string    `json:"channel_id"`
	Text      string    `json:"text"`
	MessageID string    `json:"message_id"`
	Created   time.Time `json:"created"`
}

const idempotencyTTL = 24 * time.Hour

func newState() *state {
	return &state{
		Accounts: map[string]*account{},
		Grants:   map[string]*grantRec{},
		Tokens:   map[string]*tokenRec{},
		Messages: map[string][]*Message{},
		Idem:     map[string]idemRec{},
		Webhooks: subscriptionsStore{},
	}
}

func loadState(path string) (*state, error) {
	st := newState()
	if path == "" {
		return st, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: read state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("sandbox: state file %s: %w", path, err)
	}
	// A file written by hand or by an older version may lack a section.
	fresh := newState()
	if st.Accounts == nil {
		st.Accounts = fresh.Accounts
	}
	if st.Grants == nil {
		st.Grants = fresh.Grants
	}
	if st.Tokens == nil {
		st.Tokens = fresh.Tokens
	}
	if st.Webhooks == nil {
		st.Webhooks = fresh.Webhooks
	}
	if st.Messages == nil {
		st.Messages = fresh.Messages
	}
	if st.Idem == nil {
		st.Idem = fresh.Idem
	}
	return st, nil
}

// saveLocked writes the state file atomically: a temporary file in the same
// folder, synced, then renamed over the old one. Callers hold p.mu.
func (p *Provider) saveLocked() error {
	if p.path == "" {
		return nil
	}
	p.pruneLocked()
	b, err := json.Marshal(p.st)
	if err != nil {
		return fmt.Errorf("sandbox: encode state: %w", err)
	}
	dir := filepath.Dir(p.path)
	f, err := os.CreateTemp(dir, ".sandbox-state-*.tmp")
	if err != nil {
		return fmt.Errorf("sandbox: save state: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("sandbox: save state: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("sandbox: save state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sandbox: save state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sandbox: save state: %w", err)
	}
	if err := os.Rename(tmp, p.path); err != nil {
		return fmt.Errorf("sandbox: save state: %w", err)
	}
	return nil
}

// pruneLocked forgets spent tokens and old idempotency keys.
func (p *Provider) pruneLocked() {
	now := p.now()
	for id, t := range p.st.Tokens {
		if !t.alive(now) {
			p.idx.remove(t)
			delete(p.st.Tokens, id)
		}
	}
	for k, r := range p.st.Idem {
		if now.Sub(r.Created) > idempotencyTTL {
			delete(p.st.Idem, k)
		}
	}
}

func expired(created time.Time, ttl time.Duration, now time.Time) bool {
	return ttl > 0 && !now.Before(created.Add(ttl))
}

func (t *tokenRec) codeLive(now time.Time) bool {
	return t.Code != "" && !expired(t.CodeCreateAt, t.CodeExpiresIn, now)
}

func (t *tokenRec) accessLive(now time.Time) bool {
	return t.Access != "" && !expired(t.AccessCreateAt, t.AccessExpiresIn, now)
}

func (t *tokenRec) refreshLive(now time.Time) bool {
	return t.Refresh != "" && !expired(t.RefreshCreateAt, t.RefreshExpiresIn, now)
}

func (t *tokenRec) alive(now time.Time) bool {
	return t.codeLive(now) || t.accessLive(now) || t.refreshLive(now)
}

// tokenIndex finds token records by code, access token and refresh token.
type tokenIndex struct {
	code, access, refresh map[string]*tokenRec
	id                    map[*tokenRec]string
}

func buildIndex(st *state) tokenIndex {
	ix := tokenIndex{code: map[string]*tokenRec{}, access: map[string]*tokenRec{}, refresh: map[string]*tokenRec{}, id: map[*tokenRec]string{}}
	for id, t := range st.Tokens {
		ix.add(id, t)
	}
	return ix
}

func (ix *tokenIndex) add(id string, t *tokenRec) {
	ix.id[t] = id
	if t.Code != "" {
		ix.code[t.Code] = t
	}
	if t.Access != "" {
		ix.access[t.Access] = t
	}
	if t.Refresh != "" {
		ix.refresh[t.Refresh] = t
	}
}

func (ix *tokenIndex) remove(t *tokenRec) {
	delete(ix.code, t.Code)
	delete(ix.access, t.Access)
	delete(ix.refresh, t.Refresh)
	delete(ix.id, t)
}

// dropGrant deletes every token of a grant.
func (ix *tokenIndex) dropGrant(st *state, grantID string) {
	for id, t := range st.Tokens {
		if t.UserID == grantID {
			ix.remove(t)
			delete(st.Tokens, id)
		}
	}
}

// liveGrantLocked returns the grant if it exists and is not revoked.
func (p *Provider) liveGrantLocked(id string) *grantRec {
	g := p.st.Grants[id]
	if g == nil || !g.RevokedAt.IsZero() {
		return nil
	}
	return g
}

// tokenStore adapts the provider's state to the library's TokenStore. It
// owns expiry: times are stamped and checked with the provider's clock, and
// the copies handed back to the library are marked current (codes) or
// non-expiring (refresh tokens) so that the library's own wall-clock checks
// agree with the decision already taken here.
type tokenStore struct{ p *Provider }

var _ oauth2.TokenStore = tokenStore{}

func (s tokenStore) Create(_ context.Context, ti oauth2.TokenInfo) error {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.liveGrantLocked(ti.GetUserID()) == nil {
		return oautherrors.ErrInvalidGrant
	}
	now := p.now()
	if ti.GetCode() != "" && ti.GetAccess() == "" {
		ti.SetCodeCreateAt(now)
		ti.SetCodeExpiresIn(codeTTL)
	}
	if ti.GetAccess() != "" {
		ti.SetAccessCreateAt(now)
		ti.SetAccessExpiresIn(p.lifetimes.AccessTTL)
	}
	if ti.GetRefresh() != "" {
		ti.SetRefreshCreateAt(now)
		ti.SetRefreshExpiresIn(p.lifetimes.RefreshTTL)
	}
	t := &tokenRec{Token: copyToken(ti)}
	id := randomID("t", 12)
	p.st.Tokens[id] = t
	p.idx.add(id, t)
	return p.saveLocked()
}

func copyToken(ti oauth2.TokenInfo) models.Token {
	return models.Token{
		ClientID: ti.GetClientID(), UserID: ti.GetUserID(), RedirectURI: ti.GetRedirectURI(), Scope: ti.GetScope(),
		Code: ti.GetCode(), CodeChallenge: ti.GetCodeChallenge(), CodeChallengeMethod: string(ti.GetCodeChallengeMethod()),
		CodeCreateAt: ti.GetCodeCreateAt(), CodeExpiresIn: ti.GetCodeExpiresIn(),
		Access: ti.GetAccess(), AccessCreateAt: ti.GetAccessCreateAt(), AccessExpiresIn: ti.GetAccessExpiresIn(),
		Refresh: ti.GetRefresh(), RefreshCreateAt: ti.GetRefreshCreateAt(), RefreshExpiresIn: ti.GetRefreshExpiresIn(),
	}
}

// clear blanks one field of a record and deletes the record once nothing
// in it is usable any more.
func (s tokenStore) clear(lookup func(ix *tokenIndex) *tokenRec, blank func(t *tokenRec)) error {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	t := lookup(&p.idx)
	if t == nil {
		return nil
	}
	id := p.idx.id[t]
	p.idx.remove(t)
	blank(t)
	if t.alive(p.now()) {
		p.idx.add(id, t)
	} else {
		delete(p.st.Tokens, id)
	}
	return p.saveLocked()
}

func (s tokenStore) RemoveByCode(_ context.Context, code string) error {
	return s.clear(func(ix *tokenIndex) *tokenRec { return ix.code[code] }, func(t *tokenRec) { t.Code = "" })
}

func (s tokenStore) RemoveByAccess(_ context.Context, access string) error {
	return s.clear(func(ix *tokenIndex) *tokenRec { return ix.access[access] }, func(t *tokenRec) { t.Access = "" })
}

func (s tokenStore) RemoveByRefresh(_ context.Context, refresh string) error {
	return s.clear(func(ix *tokenIndex) *tokenRec { return ix.refresh[refresh] }, func(t *tokenRec) { t.Refresh = "" })
}

func (s tokenStore) GetByCode(_ context.Context, code string) (oauth2.TokenInfo, error) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.idx.code[code]
	if t == nil || !t.codeLive(p.now()) || p.liveGrantLocked(t.UserID) == nil {
		return nil, nil
	}
	c := t.Token
	c.CodeCreateAt, c.CodeExpiresIn = time.Now(), codeTTL
	return &c, nil
}

func (s tokenStore) GetByAccess(_ context.Context, access string) (oauth2.TokenInfo, error) {
	t, _ := s.p.accessToken(access)
	if t == nil {
		return nil, nil
	}
	c := t.Token
	c.AccessExpiresIn = 0
	return &c, nil
}

func (s tokenStore) GetByRefresh(_ context.Context, refresh string) (oauth2.TokenInfo, error) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.idx.refresh[refresh]
	if t == nil || !t.refreshLive(p.now()) || p.liveGrantLocked(t.UserID) == nil {
		return nil, nil
	}
	c := t.Token
	c.RefreshExpiresIn = 0
	return &c, nil
}

// accessToken returns a copy of a live access token's record and its grant.
func (p *Provider) accessToken(access string) (*tokenRec, *grantRec) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.idx.access[access]
	if t == nil || !t.accessLive(p.now()) {
		return nil, nil
	}
	g := p.liveGrantLocked(t.UserID)
	if g == nil {
		return nil, nil
	}
	c := *t
	return &c, g
}

// clientStore adapts the registered clients to the library's ClientStore.
type clientStore struct{ p *Provider }

func (s clientStore) GetByID(_ context.Context, id string) (oauth2.ClientInfo, error) {
	c, ok := s.p.clients[id]
	if !ok {
		return nil, oautherrors.ErrInvalidClient
	}
	return clientInfo{c}, nil
}

type clientInfo struct{ c Client }

func (ci clientInfo) GetID() string     { return ci.c.ID }
func (ci clientInfo) GetSecret() string { return ci.c.Secret }
func (ci clientInfo) IsPublic() bool    { return ci.c.Secret == "" }
func (ci clientInfo) GetUserID() string { return "" }

// GetDomain carries the registered redirect URIs, space-separated (a space
// cannot appear in a URI), to validateRedirect.
func (ci clientInfo) GetDomain() string { return strings.Join(ci.c.RedirectURIs, " ") }

// VerifyPassword compares the client secret in constant time.
func (ci clientInfo) VerifyPassword(secret string) bool {
	return secretsEqual(ci.c.Secret, secret)
}

func secretsEqual(want, got string) bool {
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// validateRedirect accepts only an exact match of a registered redirect URI.
func validateRedirect(registered, redirect string) error {
	if slices.Contains(strings.Fields(registered), redirect) {
		return nil
	}
	return oautherrors.ErrInvalidRedirectURI
}

// Tokens and codes are 256 random bits; the prefixes make them recognisable
// in logs of the product under test.
type codeGenerator struct{}

func (codeGenerator) Token(context.Context, *oauth2.GenerateBasic) (string, error) {
	return randomToken("sbxc_"), nil
}

type tokenGenerator struct{}

func (tokenGenerator) Token(_ context.Context, _ *oauth2.GenerateBasic, withRefresh bool) (string, string, error) {
	refresh := ""
	if withRefresh {
		refresh = randomToken("sbxr_")
	}
	return randomToken("sbxa_"), refresh, nil
}

func randomToken(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}
