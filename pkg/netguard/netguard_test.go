package netguard_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/netguard"
)

func TestCheckDefaultPolicy(t *testing.T) {
	for _, tt := range []struct {
		addr   string
		reason string // "" means allowed
	}{
		// Public unicast is allowed.
		{"93.184.215.14", ""},
		{"8.8.8.8", ""},
		{"2606:4700:4700::1111", ""},
		{"100.63.255.255", ""}, // just below CGNAT
		{"100.128.0.0", ""},    // just above CGNAT
		{"172.32.0.1", ""},     // just above 172.16/12
		{"64:ff9b::808:808", ""},
		{"2002:808:808::1", ""},

		{"0.0.0.0", "0.0.0.0 is unspecified"},
		{"::", ":: is unspecified"},
		{"0.1.2.3", "0.1.2.3 is in 0.0.0.0/8"},
		{"127.0.0.1", "127.0.0.1 is loopback"},
		{"127.255.255.254", "is loopback"},
		{"::1", "::1 is loopback"},
		{"10.0.0.1", "10.0.0.1 is private"},
		{"172.16.0.1", "is private"},
		{"172.31.255.255", "is private"},
		{"192.168.1.1", "is private"},
		{"fc00::1", "fc00::1 is private"},
		{"fd12:3456::1", "is private"},
		{"169.254.169.254", "169.254.169.254 is link-local"},
		{"169.254.0.1", "is link-local"},
		{"fe80::1", "fe80::1 is link-local"},
		{"fe80::1%eth0", "fe80::1%eth0 is link-local"},
		{"224.0.0.1", "is multicast"},
		{"239.255.255.250", "is multicast"},
		{"ff02::1", "is multicast"},
		{"100.64.0.1", "100.64.0.1 is in the shared address space 100.64.0.0/10"},
		{"100.127.255.255", "carrier-grade NAT"},
		{"255.255.255.255", "255.255.255.255 is the broadcast address"},
		{"240.0.0.1", "reserved"},
		{"198.18.0.1", "benchmarking"},
		{"fec0::1", "site-local"},
		{"64:ff9b:1::1", "local-use NAT64"},

		// IPv4-mapped IPv6 forms are judged as the IPv4 address.
		{"::ffff:127.0.0.1", "::ffff:127.0.0.1 is loopback (IPv4-mapped)"},
		{"::ffff:169.254.169.254", "is link-local (IPv4-mapped)"},
		{"::ffff:10.1.2.3", "is private (IPv4-mapped)"},
		{"::ffff:0.0.0.0", "is unspecified (IPv4-mapped)"},
		{"::ffff:100.64.1.1", "carrier-grade NAT"},
		{"::ffff:8.8.8.8", ""},

		// NAT64 and 6to4 forms of refused IPv4 addresses.
		{"64:ff9b::7f00:1", "NAT64/6to4 form of 127.0.0.1, which is loopback"},
		{"64:ff9b::a9fe:a9fe", "NAT64/6to4 form of 169.254.169.254, which is link-local"},
		{"2002:a00:1::1", "NAT64/6to4 form of 10.0.0.1, which is private"},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			err := netguard.Policy{}.Check(netip.MustParseAddr(tt.addr))
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want allowed", tt.addr, err)
				}
				return
			}
			if !errors.Is(err, netguard.ErrRefused) {
				t.Fatalf("Check(%s) = %v, want an error wrapping ErrRefused", tt.addr, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("Check(%s) = %q, want it to contain %q", tt.addr, err, tt.reason)
			}
		})
	}
}

func TestCheckOverrides(t *testing.T) {
	internal := netip.MustParsePrefix("10.20.0.0/16")
	for _, tt := range []struct {
		name    string
		policy  netguard.Policy
		addr    string
		refused bool
	}{
		{"allowed network", netguard.Policy{Allow: []netip.Prefix{internal}}, "10.20.3.4", false},
		{"mapped form of allowed network", netguard.Policy{Allow: []netip.Prefix{internal}}, "::ffff:10.20.3.4", false},
		{"outside the allowed network", netguard.Policy{Allow: []netip.Prefix{internal}}, "10.21.0.1", true},
		{"allow does not open other ranges", netguard.Policy{Allow: []netip.Prefix{internal}}, "127.0.0.1", true},
		{"allow loopback only", netguard.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, "127.0.0.1", false},
		{"allow ipv6 loopback", netguard.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("::1/128")}}, "::1", false},
		{"allow ipv6 loopback not ipv4", netguard.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("::1/128")}}, "127.0.0.1", true},
		{"allow link-local with zone", netguard.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("fe80::/10")}}, "fe80::1%eth0", false},
		{"allow metadata host", netguard.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32")}}, "169.254.169.254", false},
		{"allow private permits loopback", netguard.Policy{AllowPrivate: true}, "127.0.0.1", false},
		{"allow private permits metadata", netguard.Policy{AllowPrivate: true}, "169.254.169.254", false},
		{"allow private permits mapped", netguard.Policy{AllowPrivate: true}, "::ffff:192.168.0.1", false},
		{"allow private still public", netguard.Policy{AllowPrivate: true}, "8.8.8.8", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Check(netip.MustParseAddr(tt.addr))
			if got := errors.Is(err, netguard.ErrRefused); got != tt.refused {
				t.Errorf("Check(%s) = %v, refused = %v, want %v", tt.addr, err, got, tt.refused)
			}
		})
	}
}

func TestCheckInvalidAddress(t *testing.T) {
	for _, p := range []netguard.Policy{{}, {AllowPrivate: true}} {
		if err := p.Check(netip.Addr{}); !errors.Is(err, netguard.ErrRefused) {
			t.Errorf("Check(zero Addr) with %+v = %v, want refused", p, err)
		}
	}
}

func TestControl(t *testing.T) {
	for _, tt := range []struct {
		network, address string
		want             string // "" means allowed
	}{
		{"tcp4", "93.184.215.14:443", ""},
		{"tcp6", "[2606:4700:4700::1111]:443", ""},
		{"tcp4", "127.0.0.1:8080", "127.0.0.1 is loopback"},
		{"tcp6", "[::ffff:169.254.169.254]:80", "is link-local (IPv4-mapped)"},
		{"tcp6", "[fe80::1%lo]:80", "is link-local"},
		{"tcp4", "localhost:80", `address "localhost:80" is not an IP and port`},
		{"unix", "/run/docker.sock", "is not an IP and port"},
	} {
		t.Run(tt.address, func(t *testing.T) {
			err := netguard.Policy{}.Control()(tt.network, tt.address, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Control(%s, %s) = %v, want nil", tt.network, tt.address, err)
				}
				return
			}
			if !errors.Is(err, netguard.ErrRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Control(%s, %s) = %v, want ErrRefused containing %q", tt.network, tt.address, err, tt.want)
			}
		})
	}
}

func TestControlOwnsAllowList(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	control := netguard.Policy{Allow: allow}.Control()
	allow[0] = netip.MustParsePrefix("10.0.0.0/8")
	if err := control("tcp4", "127.0.0.1:80", nil); err != nil {
		t.Errorf("changing the caller's slice changed the policy: %v", err)
	}
}

// countingServer is a loopback server that counts the requests it gets.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestTransport(t *testing.T) {
	srv, hits := countingServer(t)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	if netip.MustParseAddrPort(srv.Listener.Addr().String()).Addr().Is6() {
		loopback = netip.MustParsePrefix("::1/128")
	}
	for _, tt := range []struct {
		name    string
		policy  netguard.Policy
		url     string
		refused bool
	}{
		{"literal loopback refused", netguard.Policy{}, srv.URL, true},
		// The name is only resolved by the dialer; the check sees the resolved address.
		{"name resolving to loopback refused", netguard.Policy{}, "http://localhost:" + port + "/", true},
		{"other network allowed is not enough", netguard.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, srv.URL, true},
		{"loopback allowed", netguard.Policy{Allow: []netip.Prefix{loopback}}, srv.URL, false},
		{"allow private", netguard.Policy{AllowPrivate: true}, srv.URL, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := hits.Load()
			client := &http.Client{Transport: tt.policy.Transport()}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, tt.url, http.NoBody)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err == nil {
				_ = resp.Body.Close()
			}
			got := hits.Load() - before
			if tt.refused {
				if !errors.Is(err, netguard.ErrRefused) {
					t.Fatalf("GET %s = %v, want an error wrapping ErrRefused", tt.url, err)
				}
				if got != 0 {
					t.Errorf("server saw %d requests, want 0", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("GET %s = %v, want success", tt.url, err)
			}
			if got != 1 {
				t.Errorf("server saw %d requests, want 1", got)
			}
		})
	}
}

func TestTransportIgnoresProxy(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	tr := netguard.Policy{}.Transport()
	if tr.Proxy != nil {
		t.Fatal("Transport has a Proxy function; a proxy would reach the destination unchecked")
	}
	if tr.DialContext == nil || tr.DialTLSContext != nil {
		t.Error("Transport must dial every connection, TLS included, through the guarded DialContext")
	}
}
