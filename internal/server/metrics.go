package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// Metrics is the server's own Prometheus registry (not the global one, so
// several servers can live in one test binary): the HTTP requests it
// serves, what the engine and the refresher of this process did (counters,
// handed to them as their observer), and, read from the database at each
// scrape, the state every process shares (state.go).
type Metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	runsStarted  *prometheus.CounterVec
	runsFinished *prometheus.CounterVec
	steps        *prometheus.HistogramVec
	refreshes    *prometheus.CounterVec
}

// NewMetrics makes the registry; run.go hands it to the engine (as its
// Observer) and to the refresher before the server is built.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskjuice_http_requests_total",
			Help: "HTTP requests served, by route pattern and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "taskjuice_http_request_duration_seconds",
			Help:    "Time to serve HTTP requests, by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
		runsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskjuice_runs_started_total",
			Help: "Runs this process recorded, by workspace id.",
		}, []string{"workspace"}),
		runsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskjuice_runs_finished_total",
			Help: "Runs this process saw end, by workspace id and status (completed, failed, cancelled).",
		}, []string{"workspace", "status"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "taskjuice_step_duration_seconds",
			Help:    "Time to execute a step, by node kind and outcome (ok, failed).",
			Buckets: []float64{.0005, .001, .005, .01, .05, .1, .5, 1, 5, 30, 120},
		}, []string{"kind", "outcome"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskjuice_token_refreshes_total",
			Help: "Token refresh attempts of this process, by outcome: ok, transient (retried), permanent (the app rejected the grant) or error.",
		}, []string{"outcome"}),
	}
	m.registry.MustRegister(m.requests, m.duration, m.runsStarted, m.runsFinished, m.steps, m.refreshes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// RunStarted, RunFinished and StepExecuted make Metrics the engine's
// engine.Observer.
func (m *Metrics) RunStarted(workspaceID string) { m.runsStarted.WithLabelValues(workspaceID).Inc() }

func (m *Metrics) RunFinished(workspaceID string, status engine.Status) {
	m.runsFinished.WithLabelValues(workspaceID, string(status)).Inc()
}

func (m *Metrics) StepExecuted(kind workflow.Kind, took time.Duration, failed bool) {
	outcome := "ok"
	if failed {
		outcome = "failed"
	}
	m.steps.WithLabelValues(string(kind), outcome).Observe(took.Seconds())
}

// RefreshOutcome counts a refresh attempt (connection.RefresherOptions.Outcome).
func (m *Metrics) RefreshOutcome(outcome string) { m.refreshes.WithLabelValues(outcome).Inc() }

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer (flushing for
// server-sent events).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe records every request's route, status and duration, and logs it
// at debug level. The route is the mux pattern, so metrics never carry ids.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		elapsed := time.Since(start)
		s.metrics.requests.WithLabelValues(r.Method, route, strconv.Itoa(sw.status)).Inc()
		s.metrics.duration.WithLabelValues(r.Method, route).Observe(elapsed.Seconds())
		s.opts.Log.Debug("request", "method", r.Method, "route", route, "status", sw.status, "duration", elapsed)
	})
}
