package netguard_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/mailpipe/mailpipe/pkg/netguard"
)

func ExamplePolicy_Check() {
	p := netguard.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}
	for _, a := range []string{"169.254.169.254", "::ffff:127.0.0.1", "10.20.0.7", "10.30.0.7", "93.184.215.14"} {
		err := p.Check(netip.MustParseAddr(a))
		fmt.Println(errors.Is(err, netguard.ErrRefused), err)
	}
	// Output:
	// true destination refused: 169.254.169.254 is link-local
	// true destination refused: ::ffff:127.0.0.1 is loopback (IPv4-mapped)
	// false <nil>
	// true destination refused: 10.30.0.7 is private
	// false <nil>
}

func ExamplePolicy_Transport() {
	// A client for user-supplied URLs: every connection, redirects included, is checked at dial
	// time against the resolved address.
	client := &http.Client{
		Transport: netguard.Policy{}.Transport(),
		Timeout:   10 * time.Second,
	}
	_ = client
}
