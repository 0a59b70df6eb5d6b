package egress_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"taskjuice/internal/egress"
)

// counting starts a server on addr (host:0) that counts the requests it gets.
func counting(t *testing.T, ip string, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	ts.Listener.Close()
	ts.Listener = l
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, &n
}

func TestPublic(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true}, {"2606:4700:4700::1111", true},
		{"127.0.0.1", false}, {"::1", false}, {"10.1.2.3", false}, {"172.16.0.1", false}, {"192.168.1.1", false},
		{"169.254.169.254", false}, {"fe80::1", false}, {"fd00:ec2::254", false}, {"100.100.100.200", false},
		{"0.0.0.0", false}, {"::", false}, {"::ffff:127.0.0.1", false}, {"::ffff:10.0.0.1", false}, {"224.0.0.1", false},
	} {
		if got := egress.Public(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Public(%s): got %v, want %v", tc.addr, got, tc.want)
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := egress.ParseCIDRs(" 10.0.0.0/8, 192.168.1.7 ,::ffff:172.16.0.0/108")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.168.1.7/32", "172.16.0.0/12"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if _, err := egress.ParseCIDRs("10.0.0.0/33"); err == nil {
		t.Fatal("10.0.0.0/33: got no error")
	}
}

// Without the operator's opt-in no request reaches a loopback server, by
// address or by a name resolving to it; with it, or with its range
// allowed, the request goes through.
func TestLoopbackRefusedUnlessAllowed(t *testing.T) {
	ts, n := counting(t, "127.0.0.1", nil)
	port := ts.URL[strings.LastIndex(ts.URL, ":")+1:]
	for _, url := range []string{ts.URL, "http://localhost:" + port} {
		_, err := egress.Client(egress.Policy{}, 5*time.Second).Get(url)
		if b, ok := egress.IsBlocked(err); !ok || !b.Addr.IsLoopback() {
			t.Fatalf("GET %s without opt-in: got %v, want a refusal naming a loopback address", url, err)
		}
	}
	if n.Load() != 0 {
		t.Fatalf("requests received without opt-in: got %d, want 0", n.Load())
	}
	cidrs, _ := egress.ParseCIDRs("127.0.0.0/8")
	for _, p := range []egress.Policy{{AllowPrivate: true}, {AllowCIDRs: cidrs}} {
		res, err := egress.Client(p, 5*time.Second).Get(ts.URL)
		if err != nil {
			t.Fatalf("GET with %+v: %v", p, err)
		}
		res.Body.Close()
	}
	if n.Load() != 2 {
		t.Fatalf("requests received with opt-in: got %d, want 2", n.Load())
	}
}

// The metadata address is refused before anything is dialled.
func TestMetadataRefused(t *testing.T) {
	_, err := egress.Client(egress.Policy{}, 5*time.Second).Get("http://169.254.169.254/latest/meta-data/")
	if _, ok := egress.IsBlocked(err); !ok {
		t.Fatalf("metadata: got %v, want a refusal", err)
	}
}

// A redirect from an allowed server to a refused address is refused at the
// second dial: the target never sees a request. A trusted host is reachable,
// but what it redirects to is checked.
func TestRedirectToPrivateRefused(t *testing.T) {
	target, hits := counting(t, "127.0.0.2", nil)
	front, _ := counting(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/secret", http.StatusFound)
	})
	cidrs, _ := egress.ParseCIDRs("127.0.0.1/32")
	_, err := egress.Client(egress.Policy{AllowCIDRs: cidrs}, 5*time.Second).Get(front.URL)
	if b, ok := egress.IsBlocked(err); !ok || b.Addr.String() != "127.0.0.2" {
		t.Fatalf("redirect to 127.0.0.2: got %v, want a refusal naming 127.0.0.2", err)
	}
	ctx := egress.WithTrusted(context.Background(), strings.TrimPrefix(front.URL, "http://"))
	req, _ := http.NewRequestWithContext(ctx, "GET", front.URL, nil)
	_, err = egress.Client(egress.Policy{}, 5*time.Second).Do(req)
	if b, ok := egress.IsBlocked(err); !ok || b.Addr.String() != "127.0.0.2" {
		t.Fatalf("redirect from a trusted host: got %v, want a refusal naming 127.0.0.2", err)
	}
	if hits.Load() != 0 {
		t.Fatalf("requests at the redirect target: got %d, want 0", hits.Load())
	}
}
