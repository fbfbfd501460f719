// Package netguard is a dial-time address policy against server-side request forgery (SSRF):
// it keeps an HTTP client that posts to operator- or user-configured URLs (the webhook CRM
// connector) away from loopback, private networks, link-local addresses (cloud metadata at
// 169.254.169.254) and other addresses that are not public unicast.
//
// The check runs in net.Dialer.Control, on the address the socket is about to connect to, after
// name resolution. Checking the URL's host name beforehand would not do: a name can resolve to
// a public address when checked and to 127.0.0.1 when dialled (DNS rebinding), and a URL can
// spell one address many ways (decimal, IPv4-mapped IPv6). At dial time there is only one
// spelling, and it is the one that gets connected to.
//
// [Policy.Transport] builds an *http.Transport with the check in its dialer and with proxies
// turned off, because through a proxy the dialled address is the proxy's and the proxy would
// reach the real destination unchecked. Redirects are the client's business: a caller that does
// follow them still gets every hop checked, since every hop is dialled through the policy.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"syscall"
	"time"
)

// ErrRefused is wrapped by every error of a refused destination, so callers can tell a refused
// dial (a configuration problem, not worth a retry) from a network failure with errors.Is.
var ErrRefused = errors.New("destination refused")

// Policy decides which addresses may be dialled. The zero value refuses every address that is
// not public unicast (see [Policy.Check]). A Policy is a value; copy it freely, but do not
// change Allow's elements after calling Control or Transport.
type Policy struct {
	// AllowPrivate turns the range checks off: every address may be dialled, loopback and
	// link-local (cloud metadata) included. Meant for tests and for deployments whose targets
	// are all internal; prefer Allow with the one network that is needed.
	AllowPrivate bool
	// Allow lists networks that may be dialled even though they would be refused, so an
	// operator can permit one internal network (10.20.0.0/16) and nothing else. An IPv4 prefix
	// also matches the IPv4-mapped IPv6 form of its addresses.
	Allow []netip.Prefix
}

// blockedRange is a network that is refused by default, with the reason the error gives.
type blockedRange struct {
	prefix netip.Prefix
	reason string
}

// blockedRanges are the ranges Check refuses beyond what netip.Addr's predicates
// (IsLoopback, IsPrivate, IsLinkLocalUnicast, IsMulticast, IsUnspecified) already cover. They
// are read-only after initialisation.
var blockedRanges = []blockedRange{
	{netip.MustParsePrefix("255.255.255.255/32"), "the broadcast address"},
	{netip.MustParsePrefix("0.0.0.0/8"), `in 0.0.0.0/8 ("this network", dials may reach the local host)`},
	{netip.MustParsePrefix("100.64.0.0/10"), "in the shared address space 100.64.0.0/10 (carrier-grade NAT)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "in the benchmarking range 198.18.0.0/15"},
	{netip.MustParsePrefix("240.0.0.0/4"), "in the reserved range 240.0.0.0/4"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (deprecated private IPv6)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "in the local-use NAT64 range 64:ff9b:1::/48"},
}

// Prefixes whose addresses embed an IPv4 address that a gateway connects to; the embedded
// address is what gets reached, so it is checked in turn.
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052 well-known prefix
	sixToFour   = netip.MustParsePrefix("2002::/16")    // RFC 3056
)

// Check returns nil if addr may be dialled, or an error wrapping [ErrRefused] that names the
// address and the reason, such as "destination refused: 169.254.169.254 is link-local".
//
// Refused unless allowed: unspecified (0.0.0.0, ::), loopback (127.0.0.0/8, ::1), private
// (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10), multicast,
// broadcast, 0.0.0.0/8, 100.64.0.0/10 (carrier-grade NAT), 198.18.0.0/15, 240.0.0.0/4, the
// deprecated site-local fec0::/10, and the NAT64 (64:ff9b::/96) and 6to4 (2002::/16) forms of
// refused IPv4 addresses. An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is judged as the IPv4
// address it maps. The zone of a scoped address is ignored.
func (p Policy) Check(addr netip.Addr) error {
	if !addr.IsValid() {
		return fmt.Errorf("%w: no valid IP address", ErrRefused)
	}
	if p.AllowPrivate {
		return nil
	}
	bare := addr.WithZone("")
	unmapped := bare.Unmap()
	for _, pfx := range p.Allow {
		if pfx.Contains(bare) || pfx.Contains(unmapped) {
			return nil
		}
	}
	reason := refusalReason(unmapped)
	if reason == "" {
		return nil
	}
	if unmapped != bare {
		reason += " (IPv4-mapped)"
	}
	return fmt.Errorf("%w: %s is %s", ErrRefused, addr, reason)
}

// refusalReason says why a (zone-less, unmapped) address is refused, or returns "" for a public
// unicast address.
func refusalReason(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	}
	for _, r := range blockedRanges {
		if r.prefix.Contains(a) {
			return r.reason
		}
	}
	if a.Is6() {
		if v4, ok := embeddedIPv4(a); ok {
			if inner := refusalReason(v4); inner != "" {
				return fmt.Sprintf("a NAT64/6to4 form of %s, which is %s", v4, inner)
			}
		}
	}
	return ""
}

// embeddedIPv4 returns the IPv4 address a NAT64 (last 32 bits) or 6to4 (bits 16 to 47) address
// carries.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case nat64Prefix.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// Control returns a function for net.Dialer.Control that refuses, per [Policy.Check], to connect
// to the resolved address it is given. An address that is not a literal IP:port is refused:
// failing closed beats connecting somewhere unchecked.
func (p Policy) Control() func(network, address string, c syscall.RawConn) error {
	// Own the prefix list, so a caller that reuses its slice cannot change a running policy.
	p.Allow = slices.Clone(p.Allow)
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: %s address %q is not an IP and port", ErrRefused, network, address)
		}
		return p.Check(ap.Addr())
	}
}

// Dialer returns a net.Dialer with the timeouts of http.DefaultTransport's dialer and the
// policy as its Control.
func (p Policy) Dialer() *net.Dialer {
	return &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: p.Control()}
}

// Transport returns a clone of http.DefaultTransport that dials through [Policy.Dialer] and uses
// no proxy. Proxy is off because with one the dialled address is the proxy's, and the proxy
// would connect to the real destination unchecked; the environment's HTTP_PROXY is ignored.
func (p Policy) Transport() *http.Transport {
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		// Someone replaced the default transport; start from a fresh one rather than wrap it.
		t = &http.Transport{ForceAttemptHTTP2: true, MaxIdleConns: 100, IdleConnTimeout: 90 * time.Second}
	}
	t.Proxy = nil
	// TLS connections are dialled through DialContext too, as long as no DialTLSContext is
	// set; neither the default transport nor the fallback sets one.
	t.DialContext = p.Dialer().DialContext
	return t
}
