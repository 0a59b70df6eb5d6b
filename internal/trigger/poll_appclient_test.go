package trigger

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// toServer sends every request to a local test server, keeping its URL's
// host (api.hubapi.com) for the connection's host check and the handler.
type toServer struct {
	addr string
	seen atomic.Int64
}

func (s *toServer) RoundTrip(req *http.Request) (*http.Response, error) {
	s.seen.Add(1)
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host = "http", s.addr
	r.Host = req.URL.Host
	return http.DefaultTransport.RoundTrip(r)
}

// The HubSpot source through the real connection client: the stored
// token goes as a bearer to the app's own host, the search is a JSON POST,
// and the contacts start runs.
func TestPollHubSpotThroughTheConnectionClient(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		h := &fakeHubSpot{t: t, at: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
		var auth atomic.Value
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			auth.Store(r.Header.Get("Authorization") + " @" + r.Host)
			h.ServeHTTP(w, r)
		}))
		defer srv.Close()
		rt := &toServer{addr: srv.Listener.Addr().String()}

		wf := newWorkflow(t, d)
		ws := account.Workspace{ID: "ws-" + strings.TrimPrefix(wf, "wf-")}
		conns := connection.NewService(d, testKeyring(t))
		conn, err := conns.CreateWithCredential(ctx, ws, connection.New{AppKey: "hubspot", Label: "CRM", Status: connection.StatusActive},
			connection.Credential{OAuth: &connection.OAuthToken{AccessToken: "CJSP5qf1KhICAQEYs-gDIIGOBii1hQIyGQ", TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}}, connection.System)
		if err != nil {
			t.Fatal(err)
		}
		cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }})
		if err != nil {
			t.Fatal(err)
		}
		refresher := connection.NewRefresher(conns, connection.CatalogOAuth(cat, "http://127.0.0.1/callback"), connection.RefresherOptions{Backoff: time.Millisecond})
		api := connection.NewAppClient(conns, refresher, cat, &http.Client{Transport: rt, Timeout: 10 * time.Second})
		starter := &fakeStarter{}
		clk := &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
		p := NewPoller(d, starter, api, conns, cat, PollerOptions{Owner: "p1", Now: clk.Now})
		if err := p.Sync(ctx, PollTrigger{WorkflowID: wf, NodeID: "start", App: "hubspot", Trigger: "new-contact", ConnectionID: conn.ID}); err != nil {
			t.Fatal(err)
		}
		h.add(2)
		if n, err := p.Tick(ctx, clk.Now()); n != 0 || err != nil {
			t.Fatalf("first poll: %d runs, %v", n, err)
		}
		want := h.add(4)
		clk.Set(clk.Now().Add(time.Hour))
		if n, err := p.Tick(ctx, clk.Now()); n != 4 || err != nil {
			s, _, _ := p.State(ctx, wf)
			t.Fatalf("second poll: %d runs, %v (%+v)", n, err, s)
		}
		var got []string
		for _, c := range starter.Calls() {
			got = append(got, strings.TrimPrefix(c.DedupKey, "poll:"))
		}
		if join(got) != join(want) {
			t.Fatalf("runs %v, want %v", got, want)
		}
		if a, _ := auth.Load().(string); a != "Bearer CJSP5qf1KhICAQEYs-gDIIGOBii1hQIyGQ @api.hubapi.com" {
			t.Fatalf("request authorization and host: got %q, want the stored token sent to api.hubapi.com", a)
		}
	})
}
