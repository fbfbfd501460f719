package ingest

import (
	"strings"
)

// DefaultTenant is the tenant of every recipient accepted by a [DomainRouter].
const DefaultTenant = "default"

// Route is where a recipient address belongs.
type Route struct {
	// ID of the route; empty while routes are not configured (the domain list fallback).
	ID string
	// Tenant that owns the route. Never empty for a resolved route.
	Tenant string
}

// Router resolves an envelope recipient to its route. The route table fed from mail.routes.v1
// (pkg/route) will implement it; until then [DomainRouter] accepts a fixed list of domains.
//
// Resolve must be safe for concurrent use and fast: the SMTP front-end calls it for every RCPT TO
// while the client waits. It reports false for an address mailpipe does not receive mail for,
// which front-ends answer with 550 5.1.1, so ingress is never an open relay.
type Router interface {
	Resolve(rcpt string) (Route, bool)
}

// DomainRouter accepts every local part at a fixed set of domains and gives all of them the
// tenant [DefaultTenant] and an empty route id. Domains match case-insensitively and exactly:
// "example.com" does not accept mail for "in.example.com".
type DomainRouter struct {
	domains map[string]struct{}
}

// NewDomainRouter returns a router for domains. Surrounding space, a leading "@" and a trailing
// dot are ignored; empty entries are skipped. With no domains it accepts nothing.
func NewDomainRouter(domains []string) *DomainRouter {
	r := &DomainRouter{domains: make(map[string]struct{}, len(domains))}
	for _, d := range domains {
		if d = normalizeDomain(d); d != "" {
			r.domains[d] = struct{}{}
		}
	}
	return r
}

// Resolve implements [Router]. rcpt is a bare address (local@domain) without angle brackets.
func (r *DomainRouter) Resolve(rcpt string) (Route, bool) {
	at := strings.LastIndexByte(rcpt, '@')
	if at <= 0 || at == len(rcpt)-1 {
		return Route{}, false
	}
	if _, ok := r.domains[normalizeDomain(rcpt[at+1:])]; !ok {
		return Route{}, false
	}
	return Route{Tenant: DefaultTenant}, true
}

func normalizeDomain(d string) string {
	d = strings.TrimSpace(d)
	d = strings.TrimPrefix(d, "@")
	d = strings.TrimSuffix(d, ".")
	return strings.ToLower(d)
}
