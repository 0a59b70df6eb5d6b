// Package egress guards the requests workflow steps send out: a step's URL
// is chosen by whoever edits the workflow, so without a guard it could reach
// the server's own loopback services, the private network behind it or a
// cloud metadata endpoint.
//
// The guard sits in the dialer, after DNS resolution: every address a name
// resolves to is checked, and the connection is made to the checked address
// itself, so neither a redirect nor a name that resolves differently the
// second time gets past it.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// Policy says which addresses outbound requests may reach besides public
// ones. The zero Policy refuses every non-public address.
type Policy struct {
	// AllowPrivate lets requests reach any address (loopback, private,
	// link-local and metadata addresses included).
	AllowPrivate bool
	// AllowCIDRs are ranges reachable even though they are not public.
	AllowCIDRs []netip.Prefix
}

// ParseCIDRs reads a comma-separated list of CIDR ranges (a bare address
// is a range of one).
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			a, err := netip.ParseAddr(part)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR range", part)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR range such as 10.0.0.0/8", part)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			// Addresses are compared unmapped, so compare ranges so too.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// BlockedError is a request refused because its address is not public.
type BlockedError struct {
	Host string // as the URL named it
	Addr netip.Addr
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("%s resolves to %s, a loopback, private, link-local or reserved address that outbound requests may not reach", e.Host, e.Addr)
}

// Allowed reports whether the policy lets a request reach addr.
func (p Policy) Allowed(addr netip.Addr) bool {
	addr = addr.Unmap()
	if p.AllowPrivate {
		return true
	}
	for _, c := range p.AllowCIDRs {
		if c.Contains(addr) {
			return true
		}
	}
	return Public(addr)
}

// nonPublic are the ranges besides those netip classifies (loopback,
// private, link-local, multicast, unspecified) that reach no public host or
// reach the provider's own network.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT; Alibaba's metadata service
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: checked through its IPv4 below
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4 can embed any IPv4
}

// Public reports whether addr is an ordinary public unicast address.
func Public(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() ||
		addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

type trustedKey struct{}

// WithTrusted marks requests made with the returned context as allowed to
// reach the given host:port pairs (as URLs name them) whatever their
// address: the app catalog's own endpoints, declared by the operator, such
// as the built-in sandbox on the server's loopback address. Any other host
// (a redirect elsewhere included) is still checked.
func WithTrusted(ctx context.Context, hostports ...string) context.Context {
	if len(hostports) == 0 {
		return ctx
	}
	set := map[string]bool{}
	if prev, ok := ctx.Value(trustedKey{}).(map[string]bool); ok {
		for k := range prev {
			set[k] = true
		}
	}
	for _, h := range hostports {
		set[strings.ToLower(h)] = true
	}
	return context.WithValue(ctx, trustedKey{}, set)
}

func trusted(ctx context.Context, hostport string) bool {
	set, _ := ctx.Value(trustedKey{}).(map[string]bool)
	return set[strings.ToLower(hostport)]
}

// Dialer dials only addresses the policy allows.
type Dialer struct {
	Policy   Policy
	Resolver *net.Resolver // nil: net.DefaultResolver
	Timeout  time.Duration
}

// DialContext resolves addr, refuses it when none of its addresses is
// allowed, and dials the allowed ones in turn. The dialer's Control checks
// the address once more as the socket connects.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	nd := &net.Dialer{Timeout: d.Timeout, KeepAlive: 30 * time.Second}
	if trusted(ctx, addr) {
		return nd.DialContext(ctx, network, addr)
	}
	nd.Control = func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return err
		}
		if !d.Policy.Allowed(ap.Addr()) {
			return &BlockedError{Host: host, Addr: ap.Addr()}
		}
		return nil
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		addrs = []netip.Addr{a}
	} else {
		r := d.Resolver
		if r == nil {
			r = net.DefaultResolver
		}
		if addrs, err = r.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, err
		}
	}
	var blocked *BlockedError
	var lastErr error
	for _, a := range addrs {
		if !d.Policy.Allowed(a) {
			if blocked == nil {
				blocked = &BlockedError{Host: host, Addr: a.Unmap()}
			}
			continue
		}
		c, err := nd.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	if lastErr != nil {
		return nil, lastErr
	}
	if blocked != nil {
		return nil, blocked
	}
	return nil, fmt.Errorf("%s has no address", host)
}

// Transport returns an HTTP transport whose every connection goes through
// the policy's dialer. It dials directly, never through a proxy from the
// environment: through a proxy the guard would check the proxy's address,
// not the destination's.
func Transport(p Policy) *http.Transport {
	d := &Dialer{Policy: p, Timeout: 30 * time.Second}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = d.DialContext
	return t
}

// Client returns an HTTP client for workflow steps under the policy.
func Client(p Policy, timeout time.Duration) *http.Client {
	return &http.Client{Transport: Transport(p), Timeout: timeout}
}

// IsBlocked reports whether err is (or wraps) a refusal of the guard.
func IsBlocked(err error) (*BlockedError, bool) {
	var b *BlockedError
	ok := errors.As(err, &b)
	return b, ok
}
