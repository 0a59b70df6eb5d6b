package connection_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
	"taskjuice/internal/egress"
)

// countingServer counts the requests it receives and the credentials they
// carried.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64, *atomic.Value) {
	t.Helper()
	var n atomic.Int64
	var auth atomic.Value
	auth.Store("")
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		auth.Store(r.Header.Get("Authorization"))
		if h != nil {
			h(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(ts.Close)
	return ts, &n, &auth
}

func stripeConn(t *testing.T, f fixture) connection.Connection {
	t.Helper()
	c, err := f.svc.CreateWithCredential(context.Background(), f.acme, connection.New{AppKey: "stripe", Label: "Stripe", Status: connection.StatusActive},
		connection.Credential{APIKey: "sk_test_SECRET", Fields: map[string]string{"apiKey": "sk_test_SECRET"}}, connection.System)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A request carrying a connection's credential to a host its app does not
// declare is refused before anything leaves, naming the allowed hosts; once
// an admin adds the host to the connection's allowed domains it goes
// through, and the change is in the connection's health history.
func TestAppClientSendsCredentialOnlyToAllowedHosts(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		evil, hits, auth := countingServer(t, nil)
		c := stripeConn(t, f)
		client := connection.NewAppClient(f.svc, connection.NewRefresher(f.svc, nil, fastOptions()), testCatalog(t), privateOK)

		for _, target := range []string{evil.URL + "/steal", "http://api.stripe.com/v1/customers", "https://api.stripe.com.evil.example/v1"} {
			_, err := client.Do(ctx, c.ID, get(target))
			var hn *connection.HostNotAllowedError
			if !errors.As(err, &hn) {
				t.Fatalf("GET %s: got %v, want HostNotAllowedError", target, err)
			}
			if strings.Join(hn.Allowed, ",") != "api.stripe.com" || !strings.Contains(hn.Error(), "allowed hosts: api.stripe.com") {
				t.Fatalf("refusal: got %q (allowed %v), want it to name api.stripe.com", hn.Error(), hn.Allowed)
			}
		}
		if hits.Load() != 0 {
			t.Fatalf("requests received by the unlisted host: got %d, want 0", hits.Load())
		}

		admin := connection.Actor{Kind: connection.ActorUser, UserID: f.owner.User.ID}
		got, err := f.svc.SetAllowedDomains(ctx, f.acme, c.ID, []string{evil.URL, "  ", evil.URL + "/"}, admin)
		if err != nil || len(got) != 1 || got[0] != evil.URL {
			t.Fatalf("widen: got %v, %v; want [%s]", got, err, evil.URL)
		}
		res, err := client.Do(ctx, c.ID, get(evil.URL+"/v1/customers"))
		if err != nil || res.Status != 200 || hits.Load() != 1 || auth.Load() != "Bearer sk_test_SECRET" {
			t.Fatalf("after widening: %d, %v, %d requests, auth %q; want one request with the key", res.Status, err, hits.Load(), auth.Load())
		}

		hist, err := f.svc.History(ctx, f.acme, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		last := hist[len(hist)-1]
		if !strings.Contains(last.Reason, "Allowed domains changed: added "+evil.URL) || last.ActorUserID != f.owner.User.ID || last.From != last.To {
			t.Fatalf("history: got %+v, want the widening by the owner", last)
		}

		// Narrowing again is recorded too, and refuses the host again.
		if _, err := f.svc.SetAllowedDomains(ctx, f.acme, c.ID, nil, admin); err != nil {
			t.Fatal(err)
		}
		hist, _ = f.svc.History(ctx, f.acme, c.ID)
		if r := hist[len(hist)-1].Reason; !strings.Contains(r, "removed "+evil.URL) {
			t.Fatalf("history after narrowing: got %q", r)
		}
		if _, err := client.Do(ctx, c.ID, get(evil.URL)); err == nil || hits.Load() != 1 {
			t.Fatalf("after narrowing: got %v with %d requests, want a refusal and still 1", err, hits.Load())
		}
	})
}

// A redirect from an allowed host to another host is refused before the
// second request: an app's own key header would otherwise follow it.
func TestAppClientRedirectToOtherHostRefused(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		other, hits, _ := countingServer(t, nil)
		front, _, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/collect", http.StatusTemporaryRedirect)
		})
		c := stripeConn(t, f)
		widen(t, f, c.ID, front.URL)
		client := connection.NewAppClient(f.svc, connection.NewRefresher(f.svc, nil, fastOptions()), testCatalog(t), privateOK)
		_, err := client.Do(context.Background(), c.ID, get(front.URL))
		var hn *connection.HostNotAllowedError
		if !errors.As(err, &hn) || hn.Host != other.URL {
			t.Fatalf("redirect: got %v, want HostNotAllowedError for %s", err, other.URL)
		}
		if hits.Load() != 0 {
			t.Fatalf("requests at the redirect target: got %d, want 0", hits.Load())
		}
	})
}

// The operator's private-address guard still applies to a widened host; the
// catalog's own endpoints (the sandbox, on loopback) keep working.
func TestAppClientPrivateAddressesNeedTheOperator(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		ctx := context.Background()
		api, hits, _ := countingServer(t, nil)
		c := stripeConn(t, f)
		widen(t, f, c.ID, api.URL)
		guarded := connection.NewAppClient(f.svc, connection.NewRefresher(f.svc, nil, fastOptions()), testCatalog(t), nil)
		_, err := guarded.Do(ctx, c.ID, get(api.URL))
		if _, ok := egress.IsBlocked(err); !ok || hits.Load() != 0 {
			t.Fatalf("widened loopback host without opt-in: got %v with %d requests, want a refusal and 0", err, hits.Load())
		}

		cat, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }, SandboxURL: api.URL + "/sandbox"})
		if err != nil {
			t.Fatal(err)
		}
		chat := f.createOAuth(t, time.Now().Add(time.Hour))
		client := connection.NewAppClient(f.svc, connection.NewRefresher(f.svc, nil, fastOptions()), cat, nil)
		res, err := client.Do(ctx, chat.ID, get(api.URL+"/sandbox/api/channels"))
		if err != nil || res.Status != 200 || hits.Load() != 1 {
			t.Fatalf("sandbox app on loopback: %d, %v, %d requests; want it to go through", res.Status, err, hits.Load())
		}
	})
}

// A Freshdesk connection may reach its own helpdesk only.
func TestAppClientFieldHost(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f := setup(t, d)
		c, err := f.svc.CreateWithCredential(context.Background(), f.acme, connection.New{AppKey: "freshdesk", Label: "Help", Status: connection.StatusActive,
			Metadata: map[string]string{"subdomain": "acme"}},
			connection.Credential{APIKey: "fdkey", Fields: map[string]string{"apiKey": "fdkey"}}, connection.System)
		if err != nil {
			t.Fatal(err)
		}
		check, err := f.svc.HostCheck(context.Background(), f.acme, testCatalog(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := check(c.ID, "https://acme.freshdesk.com/api/v2/tickets"); err != nil {
			t.Fatalf("own helpdesk: got %v, want allowed", err)
		}
		err = check(c.ID, "https://other.freshdesk.com/api/v2/tickets")
		if err == nil || !strings.Contains(err.Error(), "other.freshdesk.com") || !strings.Contains(err.Error(), "allowed hosts: acme.freshdesk.com") {
			t.Fatalf("another helpdesk: got %v, want a refusal naming acme.freshdesk.com", err)
		}
		if err := check("no-such-connection", "https://evil.example"); err != nil {
			t.Fatalf("unknown connection: got %v, want nil (the gate reports it elsewhere)", err)
		}
	})
}

func TestParseAllowedDomain(t *testing.T) {
	for in, want := range map[string]string{
		"uploads.github.com":              "https://uploads.github.com",
		"API.Example.com:8443":            "https://api.example.com:8443",
		"https://api.example.com/":        "https://api.example.com",
		"https://api.example.com:443":     "https://api.example.com",
		"http://intranet.example:8080":    "http://intranet.example:8080",
		"10.0.0.5":                        "https://10.0.0.5",
		"*.example.com":                   "",
		"api.example.com/v1":              "",
		"user@api.example.com":            "",
		"ftp://api.example.com":           "",
		"api.example.com?x=1":             "",
		"exa mple.com":                    "",
		"":                                "",
		"api.example.com:99999":           "",
		"https://api.example.com#frag":    "",
		"javascript:alert(1)":             "",
		"https://api.example.com:0/":      "",
		"https://-bad-.example.com":       "",
		"https://xn--caf-dma.example":     "https://xn--caf-dma.example",
		"https://a..example.com":          "",
		"https://api.example.com.":        "",
		"https://user:pw@api.example.com": "",
	} {
		got, err := connection.ParseAllowedDomain(in)
		if want == "" {
			if e, ok := apperr.As(err); !ok || e.Kind != apperr.KindInvalid {
				t.Errorf("ParseAllowedDomain(%q): got (%q, %v), want an invalid-input error", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ParseAllowedDomain(%q): got (%q, %v), want %q", in, got, err, want)
		}
	}
}
