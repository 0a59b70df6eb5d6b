package server_test

import (
	"context"
	"strings"
	"testing"

	"taskjuice/internal/workflow"
)

// /metrics tells the state: runs started and finished, step durations by
// node kind, unfinished runs by status and reason, the queue, connections
// by status, the outbox and the polling triggers.
func TestMetricsTellTheState(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		g, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
			"nodes":[{"id":"wait","kind":"approval","config":{"message":"Go?"}},
			         {"id":"done","kind":"transform","config":{"output":{"ok":true}}}],
			"edges":[{"from":"start","to":"wait"},{"from":"wait","to":"done"}]}`))
		must(t, err)
		w, err := e.workflows.Create(ctx, e.acme, "Approvals", "", &g, "")
		must(t, err)
		_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
		must(t, err)
		waiting, err := e.engine.StartRun(ctx, w.ID, []byte(`{}`), "manual", "")
		must(t, err)
		_, err = e.engine.StartRun(ctx, w.ID, []byte(`{}`), "manual", "")
		must(t, err)
		b := e.browser()
		body := b.get("/metrics").Body
		for _, want := range []string{
			`taskjuice_runs_started_total{workspace="` + e.acme.ID + `"} 2`,
			`taskjuice_runs{reason="",status="pending",workspace="` + e.acme.ID + `"} 2`,
			`taskjuice_runs_due 2`,
			`taskjuice_emails{state="queued"}`,
			`taskjuice_poll_triggers{state="held"} 0`,
			`taskjuice_state_read_errors{part="runs"} 0`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("metrics lack %q", want)
			}
		}
		e.workAll(t)
		must(t, e.engine.Decide(ctx, e.acme.ID, waiting, "", true, ""))
		e.workAll(t)
		body = b.get("/metrics").Body
		for _, want := range []string{
			`taskjuice_runs_finished_total{status="completed",workspace="` + e.acme.ID + `"} 1`,
			`taskjuice_runs{reason="approval",status="waiting",workspace="` + e.acme.ID + `"} 1`,
			`taskjuice_step_duration_seconds_count{kind="transform",outcome="ok"} 1`,
			`taskjuice_step_duration_seconds_count{kind="approval",outcome="ok"} 2`,
			`taskjuice_runs_due 0`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("after the runs: metrics lack %q", want)
			}
		}
		if t.Failed() {
			t.Logf("metrics:\n%s", grepLines(body, "taskjuice_"))
		}
	})
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) && !strings.Contains(l, "_bucket") && !strings.Contains(l, "http_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
