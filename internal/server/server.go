// Package server assembles the HTTP surface (pages, JSON API, health and
// metrics) and runs it with the background workers, shutting both down
// cleanly.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"taskjuice/internal/account"
	"taskjuice/internal/agent"
	"taskjuice/internal/ai"
	"taskjuice/internal/api"
	"taskjuice/internal/authn"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/engine"
	"taskjuice/internal/llm"
	"taskjuice/internal/mail"
	"taskjuice/internal/notify"
	"taskjuice/internal/portal"
	"taskjuice/internal/spend"
	"taskjuice/internal/teardown"
	"taskjuice/internal/trigger"
	"taskjuice/internal/web"
	"taskjuice/internal/workflow"
)

// Options are the parts the server is built from.
type Options struct {
	DB          *db.DB
	Accounts    *account.Service
	Connections *connection.Service
	Refresher   *connection.Refresher
	Catalog     *catalog.Catalog
	Workflows   *workflow.Service
	Engine      *engine.Engine
	Webhooks    *trigger.Webhooks
	Scheduler   *trigger.Scheduler
	Poller      *trigger.Poller // polls the apps of published app triggers
	// Listener keeps the webhooks of published instant app triggers and
	// receives their deliveries.
	Listener *trigger.Listener
	Notify   *notify.Service
	Models   *llm.Service   // the workspaces' model providers
	Spend    *spend.Service // model spend and its cap
	// Mail, when set, delivers the outbox's email over SMTP.
	Mail          *mail.Outbox
	Log           *slog.Logger
	SecureCookies bool
	// HSTS makes every response tell browsers to use https only (the
	// public URL is https).
	HSTS bool
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client; empty: never read.
	TrustedProxies []netip.Prefix
	// BaseURL is the public URL, for OAuth redirects.
	BaseURL string
	// Sandbox, when set, is the built-in sandbox provider, served under
	// /sandbox.
	Sandbox http.Handler
	// RefreshEvery is the pause between refresher passes (default 5s).
	RefreshEvery time.Duration
	// Metrics is the registry served at /metrics, already handed to the
	// engine and the refresher (default: a registry of the server alone).
	Metrics *Metrics
}

// Server is the assembled HTTP handler and the workers that run beside it.
type Server struct {
	opts    Options
	handler http.Handler
	metrics *Metrics
	portal  *portal.Service
	pages   *web.Handler
}

// New builds the server.
func New(o Options) (*Server, error) {
	auth := authn.New(o.Accounts, o.SecureCookies)
	auth.TrustProxies(o.TrustedProxies)
	waker := &clientWaker{}
	if o.Engine != nil {
		waker.engine = o.Engine
	}
	clients := portal.NewService(o.DB, o.Accounts, o.Connections, o.Workflows, o.Catalog, waker)
	agents := agent.NewService(o.Workflows, o.Connections, o.Catalog, o.Models)
	td := &teardown.Service{Accounts: o.Accounts, Connections: o.Connections, Catalog: o.Catalog, Workflows: o.Workflows,
		CallbackURL: o.BaseURL + "/oauth/callback", Log: o.Log}
	pages, err := web.New(web.Deps{
		Teardown: td,
		Agents:   agents,
		Accounts: o.Accounts, Auth: auth, Log: o.Log, Connections: o.Connections,
		Refresher: o.Refresher, Catalog: o.Catalog, Workflows: o.Workflows, Engine: o.Engine, Webhooks: o.Webhooks, Notify: o.Notify, BaseURL: o.BaseURL,
		Models: o.Models, Spend: o.Spend, Portal: clients, Polls: pollStates(o.Poller),
		Instants: instantStates(o.Listener),
	})
	if err != nil {
		return nil, err
	}
	m := o.Metrics
	if m == nil {
		m = NewMetrics()
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m.registry.MustRegister(&stateCollector{db: o.DB, conns: o.Connections, now: time.Now, log: log})
	s := &Server{opts: o, metrics: m, portal: clients, pages: pages}
	waker.s = s
	if o.Engine != nil && o.Models != nil && o.Spend != nil {
		// AI steps and model-driven agents call the workspaces' own
		// providers, under their spend caps.
		o.Engine.UseModels(ai.New(o.Models, o.Spend, o.Catalog))
	}
	if o.Mail != nil {
		s.UseMail(o.Mail)
	}
	if o.Scheduler != nil && o.Workflows != nil {
		o.Workflows.OnLiveChange(s.followSchedule)
		o.Accounts.OnTimezoneChange(s.followTimezone)
	}
	if (o.Poller != nil || o.Listener != nil) && o.Workflows != nil {
		o.Workflows.OnLiveChange(s.followPoll)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	api.New(api.Deps{
		Accounts: o.Accounts, Auth: auth, Log: o.Log, Connections: o.Connections,
		Refresher: o.Refresher, Catalog: o.Catalog, Workflows: o.Workflows, Engine: o.Engine, BaseURL: o.BaseURL,
		Agents: agents, Portal: clients,
		Models: o.Models, Spend: o.Spend, Triggers: triggerStates(o.Poller), Instants: instantTriggerStates(o.Listener),
		Alerts: o.Notify, ChatTargets: notify.ChatTargetsOf(o.Connections), EmailOn: pages.EmailOn, Teardown: td,
	}).Register(mux)
	pages.Register(mux)
	if o.Sandbox != nil {
		mux.Handle("/sandbox/", http.StripPrefix("/sandbox", o.Sandbox))
	}
	if o.Webhooks != nil {
		mux.Handle("/webhooks/{token}", o.Webhooks)
	}

	if o.Listener != nil {
		mux.Handle(trigger.TriggerDeliveryPath+"{token}", o.Listener)
		mux.Handle(trigger.AppDeliveryPath+"{app}", o.Listener)
	}

	cop := http.NewCrossOriginProtection()
	// Webhooks are called by other systems, and authenticate on their own.
	cop.AddInsecureBypassPattern("/webhooks/{token}")
	cop.AddInsecureBypassPattern(trigger.TriggerDeliveryPath + "{token}")
	cop.AddInsecureBypassPattern(trigger.AppDeliveryPath + "{app}")
	cop.SetDenyHandler(http.HandlerFunc(crossOriginDenied))
	s.handler = s.observe(recoverPanics(o.Log, securityHeaders(o.HSTS, cop.Handler(checkText(s.refuseText, withAddress(auth, mux))))))
	return s, nil
}

// UseMail makes the server deliver email through o (its mailer worker),
// and teaches o to mint the links of invitation and client-request emails
// as they are sent.
func (s *Server) UseMail(o *mail.Outbox) {
	s.opts.Mail = o
	s.pages.SetEmailOn(true)
	o.Expand(account.MailInvitation, s.opts.Accounts.InvitationExpander(s.opts.BaseURL))
	o.Expand(portal.MailRequest, s.portal.LinkExpander(s.opts.BaseURL))
}

// Handler is the whole HTTP surface.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.opts.DB.Ping(ctx); err != nil {
		s.opts.Log.WarnContext(ctx, "readiness check failed", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("database unreachable\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// crossOriginDenied answers a state-changing request from another site.
func crossOriginDenied(w http.ResponseWriter, r *http.Request) {
	const msg = "Cross-origin request refused: this action can only be submitted from TaskJuice's own pages."
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":{"code":"cross_origin","message":"` + msg + `"}}` + "\n"))
		return
	}
	http.Error(w, msg, http.StatusForbidden)
}

// contentSecurityPolicy allows only the product's own scripts, styles and
// images: no inline script, nothing from elsewhere, no framing.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"

// hstsPolicy keeps browsers on https for a year once they have seen it.
const hstsPolicy = "max-age=31536000; includeSubDomains"

// securityHeaders sets the headers every response carries.
func securityHeaders(hsts bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if hsts {
			h.Set("Strict-Transport-Security", hstsPolicy)
		}
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panic in a handler into a logged 500, so no panic
// reaches a person.
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.ErrorContext(r.Context(), "handler panicked", "method", r.Method, "path", r.URL.Path, "panic", p)
				http.Error(w, "Something went wrong on our side. It has been logged; please try again.", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Worker is a background job owned by the server: it runs until ctx ends.
type Worker struct {
	Name string
	Run  func(ctx context.Context) error
}

// Workers lists the background work of this server.
func (s *Server) Workers() []Worker {
	w := []Worker{{Name: "prune-sessions", Run: s.pruneLoop}}
	if s.opts.Refresher != nil {
		every := s.opts.RefreshEvery
		if every == 0 {
			every = 5 * time.Second
		}
		w = append(w, Worker{Name: "token-refresher", Run: func(ctx context.Context) error { return s.opts.Refresher.Run(ctx, every) }})
	}
	if s.opts.Engine != nil {
		w = append(w,
			Worker{Name: "run-engine", Run: s.opts.Engine.Run},
			Worker{Name: "reauthorizations", Run: s.reauthLoop},
			Worker{Name: "bulk-actions", Run: s.bulkLoop},
			Worker{Name: "prune-runs", Run: s.pruneRunsLoop},
			Worker{Name: "index-runs", Run: s.indexRunsLoop})
	}
	if s.opts.Notify != nil {
		w = append(w, Worker{Name: "notifications", Run: s.notifyLoop})
	}
	if s.opts.Mail != nil {
		w = append(w, Worker{Name: "mailer", Run: func(ctx context.Context) error { s.opts.Mail.Run(ctx, 2*time.Second); return nil }})
	}
	if s.opts.Poller != nil {
		w = append(w, Worker{Name: "poll-triggers", Run: func(ctx context.Context) error { return s.opts.Poller.Run(ctx, 2*time.Second) }})
	}
	if s.opts.Listener != nil {
		w = append(w, Worker{Name: "instant-triggers", Run: func(ctx context.Context) error { return s.opts.Listener.Run(ctx, 5*time.Second) }})
	}
	if s.opts.Scheduler != nil {
		w = append(w, Worker{Name: "schedules", Run: func(ctx context.Context) error { return s.opts.Scheduler.Run(ctx, 5*time.Second) }})
	}
	return w
}

func (s *Server) pruneLoop(ctx context.Context) error {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if n, err := s.opts.Accounts.Prune(ctx); err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("prune sessions", "err", err)
		} else if n > 0 {
			s.opts.Log.Debug("pruned expired sessions and sign-in failures", "rows", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// followSchedule keeps the scheduler in step with what is live: a
// published schedule trigger is (re)synced, anything else removed.
func (s *Server) followSchedule(ctx context.Context, l workflow.Live, ok bool) {
	var err error
	if ok && l.Status.Dispatching() && l.Graph.Trigger != nil && l.Graph.Trigger.Kind == workflow.TriggerSchedule {
		cfg, derr := workflow.DecodeConfig(*l.Graph.Trigger)
		if derr != nil {
			s.opts.Log.Warn("schedule trigger config", "workflow", l.WorkflowID, "err", derr)
			return
		}
		sc := cfg.(*workflow.ScheduleConfig)
		tz := sc.Timezone
		if strings.TrimSpace(tz) == "" {
			// A schedule naming no time zone keeps the account's default.
			if tz, err = account.WorkspaceTimezone(ctx, s.opts.DB.Read(), l.WorkspaceID); err != nil {
				s.opts.Log.Error("sync schedule", "workflow", l.WorkflowID, "err", err)
				return
			}
		}
		err = s.opts.Scheduler.Sync(ctx, l.WorkflowID, sc.Cron, tz)
	} else {
		err = s.opts.Scheduler.Remove(ctx, l.WorkflowID)
	}
	if err != nil {
		s.opts.Log.Error("sync schedule", "workflow", l.WorkflowID, "err", err)
	}
}

// followTimezone syncs again every schedule of the account after its
// default time zone changed: those that name none move to the new one.
func (s *Server) followTimezone(ctx context.Context, accountID string) {
	ids, err := db.Strings(ctx, s.opts.DB.Read(), `SELECT ss.workflow_id FROM schedule_state ss JOIN workflows w ON w.id = ss.workflow_id
		JOIN workspaces s ON s.id = w.workspace_id WHERE s.account_id = $1`, accountID)
	if err != nil {
		s.opts.Log.Error("schedules of a new default time zone", "account", accountID, "err", err)
		return
	}
	for _, id := range ids {
		l, ok, err := s.opts.Workflows.Live(ctx, id)
		if err != nil {
			s.opts.Log.Error("schedules of a new default time zone", "workflow", id, "err", err)
			continue
		}
		s.followSchedule(ctx, l, ok)
	}
}

// pruneRunsEvery is how often finished runs past their workspace's
// retention are deleted.
const pruneRunsEvery = 10 * time.Minute

// pruneRunsLoop deletes finished runs past retention, a pass a minute
// after start and every pruneRunsEvery after, and logs what it removed.
func (s *Server) pruneRunsLoop(ctx context.Context) error {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rep, err := s.opts.Engine.Prune(ctx)
		if err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("prune runs", "err", err)
		}
		if rep.Runs > 0 {
			s.opts.Log.Info("pruned runs past retention", "runs", rep.Runs, "batches", rep.Batches, "workspaces", rep.Workspaces, "took", rep.Took)
		}
		t.Reset(pruneRunsEvery)
	}
}

// indexRunsLoop makes new runs' payloads and finished runs' outputs
// searchable, a batch at a time, then looks again a moment later.
func (s *Server) indexRunsLoop(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if _, err := s.opts.Engine.IndexRuns(ctx); err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("index runs for search", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// bulkLoop works through bulk actions on runs, a batch at a time, until
// none is left, then looks again a moment later.
func (s *Server) bulkLoop(ctx context.Context) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		for ctx.Err() == nil {
			did, err := s.opts.Engine.WorkBulk(ctx, s.connectionStatus)
			if err != nil && ctx.Err() == nil {
				s.opts.Log.Warn("bulk actions", "err", err)
			}
			if !did || err != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// connectionStatus reads a connection's status, for server work.
func (s *Server) connectionStatus(ctx context.Context, id string) (string, error) {
	st, err := s.opts.Connections.StatusOf(ctx, id)
	return string(st), err
}

// notifyLoop raises and resolves the reauthorization alerts.
func (s *Server) notifyLoop(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var lastExpiring time.Time
	for {
		if _, err := s.opts.Notify.Consume(ctx); err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("notifications", "err", err)
		}
		if _, err := s.opts.Notify.Recoveries(ctx); err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("failure incidents", "err", err)
		}
		if _, err := s.opts.Notify.DeliverAlerts(ctx); err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("alert deliveries", "err", err)
		}
		if _, err := s.opts.Notify.Digests(ctx); err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("failure digests", "err", err)
		}
		// Lifetimes are counted in days: looking every few minutes is plenty.
		if time.Since(lastExpiring) > 5*time.Minute {
			lastExpiring = time.Now()
			if _, err := s.opts.Notify.Expiring(ctx); err != nil && ctx.Err() == nil {
				s.opts.Log.Warn("expiring credentials", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// reauthLoop acts on connections that came back, releasing the runs they
// held.
func (s *Server) reauthLoop(ctx context.Context) error {
	// Often: held agent runs are to be running again within a couple of
	// seconds of the reconnect, and a look finds nothing to do cheaply.
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		if n, err := s.opts.Engine.ConsumeReauthorizations(ctx); err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("consume reauthorizations", "err", err)
		} else if n > 0 {
			s.opts.Log.Info("resumed runs held for reauthorization", "runs", n)
		}
		// Runs that parked for a client's connection while it was being
		// bound: connecting wakes them at once, this catches the rest.
		if n, err := s.opts.Engine.ResumeClientWaits(ctx, ""); err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("resume client waits", "err", err)
		} else if n > 0 {
			s.opts.Log.Info("resumed runs waiting for a client's connection", "runs", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ShutdownTimeout bounds how long in-flight requests may take to finish
// once shutdown begins.
const ShutdownTimeout = 20 * time.Second

// Serve serves h on ln and runs the workers until ctx ends, then stops
// accepting, lets in-flight requests finish (up to ShutdownTimeout), and
// stops the workers at the same time (the engine finishing the steps it is
// executing). It returns once everything has stopped.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger, workers ...Worker) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Event streams end when shutdown begins; other requests finish.
	drain := make(chan struct{})
	srv.RegisterOnShutdown(func() { close(drain) })
	srv.BaseContext = func(net.Listener) context.Context { return web.WithDrain(context.WithoutCancel(ctx), drain) }
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(workCtx); err != nil {
				log.Error("worker stopped", "worker", w.Name, "err", err)
			}
		}()
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	var err error
	select {
	case err = <-serveErr:
	case <-ctx.Done():
		log.Info("shutting down: finishing in-flight requests and steps")
		// The workers stop at once too: the engine claims no more runs,
		// finishes the steps it is executing and gives its runs up, while
		// the server finishes its requests.
		stopWork()
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		err = srv.Shutdown(sctx)
		cancel()
		if serr := <-serveErr; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}
	stopWork()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// withAddress gives each request's context the address it came from (as
// the sign-in limits read it), for the audit entries it writes.
func withAddress(auth *authn.Authenticator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner := r.WithContext(account.WithAddress(r.Context(), auth.ClientIP(r)))
		next.ServeHTTP(w, inner)
		r.Pattern = inner.Pattern // the route the mux matched, for the metrics
	})
}
