// Package web serves the HTML pages: one route table (Register), one small
// handler per page, html/template over embedded files parsed once at start,
// and embedded static files at checksummed URLs.
package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/agent"
	"taskjuice/internal/apperr"
	"taskjuice/internal/authn"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/engine"
	"taskjuice/internal/llm"
	"taskjuice/internal/notify"
	"taskjuice/internal/portal"
	"taskjuice/internal/spend"
	"taskjuice/internal/teardown"
	"taskjuice/internal/textcheck"
	"taskjuice/internal/trigger"
	"taskjuice/internal/workflow"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Deps are the domain services the pages use.
type Deps struct {
	Accounts    *account.Service
	Auth        *authn.Authenticator
	Log         *slog.Logger
	Connections *connection.Service
	Refresher   *connection.Refresher
	Catalog     *catalog.Catalog
	Workflows   *workflow.Service
	Engine      *engine.Engine
	Webhooks    *trigger.Webhooks
	Notify      *notify.Service
	Models      *llm.Service   // the workspaces' model providers
	Spend       *spend.Service // model spend and its cap
	Agents      *agent.Service
	Portal      *portal.Service
	// Teardown deletes workspaces and the account, and exports its data.
	Teardown *teardown.Service
	// Polls tells where each polling app trigger stands; nil shows nothing.
	Polls PollStates
	// Instants tells where each instant app trigger stands; nil shows
	// nothing.
	Instants InstantStates
	// BaseURL is the public URL of this TaskJuice, for OAuth redirects.
	BaseURL string
	// HTTPClient calls apps (identity, revocation).
	HTTPClient *http.Client
	// EmailOn says this server sends email; SetEmailOn changes it later.
	EmailOn bool
}

// Handler serves the pages.
type Handler struct {
	Deps
	accounts *account.Service
	auth     *authn.Authenticator
	log      *slog.Logger
	pages    map[string]*template.Template
	static   *staticSet
	// emailOn: see SetEmailOn.
	emailOn atomic.Bool
}

// New parses the templates and indexes the static files.
func New(d Deps) (*Handler, error) {
	st, err := newStaticSet(staticFiles)
	if err != nil {
		return nil, err
	}
	if d.HTTPClient == nil {
		d.HTTPClient = &http.Client{Timeout: 20 * time.Second}
	}
	h := &Handler{Deps: d, accounts: d.Accounts, auth: d.Auth, log: d.Log, static: st}
	h.emailOn.Store(d.EmailOn)
	if err := h.parseTemplates(); err != nil {
		return nil, err
	}
	return h, nil
}

// Register adds every page to mux. Workspace pages live under
// /{workspaceSlug}/, which would clash with fixed first segments in one
// mux, so they sit in their own mux mounted as the fallback.
func (h *Handler) Register(mux *http.ServeMux) {
	ws := http.NewServeMux()
	top, inWS := &recorder{mux: mux}, &recorder{mux: ws}
	h.register(top, inWS)
	pages := &pageFinder{top: mux, ws: ws, back: map[string]bool{}}
	top.backFromPosts(pages)
	inWS.backFromPosts(pages)
	mux.Handle("/", ws)
}

// Routes lists the pattern of every page, workspace pages included, for
// tests that walk them all.
func (h *Handler) Routes() []string {
	var rec patterns
	h.register(&rec, &rec)
	return rec
}

// router is what registering pages needs of a mux.
type router interface {
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// patterns records the patterns registered on it.
type patterns []string

func (p *patterns) HandleFunc(pattern string, _ func(http.ResponseWriter, *http.Request)) {
	*p = append(*p, pattern)
}

func (h *Handler) register(mux, ws router) {
	mux.HandleFunc("GET /{$}", h.home)
	mux.HandleFunc("GET /signin", h.signinForm)
	mux.HandleFunc("POST /signin", h.signin)
	mux.HandleFunc("POST /signout", h.signout)
	mux.HandleFunc("GET /signin/mfa", h.signinCode)
	mux.HandleFunc("POST /signin/mfa", h.signinCodeSubmit)
	mux.HandleFunc("POST /signin/mfa/cancel", h.signinCodeCancel)
	mux.HandleFunc("GET /account/security", h.enrolling(h.security))
	mux.HandleFunc("POST /account/sessions/{id}/end", h.enrolling(h.endSession))
	mux.HandleFunc("POST /account/sessions/end-all", h.enrolling(h.endAllSessions))
	mux.HandleFunc("POST /account/security/mfa/setup", h.enrolling(h.setupMFA))
	mux.HandleFunc("POST /account/security/mfa/enable", h.enrolling(h.enableMFA))
	mux.HandleFunc("POST /account/security/mfa/backup-codes", h.enrolling(h.regenerateBackupCodes))
	mux.HandleFunc("POST /account/security/mfa/disable", h.enrolling(h.disableMFA))
	mux.HandleFunc("POST /account/security/mfa/require", h.enrolling(h.requireMFA))
	mux.HandleFunc("GET /dashboard", h.staff(h.dashboard))
	mux.HandleFunc("POST /dashboard/workspaces", h.staff(h.createWorkspace))
	mux.HandleFunc("GET /runs", h.staff(h.allRuns))
	mux.HandleFunc("GET /team", h.staff(h.team))
	mux.HandleFunc("GET /settings/audit", h.staff(h.auditLog))
	mux.HandleFunc("POST /team/invitations", h.staff(h.inviteTeammate))
	mux.HandleFunc("POST /team/invitations/{id}/resend", h.staff(h.resendTeamInvitation))
	mux.HandleFunc("POST /team/invitations/{id}/revoke", h.staff(h.revokeTeamInvitation))
	mux.HandleFunc("POST /team/members/{userId}/role", h.staff(h.changeTeammateRole))
	mux.HandleFunc("POST /team/members/{userId}/remove", h.staff(h.removeTeammate))
	mux.HandleFunc("GET /settings/general", h.staff(h.generalSettings))
	mux.HandleFunc("POST /settings/general", h.staff(h.saveGeneralSettings))
	mux.HandleFunc("POST /settings/general/export", h.staff(h.exportAccount))
	mux.HandleFunc("POST /settings/general/delete", h.staff(h.deleteAccount))
	// The page's earlier address.
	mux.HandleFunc("GET /settings/account", h.staff(h.generalSettings))
	mux.HandleFunc("POST /settings/account", h.staff(h.saveGeneralSettings))
	mux.HandleFunc("POST /settings/account/alerts", h.staff(h.saveAlertSettings))
	mux.HandleFunc("POST /settings/account/transfer", h.staff(h.transferOwnership))
	mux.HandleFunc("GET /settings/api-tokens", h.staff(h.apiTokens))
	mux.HandleFunc("POST /settings/api-tokens", h.staff(h.createAPIToken))
	mux.HandleFunc("POST /settings/api-tokens/{id}/revoke", h.staff(h.revokeAPIToken))
	mux.HandleFunc("POST /settings/api-tokens/{id}/revoke-staff", h.staff(h.revokeStaffToken))
	mux.HandleFunc("GET /portal", h.client(h.portal))
	mux.HandleFunc("GET /portal/connections", h.client(h.portalConnections))
	mux.HandleFunc("GET /portal/connections/{id}", h.client(h.portalConnection))
	mux.HandleFunc("POST /portal/connections/{id}/refresh", h.client(h.portalRefresh))
	mux.HandleFunc("POST /portal/connections/{id}/reconnect", h.client(h.portalReconnect))
	mux.HandleFunc("GET /portal/requests/{id}", h.client(h.portalRequest))
	mux.HandleFunc("POST /portal/requests/{id}/connect/{request}", h.client(h.portalConnect))
	mux.HandleFunc("GET /portal/link/{token}", h.portalLink)
	mux.HandleFunc("/portal/", h.client(h.portalNotFound))
	mux.HandleFunc("GET /oauth/callback", h.oauthCallback)
	mux.HandleFunc("GET /invitations/{token}", h.invitation)
	mux.HandleFunc("POST /invitations/{token}", h.acceptInvitation)
	mux.HandleFunc("GET /static/{file}", h.static.serve)
	mux.HandleFunc("GET /favicon.ico", h.static.favicon)

	ws.HandleFunc("GET /{workspaceSlug}", h.workspaceRedirect)
	ws.HandleFunc("GET /{workspaceSlug}/{$}", h.inWorkspace("overview", h.workspaceHome))
	ws.HandleFunc("GET /{workspaceSlug}/agents", h.inWorkspace("agents", h.agents))
	ws.HandleFunc("POST /{workspaceSlug}/agents", h.inWorkspace("agents", h.createAgent))
	ws.HandleFunc("GET /{workspaceSlug}/agents/{id}", h.inWorkspace("agents", h.agentPage))
	ws.HandleFunc("POST /{workspaceSlug}/agents/{id}/run", h.inWorkspace("agents", h.runAgent))
	ws.HandleFunc("GET /{workspaceSlug}/workflows", h.inWorkspace("workflows", h.workflows))
	ws.HandleFunc("POST /{workspaceSlug}/workflows", h.inWorkspace("workflows", h.createWorkflow))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/import", h.inWorkspace("workflows", h.importWorkflow))
	ws.HandleFunc("GET /{workspaceSlug}/workflows/{id}", h.inWorkspace("workflows", h.workflowDetail))
	ws.HandleFunc("GET /{workspaceSlug}/workflows/{id}/export", h.inWorkspace("workflows", h.exportWorkflow))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/deactivate", h.inWorkspace("workflows", h.deactivateWorkflow))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/settings", h.inWorkspace("workflows", h.workflowSettings))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/alerts", h.inWorkspace("workflows", h.workflowAlerts))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/state", h.inWorkspace("workflows", h.workflowState))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/webhook/regenerate", h.inWorkspace("workflows", h.regenerateWebhook))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/webhook/secret", h.inWorkspace("workflows", h.setWebhookSecret))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/run", h.inWorkspace("workflows", h.runWorkflow))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/versions/{version}/activate", h.inWorkspace("workflows", h.activateVersion))
	ws.HandleFunc("GET /{workspaceSlug}/connections", h.inWorkspace("connections", h.connections))
	ws.HandleFunc("GET /{workspaceSlug}/connections/new", h.inWorkspace("connections", h.connectForm))
	ws.HandleFunc("POST /{workspaceSlug}/connections/new", h.inWorkspace("connections", h.connect))
	ws.HandleFunc("GET /{workspaceSlug}/connections/{id}", h.inWorkspace("connections", h.connectionDetail))
	ws.HandleFunc("POST /{workspaceSlug}/connections/{id}/label", h.inWorkspace("connections", h.renameConnection))
	ws.HandleFunc("POST /{workspaceSlug}/connections/{id}/refresh", h.inWorkspace("connections", h.refreshConnection))
	ws.HandleFunc("GET /{workspaceSlug}/connections/{id}/reconnect", h.inWorkspace("connections", h.reconnectConfirm))
	ws.HandleFunc("POST /{workspaceSlug}/connections/{id}/reconnect", h.inWorkspace("connections", h.reconnect))
	ws.HandleFunc("POST /{workspaceSlug}/connections/{id}/release-held", h.inWorkspace("connections", h.releaseHeld))
	ws.HandleFunc("POST /{workspaceSlug}/connections/{id}/revoke", h.inWorkspace("connections", h.revokeConnection))
	ws.HandleFunc("POST /{workspaceSlug}/connections/{id}/allowed-domains", h.inWorkspace("connections", h.saveAllowedDomains))
	ws.HandleFunc("POST /{workspaceSlug}/connections/{id}/resume-held", h.inWorkspace("runs", h.resumeHeld))
	ws.HandleFunc("GET /{workspaceSlug}/live", h.inWorkspace("live", h.live))
	ws.HandleFunc("GET /{workspaceSlug}/monitoring/workflow-runs", h.inWorkspace("runs", h.runs))
	ws.HandleFunc("POST /{workspaceSlug}/monitoring/workflow-runs/bulk", h.inWorkspace("runs", h.bulkRuns))
	ws.HandleFunc("GET /{workspaceSlug}/monitoring/bulk-actions/{id}", h.inWorkspace("runs", h.bulkJob))
	ws.HandleFunc("GET /{workspaceSlug}/monitoring/failures", h.inWorkspace("failures", h.failures))
	ws.HandleFunc("POST /{workspaceSlug}/monitoring/failures/bulk", h.inWorkspace("failures", h.failuresBulk))
	ws.HandleFunc("GET /{workspaceSlug}/monitoring/workflow-runs/{workflowId}/{runId}", h.inWorkspace("runs", h.runDetail))
	ws.HandleFunc("POST /{workspaceSlug}/monitoring/workflow-runs/{workflowId}/{runId}/{action}", h.inWorkspace("runs", h.runAction))
	ws.HandleFunc("GET /{workspaceSlug}/workspace/members", h.inWorkspace("members", h.members))
	ws.HandleFunc("GET /{workspaceSlug}/clients/requests", h.inWorkspace("requests", h.clientRequests))
	ws.HandleFunc("POST /{workspaceSlug}/clients/requests/send", h.inWorkspace("requests", h.dispatchClientRequests))
	ws.HandleFunc("POST /{workspaceSlug}/clients/requests/{id}/resend", h.inWorkspace("requests", h.resendClientRequest))
	ws.HandleFunc("POST /{workspaceSlug}/clients/requests/queue/{id}/remove", h.inWorkspace("requests", h.unqueueClientRequest))
	ws.HandleFunc("POST /{workspaceSlug}/connections/{id}/request-reconnect", h.inWorkspace("connections", h.requestReconnect))
	ws.HandleFunc("POST /{workspaceSlug}/workflows/{id}/edit/steps/{node}/request", h.inWorkspace("workflows", h.queueClientRequest))
	ws.HandleFunc("POST /{workspaceSlug}/workspace/members/invite", h.inWorkspace("members", h.inviteClient))
	ws.HandleFunc("POST /{workspaceSlug}/workspace/retention", h.inWorkspace("workspace", h.saveRetention))
	ws.HandleFunc("POST /{workspaceSlug}/workspace/rename", h.inWorkspace("workspace", h.renameWorkspace))
	ws.HandleFunc("GET /{workspaceSlug}/workspace/delete", h.inWorkspace("workspace", h.deleteWorkspacePage))
	ws.HandleFunc("POST /{workspaceSlug}/workspace/delete", h.inWorkspace("workspace", h.deleteWorkspace))
	ws.HandleFunc("POST /{workspaceSlug}/workspace/members/invitations/{id}/resend", h.inWorkspace("members", h.resendInvitation))
	ws.HandleFunc("POST /{workspaceSlug}/workspace/members/invitations/{id}/revoke", h.inWorkspace("members", h.revokeInvitation))
	ws.HandleFunc("GET /{workspaceSlug}/analytics/costs", h.inWorkspace("costs", h.costs))
	ws.HandleFunc("POST /{workspaceSlug}/analytics/costs/cap", h.inWorkspace("costs", h.setSpendCap))
	ws.HandleFunc("GET /{workspaceSlug}/settings/models", h.inWorkspace("models", h.modelProviders))
	ws.HandleFunc("POST /{workspaceSlug}/settings/models", h.inWorkspace("models", h.saveModelProvider))
	ws.HandleFunc("GET /{workspaceSlug}/settings/models/{id}", h.inWorkspace("models", h.editModelProvider))
	ws.HandleFunc("POST /{workspaceSlug}/settings/models/{id}", h.inWorkspace("models", h.saveModelProvider))
	ws.HandleFunc("POST /{workspaceSlug}/settings/models/{id}/delete", h.inWorkspace("models", h.deleteModelProvider))
	ws.HandleFunc("GET /{workspaceSlug}/notifications", h.inWorkspace("notifications", h.notifications))
	ws.HandleFunc("POST /{workspaceSlug}/notifications/read", h.inWorkspace("notifications", h.markRead))
	ws.HandleFunc("POST /{workspaceSlug}/notifications/{id}/read", h.inWorkspace("notifications", h.markRead))
	h.registerEditor(ws)
	ws.HandleFunc("/", h.notFound)
}

// view is what every page template receives.
type view struct {
	Title      string
	P          *account.Principal
	Workspace  *account.Workspace
	Workspaces []account.Workspace
	Section    string
	Flash      string
	// FlashError is a refusal carried across a redirect from the form
	// that was refused.
	FlashError string
	Data       any
	// Unread counts the person's unread notifications in the workspace (the
	// bell); Banner holds the open reauthorization alerts.
	Unread int
	Banner []notify.Notification
	// Reminders are the open reauthorization alerts the person marked
	// read: their connections are still broken.
	Reminders []notify.Notification
	// Alerts fingerprints the unread notifications the page was drawn
	// with, so its live stream can tell a change that came before it
	// connected.
	Alerts string
	// OnceLink is a link staff hand over themselves, email being off,
	// shown on this one answer only.
	OnceLink *onceLink
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04 UTC") },
	"whenp": func(t *time.Time) string {
		if t == nil {
			return "—"
		}
		return t.UTC().Format("2 Jan 2006 15:04 UTC")
	},
	"can": func(p *account.Principal, c string) bool { return p != nil && p.Can(account.Capability(c)) },
	// statusLabel capitalises a status word: "active" → "Active".
	"statusLabel":   func(s fmt.Stringer) string { return capitalize(s.String()) },
	"configured":    func(a catalog.App) bool { ok, _ := a.Configured(); return ok },
	"short":         short,
	"minus":         func(a, b int) int { return a - b },
	"runDuration":   duration,
	"notConfigured": func(a catalog.App) string { _, why := a.Configured(); return why },
	"initial": func(s string) string {
		for _, r := range s {
			return strings.ToUpper(string(r))
		}
		return "?"
	},
}

func capitalize(s string) string {
	if s == "" {
		return ""
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (h *Handler) parseTemplates() error {
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return fmt.Errorf("list templates: %w", err)
	}
	f := template.FuncMap{"static": h.static.url, "emailOff": func() bool { return !h.emailOn.Load() }}
	for k, v := range funcs {
		f[k] = v
	}
	h.pages = map[string]*template.Template{}
	for _, name := range names {
		page := strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")
		if page == "layout" {
			continue
		}
		t, err := template.New(page).Funcs(f).ParseFS(templateFiles, "templates/layout.html", name)
		if err != nil {
			return fmt.Errorf("parse template %s: %w", page, err)
		}
		h.pages[page] = t
	}
	return nil
}

// render executes a page into a buffer first, so a template failure becomes
// a clean 500 instead of half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	if v.Flash == "" && v.FlashError == "" {
		v.Flash, v.FlashError = takeFlash(w, r)
	}
	if v.OnceLink == nil {
		v.OnceLink = h.takeOnceLink(w, r)
	}
	body, err := h.execute(page, v)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeHTML(w, status, body)
}

func (h *Handler) execute(page string, v view) ([]byte, error) {
	t, ok := h.pages[page]
	if !ok {
		return nil, fmt.Errorf("no template %q", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		return nil, fmt.Errorf("render %s: %w", page, err)
	}
	return buf.Bytes(), nil
}

func writeHTML(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ErrorPage shows err as errorPage does, outside any page's own handler
// (a request refused before it reached one).
func (h *Handler) ErrorPage(w http.ResponseWriter, r *http.Request, err error) {
	h.errorPage(w, r, nil, err)
}

// errorPage shows a user-facing error with its status; anything else is
// logged once and shown as a generic 500.
func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, p *account.Principal, err error) {
	if db.IsUnstorableText(err) {
		h.log.WarnContext(r.Context(), "text the database cannot store got past the edge check", "method", r.Method, "path", r.URL.Path, "err", err)
		err = textcheck.ErrUnstorable
	}
	status := apperr.Status(err)
	msg := "Something went wrong on our side. It has been logged; please try again."
	if e, ok := apperr.As(err); ok {
		msg = e.Message
	} else {
		h.log.ErrorContext(r.Context(), "page failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	title := http.StatusText(status)
	body, rerr := h.execute("error", view{Title: title, P: p, Data: errorData{Status: status, Title: title, Message: msg}})
	if rerr != nil {
		h.fail(w, r, rerr)
		return
	}
	writeHTML(w, status, body)
}

type errorData struct {
	Status         int
	Title, Message string
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.log.ErrorContext(r.Context(), "page failed", "method", r.Method, "path", r.URL.Path, "err", err)
	http.Error(w, "Something went wrong on our side. It has been logged; please try again.", http.StatusInternalServerError)
}

// notFound answers an address nothing serves. A client is sent back to the
// portal instead: every address outside it is a staff route to them.
func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	var pp *account.Principal
	if p, err := h.auth.Session(r); err == nil {
		if p.IsClient() {
			redirect(w, r, landing(p))
			return
		}
		pp = &p
	}
	h.errorPage(w, r, pp, apperr.NotFound("There is no page at this address."))
}

func redirect(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// errBadForm answers a form that could not be parsed.
var errBadForm = apperr.BadRequest("bad_form", "The form could not be read; please try again.")
