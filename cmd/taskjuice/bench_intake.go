package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/engine"
	"taskjuice/internal/expr"
	"taskjuice/internal/trigger"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

// Targets of webhook intake at 32 concurrent clients, from issue 17.
const (
	intakeRateTarget = 3000.0
	intakeP99Target  = 50 * time.Millisecond
)

type benchIntakeFlags struct {
	benchDB
	clients, requests int
	duration          time.Duration
}

func benchIntake(ctx context.Context, args []string, e env) error {
	var f benchIntakeFlags
	fs := flag.NewFlagSet("taskjuice bench intake", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	f.flags(fs, 15*time.Minute)
	fs.IntVar(&f.clients, "clients", 32, "concurrent HTTP clients posting to the webhook")
	fs.IntVar(&f.requests, "requests", 20000, "webhook requests in all (ignored with --duration)")
	fs.DurationVar(&f.duration, "duration", 0, "post for this long instead of a number of requests")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case f.clients < 1:
		return errors.New("--clients must be at least 1")
	case f.requests < 1 && f.duration == 0:
		return errors.New("--requests must be at least 1")
	case f.duration < 0:
		return errors.New("--duration must not be negative")
	}
	ctx, d, done, err := f.open(ctx, fs, e, "intake")
	if err != nil {
		return err
	}
	defer done()
	log, out := benchLog(e), e.stdout

	ws, err := benchWorkspace(ctx, d)
	if err != nil {
		return err
	}
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		return fmt.Errorf("app catalog: %w", err)
	}
	keys := vault.NewKeyring(benchKey())
	conns := connection.NewService(d, keys)
	refresher := connection.NewRefresher(conns, connection.CatalogOAuth(cat, benchRedirectURL), connection.RefresherOptions{Log: log})
	wfs := workflow.NewService(d)
	// The engine and webhook handler as "taskjuice serve" builds them. The
	// engine's workers do not run: the bench measures intake alone.
	eng := engine.New(d, wfs, engine.Builtins(cat, connection.NewAppClient(conns, refresher, cat, nil), nil), engine.Expressions(expr.Limits{}),
		engine.Options{Log: log.With("component", "engine")})
	hooks := trigger.New(d, keys, eng, wfs, trigger.Options{Log: log.With("component", "webhooks")})

	g := workflow.Graph{Schema: 1,
		Trigger: &workflow.Node{ID: "hook", Kind: workflow.TriggerWebhook, Config: json.RawMessage(`{"auth": "none"}`)},
		Nodes:   []workflow.Node{{ID: "copy", Kind: workflow.NodeTransform, Config: json.RawMessage(`{"output": {"n": "{{ $trigger.body.n }}"}}`)}},
		Edges:   []workflow.Edge{{From: "hook", To: "copy"}}}
	wf, err := wfs.Create(ctx, ws, "Bench intake", "", &g, "")
	if err != nil {
		return fmt.Errorf("create workflow: %w", err)
	}
	if _, err := wfs.Publish(ctx, ws, wf.ID, "", workflow.Checks{}); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	token, err := hooks.Endpoint(ctx, wf.ID)
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/webhooks/{token}", hooks)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	}()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 2 * f.clients, MaxIdleConnsPerHost: 2 * f.clients, IdleConnTimeout: 30 * time.Second}}
	defer hc.CloseIdleConnections()
	res, err := postIntake(ctx, hc, "http://"+ln.Addr().String()+"/webhooks/"+token, f)
	if err != nil {
		return err
	}

	// Every 202 must be a recorded run, each once.
	recorded := map[string]bool{}
	rows, err := d.Read().QueryContext(ctx, `SELECT id FROM runs WHERE workflow_id = $1`, wf.ID)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		recorded[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	answered := map[string]int{}
	for _, id := range res.ids {
		answered[id]++
	}
	missing, doubled := 0, 0
	for id, n := range answered {
		if !recorded[id] {
			missing++
		}
		if n > 1 {
			doubled++
		}
	}
	exact := missing == 0 && doubled == 0 && res.other == 0 && len(recorded) == len(res.ids)
	slices.Sort(res.times)
	var p50, p99 time.Duration
	if len(res.times) > 0 {
		p50, p99 = quantile(res.times, 0.5), quantile(res.times, 0.99)
	}
	rate := float64(len(res.ids)) / res.took.Seconds()
	fast := rate >= intakeRateTarget && p99 < intakeP99Target
	fmt.Fprintf(out, "%d webhook requests from %d clients over loopback in %s: %d answered 202, %d otherwise\n",
		len(res.ids)+res.other, f.clients, round(res.took), len(res.ids), res.other)
	fmt.Fprintf(out, "every 202 a recorded run: %d runs recorded, %d answered ids missing, %d answered twice: %s\n",
		len(recorded), missing, doubled, verdict(exact))
	fmt.Fprintf(out, "accepted runs/s: %.0f (target >= %.0f); latency p50 %s, p99 %s (target p99 < %s): %s\n",
		rate, intakeRateTarget, ms(p50), ms(p99), ms(intakeP99Target), verdict(fast))
	writeJSONLine(out, map[string]any{"bench": "intake", "database": string(d.Dialect()), "clients": f.clients,
		"requests": len(res.ids) + res.other, "accepted": len(res.ids), "recorded": len(recorded), "missing": missing, "doubled": doubled,
		"seconds": roundTo(res.took.Seconds(), 3), "runs_per_second": roundTo(rate, 0),
		"p50_ms": roundTo(msf(p50), 2), "p99_ms": roundTo(msf(p99), 2), "pass": exact && fast})
	if !exact {
		return errors.New("bench intake: a 202 was not a recorded run, or runs were recorded twice")
	}
	if !fast {
		return fmt.Errorf("bench intake: %w", errTargetMissed)
	}
	return nil
}

type intakeResult struct {
	ids   []string        // the run ids answered with 202
	times []time.Duration // their latencies
	other int             // answers other than 202
	took  time.Duration
}

// postIntake posts to url from f.clients clients until f.requests were
// sent or f.duration passed.
func postIntake(ctx context.Context, hc *http.Client, url string, f benchIntakeFlags) (intakeResult, error) {
	var (
		res   intakeResult
		mu    sync.Mutex
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	var until time.Time
	start := time.Now()
	if f.duration > 0 {
		until = start.Add(f.duration)
	}
	for range f.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1)
				if until.IsZero() && i > int64(f.requests) || !until.IsZero() && time.Now().After(until) {
					return
				}
				body := []byte(`{"n": ` + strconv.FormatInt(i, 10) + `}`)
				t0 := time.Now()
				id, status, err := postOne(ctx, hc, url, body)
				took := time.Since(t0)
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					return
				}
				mu.Lock()
				if status == http.StatusAccepted {
					res.ids = append(res.ids, id)
					res.times = append(res.times, took)
				} else {
					res.other++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.took = time.Since(start)
	if first != nil {
		return res, fmt.Errorf("post webhook: %w", first)
	}
	return res, ctx.Err()
}

func postOne(ctx context.Context, hc *http.Client, url string, body []byte) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", 0, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", resp.StatusCode, nil
	}
	var got struct {
		RunID string `json:"runId"`
	}
	if err := json.Unmarshal(raw, &got); err != nil || got.RunID == "" {
		return "", 0, fmt.Errorf("a 202 without a run id: %s", raw)
	}
	return got.RunID, resp.StatusCode, nil
}
