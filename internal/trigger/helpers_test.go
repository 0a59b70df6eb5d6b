package trigger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/vault"
)

// newWorkflow inserts an account, a workspace and a workflow with plain SQL
// and returns the workflow's id.
func newWorkflow(t *testing.T, d *db.DB) string {
	t.Helper()
	ctx := context.Background()
	tok, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	acc, ws, wf := "acc-"+tok, "ws-"+tok, "wf-"+tok
	now := db.Now()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO accounts (id, name, created_at) VALUES ($1, 'Agency', $2)`, []any{acc, now}},
		{`INSERT INTO workspaces (id, account_id, name, slug, created_at) VALUES ($1, $2, 'Client', $3, $4)`, []any{ws, acc, "client-" + tok, now}},
		{`INSERT INTO workflows (id, workspace_id, name, created_at, updated_at) VALUES ($1, $2, 'Flow', $3, $3)`, []any{wf, ws, now}},
	} {
		if _, err := d.Write().ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	return wf
}

func testKeyring(t *testing.T) vault.Keyring {
	t.Helper()
	k, _, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return vault.NewKeyring(k)
}

// startCall is one StartRun call the fake starter saw.
type startCall struct {
	WorkflowID string
	Payload    json.RawMessage
	Source     string
	DedupKey   string
}

// fakeStarter records calls. Like the engine, it returns the same run for a
// repeated dedup key. err, when set, fails every call.
type fakeStarter struct {
	mu       sync.Mutex
	calls    []startCall
	byKey    map[string]string
	err      error
	delay    time.Duration
	returned int // calls that have returned
}

func (f *fakeStarter) StartRun(ctx context.Context, workflowID string, payload json.RawMessage, source, dedupKey string) (string, error) {
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() { f.returned++ }()
	f.calls = append(f.calls, startCall{workflowID, append(json.RawMessage(nil), payload...), source, dedupKey})
	if f.err != nil {
		return "", f.err
	}
	if f.byKey == nil {
		f.byKey = map[string]string{}
	}
	if id, ok := f.byKey[workflowID+"\x00"+dedupKey]; ok && dedupKey != "" {
		return id, nil
	}
	id := fmt.Sprintf("run-%d", len(f.calls))
	if dedupKey != "" {
		f.byKey[workflowID+"\x00"+dedupKey] = id
	}
	return id, nil
}

func (f *fakeStarter) Calls() []startCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]startCall(nil), f.calls...)
}

func (f *fakeStarter) Returned() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.returned
}

// fakeWorkflows reports one active trigger for every workflow.
type fakeWorkflows struct {
	mu     sync.Mutex
	kind   string
	config json.RawMessage
	ok     bool
	err    error
}

func (f *fakeWorkflows) set(kind, config string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kind, f.config, f.ok = kind, json.RawMessage(config), ok
}

func (f *fakeWorkflows) ActiveTrigger(ctx context.Context, workflowID string) (string, json.RawMessage, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kind, f.config, f.ok, f.err
}

// logBuffer captures every log record, at every level.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var errDown = errors.New("database is down")
