package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/server"
)

// Scopes the sandbox knows, with the words the consent page uses for them.
const (
	ScopeChannelsRead = "channels:read"
	ScopeChatWrite    = "chat:write"
	ScopeMessagesRead = "messages:read"
)

var scopeWords = map[string]string{
	ScopeChannelsRead: "See the list of channels in your workspace",
	ScopeChatWrite:    "Post messages in your channels",
	ScopeMessagesRead: "Read the messages in your channels",
}

// HostName is how the consent page names the provider that hosts the
// client apps (Sandbox Chat, Sandbox Inbox, …).
const HostName = "TaskJuice Sandbox"

// DefaultAccount is the sandbox account the consent page suggests.
const DefaultAccount = "Sandbox Workspace"

// Defaults for zero Options fields.
const (
	DefaultAccessTTL   = time.Hour
	DefaultRefreshTTL  = 30 * 24 * time.Hour
	DefaultTimeoutHold = 30 * time.Second
	codeTTL            = time.Minute
	pendingTTL         = 10 * time.Minute
)

// ErrNotFound means no grant or account has the given id or name.
var ErrNotFound = errors.New("sandbox: not found")

// FaultKind is how an injected token-endpoint failure looks to the client.
type FaultKind string

// Fault kinds.
const (
	Fault500     FaultKind = "500"     // 500 server_error
	Fault429     FaultKind = "429"     // 429 with a Retry-After header
	FaultTimeout FaultKind = "timeout" // no answer until the client gives up, then 504
)

// Client is an OAuth client registered with the sandbox. A client without a
// Secret is public and must rely on PKCE alone.
type Client struct {
	ID           string
	Secret       string
	Name         string // shown on the consent page
	RedirectURIs []string
}

// Options configure a Provider.
type Options struct {
	// BaseURL is the public URL of the sandbox root, for example
	// http://127.0.0.1:8080/sandbox. It is used in the metadata document.
	BaseURL string
	Clients []Client
	// AccessTTL and RefreshTTL are the token lifetimes; zero takes the
	// defaults (1h and 30 days). SetLifetimes changes them at run time.
	AccessTTL, RefreshTTL time.Duration
	// AdminToken protects /admin/...; empty disables the admin API.
	AdminToken string
	// StatePath, if set, is a JSON file where accounts, grants, tokens and
	// messages persist across restarts. Empty keeps everything in memory.
	StatePath string
	// TimeoutHold is the longest a "timeout" fault holds a request before
	// answering 504 (default 30s).
	TimeoutHold time.Duration
	// ModelKey is the API key of the model endpoint (/v1/...); empty
	// generates a random one, which Provider.ModelKey returns.
	ModelKey string
	Log      *slog.Logger
	// Now is the clock for every expiry; nil means time.Now.
	Now func() time.Time
	// DeliveryBackoff is the wait before a failed webhook delivery's first
	// retry; each further retry waits twice as long. Zero means 1s.
	DeliveryBackoff time.Duration
	// DeliveryClient sends webhook deliveries; nil means a client with a
	// 10-second timeout.
	DeliveryClient *http.Client
}

// Grant is one authorization: a client acting for a sandbox account with
// some scopes.
type Grant struct {
	ID          string    `json:"id"`
	AccountID   string    `json:"account_id"`
	AccountName string    `json:"account"`
	ClientID    string    `json:"client_id"`
	Scopes      []string  `json:"scopes"`
	Created     time.Time `json:"created"`
	Revoked     bool      `json:"revoked"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
}

// Lifetimes are the token lifetimes in force.
type Lifetimes struct {
	AccessTTL  time.Duration `json:"access_ttl"`
	RefreshTTL time.Duration `json:"refresh_ttl"`
}

// Stats count what the sandbox has seen since it started.
type Stats struct {
	// TokenRequests counts every token-endpoint request by grant_type,
	// failed ones included.
	TokenRequests map[string]int `json:"token_requests"`
	// TokensIssued counts successful token responses by grant_type.
	TokensIssued map[string]int `json:"tokens_issued"`
	// Refreshes counts successful refreshes per grant id.
	Refreshes map[string]int `json:"refreshes"`
	// TokenErrors counts token-endpoint error answers by OAuth error code
	// (injected faults excluded).
	TokenErrors      map[string]int `json:"token_errors"`
	FailuresInjected int            `json:"failures_injected"`
	FailuresPending  int            `json:"failures_pending"`
	MessagesPosted   int            `json:"messages_posted"`
	// Webhook deliveries: sent (answered 2xx), failed attempts, and those
	// waiting to be sent or retried.
	DeliveriesSent    int `json:"deliveries_sent"`
	DeliveriesFailed  int `json:"deliveries_failed"`
	DeliveriesPending int `json:"deliveries_pending"`
	// Model counts the model endpoint's work.
	Model ModelStats `json:"model"`
}

type fault struct {
	remaining  int
	kind       FaultKind
	retryAfter time.Duration
}

// Provider is a running sandbox. Its methods are safe for concurrent use.
type Provider struct {
	base    string
	clients map[string]Client
	admin   string
	hold    time.Duration
	log     *slog.Logger
	now     func() time.Time
	oauth   *server.Server
	handler http.Handler
	// modelKey is the model endpoint's API key.
	modelKey string

	// tokenMu serialises token-endpoint grants so that a refresh token is
	// spent exactly once even when a client races itself.
	tokenMu sync.Mutex

	closed    chan struct{}
	closeOnce sync.Once

	mu        sync.Mutex // guards everything below
	st        *state
	idx       tokenIndex
	path      string
	lifetimes Lifetimes
	fault     fault
	stats     Stats
	pending   map[string]pendingAuth

	// Webhook deliveries waiting to be sent (or retried), and their loop.
	outbox          []delivery
	delivering      bool
	deliverWake     chan struct{}
	deliveryFaults  int
	deliveryBackoff time.Duration
	deliveryClient  *http.Client

	modelScript []ModelReply
	modelFault  fault
	modelStats  ModelStats
}

// New builds a sandbox provider, loading its state file if there is one.
func New(o Options) (*Provider, error) {
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sandbox: base URL %q: want an absolute http(s) URL", o.BaseURL)
	}
	p := &Provider{
		base:    strings.TrimRight(o.BaseURL, "/"),
		clients: make(map[string]Client, len(o.Clients)),
		admin:   o.AdminToken,
		hold:    o.TimeoutHold,
		log:     o.Log,
		now:     o.Now,
		closed:  make(chan struct{}),
		path:    o.StatePath,
		pending: make(map[string]pendingAuth),
		stats:   newStats(),

		deliverWake:     make(chan struct{}, 1),
		deliveryBackoff: o.DeliveryBackoff,
		deliveryClient:  o.DeliveryClient,
	}
	if p.deliveryBackoff <= 0 {
		p.deliveryBackoff = time.Second
	}
	if p.deliveryClient == nil {
		p.deliveryClient = &http.Client{Timeout: 10 * time.Second}
	}
	p.modelKey = o.ModelKey
	if p.modelKey == "" {
		p.modelKey = randomToken("sk-sandbox-")
	}
	if p.hold <= 0 {
		p.hold = DefaultTimeoutHold
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.lifetimes = Lifetimes{AccessTTL: o.AccessTTL, RefreshTTL: o.RefreshTTL}
	if p.lifetimes.AccessTTL <= 0 {
		p.lifetimes.AccessTTL = DefaultAccessTTL
	}
	if p.lifetimes.RefreshTTL <= 0 {
		p.lifetimes.RefreshTTL = DefaultRefreshTTL
	}
	for _, c := range o.Clients {
		if c.ID == "" {
			return nil, errors.New("sandbox: a client has no id")
		}
		if len(c.RedirectURIs) == 0 {
			return nil, fmt.Errorf("sandbox: client %q has no redirect URI", c.ID)
		}
		for _, r := range c.RedirectURIs {
			if ru, err := url.Parse(r); err != nil || !ru.IsAbs() || ru.Fragment != "" {
				return nil, fmt.Errorf("sandbox: client %q: redirect URI %q: want an absolute URL without a fragment", c.ID, r)
			}
		}
		if _, dup := p.clients[c.ID]; dup {
			return nil, fmt.Errorf("sandbox: client %q registered twice", c.ID)
		}
		if c.Name == "" {
			c.Name = c.ID
		}
		c.RedirectURIs = slices.Clone(c.RedirectURIs)
		p.clients[c.ID] = c
	}
	st, err := loadState(o.StatePath)
	if err != nil {
		return nil, err
	}
	p.st = st
	p.idx = buildIndex(st)
	p.oauth = p.newOAuthServer()
	p.handler = p.routes()
	return p, nil
}

// Handler serves the sandbox: OAuth endpoints, chat API and admin API.
func (p *Provider) Handler() http.Handler { return p.handler }

// Close releases requests held by a timeout fault so that a server can shut
// down promptly. The provider keeps answering other requests.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

// Endpoints are the sandbox's public URLs.
type Endpoints struct {
	Authorize string `json:"authorization_endpoint"`
	Token     string `json:"token_endpoint"`
	Revoke    string `json:"revocation_endpoint"`
	API       string `json:"api_base"`
	// Model is the base URL of the OpenAI-compatible model endpoint.
	Model string `json:"model_base"`
}

// Endpoints returns the public URLs of the OAuth endpoints and the API.
func (p *Provider) Endpoints() Endpoints {
	return Endpoints{
		Authorize: p.base + "/oauth/authorize",
		Token:     p.base + "/oauth/token",
		Revoke:    p.base + "/oauth/revoke",
		API:       p.base + "/api",
		Model:     p.base + "/v1",
	}
}

func (p *Provider) newOAuthServer() *server.Server {
	m := manage.NewManager()
	m.MapClientStorage(clientStore{p})
	m.MapTokenStorage(tokenStore{p})
	m.MapAuthorizeGenerate(codeGenerator{})
	m.MapAccessGenerate(tokenGenerator{})
	m.SetAuthorizeCodeExp(codeTTL)
	m.SetAuthorizeCodeTokenCfg(&manage.Config{IsGenerateRefresh: true})
	// Lifetimes and clocks are applied by the token store; the old access
	// token stays valid until it expires, the old refresh token dies.
	m.SetRefreshTokenCfg(&manage.RefreshingConfig{IsGenerateRefresh: true, IsRemoveRefreshing: true})
	m.SetValidateURIHandler(validateRedirect)

	s := server.NewServer(&server.Config{
		TokenType:                   "Bearer",
		AllowedResponseTypes:        []oauth2.ResponseType{oauth2.Code},
		AllowedGrantTypes:           []oauth2.GrantType{oauth2.AuthorizationCode, oauth2.Refreshing},
		AllowedCodeChallengeMethods: []oauth2.CodeChallengeMethod{oauth2.CodeChallengeS256},
		ForcePKCE:                   true,
	}, m)
	s.ClientInfoHandler = p.authenticateClient
	s.UserAuthorizationHandler = grantFromContext
	s.RefreshingScopeHandler = func(tgr *oauth2.TokenGenerateRequest, old string) (bool, error) {
		have := strings.Fields(old)
		for _, sc := range strings.Fields(tgr.Scope) {
			if !slices.Contains(have, sc) {
				return false, nil
			}
		}
		return true, nil
	}
	s.ResponseErrorHandler = normaliseOAuthError
	return s
}

// SetLifetimes changes the token lifetimes for tokens issued from now on;
// a zero duration leaves that lifetime unchanged.
func (p *Provider) SetLifetimes(access, refresh time.Duration) (Lifetimes, error) {
	if access < 0 || refresh < 0 {
		return Lifetimes{}, errors.New("sandbox: lifetimes cannot be negative")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if access > 0 {
		p.lifetimes.AccessTTL = access
	}
	if refresh > 0 {
		p.lifetimes.RefreshTTL = refresh
	}
	p.log.Info("sandbox lifetimes changed", "access_ttl", p.lifetimes.AccessTTL, "refresh_ttl", p.lifetimes.RefreshTTL)
	return p.lifetimes, nil
}

// Lifetimes returns the token lifetimes in force.
func (p *Provider) Lifetimes() Lifetimes {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lifetimes
}

// FailNext makes the next n token-endpoint requests fail with kind. For
// Fault429, retryAfter (rounded up to whole seconds, at least 1) goes in the
// Retry-After header. n <= 0 clears a pending fault.
func (p *Provider) FailNext(n int, kind FaultKind, retryAfter time.Duration) error {
	return p.setFault(&p.fault, "token", n, kind, retryAfter)
}

// setFault arms (or, with n <= 0, clears) the faults of one endpoint.
func (p *Provider) setFault(slot *fault, endpoint string, n int, kind FaultKind, retryAfter time.Duration) error {
	switch kind {
	case Fault500, Fault429, FaultTimeout:
	default:
		if n > 0 {
			return fmt.Errorf("sandbox: unknown fault kind %q (want 500, 429 or timeout)", kind)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n <= 0 {
		*slot = fault{}
		return nil
	}
	*slot = fault{remaining: n, kind: kind, retryAfter: retryAfter}
	p.log.Info("sandbox will fail "+endpoint+" requests", "count", n, "kind", string(kind))
	return nil
}

// takeFault consumes one pending fault, if any.
func (p *Provider) takeFault() (fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault.remaining <= 0 {
		return fault{}, false
	}
	p.fault.remaining--
	p.stats.FailuresInjected++
	return p.fault, true
}

// Stats returns a copy of the counters.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.TokenRequests = cloneCounts(p.stats.TokenRequests)
	s.TokensIssued = cloneCounts(p.stats.TokensIssued)
	s.Refreshes = cloneCounts(p.stats.Refreshes)
	s.TokenErrors = cloneCounts(p.stats.TokenErrors)
	s.FailuresPending = max(p.fault.remaining, 0)
	s.DeliveriesPending = len(p.outbox)
	s.Model = p.modelStatsLocked()
	return s
}

func newStats() Stats {
	return Stats{TokenRequests: map[string]int{}, TokensIssued: map[string]int{}, Refreshes: map[string]int{}, TokenErrors: map[string]int{}}
}

func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Grants lists every grant, oldest first.
func (p *Provider) Grants() []Grant {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Grant, 0, len(p.st.Grants))
	for _, g := range p.st.Grants {
		out = append(out, p.grantView(g))
	}
	slices.SortFunc(out, func(a, b Grant) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

func (p *Provider) grantView(g *grantRec) Grant {
	name := ""
	if a := p.st.Accounts[g.AccountID]; a != nil {
		name = a.Name
	}
	return Grant{ID: g.ID, AccountID: g.AccountID, AccountName: name, ClientID: g.ClientID,
		Scopes: slices.Clone(g.Scopes), Created: g.Created, Revoked: !g.RevokedAt.IsZero(), RevokedAt: g.RevokedAt}
}

// RevokeGrant revokes one grant: its access tokens stop working and its
// refresh tokens answer invalid_grant. Revoking a revoked grant is a no-op.
func (p *Provider) RevokeGrant(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.st.Grants[id]
	if g == nil {
		return fmt.Errorf("grant %q: %w", id, ErrNotFound)
	}
	p.revokeLocked(g)
	return p.saveLocked()
}

// RevokeAccount revokes every live grant of the sandbox account with this
// name (or id) and returns how many it revoked.
func (p *Provider) RevokeAccount(nameOrID string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.findAccountLocked(nameOrID)
	if a == nil {
		return 0, fmt.Errorf("account %q: %w", nameOrID, ErrNotFound)
	}
	n := 0
	for _, g := range p.st.Grants {
		if g.AccountID == a.ID && g.RevokedAt.IsZero() {
			p.revokeLocked(g)
			n++
		}
	}
	return n, p.saveLocked()
}

func (p *Provider) revokeLocked(g *grantRec) {
	if !g.RevokedAt.IsZero() {
		return
	}
	g.RevokedAt = p.now()
	p.idx.dropGrant(p.st, g.ID)
	p.log.Info("sandbox grant revoked", "grant", g.ID, "client", g.ClientID)
}

func randomID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return prefix + hex.EncodeToString(b)
}
