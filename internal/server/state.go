package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/engine"
	"taskjuice/internal/mail"
	"taskjuice/internal/trigger"
)

// stateCollector reads, at each scrape, the state every process shares:
// unfinished runs by status and reason, the queue, connections by status,
// the email outbox and the polling triggers. Each read is an index range,
// not a scan of the finished runs.
type stateCollector struct {
	db    *db.DB
	conns *connection.Service
	now   func() time.Time
	log   *slog.Logger
}

var (
	runsDesc = prometheus.NewDesc("taskjuice_runs", "Unfinished runs now, by workspace id, status (pending, running, waiting, paused) and reason (the pause reason: reauth, operator, throughput, spend-cap; or the wait reason).",
		[]string{"workspace", "status", "reason"}, nil)
	dueDesc        = prometheus.NewDesc("taskjuice_runs_due", "Runs due to be worked on now (the queue's depth).", nil, nil)
	oldestDueDesc  = prometheus.NewDesc("taskjuice_runs_oldest_due_age_seconds", "How long the oldest due run has waited for a worker.", nil, nil)
	connsDesc      = prometheus.NewDesc("taskjuice_connections", "Connections by workspace id and status (active, pending, error, revoked).", []string{"workspace", "status"}, nil)
	emailsDesc     = prometheus.NewDesc("taskjuice_emails", "Email in the outbox: queued (waiting to go out, retries included) or failed (given up).", []string{"state"}, nil)
	pollsDesc      = prometheus.NewDesc("taskjuice_poll_triggers", "Polling app triggers: all, held (their connection is broken) and failing (their last poll failed).", []string{"state"}, nil)
	pollLagDesc    = prometheus.NewDesc("taskjuice_poll_lag_seconds", "How late the most overdue poll of a trigger that is not held is.", nil, nil)
	stateErrorDesc = prometheus.NewDesc("taskjuice_state_read_errors", "1 when a part of the state could not be read at this scrape.", []string{"part"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{runsDesc, dueDesc, oldestDueDesc, connsDesc, emailsDesc, pollsDesc, pollLagDesc, stateErrorDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.db == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := c.now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	failed := func(part string, err error) bool {
		v := 0.0
		if err != nil {
			c.log.Warn("metrics: read state", "part", part, "err", err)
			v = 1
		}
		gauge(stateErrorDesc, v, part)
		return err != nil
	}
	if runs, err := engine.UnfinishedRuns(ctx, c.db); !failed("runs", err) {
		for _, r := range runs {
			gauge(runsDesc, float64(r.Runs), r.WorkspaceID, r.Status, r.Reason)
		}
	}
	if due, oldest, err := engine.Queue(ctx, c.db, now); !failed("queue", err) {
		gauge(dueDesc, float64(due))
		gauge(oldestDueDesc, oldest.Seconds())
	}
	if c.conns != nil {
		if counts, err := c.conns.CountByStatus(ctx); !failed("connections", err) {
			for _, n := range counts {
				gauge(connsDesc, float64(n.Connections), n.WorkspaceID, string(n.Status))
			}
		}
	}
	if queued, given, err := mail.Backlog(ctx, c.db); !failed("emails", err) {
		gauge(emailsDesc, float64(queued), "queued")
		gauge(emailsDesc, float64(given), "failed")
	}
	if g, err := trigger.ReadPollGauges(ctx, c.db, now); !failed("polls", err) {
		gauge(pollsDesc, float64(g.Triggers), "all")
		gauge(pollsDesc, float64(g.Held), "held")
		gauge(pollsDesc, float64(g.Failing), "failing")
		gauge(pollLagDesc, g.Lag.Seconds())
	}
}
