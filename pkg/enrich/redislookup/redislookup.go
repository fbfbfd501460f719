// Package redislookup is a CRM lookup table in Redis that operators fill: it answers the
// enricher's enrich.ContactLookup and enrich.CompanyLookup until a CRM connector offers lookups
// of its own, and for CRMs that never will.
//
// The layout is plain Redis hashes, so any tool can write them (redis-cli, a nightly export
// job); mailpipe only reads them. With the default prefix:
//
//	mailpipe:crm:contact:<email>    owner   <CRM user id or email>
//	                                id:<target>  <CRM object id>     e.g. id:hubspot.contact 123
//	mailpipe:crm:company:<domain>   name, size, industry, country, owner
//	                                id:<target>  <CRM object id>     e.g. id:hubspot.company 456
//
// <email> is the lower-case address as Contact.email carries it, <domain> the company domain
// as Company.domain carries it (lower case, registrable domain, Unicode for IDN). A hash that
// exists is a known contact or company, even with no fields the enricher reads; a missing key
// is unknown. Unknown fields are ignored.
//
//	redis-cli HSET mailpipe:crm:contact:ann@acme.com owner jo@seller.example id:hubspot.contact 123
package redislookup

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/enrich"
)

// DefaultPrefix namespaces the keys when WithPrefix is not given.
const DefaultPrefix = "mailpipe:crm:"

// Hash field names.
const (
	FieldOwner    = "owner"
	FieldName     = "name"
	FieldSize     = "size"
	FieldIndustry = "industry"
	FieldCountry  = "country"
	// FieldIDPrefix starts a field holding a CRM object id; the rest of the field name is the
	// crm_ids key (target.object, e.g. hubspot.contact).
	FieldIDPrefix = "id:"
	// FieldKnown may be set when a hash needs a field but nothing else applies; any field makes
	// the entry known.
	FieldKnown = "known"
)

// Table reads the lookup table. It is safe for concurrent use; the caller owns the client.
type Table struct {
	client redis.UniversalClient
	prefix string
}

var (
	_ enrich.ContactLookup = (*Table)(nil)
	_ enrich.CompanyLookup = (*Table)(nil)
)

// Option configures New.
type Option interface{ apply(*Table) }

type optionFunc func(*Table)

func (f optionFunc) apply(t *Table) { f(t) }

// WithPrefix sets the key prefix (default DefaultPrefix).
func WithPrefix(prefix string) Option { return optionFunc(func(t *Table) { t.prefix = prefix }) }

// New returns a table on client.
func New(client redis.UniversalClient, opts ...Option) *Table {
	t := &Table{client: client, prefix: DefaultPrefix}
	for _, o := range opts {
		o.apply(t)
	}
	return t
}

// ContactKey returns the key of the contact hash of email.
func (t *Table) ContactKey(email string) string { return t.prefix + "contact:" + email }

// CompanyKey returns the key of the company hash of domain.
func (t *Table) CompanyKey(domain string) string { return t.prefix + "company:" + domain }

// LookupContact implements enrich.ContactLookup with one HGETALL.
func (t *Table) LookupContact(ctx context.Context, email string) (enrich.ContactRecord, error) {
	h, err := t.client.HGetAll(ctx, t.ContactKey(email)).Result()
	if err != nil {
		return enrich.ContactRecord{}, fmt.Errorf("reading the contact lookup table: %w", err)
	}
	if len(h) == 0 {
		return enrich.ContactRecord{}, nil
	}
	return enrich.ContactRecord{Known: true, Owner: h[FieldOwner], CRMIDs: ids(h)}, nil
}

// LookupCompany implements enrich.CompanyLookup with one HGETALL.
func (t *Table) LookupCompany(ctx context.Context, domain string) (enrich.CompanyRecord, error) {
	h, err := t.client.HGetAll(ctx, t.CompanyKey(domain)).Result()
	if err != nil {
		return enrich.CompanyRecord{}, fmt.Errorf("reading the company lookup table: %w", err)
	}
	if len(h) == 0 {
		return enrich.CompanyRecord{}, nil
	}
	return enrich.CompanyRecord{
		Known: true, Name: h[FieldName], Size: h[FieldSize], Industry: h[FieldIndustry],
		Country: h[FieldCountry], Owner: h[FieldOwner], CRMIDs: ids(h),
	}, nil
}

// PutContact writes r as the contact hash of email, replacing what was there, in one
// transaction. It is for tools and tests that fill the table; r.Known is implied.
func (t *Table) PutContact(ctx context.Context, email string, r enrich.ContactRecord) error {
	fields := idFields(r.CRMIDs)
	fields = appendIf(fields, FieldOwner, r.Owner)
	return t.put(ctx, t.ContactKey(email), fields)
}

// PutCompany writes r as the company hash of domain, replacing what was there, in one
// transaction. It is for tools and tests that fill the table; r.Known is implied.
func (t *Table) PutCompany(ctx context.Context, domain string, r enrich.CompanyRecord) error {
	fields := idFields(r.CRMIDs)
	for _, f := range [][2]string{{FieldName, r.Name}, {FieldSize, r.Size}, {FieldIndustry, r.Industry}, {FieldCountry, r.Country}, {FieldOwner, r.Owner}} {
		fields = appendIf(fields, f[0], f[1])
	}
	return t.put(ctx, t.CompanyKey(domain), fields)
}

func (t *Table) put(ctx context.Context, key string, fields []any) error {
	if len(fields) == 0 {
		fields = []any{FieldKnown, "1"}
	}
	_, err := t.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		p.HSet(ctx, key, fields...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing the lookup table: %w", err)
	}
	return nil
}

func ids(h map[string]string) map[string]string {
	var out map[string]string
	for k, v := range h {
		if target, ok := strings.CutPrefix(k, FieldIDPrefix); ok && target != "" && v != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[target] = v
		}
	}
	return out
}

func idFields(m map[string]string) []any {
	var out []any
	for k, v := range m {
		out = appendIf(out, FieldIDPrefix+k, v)
	}
	return out
}

func appendIf(fields []any, name, value string) []any {
	if value == "" {
		return fields
	}
	return append(fields, name, value)
}
