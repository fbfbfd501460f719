// Package mailauthtest provides an in-memory DNS fixture implementing
// mailauth.Resolver, so authentication tests run offline.
package mailauthtest

import (
	"context"
	"net"
	"strings"
)

// Resolver answers from its maps; names are matched case-insensitively and
// without the trailing dot. A name absent from a map is NXDOMAIN; a name in
// Temporary fails every lookup with a temporary error. The maps must not be
// modified while the Resolver is in use.
type Resolver struct {
	TXT       map[string][]string
	MX        map[string][]*net.MX
	IP        map[string][]net.IPAddr
	Addr      map[string][]string
	Temporary map[string]bool
}

func key(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

func lookup[T any](r *Resolver, m map[string][]T, name string) ([]T, error) {
	k := key(name)
	if r.Temporary[k] {
		return nil, &net.DNSError{Err: "server misbehaving", Name: name, IsTemporary: true}
	}
	v, ok := m[k]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return v, nil
}

// LookupTXT implements mailauth.Resolver.
func (r *Resolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	return lookup(r, r.TXT, name)
}

// LookupMX implements mailauth.Resolver.
func (r *Resolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	return lookup(r, r.MX, name)
}

// LookupIPAddr implements mailauth.Resolver.
func (r *Resolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	return lookup(r, r.IP, host)
}

// LookupAddr implements mailauth.Resolver.
func (r *Resolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	return lookup(r, r.Addr, addr)
}
