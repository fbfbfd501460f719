package ingest

import (
	"strings"
)

// DefaultTenant is the tenant of every recipient accepted by a [DomainRouter].
const DefaultTenant = "default"

// Route is where a recipient address belongs.
//
// Routes are compared with == (recipients of one transaction must share a route, see
// Ingester.Accept and the SMTP front-end), so every field must stay comparable.
type Route struct {
	// ID of the route; empty while routes are not configured (the domain list fallback).
	ID string
	// Tenant that owns the route. Never empty for a resolved route.
	Tenant string
	// Tag is the plus tag of the recipient ("acme" for support+acme@…) when the route matched by
	// the base address; "" otherwise. Recipients with different tags are different routes, so
	// one record never mixes them.
	Tag string
	// MaxSize is the route's message size limit in bytes; 0 means the server default.
	MaxSize int64
	// Senders is the route's sender allow/deny policy; nil accepts every sender. It must be a
	// comparable value (a pointer), shared by every recipient of the route.
	Senders SenderPolicy
}

// SenderPolicy decides whether a route accepts mail from an envelope sender (a bare address,
// or "" for the null sender of bounces). Implementations must be safe for concurrent use.
type SenderPolicy interface {
	AllowsSender(from string) bool
}

// Router resolves an envelope recipient to its route. The route table fed from mail.routes.v1
// implements it (package route/routeingest); without routes, [DomainRouter] accepts a fixed list
// of domains.
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
