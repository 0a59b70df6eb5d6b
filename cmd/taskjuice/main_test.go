package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/demo"
	"taskjuice/internal/sandbox"
	"taskjuice/internal/vault"
)

// syncBuffer is written by the server goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs "taskjuice serve" in-process until the returned stop is
// called, and returns what it printed to standard output.
func startServe(t *testing.T, args []string, getenv func(string) string) (base string, stdout *syncBuffer, stop func()) {
	t.Helper()
	addr := freeAddr(t)
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--listen", addr}, args...), env{stdin: strings.NewReader(""), stdout: stdout, stderr: stderr, getenv: getenv})
	}()
	base = "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not become ready:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return base, stdout, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not stop")
		}
	}
}

var passwordLine = regexp.MustCompile(`password: (\S+)`)

// signInSeesAcme signs in and sees the demo workspace with its Sandbox
// Chat connection; on the first start it also runs the demo's agent and
// fires its trigger workflow. (A second start may still be posting what
// #random received during the first, so Sandbox Chat's counts are read on
// the first start alone.)
func signInSeesAcme(t *testing.T, base, email, password string, firstStart bool) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	res, err := c.PostForm(base+"/signin", url.Values{"email": {email}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.Request.URL.Path != "/dashboard" {
		t.Fatalf("after sign-in: landed on %s, want /dashboard", res.Request.URL.Path)
	}
	if !strings.Contains(string(body), `href="/acme/"`) {
		t.Fatal("dashboard does not show workspace acme")
	}
	// The demo's Sandbox Chat connection is made through the consent flow
	// right after start.
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := c.Get(base + "/api/v1/workspaces/acme/connections?status=active")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if strings.Contains(string(b), `"app":"sandbox-chat"`) {
			if n := strings.Count(string(b), `"app":"sandbox-chat"`); n != 1 {
				t.Fatalf("demo Sandbox Chat connections: got %d, want 1", n)
			}
			if firstStart {
				demoAgentRuns(t, c, base)
				demoTriggerFires(t, c, base)
				demoStarterRuns(t, c, base)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo has no active Sandbox Chat connection: %s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// demoTriggerFires: a message people post in Sandbox Chat's #random starts
// a run of the demo's published trigger workflow, which posts it to
// #general. The first poll after publishing only records where the channel
// stands, so a message goes in every two seconds until one starts a run.
func demoTriggerFires(t *testing.T, c *http.Client, base string) {
	t.Helper()
	admin, err := sandbox.NewAdminClient(base+"/sandbox", demoAdminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	next := time.Now()
	for {
		if !time.Now().Before(deadline) {
			t.Fatal("no message in #random started a run of the demo's trigger workflow within 60s")
		}
		if !time.Now().Before(next) {
			if _, err := admin.Emit(context.Background(), "Acme Chat", "random", "Hello from #random", 1); err != nil {
				t.Fatalf("emit: %v", err)
			}
			next = time.Now().Add(2 * time.Second)
		}
		res, err := c.Get(base + "/api/v1/workspaces/acme/runs")
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Runs []struct{ WorkflowName, Status string }
		}
		_ = json.NewDecoder(res.Body).Decode(&list)
		res.Body.Close()
		for _, r := range list.Runs {
			if r.WorkflowName == demo.TriggerWorkflowName && r.Status == "completed" {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// demoStarterRuns: the demo's starter workflow is published and runs at
// once with "Run now" (its form, no payload): the default lead of 2,500
// USD takes the branch to Sandbox Chat and the run completes.
func demoStarterRuns(t *testing.T, c *http.Client, base string) {
	t.Helper()
	var wf struct {
		Workflows []struct{ ID, Name, Status string }
	}
	deadline := time.Now().Add(15 * time.Second)
	id := ""
	for id == "" {
		res, err := c.Get(base + "/api/v1/workspaces/acme/workflows")
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(res.Body).Decode(&wf)
		res.Body.Close()
		for _, w := range wf.Workflows {
			if w.Name == demo.StarterWorkflowName && w.Status == "published" {
				id = w.ID
			}
		}
		if id == "" {
			if time.Now().After(deadline) {
				t.Fatalf("no published starter workflow: %+v", wf.Workflows)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	res, err := c.PostForm(base+"/acme/workflows/"+id+"/run", url.Values{"payload": {""}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	deadline = time.Now().Add(30 * time.Second)
	for {
		res, err := c.Get(base + "/api/v1/workspaces/acme/runs?workflow=" + id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if strings.Contains(string(b), `"status":"completed"`) {
			return
		}
		if strings.Contains(string(b), `"status":"failed"`) || time.Now().After(deadline) {
			t.Fatalf("the starter workflow's run: %s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// demoAdminToken is the sandbox admin token the demo tests serve with, to
// read what Sandbox Chat received.
const demoAdminToken = "demo-test-admin-token"

// demoAgentRuns finds the demo's agent, driven by the sandbox's model, and
// runs it to completion on an ordinary lead, one that asks for nothing:
// the agent's instructions alone make it post the lead to Sandbox Chat.
// The model key the demo's provider holds works in this process too.
func demoAgentRuns(t *testing.T, c *http.Client, base string) {
	t.Helper()
	get := func(path string) string {
		res, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return string(b)
	}
	var agentID string
	deadline := time.Now().Add(15 * time.Second)
	for agentID == "" {
		var list struct{ Agents []struct{ ID, Name string } }
		_ = json.Unmarshal([]byte(get("/api/v1/workspaces/acme/agents")), &list)
		for _, a := range list.Agents {
			if a.Name == "Lead notifier" {
				agentID = a.ID
			}
		}
		if agentID == "" && time.Now().After(deadline) {
			t.Fatal("the demo has no agent")
		}
		time.Sleep(100 * time.Millisecond)
	}
	admin, err := sandbox.NewAdminClient(base+"/sandbox", demoAdminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	before, err := admin.Stats(context.Background())
	if err != nil {
		t.Fatalf("sandbox stats: %v", err)
	}
	const lead = `{"name":"Ada Lovelace","company":"Analytical Engines","email":"ada@analytical.example"}`
	res, err := c.Post(base+"/api/v1/workspaces/acme/agents/"+agentID+"/runs", "application/json", strings.NewReader(lead))
	if err != nil {
		t.Fatal(err)
	}
	var started struct{ RunID string }
	_ = json.NewDecoder(res.Body).Decode(&started)
	res.Body.Close()
	if res.StatusCode != 202 || started.RunID == "" {
		t.Fatalf("start the demo agent: %d", res.StatusCode)
	}
	for {
		body := get("/api/v1/workspaces/acme/runs/" + started.RunID)
		var run struct {
			Run struct{ Status string }
		}
		_ = json.Unmarshal([]byte(body), &run)
		if run.Run.Status == "completed" {
			after, err := admin.Stats(context.Background())
			if err != nil {
				t.Fatalf("sandbox stats: %v", err)
			}
			if got := after.MessagesPosted - before.MessagesPosted; got != 1 {
				t.Fatalf("messages posted to Sandbox Chat for an ordinary lead: got %d, want 1; run: %.2000s", got, body)
			}
			if !strings.Contains(body, "name: Ada Lovelace; company: Analytical Engines; email: ada@analytical.example") {
				t.Fatalf("the posted message does not carry the lead: %.3000s", body)
			}
			return
		}
		if run.Run.Status == "failed" || time.Now().After(deadline.Add(15*time.Second)) {
			t.Fatalf("the demo agent's run did not complete: %.2000s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func firstStartCreatesDemoOnce(t *testing.T, args []string, env func(string) string) {
	getenv := func(k string) string {
		if k == "TASKJUICE_SANDBOX_ADMIN_TOKEN" {
			return demoAdminToken
		}
		return env(k)
	}
	base, out, stop := startServe(t, args, getenv)
	m := passwordLine.FindStringSubmatch(out.String())
	if m == nil || !strings.Contains(out.String(), "owner@demo-agency.example") || !strings.Contains(out.String(), base+"/signin") {
		t.Fatalf("first start did not print the sign-in URL, email and password:\n%s", out.String())
	}
	signInSeesAcme(t, base, "owner@demo-agency.example", m[1], true)
	stop()

	base, out, stop = startServe(t, args, getenv)
	defer stop()
	if strings.Contains(out.String(), "password:") {
		t.Fatalf("second start printed a new demo:\n%s", out.String())
	}
	signInSeesAcme(t, base, "owner@demo-agency.example", m[1], false)
}

func TestFirstStartSQLite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	firstStartCreatesDemoOnce(t, []string{"--data-dir", dir}, func(string) string { return "" })
	for _, f := range []string{"taskjuice.db", "secret.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("data folder lacks %s: %v", f, err)
		}
	}
}

func TestFirstStartPostgres(t *testing.T) {
	base := os.Getenv(dbtest.PostgresEnv)
	if base == "" {
		t.Skip(dbtest.PostgresEnv + " not set")
	}
	dsn := dbtest.NewPostgresSchema(t, base)
	dir := t.TempDir()
	// The database URL comes from the environment here, as in a deployment.
	getenv := func(k string) string {
		if k == "TASKJUICE_DATABASE_URL" {
			return dsn
		}
		return ""
	}
	firstStartCreatesDemoOnce(t, []string{"--data-dir", dir}, getenv)
	if _, err := os.Stat(filepath.Join(dir, "taskjuice.db")); err == nil {
		t.Fatal("a SQLite file was created although PostgreSQL was configured")
	}
}

func TestNoDemo(t *testing.T) {
	_, out, stop := startServe(t, []string{"--data-dir", t.TempDir(), "--no-demo"}, func(string) string { return "" })
	stop()
	if strings.Contains(out.String(), "password:") {
		t.Fatal("--no-demo still created the demo")
	}
}

func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	noenv := func(string) string { return "" }
	cmd := func(stdin string, args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(context.Background(), append(args, "--data-dir", dir), env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: noenv})
		return out.String(), err
	}
	out, err := cmd("", "create-account", "--name", "Agency Z", "--email", "zed@z.example", "--owner-name", "Zed")
	if err != nil {
		t.Fatalf("create-account: %v", err)
	}
	if !passwordLine.MatchString(out) {
		t.Fatalf("create-account did not print the generated password: %q", out)
	}
	accountID := regexp.MustCompile(`\(([0-9a-f-]{36})\)`).FindStringSubmatch(out)[1]
	if _, err := cmd("a chosen password\n", "create-user", "--email", "amy@z.example", "--role", "account-admin", "--account", accountID, "--password-stdin"); err != nil {
		t.Fatalf("create-user: %v", err)
	}
	if _, err := cmd("", "create-user", "--email", "x@z.example", "--role", "account-owner", "--account", accountID); err == nil {
		t.Fatal("create-user with the owner role: got nil error")
	}
	out, err = cmd("", "reset-password", "--email", "amy@z.example")
	if err != nil || !passwordLine.MatchString(out) {
		t.Fatalf("reset-password: %q, %v", out, err)
	}
	if _, err := cmd("", "reset-password", "--email", "nobody@z.example"); err == nil {
		t.Fatal("reset-password of an unknown email: got nil error")
	}
	if _, err := cmd("", "reset-mfa", "--email", "amy@z.example"); err == nil || !strings.Contains(err.Error(), "off") {
		t.Fatalf("reset-mfa of someone without MFA: got %v, want an error saying it is off", err)
	}
	out, err = cmd("", "accounts")
	if err != nil || !strings.Contains(out, "Agency Z") {
		t.Fatalf("accounts: %q, %v", out, err)
	}
	out, err = cmd("", "migrate")
	if err != nil || !strings.Contains(out, "schema version") {
		t.Fatalf("migrate: %q, %v", out, err)
	}
	if _, err := cmd("", "frobnicate"); err == nil {
		t.Fatal("unknown command: got nil error")
	}
}

func TestRotateKeyCommand(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	run1 := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(ctx, append(args, "--data-dir", dir), env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	run1("create-account", "--name", "Agency", "--email", "o@a.example")
	keys, _, err := vault.LoadKeyring("", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := db.Open(ctx, filepath.Join(dir, "taskjuice.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	accounts := account.NewService(d)
	entries, err := accounts.Directory(ctx)
	if err != nil || len(entries) != 1 {
		t.Fatalf("directory: %v, %v", entries, err)
	}
	ws, err := accounts.CreateWorkspaceForAccount(ctx, entries[0].Account.ID, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	c, err := connection.NewService(d, keys).Create(ctx, ws, connection.New{AppKey: "stripe", Label: "Stripe", Status: connection.StatusActive, Secret: []byte("sk_test_123")}, connection.System)
	if err != nil {
		t.Fatal(err)
	}

	out := run1("rotate-key")
	if !strings.Contains(out, "re-encrypted 1 secrets") {
		t.Fatalf("rotate-key output: %q", out)
	}
	after, _, err := vault.LoadKeyring("", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if after.Current.ID == keys.Current.ID {
		t.Fatal("the key file still holds the old key")
	}
	// Only the new key is needed to read the credential now.
	got, _, err := connection.NewService(d, vault.NewKeyring(after.Current)).Secret(ctx, c.ID)
	if err != nil || string(got) != "sk_test_123" {
		t.Fatalf("secret after rotation: %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, vault.NextKeyFileName)); !os.IsNotExist(err) {
		t.Fatalf("next-key file left behind: %v", err)
	}
}
