// Package enrich is the enricher stage handler: it reads an events.Classified record from
// mail.classified.v1 and writes an events.Enriched record on mail.enriched.v1, adding who sent
// the message and for which company.
//
// The contact is the From mailbox: its normalized address and name, whether it is a role
// account (package role), the consent flags of the route the message came in on, and, from the
// CRM, whether it is known, its owner and its CRM ids. The company is the sender's domain mapped
// to its registrable domain: free mail (package freemail, extendable by the operator) is flagged
// and gets no company; otherwise the operator's dataset (package companydb) and the CRM's
// company record fill in name, size, industry and country.
//
// The CRM answers through [ContactLookup] and [CompanyLookup]. Each such lookup runs with a
// deadline and behind a [Cache] with a TTL (negative answers too, for a shorter one). A source
// that is slow or fails does not hold the record: the lookup is reported in Enrichment.sources
// with status timeout or error and the reason, the record is marked degraded (enrichment
// partial), and the stream moves on. A source that keeps failing is skipped for a cool-down by
// a breaker. A failing cache only costs the cache: the source is asked and the record notes the
// cache as unavailable. docs/enrichment.md describes the sources, the cache keys and the
// lookup table.
package enrich

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/mailpipe/mailpipe/pkg/enrich/companydb"
	"github.com/mailpipe/mailpipe/pkg/enrich/freemail"
	"github.com/mailpipe/mailpipe/pkg/enrich/role"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// Source names written to Enrichment.sources (see mail.enriched.v1).
const (
	SourceRole       = "role"        // role account table (package role)
	SourceFreeMail   = "freemail"    // free-mail provider list (package freemail)
	SourceCompanyDB  = "companydb"   // the operator's company dataset (package companydb)
	SourceCRMContact = "crm_contact" // ContactLookup
	SourceCRMCompany = "crm_company" // CompanyLookup
)

// Statuses of a source.
const (
	StatusOK      = "ok"      // found
	StatusMiss    = "miss"    // not found, or nothing to look up
	StatusTimeout = "timeout" // no answer within the lookup deadline
	StatusError   = "error"   // the source failed, or was skipped by its breaker
)

// Cache outcomes of a source; empty for the in-memory sources, which are not cached.
const (
	CacheHit         = "hit"         // answered from the cache; the source was not called
	CacheMiss        = "miss"        // not cached: the source was called and its answer, if any, cached
	CacheUnavailable = "unavailable" // the cache failed; the source was called
)

// Defaults of the options.
const (
	DefaultLookupTimeout    = 500 * time.Millisecond
	DefaultCacheTimeout     = 100 * time.Millisecond
	DefaultCacheTTL         = time.Hour
	DefaultNegativeCacheTTL = 10 * time.Minute
	DefaultBreakerFailures  = 5
	DefaultBreakerCooldown  = 30 * time.Second
)

// Option configures an [Enricher].
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	now             func() time.Time
	freemail        *freemail.List
	companies       *companydb.DB
	contacts        ContactLookup
	crmCompanies    CompanyLookup
	cache           Cache
	routes          RouteFunc
	lookupTimeout   time.Duration
	cacheTimeout    time.Duration
	ttl             time.Duration
	negativeTTL     time.Duration
	breakerFailures int
	breakerCooldown time.Duration
	meterProvider   metric.MeterProvider
}

func defaultOptions() options {
	return options{
		now:             time.Now,
		lookupTimeout:   DefaultLookupTimeout,
		cacheTimeout:    DefaultCacheTimeout,
		ttl:             DefaultCacheTTL,
		negativeTTL:     DefaultNegativeCacheTTL,
		breakerFailures: DefaultBreakerFailures,
		breakerCooldown: DefaultBreakerCooldown,
		meterProvider:   noop.NewMeterProvider(),
	}
}

func (o *options) validate() error {
	var errs []error
	if o.now == nil {
		errs = append(errs, errors.New("the clock must not be nil"))
	}
	if o.lookupTimeout <= 0 {
		errs = append(errs, fmt.Errorf("the lookup timeout must be positive, got %s", o.lookupTimeout))
	}
	if o.cacheTimeout <= 0 {
		errs = append(errs, fmt.Errorf("the cache timeout must be positive, got %s", o.cacheTimeout))
	}
	if o.ttl <= 0 || o.negativeTTL <= 0 {
		errs = append(errs, fmt.Errorf("the cache TTLs must be positive, got %s and %s (negative answers)", o.ttl, o.negativeTTL))
	} else if o.negativeTTL > o.ttl {
		errs = append(errs, fmt.Errorf("the negative-answer TTL %s must not exceed the cache TTL %s: a contact added to the CRM would stay unknown longer than a known one stays cached", o.negativeTTL, o.ttl))
	}
	if o.breakerFailures < 0 {
		errs = append(errs, fmt.Errorf("the breaker threshold must not be negative, got %d", o.breakerFailures))
	}
	if o.breakerFailures > 0 && o.breakerCooldown <= 0 {
		errs = append(errs, fmt.Errorf("the breaker cool-down must be positive, got %s", o.breakerCooldown))
	}
	if o.meterProvider == nil {
		errs = append(errs, errors.New("the meter provider must not be nil"))
	}
	return errors.Join(errs...)
}

// WithClock sets the clock enriched_at and lookup durations are taken from (default
// time.Now), for tests. Deadlines always run on real time.
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }

// WithFreeMail replaces the built-in free-mail list with l (the built-in list extended by an
// operator's file, see freemail.Parse).
func WithFreeMail(l *freemail.List) Option { return optionFunc(func(o *options) { o.freemail = l }) }

// WithCompanies adds the operator's company dataset as source companydb. It is in memory, so it
// has no deadline and is not cached.
func WithCompanies(db *companydb.DB) Option {
	return optionFunc(func(o *options) { o.companies = db })
}

// WithContactLookup adds l as source crm_contact: known contact, owner and CRM ids.
func WithContactLookup(l ContactLookup) Option {
	return optionFunc(func(o *options) { o.contacts = l })
}

// WithCompanyLookup adds l as source crm_company: the CRM's record of the sender's company.
func WithCompanyLookup(l CompanyLookup) Option {
	return optionFunc(func(o *options) { o.crmCompanies = l })
}

// WithCache caches the answers of the CRM sources in c, found ones for ttl and negative ones
// for negativeTTL (which must not be longer). Without it every lookup asks the source. Defaults
// DefaultCacheTTL and DefaultNegativeCacheTTL when a TTL is zero.
func WithCache(c Cache, ttl, negativeTTL time.Duration) Option {
	return optionFunc(func(o *options) {
		o.cache = c
		if ttl != 0 {
			o.ttl = ttl
		}
		if negativeTTL != 0 {
			o.negativeTTL = negativeTTL
		}
	})
}

// WithLookupTimeout sets the deadline of one source lookup (default DefaultLookupTimeout). Keep
// it well under the stage's attempt timeout: the CRM lookups of a message run in parallel, each
// after a cache read bounded by the cache timeout.
func WithLookupTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.lookupTimeout = d })
}

// WithCacheTimeout sets the deadline of one cache read or write (default DefaultCacheTimeout).
func WithCacheTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.cacheTimeout = d })
}

// WithBreaker sets after how many timeouts or errors in a row a CRM source is skipped, and for
// how long (defaults DefaultBreakerFailures and DefaultBreakerCooldown). failures 0 turns the
// breaker off: every lookup then waits for its deadline while a source is down.
func WithBreaker(failures int, cooldown time.Duration) Option {
	return optionFunc(func(o *options) { o.breakerFailures, o.breakerCooldown = failures, cooldown })
}

// WithRoutes lets the enricher find the route of a message (by Parsed.route_id) for the consent
// flags it carries. Without it contacts have no consent flags.
func WithRoutes(f RouteFunc) Option { return optionFunc(func(o *options) { o.routes = f }) }

// WithMeterProvider records lookup metrics (see [MetricLookups]) with mp; default none.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(o *options) { o.meterProvider = mp })
}

// Enricher is the enricher stage handler. It is safe for concurrent use.
type Enricher struct {
	codec *serde.Codec
	log   *slog.Logger
	now   func() time.Time

	freemail      *freemail.List
	companies     *companydb.DB
	contacts      *source[ContactRecord]
	crmCompanies  *source[CompanyRecord]
	cache         Cache
	routes        RouteFunc
	lookupTimeout time.Duration
	cacheTimeout  time.Duration
	ttl           time.Duration
	negativeTTL   time.Duration
	metrics       *instruments
}

// New returns an enricher; codec and log are required. With no options it knows role accounts
// and the built-in free-mail list only.
func New(codec *serde.Codec, log *slog.Logger, opts ...Option) (*Enricher, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	var errs []error
	if codec == nil {
		errs = append(errs, errors.New("the codec is required"))
	}
	if log == nil {
		errs = append(errs, errors.New("the logger is required"))
	}
	if err := errors.Join(append(errs, o.validate())...); err != nil {
		return nil, fmt.Errorf("configuring the enricher: %w", err)
	}
	m, err := newInstruments(o.meterProvider)
	if err != nil {
		return nil, fmt.Errorf("creating the enricher's metrics: %w", err)
	}
	e := &Enricher{
		codec: codec, log: log, now: o.now,
		freemail: o.freemail, companies: o.companies, cache: o.cache, routes: o.routes,
		lookupTimeout: o.lookupTimeout, cacheTimeout: o.cacheTimeout, ttl: o.ttl, negativeTTL: o.negativeTTL,
		metrics: m,
	}
	if l := o.contacts; l != nil {
		e.contacts = &source[ContactRecord]{name: SourceCRMContact, breaker: breaker{threshold: o.breakerFailures, cooldown: o.breakerCooldown}, call: func(ctx context.Context, email string) (ContactRecord, bool, error) {
			r, err := l.LookupContact(ctx, email)
			return r, r.Known, err
		}}
	}
	if l := o.crmCompanies; l != nil {
		e.crmCompanies = &source[CompanyRecord]{name: SourceCRMCompany, breaker: breaker{threshold: o.breakerFailures, cooldown: o.breakerCooldown}, call: func(ctx context.Context, domain string) (CompanyRecord, bool, error) {
			r, err := l.LookupCompany(ctx, domain)
			return r, r.Known, err
		}}
	}
	return e, nil
}

// Handle is the stage.Handler of the enricher service: one mail.enriched.v1 record per input,
// with the input's key and headers. Errors: failure.Schema for an undecodable record,
// failure.Internal for an output that cannot be encoded, and ctx's error when it ends during a
// lookup (the record is retried, never written degraded because of it). A slow or failing
// source is no error: the record goes out degraded.
func (e *Enricher) Handle(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	var in events.Classified
	if err := e.codec.Decode(ctx, kafka.TopicClassified, rec.Value, &in); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("decoding classified record: %w", errors.Join(err, ctx.Err()))
		}
		return nil, failure.Wrap(failure.Schema, fmt.Errorf("decoding classified record: %w", err))
	}
	out, err := e.Enrich(ctx, &in)
	if err != nil {
		return nil, err
	}
	v, err := e.codec.Encode(kafka.TopicEnriched, &out)
	if err != nil {
		return nil, failure.Wrap(failure.Internal, fmt.Errorf("encoding enriched record of %s: %w", in.Message.ID, err))
	}
	return []*kgo.Record{{
		Topic:   kafka.TopicEnriched,
		Key:     bytes.Clone(rec.Key),
		Value:   v,
		Headers: slices.Clone(rec.Headers),
	}}, nil
}

// Enrich returns in with its enrichment: the whole of the enricher without Kafka. It fails only
// when ctx ends during a lookup; a slow or failing source yields a degraded record instead. The
// result shares in's message and classification.
func (e *Enricher) Enrich(ctx context.Context, in *events.Classified) (events.Enriched, error) {
	out := events.Enriched{Message: in.Message, Classification: in.Classification}
	en, err := e.enrich(ctx, &in.Message)
	if err != nil {
		return events.Enriched{}, fmt.Errorf("enriching %s: %w", in.Message.ID, err)
	}
	out.Enrichment = en
	attrs := []slog.Attr{slog.String("message_id", in.Message.ID), slog.Bool("degraded", en.Degraded)}
	if en.Company != nil {
		attrs = append(attrs, slog.Bool("free_mail", en.Company.FreeMail))
	}
	e.log.LogAttrs(ctx, slog.LevelDebug, "enriched message", attrs...)
	return out, nil
}

func (e *Enricher) enrich(ctx context.Context, msg *events.Parsed) (events.Enrichment, error) {
	en := events.Enrichment{CRMIds: map[string]string{}}
	var addr, domain string
	if msg.From != nil {
		addr = strings.ToLower(strings.TrimSpace(msg.From.Address))
		if at := strings.LastIndexByte(addr, '@'); at > 0 && at < len(addr)-1 {
			domain = addr[at+1:]
		}
	}
	if domain == "" {
		// Nothing to look up; say so for every source, so the record shows what was configured.
		for _, name := range e.sourceNames() {
			en.Sources = append(en.Sources, events.EnrichmentSource{Name: name, Status: StatusMiss, Reason: "no sender address"})
		}
		en.EnrichedAt = e.now().UTC()
		return en, nil
	}

	contact := &events.Contact{Email: addr, Name: msg.From.Name, Consent: e.consent(msg.RouteID)}
	contact.Role, contact.RoleAccount = role.Of(addr)
	en.Contact = contact
	en.Sources = append(en.Sources, events.EnrichmentSource{Name: SourceRole, Status: found(contact.RoleAccount)})

	free := e.freemail.Is(domain) || (msg.From.DomainASCII != "" && e.freemail.Is(msg.From.DomainASCII))
	en.Sources = append(en.Sources, events.EnrichmentSource{Name: SourceFreeMail, Status: found(free)})
	company := &events.Company{Domain: domain, FreeMail: free}
	en.Company = company
	if !free {
		// A tenant subdomain of a free-mail provider (corp.outlook.com) is an organisation's
		// domain: it does not map to the provider's.
		if r := companydb.Registrable(domain); !e.freemail.Is(r) {
			company.Domain = r
		}
		if e.companies != nil {
			c, ok := e.companies.Lookup(domain)
			if ok {
				// The row's domain: the registrable one, or the subdomain the dataset gives a
				// company of its own (eu.acme.com).
				company.Domain = companydb.Unicode(c.Domain)
				company.Name, company.Size, company.Industry, company.Country = c.Name, c.Size, c.Industry, c.Country
			}
			en.Sources = append(en.Sources, events.EnrichmentSource{Name: SourceCompanyDB, Status: found(ok)})
		}
	}

	// The CRM lookups run in parallel, so a message waits for the slowest, not for the sum.
	var (
		wg                  sync.WaitGroup
		crmContact          ContactRecord
		crmCompany          CompanyRecord
		contactOK, compOK   bool
		contactRep, compRep events.EnrichmentSource
		contactErr, compErr error
	)
	if e.contacts != nil {
		wg.Go(func() {
			crmContact, contactOK, contactRep, contactErr = lookup(ctx, e, e.contacts, addr)
		})
	}
	if e.crmCompanies != nil && !free {
		wg.Go(func() {
			crmCompany, compOK, compRep, compErr = lookup(ctx, e, e.crmCompanies, company.Domain)
		})
	}
	wg.Wait()
	if err := errors.Join(contactErr, compErr); err != nil {
		return events.Enrichment{}, err
	}
	if e.contacts != nil {
		en.Sources = append(en.Sources, contactRep)
		if contactOK {
			contact.Known = true
			en.Owner = crmContact.Owner
			maps.Copy(en.CRMIds, crmContact.CRMIDs)
		}
	}
	if e.crmCompanies != nil && !free {
		en.Sources = append(en.Sources, compRep)
		if compOK {
			override(&company.Name, crmCompany.Name)
			override(&company.Size, crmCompany.Size)
			override(&company.Industry, crmCompany.Industry)
			override(&company.Country, crmCompany.Country)
			if en.Owner == "" {
				en.Owner = crmCompany.Owner
			}
			for k, v := range crmCompany.CRMIDs {
				if _, ok := en.CRMIds[k]; !ok {
					en.CRMIds[k] = v
				}
			}
		}
	}
	for _, s := range en.Sources {
		if s.Status == StatusTimeout || s.Status == StatusError {
			en.Degraded = true
		}
	}
	en.EnrichedAt = e.now().UTC()
	return en, nil
}

// sourceNames lists the sources in the order a record reports them.
func (e *Enricher) sourceNames() []string {
	names := []string{SourceRole, SourceFreeMail}
	if e.companies != nil {
		names = append(names, SourceCompanyDB)
	}
	if e.contacts != nil {
		names = append(names, SourceCRMContact)
	}
	if e.crmCompanies != nil {
		names = append(names, SourceCRMCompany)
	}
	return names
}

// consent returns a copy of the consent flags of the route, never nil.
func (e *Enricher) consent(routeID string) map[string]bool {
	if e.routes != nil && routeID != "" {
		if r, ok := e.routes(routeID); ok && len(r.Consent) > 0 {
			return maps.Clone(r.Consent)
		}
	}
	return map[string]bool{}
}

// breakerRecord notes a CRM call's outcome and logs when the breaker opens: once per opening,
// not once per skipped message.
func (e *Enricher) breakerRecord(ctx context.Context, name string, b *breaker, ok bool) {
	if b.record(ok, e.now()) {
		e.log.LogAttrs(ctx, slog.LevelWarn, "enrichment source failing; skipping it for a while",
			slog.String("source", name), slog.Int("failures", b.threshold), slog.Duration("cooldown", b.cooldown))
	}
}

func found(ok bool) string {
	if ok {
		return StatusOK
	}
	return StatusMiss
}

func override(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}
