package enrich

import (
	"context"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// ContactLookup finds a sender in a CRM. CRM connectors that can look contacts up implement it
// (issue 6); until then package redislookup serves an operator-filled table.
//
// LookupContact gets the contact's normalized email exactly as Contact.email carries it. It must
// honour ctx, whose deadline is the enricher's per-lookup deadline. A contact the CRM does not
// have is an answer, not a failure: return a record with Known false and a nil error (it is
// cached, for the negative TTL). An error means the lookup failed; it is not cached and the
// record is marked degraded. Implementations must be safe for concurrent use.
type ContactLookup interface {
	LookupContact(ctx context.Context, email string) (ContactRecord, error)
}

// ContactRecord is what a CRM knows about a contact.
type ContactRecord struct {
	// Known is true when the CRM has the contact.
	Known bool `json:"known"`
	// Owner is the CRM user (id or email) who owns the contact; empty if none.
	Owner string `json:"owner,omitempty"`
	// CRMIDs are the contact's object ids by target, e.g. "hubspot.contact" → "123".
	CRMIDs map[string]string `json:"crm_ids,omitempty"`
}

// CompanyLookup finds a company in a CRM by domain. It follows the contract of
// [ContactLookup]: domain is Company.domain as the record carries it (lower-case, Unicode for
// IDN, the registrable domain unless the dataset named a subdomain); an unknown company is a
// record with Known false and a nil error.
type CompanyLookup interface {
	LookupCompany(ctx context.Context, domain string) (CompanyRecord, error)
}

// CompanyRecord is what a CRM knows about a company. Non-empty fields override those from the
// company dataset: the CRM is the operator's own, curated record.
type CompanyRecord struct {
	Known    bool   `json:"known"`
	Name     string `json:"name,omitempty"`
	Size     string `json:"size,omitempty"`
	Industry string `json:"industry,omitempty"`
	Country  string `json:"country,omitempty"`
	// Owner is the account owner; it becomes the message's owner when the contact has none.
	Owner string `json:"owner,omitempty"`
	// CRMIDs are the company's object ids by target, e.g. "hubspot.company" → "456".
	CRMIDs map[string]string `json:"crm_ids,omitempty"`
}

// Cache stores lookup answers for the enricher (package rediscache on Redis). Values are opaque
// bytes the enricher encodes; keys are "<source>:<lookup key>" and the cache adds its own prefix.
// An error from either method means the cache is unusable for this lookup: the enricher then
// asks the source and notes the cache as unavailable. Implementations must honour ctx and be
// safe for concurrent use.
type Cache interface {
	// Get returns the value under key and true, or false when there is none (expired included).
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Set stores value under key for ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// RouteFunc returns the route with the given id, or false when there is none (see
// route.Snapshot.Get; package kafkaroute keeps a table of them current). The enricher calls it
// once per message and copies the route's consent flags to the contact; it must be fast and safe
// for concurrent use.
type RouteFunc func(id string) (events.Route, bool)
