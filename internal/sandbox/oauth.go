package sandbox

import (
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oautherrors "github.com/go-oauth2/oauth2/v4/errors"
)

//go:embed page.html style.css
var assets embed.FS

var pages = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"head": func(title, host string) map[string]string { return map[string]string{"Title": title, "Host": host} },
}).ParseFS(assets, "page.html"))

const maxFormBytes = 64 << 10

func (p *Provider) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth/authorize", p.handleAuthorize)
	mux.HandleFunc("POST /oauth/authorize", p.handleConsent)
	mux.HandleFunc("POST /oauth/token", p.handleToken)
	mux.HandleFunc("POST /oauth/revoke", p.handleRevoke)
	mux.HandleFunc("GET /oauth/style.css", serveStyle)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", p.handleMetadata)

	mux.HandleFunc("GET /api/me", p.api("", p.handleMe))
	mux.HandleFunc("GET /api/channels", p.api(ScopeChannelsRead, p.handleChannels))
	mux.HandleFunc("GET /api/channels/{channel}/messages", p.api(ScopeMessagesRead, p.handleListMessages))
	mux.HandleFunc("POST /api/channels/{channel}/messages", p.api(ScopeChatWrite, p.handlePostMessage))
	mux.HandleFunc("GET /api/webhooks", p.api(ScopeMessagesRead, p.handleListWebhooks))
	mux.HandleFunc("POST /api/webhooks", p.api(ScopeMessagesRead, p.handleCreateWebhook))
	mux.HandleFunc("DELETE /api/webhooks/{id}", p.api(ScopeMessagesRead, p.handleDeleteWebhook))

	mux.HandleFunc("GET /v1/models", p.modelAuth(p.handleModels))
	mux.HandleFunc("GET /v1/models/{model}", p.modelAuth(p.handleModel))
	mux.HandleFunc("POST /v1/chat/completions", p.modelAuth(p.handleChatCompletions))

	mux.HandleFunc("GET /admin/grants", p.adminOnly(p.handleAdminGrants))
	mux.HandleFunc("POST /admin/revoke", p.adminOnly(p.handleAdminRevoke))
	mux.HandleFunc("POST /admin/fail", p.adminOnly(p.handleAdminFail))
	mux.HandleFunc("GET /admin/lifetimes", p.adminOnly(p.handleAdminGetLifetimes))
	mux.HandleFunc("POST /admin/lifetimes", p.adminOnly(p.handleAdminLifetimes))
	mux.HandleFunc("GET /admin/stats", p.adminOnly(p.handleAdminStats))
	mux.HandleFunc("POST /admin/emit", p.adminOnly(p.handleAdminEmit))
	mux.HandleFunc("POST /admin/deliveries/fail", p.adminOnly(p.handleAdminFailDeliveries))
	mux.HandleFunc("POST /admin/model/script", p.adminOnly(p.handleAdminModelScript))
	mux.HandleFunc("DELETE /admin/model/script", p.adminOnly(p.handleAdminModelClear))
	mux.HandleFunc("POST /admin/model/fail", p.adminOnly(p.handleAdminModelFail))
	return mux
}

// authRequest is a validated authorization request.
type authRequest struct {
	Client        Client
	RedirectURI   string
	Scopes        []string
	State         string
	CodeChallenge string
}

type pendingAuth struct {
	req     authRequest
	expires time.Time
}

// parseAuthorize validates an authorization request. The message it
// returns on failure is shown to the person in the browser.
func (p *Provider) parseAuthorize(q url.Values) (authRequest, string) {
	for _, k := range []string{"client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge", "code_challenge_method", "login_hint"} {
		if len(q[k]) > 1 {
			return authRequest{}, "The parameter " + k + " appears more than once."
		}
	}
	id := q.Get("client_id")
	if id == "" {
		return authRequest{}, "The request does not say which app is asking (client_id is missing)."
	}
	c, ok := p.clients[id]
	if !ok {
		return authRequest{}, "No app is registered with the client ID “" + id + "”."
	}
	redirect := q.Get("redirect_uri")
	if redirect == "" {
		return authRequest{}, "The request has no redirect_uri."
	}
	if !slices.Contains(c.RedirectURIs, redirect) {
		return authRequest{}, "The redirect URI “" + redirect + "” is not registered for " + c.Name + ", so Sandbox Chat will not send you there."
	}
	if rt := q.Get("response_type"); rt != "code" {
		return authRequest{}, "Unsupported response_type “" + rt + "”: Sandbox Chat only issues authorization codes (response_type=code)."
	}
	cc := q.Get("code_challenge")
	if cc == "" {
		return authRequest{}, "PKCE is required: the request has no code_challenge."
	}
	if m := q.Get("code_challenge_method"); m != string(oauth2.CodeChallengeS256) {
		return authRequest{}, "code_challenge_method must be S256."
	}
	if len(cc) < 43 || len(cc) > 128 || strings.Trim(cc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != "" {
		return authRequest{}, "The code_challenge is malformed: want 43 to 128 URL-safe characters."
	}
	state := q.Get("state")
	if state == "" {
		return authRequest{}, "The request has no state parameter."
	}
	scopes := strings.Fields(q.Get("scope"))
	if len(scopes) == 0 {
		return authRequest{}, "The request asks for no permission (scope is empty)."
	}
	for _, s := range scopes {
		if _, ok := scopeWords[s]; !ok {
			return authRequest{}, "Unknown scope “" + s + "”."
		}
	}
	slices.Sort(scopes)
	scopes = slices.Compact(scopes)
	return authRequest{Client: c, RedirectURI: redirect, Scopes: scopes, State: state, CodeChallenge: cc}, ""
}

type consentPage struct {
	// AppName is the registered client asking for access; Host names the
	// provider serving the page.
	AppName    string
	Host       string
	ClientID   string
	Scopes     []string
	RedirectTo string
	Account    string
	// Hinted is set when the request's login_hint named a known account,
	// which the form then suggests.
	Hinted      bool
	RequestID   string
	Problem     string
	ErrorTitle  string
	ErrorDetail string
}

func (p *Provider) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	req, problem := p.parseAuthorize(r.URL.Query())
	if problem != "" {
		p.renderError(w, http.StatusBadRequest, problem)
		return
	}
	acct, hinted := DefaultAccount, false
	// OpenID Connect Core 3.1.2.1: login_hint says which account the app
	// expects; a known account is suggested, anything else is ignored.
	if hint := strings.TrimSpace(r.URL.Query().Get("login_hint")); hint != "" {
		p.mu.Lock()
		if a := p.findAccountLocked(hint); a != nil {
			acct, hinted = a.Name, true
		}
		p.mu.Unlock()
	}
	p.renderConsentHinted(w, http.StatusOK, req, acct, hinted, "")
}

func (p *Provider) renderConsent(w http.ResponseWriter, status int, req authRequest, acct, problem string) {
	p.renderConsentHinted(w, status, req, acct, false, problem)
}

func (p *Provider) renderConsentHinted(w http.ResponseWriter, status int, req authRequest, acct string, hinted bool, problem string) {
	id := randomToken("")
	p.mu.Lock()
	now := p.now()
	for k, v := range p.pending {
		if now.After(v.expires) {
			delete(p.pending, k)
		}
	}
	p.pending[id] = pendingAuth{req: req, expires: now.Add(pendingTTL)}
	p.mu.Unlock()

	words := make([]string, len(req.Scopes))
	for i, s := range req.Scopes {
		words[i] = scopeWords[s]
	}
	to := req.RedirectURI
	if u, err := url.Parse(req.RedirectURI); err == nil {
		to = u.Host
	}
	name := req.Client.Name
	if name == "" {
		name = req.Client.ID
	}
	p.render(w, status, "consent", consentPage{AppName: name, Host: HostName, ClientID: req.Client.ID, Scopes: words,
		RedirectTo: to, Account: acct, Hinted: hinted, RequestID: id, Problem: problem})
}

func (p *Provider) renderError(w http.ResponseWriter, status int, detail string) {
	p.render(w, status, "error", consentPage{Host: HostName, ErrorTitle: "This connection request cannot be completed", ErrorDetail: detail})
}

func (p *Provider) render(w http.ResponseWriter, status int, name string, data consentPage) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		p.log.Error("sandbox page", "page", name, "err", err)
	}
}

func serveStyle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.ServeFileFS(w, r, assets, "style.css")
}

type grantKey struct{}

// grantFromContext tells the library which grant a code belongs to; the
// consent handler puts it in the request's context.
func grantFromContext(_ http.ResponseWriter, r *http.Request) (string, error) {
	id, _ := r.Context().Value(grantKey{}).(string)
	if id == "" {
		return "", oautherrors.ErrAccessDenied
	}
	return id, nil
}

// handleConsent receives the consent form.
func (p *Provider) handleConsent(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		p.renderError(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	p.mu.Lock()
	pa, ok := p.pending[r.PostForm.Get("request")]
	delete(p.pending, r.PostForm.Get("request"))
	live := ok && !p.now().After(pa.expires)
	p.mu.Unlock()
	if !live {
		p.renderError(w, http.StatusBadRequest, "This authorization request has expired or was already answered. Go back to the app and connect again.")
		return
	}
	req := pa.req
	switch r.PostForm.Get("decision") {
	case "deny":
		redirectTo(w, req, url.Values{"error": {"access_denied"}, "error_description": {"The user denied the request."}})
		return
	case "allow":
	default:
		p.renderConsent(w, http.StatusBadRequest, req, DefaultAccount, "Choose Allow or Deny.")
		return
	}
	name := strings.Join(strings.Fields(r.PostForm.Get("account")), " ")
	if name == "" {
		name = DefaultAccount
	}
	if len([]rune(name)) > 80 {
		p.renderConsent(w, http.StatusBadRequest, req, name, "The account name is too long (80 characters at most).")
		return
	}
	g, err := p.createGrant(req.Client.ID, name, req.Scopes)
	if err != nil {
		p.log.Error("sandbox consent", "err", err)
		p.renderError(w, http.StatusInternalServerError, "Sandbox Chat could not record the authorization. Try again.")
		return
	}
	form := url.Values{
		"client_id":             {req.Client.ID},
		"redirect_uri":          {req.RedirectURI},
		"response_type":         {"code"},
		"scope":                 {strings.Join(req.Scopes, " ")},
		"state":                 {req.State},
		"code_challenge":        {req.CodeChallenge},
		"code_challenge_method": {string(oauth2.CodeChallengeS256)},
	}
	r2 := r.Clone(context.WithValue(r.Context(), grantKey{}, g.ID))
	r2.Form, r2.PostForm = form, form
	if err := p.oauth.HandleAuthorizeRequest(w, r2); err != nil {
		p.log.Error("sandbox authorization code", "err", err)
		p.renderError(w, http.StatusInternalServerError, "Sandbox Chat could not issue an authorization code. Try again.")
	}
}

func redirectTo(w http.ResponseWriter, req authRequest, params url.Values) {
	u, _ := url.Parse(req.RedirectURI) // validated at registration
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	q.Set("state", req.State)
	u.RawQuery = q.Encode()
	w.Header().Set("Location", u.String())
	w.WriteHeader(http.StatusFound)
}

// createGrant records a new authorization, creating the sandbox account on
// its first use.
func (p *Provider) createGrant(clientID, accountName string, scopes []string) (*grantRec, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.findAccountLocked(accountName)
	now := p.now()
	if a == nil {
		a = &account{ID: randomID("A", 6), Name: accountName, Created: now}
		for _, ch := range []string{"general", "random", "clients"} {
			a.Channels = append(a.Channels, Channel{ID: randomID("C", 6), Name: ch})
		}
		p.st.Accounts[a.ID] = a
	}
	g := &grantRec{ID: randomID("G", 8), AccountID: a.ID, ClientID: clientID, Scopes: slices.Clone(scopes), Created: now}
	p.st.Grants[g.ID] = g
	p.log.Info("sandbox grant created", "grant", g.ID, "account", a.Name, "client", clientID, "scope", strings.Join(scopes, " "))
	return g, p.saveLocked()
}

// findAccountLocked finds an account by id, or by name ignoring case.
func (p *Provider) findAccountLocked(nameOrID string) *account {
	if a := p.st.Accounts[nameOrID]; a != nil {
		return a
	}
	for _, a := range p.st.Accounts {
		if strings.EqualFold(a.Name, nameOrID) {
			return a
		}
	}
	return nil
}

// authenticateClient reads client_secret_basic or client_secret_post
// credentials and checks them. On a refresh it also checks that the refresh
// token was issued to this client, which the library leaves to us.
func (p *Provider) authenticateClient(r *http.Request) (string, string, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 2.3.1: both parts are form-encoded inside Basic.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return "", "", oautherrors.ErrInvalidClient
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	c, ok := p.clients[id]
	if !ok || !secretsEqual(c.Secret, secret) {
		return "", "", oautherrors.ErrInvalidClient
	}
	if r.PostForm.Get("grant_type") == string(oauth2.Refreshing) {
		p.mu.Lock()
		t := p.idx.refresh[r.PostForm.Get("refresh_token")]
		other := t != nil && t.ClientID != id
		p.mu.Unlock()
		if other {
			return "", "", oautherrors.ErrInvalidGrant
		}
	}
	return id, secret, nil
}

// normaliseOAuthError gives token errors the statuses of RFC 6749 5.2,
// which the library does not always use.
func normaliseOAuthError(re *oautherrors.Response) {
	switch re.Error {
	case oautherrors.ErrInvalidGrant, oautherrors.ErrUnauthorizedClient, oautherrors.ErrUnsupportedGrantType, oautherrors.ErrUnsupportedResponseType:
		re.StatusCode = http.StatusBadRequest
	case oautherrors.ErrInvalidClient:
		re.StatusCode = http.StatusUnauthorized
		re.SetHeader("WWW-Authenticate", `Basic realm="Sandbox Chat"`)
	}
}

func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "the request body could not be read"})
		return
	}
	gt := r.PostForm.Get("grant_type")
	label := gt
	if label == "" {
		label = "none"
	}
	p.mu.Lock()
	p.stats.TokenRequests[label]++
	p.mu.Unlock()

	if f, ok := p.takeFault(); ok {
		p.serveFault(w, r, f)
		return
	}

	p.tokenMu.Lock()
	defer p.tokenMu.Unlock()
	gtype, tgr, err := p.oauth.ValidationTokenRequest(r)
	var ti oauth2.TokenInfo
	if err == nil {
		ti, err = p.oauth.GetAccessToken(r.Context(), gtype, tgr)
	}
	if err != nil {
		data, status, header := p.oauth.GetErrorData(err)
		if status >= 500 {
			p.log.Error("sandbox token endpoint", "grant_type", gt, "err", err)
		}
		code, _ := data["error"].(string)
		p.mu.Lock()
		p.stats.TokenErrors[code]++
		p.mu.Unlock()
		for k, v := range header {
			w.Header()[k] = v
		}
		writeJSON(w, status, data)
		return
	}
	p.mu.Lock()
	p.stats.TokensIssued[gt]++
	if gtype == oauth2.Refreshing {
		p.stats.Refreshes[ti.GetUserID()]++
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, p.oauth.GetTokenData(ti))
}

func (p *Provider) serveFault(w http.ResponseWriter, r *http.Request, f fault) {
	p.log.Info("sandbox injected a token failure", "kind", string(f.kind))
	switch f.kind {
	case Fault429:
		secs := int(math.Ceil(max(f.retryAfter, 0).Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "temporarily_unavailable", "error_description": "too many requests: slow down"})
	case FaultTimeout:
		t := time.NewTimer(p.hold)
		defer t.Stop()
		select {
		case <-r.Context().Done():
			// The client gave up; nobody is left to answer.
		case <-t.C:
			writeJSON(w, http.StatusGatewayTimeout, map[string]string{"error": "temporarily_unavailable", "error_description": "the token service timed out"})
		case <-p.closed:
			writeJSON(w, http.StatusGatewayTimeout, map[string]string{"error": "temporarily_unavailable", "error_description": "the token service is shutting down"})
		}
	default:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": "the token service failed"})
	}
}

// handleRevoke implements RFC 7009. Revoking any token revokes its grant.
// Unknown tokens, and tokens of another client, are answered 200 without
// effect, so the endpoint reveals nothing.
func (p *Provider) handleRevoke(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "the request body could not be read"})
		return
	}
	clientID, _, err := p.authenticateClient(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="Sandbox Chat"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "client authentication failed"})
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "token is required"})
		return
	}
	p.mu.Lock()
	t := p.idx.access[token]
	if t == nil {
		t = p.idx.refresh[token]
	}
	var err2 error
	if t != nil && t.ClientID == clientID {
		if g := p.st.Grants[t.UserID]; g != nil {
			p.revokeLocked(g)
			err2 = p.saveLocked()
		}
	}
	p.mu.Unlock()
	if err2 != nil {
		p.log.Error("sandbox revoke", "err", err2)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": "the revocation could not be saved"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

func (p *Provider) handleMetadata(w http.ResponseWriter, _ *http.Request) {
	e := p.Endpoints()
	scopes := make([]string, 0, len(scopeWords))
	for s := range scopeWords {
		scopes = append(scopes, s)
	}
	slices.Sort(scopes)
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.base,
		"authorization_endpoint":                e.Authorize,
		"token_endpoint":                        e.Token,
		"revocation_endpoint":                   e.Revoke,
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":      []string{"S256"},
		"scopes_supported":                      scopes,
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
