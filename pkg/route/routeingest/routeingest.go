// Package routeingest lets ingress resolve recipients with a route table: [Router] adapts a
// route.Table (kept current by kafkaroute.Follower) to ingest.Router, so the SMTP front-end
// refuses an address without a route at RCPT time with 550 5.1.1 and records routed mail with
// the route's id and tenant.
package routeingest

import (
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/route"
)

// Router resolves recipients against a route table. It is safe for concurrent use and never
// blocks: every Resolve reads the table's current snapshot.
type Router struct {
	table *route.Table
}

// New returns a Router over table.
func New(table *route.Table) *Router { return &Router{table: table} }

// Resolve implements ingest.Router. The route carries the route id, the tenant (from the tag for
// local+{tenant}@… patterns), the plus tag, the size limit and the sender policy.
func (r *Router) Resolve(rcpt string) (ingest.Route, bool) {
	m, ok := r.table.Resolve(rcpt)
	if !ok {
		return ingest.Route{}, false
	}
	out := ingest.Route{ID: m.Route.ID, Tenant: m.Tenant, Tag: m.Tag, MaxSize: m.Route.MaxSize}
	// A nil *SenderPolicy in the interface would be a non-nil policy; leave it nil instead.
	if m.Senders != nil {
		out.Senders = m.Senders
	}
	return out, true
}
