package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptrace"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/vault"
	"taskjuice/internal/workflow"
)

// serveProcess is a "taskjuice serve" running as its own OS process.
type serveProcess struct {
	base   string
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan error
}

// buildBinary builds the taskjuice binary once for the test.
func buildBinary(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go tool to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "taskjuice")
	out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProcess starts "taskjuice serve" with args and env and waits until
// it answers /readyz; it is stopped (SIGINT, then killed) when the test ends.
func startProcess(t *testing.T, bin, addr string, env []string, args ...string) *serveProcess {
	t.Helper()
	p := &serveProcess{base: "http://" + addr, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"serve", "--listen", addr}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(p.base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return p
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("serve exited early: %v\n%s", err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not become ready:\n%s", p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signIn returns a client signed in to one process.
func signIn(t *testing.T, base, email, password string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 2 * time.Minute}
	res, err := c.PostForm(base+"/signin", url.Values{"email": {email}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Request.URL.Path != "/dashboard" {
		t.Fatalf("sign-in at %s landed on %s, want /dashboard", base, res.Request.URL.Path)
	}
	return c
}

// TestRefreshesCollapseAcrossServeProcesses: two real "taskjuice serve"
// processes on one PostgreSQL database share the demo's Sandbox Chat
// connection, whose refresh tokens rotate at the sandbox (served by the
// first process; the second reaches it through the shared public URL).
// Each round sends 50 manual refreshes and starts 50 workflow runs that
// post with the connection's token, alternating between the processes.
// Every refresh asked before the round's refresh completed is answered by
// it: the sandbox sees exactly one refresh per round, no grant is rejected,
// and the connection stays active.
//
// So that every caller of a round has asked before its refresh completes,
// whatever the machine's load, the sandbox answers the round's first token
// request with 429 and Retry-After: the process that asked keeps the
// refresh through the wait and everyone else waits for its result.
func TestRefreshesCollapseAcrossServeProcesses(t *testing.T) {
	pg := os.Getenv(dbtest.PostgresEnv)
	if pg == "" {
		t.Skip(dbtest.PostgresEnv + " not set")
	}
	const (
		rounds     = 5
		perRound   = 50
		retryAfter = 5 * time.Second
		adminToken = "race-test-admin-token"
	)
	ctx := context.Background()
	dsn := dbtest.NewPostgresSchema(t, pg)
	_, keyText, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	baseA := "http://" + addrA
	env := []string{"TASKJUICE_DATABASE_URL=" + dsn, "TASKJUICE_SECRET_KEY=" + strings.TrimSpace(keyText),
		"TASKJUICE_SANDBOX_ADMIN_TOKEN=" + adminToken, "TASKJUICE_LOG_LEVEL=warn"}
	// The first process logs at info, so a failure below shows what it did.
	a := startProcess(t, bin, addrA, append(env[:len(env):len(env)], "TASKJUICE_LOG_LEVEL=info"), "--data-dir", t.TempDir())
	m := passwordLine.FindStringSubmatch(a.stdout.String())
	if m == nil {
		t.Fatalf("the first process did not print the demo's password:\n%s", a.stdout.String())
	}
	const email = "owner@demo-agency.example"
	clientA := signIn(t, baseA, email, m[1])

	// The demo's connection, made through the sandbox's consent flow.
	var connID string
	// The demo makes it beside the server, retrying when a request times
	// out; on a machine busy with other tests that can take a while.
	connStart := time.Now()
	deadline := connStart.Add(3 * time.Minute)
	for connID == "" {
		var list struct {
			Connections []struct{ ID, App string } `json:"connections"`
		}
		getJSON(t, clientA, baseA+"/api/v1/workspaces/acme/connections?status=active", &list)
		for _, c := range list.Connections {
			if c.App == "sandbox-chat" {
				connID = c.ID
			}
		}
		if connID == "" {
			if time.Now().After(deadline) {
				t.Fatalf("the demo has no active Sandbox Chat connection; the first process said:\n%s", a.stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("the demo's Sandbox Chat connection was listed after %s", time.Since(connStart).Round(time.Millisecond))

	// The second process shares the database, the key and the public URL
	// (as behind one load balancer), so it refreshes at the same sandbox.
	b := startProcess(t, bin, addrB, env, "--data-dir", t.TempDir(), "--no-demo", "--base-url", baseA)
	clientB := signIn(t, b.base, email, m[1])

	wfID := publishPoster(t, ctx, dsn, baseA, email, connID)
	admin, err := sandbox.NewAdminClient(baseA+"/sandbox", adminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	refreshes := func() int {
		st, err := admin.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, v := range st.Refreshes {
			n += v
		}
		return n
	}
	type target struct {
		base string
		c    *http.Client
	}
	targets := []target{{baseA, clientA}, {b.base, clientB}}
	before := refreshes()
	for round := 1; round <= rounds; round++ {
		if err := admin.FailNext(ctx, 1, sandbox.Fault429, retryAfter); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			lastSent  time.Time
			refreshed int
			runIDs    []string
			problems  []string
		)
		sent := func() {
			mu.Lock()
			defer mu.Unlock()
			lastSent = time.Now()
		}
		for i := range 2 * perRound {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tg := targets[i%2]
				path := tg.base + "/api/v1/connections/" + connID + "/refresh"
				if i/2%2 == 1 {
					path = tg.base + "/api/v1/workspaces/acme/workflows/" + wfID + "/runs"
				}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
					WroteRequest: func(httptrace.WroteRequestInfo) { sent() },
				}), "POST", path, strings.NewReader(`{}`))
				req.Header.Set("Content-Type", "application/json")
				res, err := tg.c.Do(req)
				if err != nil {
					mu.Lock()
					problems = append(problems, err.Error())
					mu.Unlock()
					return
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				mu.Lock()
				defer mu.Unlock()
				switch {
				case strings.HasSuffix(path, "/refresh") && res.StatusCode == 200:
					refreshed++
				case strings.HasSuffix(path, "/runs") && res.StatusCode == 202:
					var started struct{ RunID string }
					_ = json.Unmarshal(body, &started)
					runIDs = append(runIDs, started.RunID)
				default:
					problems = append(problems, fmt.Sprintf("POST %s: %d %.300s", path, res.StatusCode, body))
				}
			}()
		}
		wg.Wait()
		spread := lastSent.Sub(start)
		if len(problems) > 0 {
			t.Fatalf("round %d: %d requests failed, e.g. %s", round, len(problems), problems[0])
		}
		if refreshed != perRound || len(runIDs) != perRound {
			t.Fatalf("round %d: %d manual refreshes and %d runs answered, want %d of each", round, refreshed, len(runIDs), perRound)
		}
		waitRuns(t, clientA, baseA, runIDs)
		got := refreshes() - before
		t.Logf("round %d: %d refreshes at the sandbox so far; requests sent within %s; round took %s", round, got, spread.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		if got != round {
			t.Fatalf("round %d: the sandbox counted %d refreshes in all, want %d (exactly one per round; the round's requests were all sent within %s of its start, its refresh held back by a %s Retry-After)",
				round, got, round, spread, retryAfter)
		}
	}
	st, err := admin.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TokenErrors["invalid_grant"] != 0 || st.FailuresPending != 0 {
		t.Fatalf("sandbox: %d rejected grants, %d faults left; want none", st.TokenErrors["invalid_grant"], st.FailuresPending)
	}
	var conn struct{ Status string }
	getJSON(t, clientB, b.base+"/api/v1/connections/"+connID, &conn)
	if conn.Status != "active" {
		t.Fatalf("connection after %d rounds: %q, want active", rounds, conn.Status)
	}
	t.Logf("%d rounds of %d manual refreshes and %d runs over 2 processes: %d refreshes at the sandbox, %d rejected grants, token errors %v",
		rounds, perRound, perRound, refreshes()-before, st.TokenErrors["invalid_grant"], st.TokenErrors)
}

func getJSON(t *testing.T, c *http.Client, u string, v any) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %.300s", u, res.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// publishPoster publishes, in the demo workspace, a workflow whose one step
// posts to Sandbox Chat with the connection: each run reads its token.
func publishPoster(t *testing.T, ctx context.Context, dsn, baseA, email, connID string) string {
	t.Helper()
	d, err := db.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	accounts := account.NewService(d)
	p, err := accounts.PrincipalByEmail(ctx, email)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := accounts.WorkspaceBySlug(ctx, p, "acme")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: baseA + "/sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"app": "sandbox-chat", "action": "post-message", "inputs": map[string]any{"channel": "general", "text": "refresh race"}})
	g := workflow.Graph{Schema: 1, Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
		Nodes: []workflow.Node{{ID: "post", Kind: workflow.NodeAction, Config: cfg, Connection: &workflow.Binding{ID: connID}}},
		Edges: []workflow.Edge{{From: "start", To: "post"}}}
	wfs := workflow.NewService(d)
	w, err := wfs.Create(ctx, ws, "Refresh race", "", &g, "")
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(id string) (string, string, bool) {
		if id != connID {
			return "", "", false
		}
		return "sandbox-chat", string(connection.StatusActive), true
	}
	if _, err := wfs.Publish(ctx, ws, w.ID, "", workflow.Checks{Apps: cat, Connection: lookup}); err != nil {
		var ce *workflow.CompileError
		if errors.As(err, &ce) {
			t.Fatalf("publish: %v", ce.Problems)
		}
		t.Fatal(err)
	}
	return w.ID
}

// waitRuns waits until every run has completed; a failed run fails the test.
func waitRuns(t *testing.T, c *http.Client, base string, ids []string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for _, id := range ids {
		for {
			var got struct {
				Run struct {
					Status string `json:"status"`
					Error  any    `json:"error"`
				} `json:"run"`
			}
			getJSON(t, c, base+"/api/v1/workspaces/acme/runs/"+id, &got)
			run := got.Run
			if run.Status == "completed" {
				break
			}
			if run.Status == "failed" || run.Status == "cancelled" || run.Status == "paused" {
				t.Fatalf("run %s: %s (%v), want completed", id, run.Status, run.Error)
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s still %s after 2 minutes", id, run.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
