package authn_test

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"taskjuice/internal/authn"
)

func TestClientIP(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name    string
		trust   bool
		remote  string
		forward []string
		want    string
	}{
		{"no proxies trusted: header ignored", false, "10.1.2.3:5555", []string{"203.0.113.7"}, "10.1.2.3"},
		{"untrusted peer: header ignored", true, "198.51.100.1:5555", []string{"203.0.113.7"}, "198.51.100.1"},
		{"one trusted proxy", true, "10.1.2.3:5555", []string{"203.0.113.7"}, "203.0.113.7"},
		{"spoofed left entries are ignored", true, "10.1.2.3:5555", []string{"1.2.3.4, 203.0.113.7"}, "203.0.113.7"},
		{"chain of trusted proxies", true, "10.1.2.3:5555", []string{"6.6.6.6, 203.0.113.7, 10.9.9.9"}, "203.0.113.7"},
		{"several header lines", true, "10.1.2.3:5555", []string{"6.6.6.6", "203.0.113.7, 10.9.9.9"}, "203.0.113.7"},
		{"garbage hop stops the walk", true, "10.1.2.3:5555", []string{"203.0.113.7, not-an-ip"}, "10.1.2.3"},
		{"every hop trusted", true, "10.1.2.3:5555", []string{"10.4.4.4"}, "10.4.4.4"},
		{"no header", true, "10.1.2.3:5555", nil, "10.1.2.3"},
		{"IPv6 proxy", true, "[fd00::1]:443", []string{"2001:db8::5"}, "2001:db8::5"},
		{"IPv4-mapped peer", true, "[::ffff:10.1.2.3]:80", []string{"203.0.113.7"}, "203.0.113.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := authn.New(nil, false)
			if tc.trust {
				a.TrustProxies(proxies)
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.forward {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := a.ClientIP(r); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
