package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/notify"
	"taskjuice/internal/server"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

// Targets of the runs pages, from the reauthorization experience's
// acceptance criteria.
const (
	runsListTarget = 50 * time.Millisecond
	bannerTarget   = 5 * time.Millisecond
	// Any one filter of the runs list (issue: run search at agency scale).
	searchTarget = 100 * time.Millisecond
)

type benchRunsFlags struct {
	benchDB
	runs, held, samples int
}

// benchRuns fills a workspace with runs (most finished, some held for
// reauthorization on a broken connection) and times, on the server, the
// "Paused for reauth" runs page and what the alert banner costs a page.
func benchRuns(ctx context.Context, args []string, e env) error {
	var f benchRunsFlags
	fs := flag.NewFlagSet("taskjuice bench runs", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	f.flags(fs, time.Hour)
	fs.IntVar(&f.runs, "runs", 1_000_000, "runs in the workspace")
	fs.IntVar(&f.held, "held", 2_000, "of which held for reauthorization on the broken connection")
	fs.IntVar(&f.samples, "samples", 300, "requests timed per page")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case f.runs < 1:
		return errors.New("bench runs: --runs must be at least 1")
	case f.held < 1 || f.held > f.runs:
		return errors.New("bench runs: --held must be 1 to --runs")
	case f.samples < 10:
		return errors.New("bench runs: --samples must be at least 10")
	}
	ctx, d, done, err := f.open(ctx, fs, e, "runs")
	if err != nil {
		return err
	}
	defer done()
	out := e.stdout
	fmt.Fprintf(out, "%d runs, %d held for reauthorization\n", f.runs, f.held)
	w, err := seedRunsBench(ctx, d, out, f)
	if err != nil {
		return err
	}
	reauth, err := w.timePage(ctx, "/acme/monitoring/workflow-runs?status=paused&reason=reauth", f.samples, "Paused for reauth")
	if err != nil {
		return err
	}
	all, err := w.timePage(ctx, "/acme/monitoring/workflow-runs", f.samples, "Workflow Runs")
	if err != nil {
		return err
	}
	banner := w.timeBanner(ctx, f.samples)
	type searchTime struct {
		name string
		p50  time.Duration
		p95  time.Duration
	}
	var searches []searchTime
	for _, sf := range w.searchFilters() {
		s, err := w.timePage(ctx, "/acme/monitoring/workflow-runs?"+sf.query, f.samples, "Workflow Runs")
		if err != nil {
			return fmt.Errorf("%s: %w", sf.name, err)
		}
		searches = append(searches, searchTime{sf.name, quantile(s, .5), quantile(s, .95)})
	}
	report := func(what string, s []time.Duration, target time.Duration) bool {
		p95 := quantile(s, .95)
		ok := target == 0 || p95 < target
		line := fmt.Sprintf("%-38s p50 %s  p95 %s  max %s", what, ms(quantile(s, .5)), ms(p95), ms(s[len(s)-1]))
		if target > 0 {
			line += fmt.Sprintf("  (target p95 < %s: %s)", ms(target), verdict(ok))
		}
		fmt.Fprintln(out, line)
		return ok
	}
	okReauth := report(`"Paused for reauth" page (server time)`, reauth, runsListTarget)
	report("All runs page (server time)", all, 0)
	okBanner := report("banner and bell per page", banner, bannerTarget)
	okSearch := true
	var searchJSON []string
	for _, st := range searches {
		ok := st.p95 < searchTarget
		okSearch = okSearch && ok
		fmt.Fprintf(out, "%-38s p50 %s  p95 %s  (target p95 < %s: %s)\n", "filter: "+st.name, ms(st.p50), ms(st.p95), ms(searchTarget), verdict(ok))
		searchJSON = append(searchJSON, fmt.Sprintf("%q:%.2f", st.name, msf(st.p95)))
	}
	fmt.Fprintf(out, `{"bench":"runs","database":%q,"runs":%d,"held":%d,"paused_for_reauth_p95_ms":%.2f,"all_runs_p95_ms":%.2f,"banner_p95_ms":%.3f,"filter_p95_ms":{%s}}`+"\n",
		string(d.Dialect()), f.runs, f.held, msf(quantile(reauth, .95)), msf(quantile(all, .95)), msf(quantile(banner, .95)), strings.Join(searchJSON, ","))
	if !okReauth || !okBanner || !okSearch {
		return errors.New("bench runs: a target was missed")
	}
	return nil
}

type runsBench struct {
	handler http.Handler
	cookie  *http.Cookie
	notify  *notify.Service
	ws      account.Workspace
	userID  string
	// For the search filters: the smaller workflow and a time in the
	// middle of the runs.
	workflowID, rareWorkflowID string
	from                       time.Time
}

func seedRunsBench(ctx context.Context, d *db.DB, out io.Writer, f benchRunsFlags) (*runsBench, error) {
	log := slog.New(slog.DiscardHandler)
	accounts := account.NewService(d)
	const email, password = "owner@bench.example", "bench password 1"
	a, u, err := accounts.CreateAccount(ctx, "Bench agency", account.NewUser{Email: email, Name: "Bench", Password: password})
	if err != nil {
		return nil, err
	}
	ws, err := accounts.CreateWorkspaceForAccount(ctx, a.ID, "Acme", "acme")
	if err != nil {
		return nil, err
	}
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: "http://127.0.0.1:1/sandbox"})
	if err != nil {
		return nil, err
	}
	key, _, err := vault.GenerateKey()
	if err != nil {
		return nil, err
	}
	conns := connection.NewService(d, vault.NewKeyring(key))
	c, err := conns.CreateWithCredential(ctx, ws, connection.New{AppKey: catalog.SandboxKey, Label: "Chat", Status: connection.StatusActive},
		connection.Credential{OAuth: &connection.OAuthToken{AccessToken: "bench-access", RefreshToken: "bench-refresh", TokenType: "Bearer"}}, connection.System)
	if err != nil {
		return nil, err
	}
	workflows := workflow.NewService(d)
	g, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
		"nodes":[{"id":"post","kind":"action","config":{"app":"sandbox-chat","action":"post-message","inputs":{"channel":"general","text":"hi"}},"connection":{"id":"` + c.ID + `"}}],
		"edges":[{"from":"start","to":"post"}]}`))
	if err != nil {
		return nil, err
	}
	wf, err := workflows.Create(ctx, ws, "Lead alert", "", &g, "")
	if err != nil {
		return nil, err
	}
	v, err := workflows.Publish(ctx, ws, wf.ID, "", workflow.Checks{})
	if err != nil {
		return nil, err
	}

	// The runs, written in bulk the way the engine leaves them: finished
	// ones, and every k-th held at its step on the broken connection.
	start := time.Now()
	every := f.runs / f.held
	now := time.Now().UTC().Add(-time.Duration(f.runs) * time.Millisecond)
	const batch, perTx = 500, 10
	other, err := workflows.Create(ctx, ws, "Invoice sync", "", &g, "")
	if err != nil {
		return nil, err
	}
	otherV, err := workflows.Publish(ctx, ws, other.ID, "", workflow.Checks{})
	if err != nil {
		return nil, err
	}
	rare, err := workflows.Create(ctx, ws, "Year-end report", "", &g, "")
	if err != nil {
		return nil, err
	}
	rareV, err := workflows.Publish(ctx, ws, rare.ID, "", workflow.Checks{})
	if err != nil {
		return nil, err
	}
	stmt := func(done, n int) (string, []any, []benchStep) {
		var sb strings.Builder
		sb.WriteString(`INSERT INTO runs (id, workspace_id, workflow_id, version_id, kind, status, source, trigger_payload, pause_reason,
			paused_connection_id, frontier, steps_done, error_code, created_at, started_at, finished_at, updated_at) VALUES `)
		args := make([]any, 0, n*14)
		var steps []benchStep
		for i := range n {
			idx := done + i
			r := benchRun(idx, every, f.held)
			at := now.Add(time.Duration(idx) * time.Millisecond)
			wfID, vID := wf.ID, v.ID
			switch {
			case r.status == "paused":
			case idx%1000 == 5:
				wfID, vID = rare.ID, rareV.ID
			case idx%10 == 3:
				wfID, vID = other.ID, otherV.ID
			}
			conn, finished := any(nil), any(at.Add(200*time.Millisecond))
			if r.status == "paused" {
				conn, finished = c.ID, nil
			}
			if i > 0 {
				sb.WriteString(",")
			}
			p := len(args)
			fmt.Fprintf(&sb, "($%d, $%d, $%d, $%d, 'workflow', $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)",
				p+1, p+2, p+3, p+4, p+5, p+6, p+7, p+8, p+9, p+10, p+11, p+12, p+13, p+13, p+14, p+13)
			id := db.NewID()
			args = append(args, id, ws.ID, wfID, vID, r.status, r.source, r.payload, r.reason, conn, r.frontier, r.steps, r.errorCode, at, finished)
			if r.output != "" {
				steps = append(steps, benchStep{runID: id, output: r.output, at: at})
			}
		}
		return sb.String(), args, steps
	}
	for done := 0; done < f.runs; {
		if err := d.InTx(ctx, func(tx db.Querier) error {
			for range perTx {
				n := min(batch, f.runs-done)
				if n == 0 {
					return nil
				}
				q, args, steps := stmt(done, n)
				if _, err := tx.ExecContext(ctx, q, args...); err != nil {
					return err
				}
				if err := insertBenchSteps(ctx, tx, steps); err != nil {
					return err
				}
				done += n
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("seed runs: %w", err)
		}
	}
	took := time.Since(start)
	fmt.Fprintf(out, "seeded %d runs: %s, %.0f/s\n", f.runs, round(took), float64(f.runs)/took.Seconds())
	eng := engine.New(d, workflows, engine.Builtins(cat, connection.NewAppClient(conns, nil, cat, nil), nil), engine.Expressions(expr.Limits{}), engine.Options{Log: log})
	// The search index, built the way the server's indexer does.
	start = time.Now()
	rep, err := eng.IndexRuns(ctx)
	if err != nil {
		return nil, fmt.Errorf("index runs: %w", err)
	}
	took = time.Since(start)
	fmt.Fprintf(out, "indexed %d runs for search (%d values): %s, %.0f runs/s\n", rep.Runs, rep.Values, round(took), float64(rep.Runs)/took.Seconds())
	if _, err := d.Write().ExecContext(ctx, `INSERT INTO pending_reauths (run_id, connection_id, created_at)
		SELECT id, paused_connection_id, created_at FROM runs WHERE status = 'paused'`); err != nil {
		return nil, fmt.Errorf("seed pending reauthorizations: %w", err)
	}
	// Fresh statistics, as a database that has been running has; on
	// PostgreSQL also the visibility map autovacuum keeps after a million
	// inserts, without which every index-only count visits the table.
	analyze := `ANALYZE`
	if d.Dialect() == db.Postgres {
		analyze = `VACUUM (ANALYZE)`
	}
	if _, err := d.Write().ExecContext(ctx, analyze); err != nil {
		return nil, err
	}
	if d.Dialect() == db.SQLite {
		// And its write-ahead log checkpointed, as SQLite does as it goes.
		if _, err := d.Write().ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			return nil, err
		}
	}

	// The connection breaks: the alert is raised the way the server does.
	if _, err := conns.Transition(ctx, c.ID, connection.StatusError, "rejected", connection.System, nil); err != nil {
		return nil, err
	}
	nt := notify.NewService(d, cat)
	if _, err := nt.Consume(ctx); err != nil {
		return nil, err
	}
	srv, err := server.New(server.Options{DB: d, Accounts: accounts, Connections: conns, Catalog: cat, Workflows: workflows, Engine: eng,
		Notify: nt, Log: log, BaseURL: "http://127.0.0.1"})
	if err != nil {
		return nil, err
	}
	sess, _, err := accounts.SignIn(ctx, email, password, "127.0.0.1", "bench")
	if err != nil {
		return nil, err
	}
	return &runsBench{handler: srv.Handler(), cookie: &http.Cookie{Name: "tj_session", Value: sess.Token}, notify: nt, ws: ws, userID: u.ID,
		workflowID: other.ID, rareWorkflowID: rare.ID, from: now.Add(time.Duration(f.runs/2) * time.Millisecond)}, nil
}

// timePage requests a page samples times, as the signed-in owner, and
// returns the server's times, sorted.
func (b *runsBench) timePage(ctx context.Context, path string, samples int, want string) ([]time.Duration, error) {
	var out []time.Duration
	for i := range samples + 5 {
		req := httptest.NewRequestWithContext(ctx, "GET", "http://127.0.0.1"+path, nil)
		req.AddCookie(b.cookie)
		rec := httptest.NewRecorder()
		start := time.Now()
		b.handler.ServeHTTP(rec, req)
		took := time.Since(start)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			return nil, fmt.Errorf("GET %s: %d, want 200 with %q", path, rec.Code, want)
		}
		if i >= 5 { // the first few warm caches up
			out = append(out, took)
		}
	}
	slices.Sort(out)
	return out, nil
}

// timeBanner times what the bell and the banner add to a workspace page.
func (b *runsBench) timeBanner(ctx context.Context, samples int) []time.Duration {
	var out []time.Duration
	for range samples {
		start := time.Now()
		_, _, _ = b.notify.Unread(ctx, b.ws.ID, b.userID)
		_, _, _ = b.notify.Reauth(ctx, b.ws.ID, b.userID)
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out
}

// benchRunShape is one seeded run: most completed from a webhook, some
// failed (a few with a rare error code), some started by a schedule or by
// hand, every k-th held at its step on the broken connection; each with a
// lead's payload, and every tenth with its step's output.
type benchRunShape struct {
	status, reason, source, frontier, payload, output string
	errorCode                                         any
	steps                                             int
}

func benchRun(idx, every, held int) benchRunShape {
	r := benchRunShape{status: "completed", source: "webhook", frontier: "[]", steps: 1}
	switch {
	case idx%every == 0 && idx/every < held:
		r.status, r.reason, r.frontier, r.steps = "paused", "reauth", `["post"]`, 0
	case idx%97 == 0:
		r.status, r.errorCode = "failed", "HTTP_500"
		if idx%(97*50) == 0 {
			r.errorCode = "RATE_LIMITED"
		}
	}
	switch {
	case idx%1000 == 7:
		r.source = "manual"
	case idx%100 == 1:
		r.source = "schedule"
	}
	plan, tag := "basic", "lead"
	if idx%3 == 0 {
		plan = "pro"
	}
	if idx%20 == 0 {
		tag = "vip"
	}
	r.payload = fmt.Sprintf(`{"customer":{"email":"lead%d@client%d.example","plan":%q},"tags":[%q]}`, idx, idx%50, plan, tag)
	if idx%10 == 0 && r.status == "completed" {
		r.output = fmt.Sprintf(`{"contact":{"id":"c-%d","owner":"Dana Scully"}}`, idx)
	}
	return r
}

type benchStep struct {
	runID, output string
	at            time.Time
}

func insertBenchSteps(ctx context.Context, tx db.Querier, steps []benchStep) error {
	if len(steps) == 0 {
		return nil
	}
	var sb strings.Builder
	sb.WriteString(`INSERT INTO run_steps (run_id, node_id, attempt, id, status, input_from, output, started_at, finished_at) VALUES `)
	args := make([]any, 0, len(steps)*4)
	for i, st := range steps {
		if i > 0 {
			sb.WriteString(",")
		}
		p := len(args)
		fmt.Fprintf(&sb, "($%d, 'post', 1, $%d, 'completed', '', $%d, $%d, $%d)", p+1, p+2, p+3, p+4, p+4)
		args = append(args, st.runID, db.NewID(), st.output, st.at)
	}
	_, err := tx.ExecContext(ctx, sb.String(), args...)
	return err
}

// searchFilter is one filter of the runs list the bench times.
type searchFilter struct{ name, query string }

// searchFilters are the runs list's filters, each alone, as a shared link
// has them: the common and the rare value of each.
func (b *runsBench) searchFilters() []searchFilter {
	from := b.from.Format(time.RFC3339)
	to := b.from.Add(time.Hour).Format(time.RFC3339)
	return []searchFilter{
		{"workflow (1 in 10)", "workflow=" + b.workflowID},
		{"workflow (1 in 1000)", "workflow=" + b.rareWorkflowID},
		{"status failed", "status=failed"},
		{"status completed", "status=completed"},
		{"pause reason", "reason=reauth"},
		{"trigger kind (1 in 1000)", "source=manual"},
		{"trigger kind (1 in 100)", "source=schedule"},
		{"time range", "from=" + url.QueryEscape(from) + "&to=" + url.QueryEscape(to)},
		{"error code (rare)", "error=RATE_LIMITED"},
		{"error code", "error=HTTP_500"},
		{"payload equals (one run)", "field=" + url.QueryEscape("$trigger.customer.email") + "&match=equals&value=lead123457@client7.example"},
		{"payload equals (1 in 3)", "field=" + url.QueryEscape("$trigger.customer.plan") + "&match=equals&value=pro"},
		{"payload contains (1 in 20)", "field=" + url.QueryEscape("$trigger.tags") + "&match=contains&value=VIP"},
		{"payload contains (1 in 50)", "field=" + url.QueryEscape("$trigger.customer.email") + "&match=contains&value=client7"},
		{"step output equals (one run)", "field=" + url.QueryEscape("$steps.post.data.contact.id") + "&match=equals&value=c-123450"},
		{"step output contains", "field=" + url.QueryEscape("$steps.post.data.contact.owner") + "&match=contains&value=scully"},
		{"no match", "field=" + url.QueryEscape("$trigger.customer.email") + "&match=equals&value=nobody@nowhere.example"},
	}
}
