package smtpd

import (
	"net/netip"
	"testing"
	"time"
)

func TestRateKey(t *testing.T) {
	for _, tt := range []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:a:b:c:d", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::ffff", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"::1", "::/64"},
	} {
		if got := rateKey(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("rateKey(%s) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}

func TestParseNetworks(t *testing.T) {
	got, err := parseNetworks([]string{"10.1.2.3/8", " 192.0.2.7 ", "2001:db8::/32", "::ffff:198.51.100.1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "198.51.100.1/32"}
	for i, p := range got {
		if p.String() != want[i] {
			t.Errorf("network %d = %s, want %s", i, p, want[i])
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "example.com", "10.0.0.0/x"} {
		if _, err := parseNetworks([]string{bad}); err == nil {
			t.Errorf("parseNetworks(%q) = nil error", bad)
		}
	}
}

func TestRetryIn(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Millisecond:        "1s",
		30 * time.Second:        "30s",
		30*time.Second + 1:      "31s",
		90 * time.Minute:        "1h30m0s",
		999 * time.Millisecond:  "1s",
		1001 * time.Millisecond: "2s",
	} {
		if got := retryIn(d); got != want {
			t.Errorf("retryIn(%v) = %q, want %q", d, got, want)
		}
	}
}
