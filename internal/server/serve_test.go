package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/server"
)

// TestServeDrainsInFlightRequests: on shutdown the server stops accepting,
// lets a request already being served finish, and stops its workers.
func TestServeDrainsInFlightRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	started := make(chan struct{})
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		_, _ = io.WriteString(w, "done")
	})
	var workerStopped atomic.Bool
	worker := server.Worker{Name: "test", Run: func(ctx context.Context) error {
		<-ctx.Done()
		workerStopped.Store(true)
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, h, slog.New(slog.DiscardHandler), worker) }()

	slow := make(chan string, 1)
	go func() {
		res, err := http.Get(addr + "/slow")
		if err != nil {
			slow <- "error: " + err.Error()
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		slow <- string(b)
	}()
	<-started
	cancel()

	// New connections are refused once shutdown has begun.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 200*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("server still accepts connections after shutdown began")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) before the in-flight request finished", err)
	default:
	}
	close(release)
	if got := <-slow; got != "done" {
		t.Fatalf("in-flight request: got %q, want done", got)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
	if !workerStopped.Load() {
		t.Fatal("worker not stopped")
	}
}

func TestPanicBecomes500(t *testing.T) {
	// The real handler stack must recover: a request body whose reader
	// panics stands in for a bug in a handler.
	d := dbtest.SQLite(t)
	s, err := server.New(fullOptions(t, d, account.NewService(d), slog.New(slog.DiscardHandler), "http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/signin", panicReader{})
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("panicking request: got %d, want 500", rec.Code)
	}
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("reader exploded") }
