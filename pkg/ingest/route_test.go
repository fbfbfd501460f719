package ingest_test

import (
	"testing"

	"github.com/mailpipe/mailpipe/pkg/ingest"
)

func TestDomainRouter(t *testing.T) {
	r := ingest.NewDomainRouter([]string{" In.Example.com. ", "@other.example", ""})
	for _, tt := range []struct {
		rcpt string
		ok   bool
	}{
		{"support@in.example.com", true},
		{"Support+acme@IN.EXAMPLE.COM", true},
		{"x@other.example", true},
		{"x@sub.in.example.com", false},
		{"x@example.com", false},
		{"in.example.com", false},
		{"x@", false},
		{"@in.example.com", false},
	} {
		route, ok := r.Resolve(tt.rcpt)
		if ok != tt.ok || (ok && route.Tenant != ingest.DefaultTenant) {
			t.Errorf("Resolve(%q) = %+v, %v; want ok=%v with tenant default", tt.rcpt, route, ok, tt.ok)
		}
	}
}
