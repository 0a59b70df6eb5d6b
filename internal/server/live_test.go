package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/workflow"
)

// stream reads Server-Sent Events.
type stream struct {
	t      *testing.T
	events chan [2]string
	cancel context.CancelFunc
}

func (b *browser) stream(path string) *stream {
	b.e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", b.e.srv.URL+path, nil)
	res, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		b.e.t.Fatalf("stream %s: %d %s", path, res.StatusCode, res.Header.Get("Content-Type"))
	}
	s := &stream{t: b.e.t, events: make(chan [2]string, 100), cancel: cancel}
	go func() {
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var event string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				s.events <- [2]string{event, strings.TrimPrefix(line, "data: ")}
			}
		}
		close(s.events)
	}()
	b.e.t.Cleanup(cancel)
	return s
}

// next waits for the next event of a kind.
func (s *stream) next(kind string) string {
	s.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatalf("stream ended waiting for %q", kind)
			}
			if ev[0] == kind {
				return ev[1]
			}
		case <-deadline:
			s.t.Fatalf("no %q event within 5s", kind)
		}
	}
}

// TestLiveStream: a workspace page's event stream tells when the person's
// alerts change and when the watched run moves.
func TestLiveStream(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.signIn("owner@a.example")
		id := connectionFromLocation(t, owner.consent(t, "/acme/connections/new", url.Values{"app": {"sandbox-chat"}}, "Acme Chat"))
		g, err := workflow.ParseGraph([]byte(`{"schema":1,"trigger":{"id":"start","kind":"manual"},
			"nodes":[{"id":"wait","kind":"approval","config":{"message":"Go?"}}],"edges":[{"from":"start","to":"wait"}]}`))
		must(t, err)
		w, err := e.workflows.Create(ctx, e.acme, "Approvals", "", &g, "")
		must(t, err)
		_, err = e.workflows.Publish(ctx, e.acme, w.ID, "", workflow.Checks{})
		must(t, err)
		run, err := e.engine.StartRun(ctx, w.ID, nil, "manual", "")
		must(t, err)

		s := owner.stream("/acme/live?run=" + run)
		first := s.next("alerts")
		var r struct{ Status string }
		must(t, json.Unmarshal([]byte(s.next("run")), &r))
		if r.Status != "pending" {
			t.Fatalf("first run event: %q, want pending", r.Status)
		}
		// The run moves: the stream says so.
		for {
			did, err := e.engine.Work(ctx)
			must(t, err)
			if !did {
				break
			}
		}
		must(t, json.Unmarshal([]byte(s.next("run")), &r))
		if r.Status != "waiting" {
			t.Fatalf("run event after work: %q, want waiting", r.Status)
		}
		// A connection breaks: the alerts change.
		_, err = e.sandbox.RevokeAccount("Acme Chat")
		must(t, err)
		wantStatus(t, "refresh a revoked grant", owner.api("POST", "/api/v1/connections/"+id+"/refresh", ""), 400)
		_, err = e.notify.Consume(ctx)
		must(t, err)
		if next := s.next("alerts"); next == first {
			t.Fatal("alerts event without a new signature")
		}
		page := owner.get("/acme/monitoring/workflow-runs")
		for _, want := range []string{`data-live="/acme/live"`, `id="live-banner"`, `id="runs-live"`, `id="bell"`} {
			if !strings.Contains(page.Body, want) {
				t.Errorf("runs page lacks %s", want)
			}
		}

		// Another workspace's run, or another account, cannot be watched.
		wantStatus(t, "watch a run of another workspace", owner.get("/beta/live?run="+run), 404)
		wantStatus(t, "another account's stream", e.signIn("owner@b.example").get("/acme/live"), 404)
		if res := e.signIn("client@acme.example").get("/acme/live"); res.StatusCode != http.StatusSeeOther && res.StatusCode != http.StatusFound {
			t.Fatalf("client on a staff stream: %d, want a redirect", res.StatusCode)
		}
	})
}
