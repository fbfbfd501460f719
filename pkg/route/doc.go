// Package route is mailpipe's address routing model: which recipient addresses mailpipe receives
// mail for, and which tenant, integration, pipeline, CRM targets, rules set and sender policy the
// mail belongs to.
//
// A route (events.Route, the value type of the compacted topic mail.routes.v1) has an address
// pattern of one of four kinds, from most to least specific:
//
//	support+acme@in.example.com   exact address
//	support+{tenant}@in.example.com   plus pattern; the tag is the tenant
//	deals+*@in.example.com        plus pattern; any tag, carried in the match
//	*@in.example.com              catch-all for the domain
//
// An address resolves to the most specific route that matches it: exact, then a plus pattern on
// its base address (the local part before the first "+"), then an exact route for the base
// address (plus addressing: support+anything@… reaches the route for support@… and carries the
// tag "anything"), then the domain's catch-all. Matching is case-insensitive; domains are
// compared in their IDNA A-label form, so bücher.example and xn--bcher-kva.example are the same
// domain, and local parts are compared in Unicode NFC.
//
// The package is pure: it holds no Kafka, Redis or HTTP code. [Table] is the concurrent lookup
// structure every service resolves addresses with; package kafkaroute fills it from
// mail.routes.v1 and writes routes there, package routeadmin serves the /v1/routes admin API, and
// package routeingest adapts a Table to ingress' Router.
package route
