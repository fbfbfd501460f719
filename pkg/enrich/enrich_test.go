package enrich_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/enrich"
	"github.com/mailpipe/mailpipe/pkg/enrich/companydb"
	"github.com/mailpipe/mailpipe/pkg/enrich/freemail"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

var enrichedAt = time.Date(2026, 11, 23, 10, 32, 0, 0, time.UTC)

func classified(from *events.Address) *events.Classified {
	return &events.Classified{
		Message: events.Parsed{
			ID: "01JB6Y2M3Q7V0000000000000", ThreadKey: "root@example.com", ExternalID: "ab", Tenant: "acme",
			RouteID:    "r-news",
			ReceivedAt: enrichedAt.Add(-time.Minute), ParsedAt: enrichedAt.Add(-time.Second),
			Envelope: events.Envelope{MailFrom: "x@example.com", Source: "smtp"},
			From:     from, Subject: "hello", ParseStatus: "ok",
		},
		Classification: events.Classification{
			Kind: "human", Evidence: []string{"no automation signal"},
			RulesVersion: "builtin-0", ClassifiedAt: enrichedAt.Add(-time.Millisecond),
		},
	}
}

func addr(a string) *events.Address {
	domain := a[strings.LastIndexByte(a, '@')+1:]
	return &events.Address{Address: a, DomainASCII: domain}
}

func newEnricher(t testing.TB, opts ...enrich.Option) (*enrich.Enricher, *serde.Codec) {
	t.Helper()
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]enrich.Option{enrich.WithClock(func() time.Time { return enrichedAt })}, opts...)
	e, err := enrich.New(codec, slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return e, codec
}

// contactTable and companyTable are in-memory CRM sources that count their calls.
type contactTable struct {
	records map[string]enrich.ContactRecord
	calls   atomic.Int64
}

func (c *contactTable) LookupContact(_ context.Context, email string) (enrich.ContactRecord, error) {
	c.calls.Add(1)
	return c.records[email], nil
}

type companyTable struct {
	records map[string]enrich.CompanyRecord
	calls   atomic.Int64
}

func (c *companyTable) LookupCompany(_ context.Context, domain string) (enrich.CompanyRecord, error) {
	c.calls.Add(1)
	return c.records[domain], nil
}

// contactFunc and companyFunc adapt functions, for sources that misbehave.
type contactFunc func(ctx context.Context, email string) (enrich.ContactRecord, error)

func (f contactFunc) LookupContact(ctx context.Context, email string) (enrich.ContactRecord, error) {
	return f(ctx, email)
}

type companyFunc func(ctx context.Context, domain string) (enrich.CompanyRecord, error)

func (f companyFunc) LookupCompany(ctx context.Context, domain string) (enrich.CompanyRecord, error) {
	return f(ctx, domain)
}

const dataset = `domain,name,size,industry,country
acme.com,Acme Corp,51-200,Manufacturing,US
eu.acme.com,Acme Europe GmbH,11-50,Manufacturing,DE
bücher.example,Bücher GmbH,5,Retail,DE
`

func TestEnrich(t *testing.T) {
	db, err := companydb.Load(strings.NewReader(dataset), companydb.CSV)
	if err != nil {
		t.Fatal(err)
	}
	free, err := freemail.Parse(strings.NewReader("mail.ee\n!gmx.de\n"))
	if err != nil {
		t.Fatal(err)
	}
	contacts := &contactTable{records: map[string]enrich.ContactRecord{
		"ann@acme.com":  {Known: true, Owner: "jo@seller.example", CRMIDs: map[string]string{"hubspot.contact": "101"}},
		"bob@gmail.com": {Known: true, CRMIDs: map[string]string{"hubspot.contact": "202"}},
	}}
	companies := &companyTable{records: map[string]enrich.CompanyRecord{
		"acme.com":     {Known: true, Name: "ACME Corporation", Owner: "kim@seller.example", CRMIDs: map[string]string{"hubspot.company": "9", "hubspot.contact": "not this"}},
		"initech.test": {Known: true, Name: "Initech", Country: "US", Owner: "kim@seller.example"},
	}}
	routes := map[string]events.Route{"r-news": {ID: "r-news", Consent: map[string]bool{"marketing": true, "sales_contact": false}}}
	e, _ := newEnricher(t,
		enrich.WithCompanies(db), enrich.WithFreeMail(free),
		enrich.WithContactLookup(contacts), enrich.WithCompanyLookup(companies),
		enrich.WithRoutes(func(id string) (events.Route, bool) { r, ok := routes[id]; return r, ok }),
	)
	consent := map[string]bool{"marketing": true, "sales_contact": false}
	type src = events.EnrichmentSource
	ok, miss := enrich.StatusOK, enrich.StatusMiss
	for _, tt := range []struct {
		name  string
		from  *events.Address
		route string
		want  events.Enrichment // EnrichedAt is checked separately
	}{
		{
			name: "known contact at a dataset company known to the CRM",
			from: &events.Address{Address: "Ann@Acme.com", Name: "Ann", DomainASCII: "acme.com"},
			want: events.Enrichment{
				Contact: &events.Contact{Email: "ann@acme.com", Name: "Ann", Known: true, Consent: consent},
				// the CRM's name wins; the dataset fills the rest
				Company: &events.Company{Domain: "acme.com", Name: "ACME Corporation", Size: "51-200", Industry: "Manufacturing", Country: "US"},
				Owner:   "jo@seller.example", // the contact's owner before the company's
				CRMIds:  map[string]string{"hubspot.contact": "101", "hubspot.company": "9"},
				Sources: []src{{Name: "role", Status: miss}, {Name: "freemail", Status: miss}, {Name: "companydb", Status: ok}, {Name: "crm_contact", Status: ok}, {Name: "crm_company", Status: ok}},
			},
		},
		{
			name: "subdomain maps to the registrable domain",
			from: addr("sales@mail.acme.com"),
			want: events.Enrichment{
				Contact: &events.Contact{Email: "sales@mail.acme.com", RoleAccount: true, Role: "sales", Consent: consent},
				Company: &events.Company{Domain: "acme.com", Name: "ACME Corporation", Size: "51-200", Industry: "Manufacturing", Country: "US"},
				Owner:   "kim@seller.example", // the company's owner: the contact has none
				CRMIds:  map[string]string{"hubspot.company": "9", "hubspot.contact": "not this"},
				Sources: []src{{Name: "role", Status: ok}, {Name: "freemail", Status: miss}, {Name: "companydb", Status: ok}, {Name: "crm_contact", Status: miss}, {Name: "crm_company", Status: ok}},
			},
		},
		{
			name: "a subdomain with its own dataset row is its own company",
			from: addr("hans@eu.acme.com"),
			want: events.Enrichment{
				Contact: &events.Contact{Email: "hans@eu.acme.com", Consent: consent},
				Company: &events.Company{Domain: "eu.acme.com", Name: "Acme Europe GmbH", Size: "11-50", Industry: "Manufacturing", Country: "DE"},
				Sources: []src{{Name: "role", Status: miss}, {Name: "freemail", Status: miss}, {Name: "companydb", Status: ok}, {Name: "crm_contact", Status: miss}, {Name: "crm_company", Status: miss}},
			},
		},
		{
			name: "company known only to the CRM",
			from: addr("peter@initech.test"),
			want: events.Enrichment{
				Contact: &events.Contact{Email: "peter@initech.test", Consent: consent},
				Company: &events.Company{Domain: "initech.test", Name: "Initech", Country: "US"},
				Owner:   "kim@seller.example",
				Sources: []src{{Name: "role", Status: miss}, {Name: "freemail", Status: miss}, {Name: "companydb", Status: miss}, {Name: "crm_contact", Status: miss}, {Name: "crm_company", Status: ok}},
			},
		},
		{
			name: "free mail: no company lookups",
			from: &events.Address{Address: "bob@gmail.com", Name: "Bob", DomainASCII: "gmail.com"},
			want: events.Enrichment{
				Contact: &events.Contact{Email: "bob@gmail.com", Name: "Bob", Known: true, Consent: consent},
				Company: &events.Company{Domain: "gmail.com", FreeMail: true},
				CRMIds:  map[string]string{"hubspot.contact": "202"},
				Sources: []src{{Name: "role", Status: miss}, {Name: "freemail", Status: ok}, {Name: "crm_contact", Status: ok}},
			},
		},
		{
			name: "free mail added by the operator's list",
			from: addr("info@mail.ee"),
			want: events.Enrichment{
				Contact: &events.Contact{Email: "info@mail.ee", RoleAccount: true, Role: "info", Consent: consent},
				Company: &events.Company{Domain: "mail.ee", FreeMail: true},
				Sources: []src{{Name: "role", Status: ok}, {Name: "freemail", Status: ok}, {Name: "crm_contact", Status: miss}},
			},
		},
		{
			name: "built-in free mail removed by the operator's list",
			from: addr("noreply@gmx.de"),
			want: events.Enrichment{
				Contact: &events.Contact{Email: "noreply@gmx.de", RoleAccount: true, Role: "noreply", Consent: consent},
				Company: &events.Company{Domain: "gmx.de"},
				Sources: []src{{Name: "role", Status: ok}, {Name: "freemail", Status: miss}, {Name: "companydb", Status: miss}, {Name: "crm_contact", Status: miss}, {Name: "crm_company", Status: miss}},
			},
		},
		{
			name: "tenant subdomain of a free-mail provider keeps its domain",
			from: addr("it@corp.outlook.com"),
			want: events.Enrichment{
				Contact: &events.Contact{Email: "it@corp.outlook.com", RoleAccount: true, Role: "admin", Consent: consent},
				Company: &events.Company{Domain: "corp.outlook.com"},
				Sources: []src{{Name: "role", Status: ok}, {Name: "freemail", Status: miss}, {Name: "companydb", Status: miss}, {Name: "crm_contact", Status: miss}, {Name: "crm_company", Status: miss}},
			},
		},
		{
			name: "IDN domain from the dataset, in Unicode",
			from: &events.Address{Address: "jörg@shop.bücher.example", DomainASCII: "shop.xn--bcher-kva.example"},
			want: events.Enrichment{
				Contact: &events.Contact{Email: "jörg@shop.bücher.example", Consent: consent},
				Company: &events.Company{Domain: "bücher.example", Name: "Bücher GmbH", Size: "5", Industry: "Retail", Country: "DE"},
				Sources: []src{{Name: "role", Status: miss}, {Name: "freemail", Status: miss}, {Name: "companydb", Status: ok}, {Name: "crm_contact", Status: miss}, {Name: "crm_company", Status: miss}},
			},
		},
		{
			name:  "route without consent flags",
			from:  addr("ann@acme.com"),
			route: "r-unknown",
			want: events.Enrichment{
				Contact: &events.Contact{Email: "ann@acme.com", Known: true},
				Company: &events.Company{Domain: "acme.com", Name: "ACME Corporation", Size: "51-200", Industry: "Manufacturing", Country: "US"},
				Owner:   "jo@seller.example",
				CRMIds:  map[string]string{"hubspot.contact": "101", "hubspot.company": "9"},
				Sources: []src{{Name: "role", Status: miss}, {Name: "freemail", Status: miss}, {Name: "companydb", Status: ok}, {Name: "crm_contact", Status: ok}, {Name: "crm_company", Status: ok}},
			},
		},
		{
			name: "no From",
			want: events.Enrichment{Sources: []src{
				{Name: "role", Status: miss, Reason: "no sender address"},
				{Name: "freemail", Status: miss, Reason: "no sender address"},
				{Name: "companydb", Status: miss, Reason: "no sender address"},
				{Name: "crm_contact", Status: miss, Reason: "no sender address"},
				{Name: "crm_company", Status: miss, Reason: "no sender address"},
			}},
		},
		{
			name: "From without a domain",
			from: &events.Address{Address: "mailer-daemon"},
			want: events.Enrichment{Sources: []src{
				{Name: "role", Status: miss, Reason: "no sender address"},
				{Name: "freemail", Status: miss, Reason: "no sender address"},
				{Name: "companydb", Status: miss, Reason: "no sender address"},
				{Name: "crm_contact", Status: miss, Reason: "no sender address"},
				{Name: "crm_company", Status: miss, Reason: "no sender address"},
			}},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// given
			in := classified(tt.from)
			if tt.route != "" {
				in.Message.RouteID = tt.route
			}

			// when
			got, err := e.Enrich(t.Context(), in)
			// then
			if err != nil {
				t.Fatal(err)
			}
			if got.Message.ID != in.Message.ID || got.Classification.Kind != "human" {
				t.Errorf("message or classification not passed through")
			}
			en := got.Enrichment
			if !en.EnrichedAt.Equal(enrichedAt) {
				t.Errorf("enriched at %v", en.EnrichedAt)
			}
			want := tt.want
			want.EnrichedAt = en.EnrichedAt
			if want.CRMIds == nil {
				want.CRMIds = map[string]string{}
			}
			if want.Contact != nil && want.Contact.Consent == nil {
				want.Contact.Consent = map[string]bool{}
			}
			if !reflect.DeepEqual(en, want) {
				t.Errorf("enrichment\n got %s\nwant %s", show(en), show(want))
			}
		})
	}
}

// show prints en with its pointers followed.
func show(en events.Enrichment) string {
	var contact, company any
	if en.Contact != nil {
		contact = *en.Contact
	}
	if en.Company != nil {
		company = *en.Company
	}
	return fmt.Sprintf("contact %+v company %+v owner %q ids %v sources %+v degraded %v", contact, company, en.Owner, en.CRMIds, en.Sources, en.Degraded)
}

func TestHandle(t *testing.T) {
	e, codec := newEnricher(t)
	in := classified(&events.Address{Address: "ann@acme.example", Name: "Ann", DomainASCII: "acme.example"})
	v, err := codec.Encode(kafka.TopicClassified, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.Handle(t.Context(), &kgo.Record{
		Topic: kafka.TopicClassified, Key: []byte("root@example.com"), Value: v,
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-01-02-01")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Topic != kafka.TopicEnriched {
		t.Fatalf("outputs %+v", out)
	}
	if string(out[0].Key) != "root@example.com" || len(out[0].Headers) != 1 {
		t.Errorf("key %q headers %v; want the input's", out[0].Key, out[0].Headers)
	}
	var got events.Enriched
	if err := codec.Decode(t.Context(), kafka.TopicEnriched, out[0].Value, &got); err != nil {
		t.Fatal(err)
	}
	want, err := e.Enrich(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Enrichment, want.Enrichment) || got.Message.ID != in.Message.ID || got.Classification.RulesVersion != "builtin-0" {
		t.Errorf("Handle wrote %+v\nEnrich gives %+v", got.Enrichment, want.Enrichment)
	}
	if got.Enrichment.Company == nil || got.Enrichment.Company.Domain != "acme.example" || got.Enrichment.Degraded {
		t.Errorf("company %+v degraded %v", got.Enrichment.Company, got.Enrichment.Degraded)
	}
}

func TestHandleUndecodable(t *testing.T) {
	e, _ := newEnricher(t)
	out, err := e.Handle(t.Context(), &kgo.Record{Topic: kafka.TopicClassified, Value: []byte("junk")})
	if out != nil || failure.Classify(err) != failure.Schema {
		t.Errorf("Handle = %v, %v (class %s); want class schema", out, err, failure.Classify(err))
	}
}

func TestNewValidates(t *testing.T) {
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	for _, tt := range []struct {
		name string
		opts []enrich.Option
		want string
	}{
		{"zero lookup timeout", []enrich.Option{enrich.WithLookupTimeout(0)}, "lookup timeout must be positive"},
		{"negative cache timeout", []enrich.Option{enrich.WithCacheTimeout(-time.Second)}, "cache timeout must be positive"},
		{"negative TTL longer", []enrich.Option{enrich.WithCache(nil, time.Minute, time.Hour)}, "must not exceed the cache TTL"},
		{"breaker without cool-down", []enrich.Option{enrich.WithBreaker(3, 0)}, "cool-down must be positive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := enrich.New(codec, log, tt.opts...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v; want an error with %q", err, tt.want)
			}
		})
	}
	if _, err := enrich.New(codec, log, enrich.WithBreaker(0, 0)); err != nil {
		t.Errorf("breaker off: %v", err)
	}
}

// Handle has the pinned stage.Handler shape.
var _ stage.Handler = (*enrich.Enricher)(nil).Handle

// blockingContact is a contact source that ignores its context and answers only when released.
func blockingContact(release <-chan struct{}, calls *atomic.Int64) contactFunc {
	return func(context.Context, string) (enrich.ContactRecord, error) {
		calls.Add(1)
		<-release
		return enrich.ContactRecord{Known: true}, nil
	}
}

// A source that blocks past its deadline degrades the record with the reason and does not hold
// the message: the contact and company lookups run in parallel, each bounded by the deadline.
func TestDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var calls atomic.Int64
	const deadline = 50 * time.Millisecond
	e, _ := newEnricher(t,
		enrich.WithLookupTimeout(deadline),
		enrich.WithContactLookup(blockingContact(release, &calls)),
		// this one honours its context, as a well-behaved HTTP client does
		enrich.WithCompanyLookup(companyFunc(func(ctx context.Context, _ string) (enrich.CompanyRecord, error) {
			<-ctx.Done()
			return enrich.CompanyRecord{}, errors.New("GET https://crm.example/companies: context deadline exceeded")
		})),
	)
	start := time.Now()
	got, err := e.Enrich(t.Context(), classified(addr("ann@acme.example")))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if took > 10*deadline { // generous for a loaded machine; blocked for good, it would never return
		t.Errorf("Enrich took %s with a %s deadline", took, deadline)
	}
	en := got.Enrichment
	if !en.Degraded {
		t.Error("record not degraded")
	}
	want := map[string]string{"crm_contact": "timeout", "crm_company": "timeout"}
	for _, s := range en.Sources[2:] {
		if s.Status != want[s.Name] || s.Reason != "no answer within 50ms" {
			t.Errorf("source %+v; want status %s, reason %q", s, want[s.Name], "no answer within 50ms")
		}
	}
	if en.Contact == nil || en.Contact.Known || en.Company == nil || en.Company.Domain != "acme.example" {
		t.Errorf("contact %+v company %+v; want what the other sources gave", en.Contact, en.Company)
	}
}

// Through Handle, a blocked source costs one deadline per message and the record is written.
func TestHandleReturnsInTime(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var calls atomic.Int64
	e, codec := newEnricher(t, enrich.WithLookupTimeout(30*time.Millisecond), enrich.WithContactLookup(blockingContact(release, &calls)))
	v, err := codec.Encode(kafka.TopicClassified, classified(addr("ann@acme.example")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	out, err := e.Handle(ctx, &kgo.Record{Topic: kafka.TopicClassified, Value: v})
	if err != nil || len(out) != 1 {
		t.Fatalf("Handle = %v, %v", out, err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("Handle took %s", took)
	}
	var got events.Enriched
	if err := codec.Decode(t.Context(), kafka.TopicEnriched, out[0].Value, &got); err != nil {
		t.Fatal(err)
	}
	if !got.Enrichment.Degraded {
		t.Errorf("written record not degraded: %+v", got.Enrichment.Sources)
	}
}

func TestSourceError(t *testing.T) {
	var calls atomic.Int64
	e, _ := newEnricher(t, enrich.WithContactLookup(contactFunc(func(context.Context, string) (enrich.ContactRecord, error) {
		calls.Add(1)
		return enrich.ContactRecord{}, errors.New("hubspot: 503 Service Unavailable")
	})))
	got, err := e.Enrich(t.Context(), classified(addr("ann@acme.example")))
	if err != nil {
		t.Fatal(err)
	}
	s := got.Enrichment.Sources[len(got.Enrichment.Sources)-1]
	if !got.Enrichment.Degraded || s.Name != "crm_contact" || s.Status != "error" || s.Reason != "hubspot: 503 Service Unavailable" {
		t.Errorf("degraded %v source %+v", got.Enrichment.Degraded, s)
	}
}

// The record's context ending is no degraded record but an error: the stage retries the record
// (or leaves it to the next owner of the partition).
func TestContextEndsDuringLookup(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	e, _ := newEnricher(t, enrich.WithLookupTimeout(time.Minute), enrich.WithContactLookup(contactFunc(func(lctx context.Context, _ string) (enrich.ContactRecord, error) {
		cancel()
		<-lctx.Done()
		return enrich.ContactRecord{}, lctx.Err()
	})))
	_, err := e.Enrich(ctx, classified(addr("ann@acme.example")))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Enrich = %v; want context.Canceled", err)
	}
}

// After the threshold of failures in a row the breaker skips the source without calling it,
// then lets one probe through after the cool-down.
func TestBreaker(t *testing.T) {
	var calls atomic.Int64
	var failing atomic.Bool
	failing.Store(true)
	var mu sync.Mutex
	now := enrichedAt
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e, _ := newEnricher(t, enrich.WithClock(clock), enrich.WithBreaker(3, 10*time.Second),
		enrich.WithContactLookup(contactFunc(func(context.Context, string) (enrich.ContactRecord, error) {
			calls.Add(1)
			if failing.Load() {
				return enrich.ContactRecord{}, errors.New("down")
			}
			return enrich.ContactRecord{Known: true}, nil
		})))
	status := func() (string, string) {
		t.Helper()
		got, err := e.Enrich(t.Context(), classified(addr("ann@acme.example")))
		if err != nil {
			t.Fatal(err)
		}
		s := got.Enrichment.Sources[len(got.Enrichment.Sources)-1]
		return s.Status, s.Reason
	}
	for range 3 {
		if st, _ := status(); st != "error" {
			t.Fatalf("status %s; want error", st)
		}
	}
	st, reason := status()
	if calls.Load() != 3 || st != "error" || reason != "skipped: the source failed 3 times in a row; next try in 10s" {
		t.Errorf("after 3 failures: %d calls, %s %q; want the 4th skipped", calls.Load(), st, reason)
	}
	// given the cool-down passed and the source recovered
	mu.Lock()
	now = now.Add(11 * time.Second)
	mu.Unlock()
	failing.Store(false)
	// then the probe goes through and closes the breaker
	if st, _ := status(); st != "ok" || calls.Load() != 4 {
		t.Errorf("probe: %s after %d calls", st, calls.Load())
	}
	if st, _ := status(); st != "ok" || calls.Load() != 5 {
		t.Errorf("closed again: %s after %d calls", st, calls.Load())
	}
}

func TestConsentIsACopy(t *testing.T) {
	flags := map[string]bool{"marketing": true}
	e, _ := newEnricher(t, enrich.WithRoutes(func(string) (events.Route, bool) {
		return events.Route{Consent: flags}, true
	}))
	got, err := e.Enrich(t.Context(), classified(addr("ann@acme.example")))
	if err != nil {
		t.Fatal(err)
	}
	got.Enrichment.Contact.Consent["marketing"] = false
	if !maps.Equal(flags, map[string]bool{"marketing": true}) {
		t.Error("the record shares the route's consent map")
	}
}
