package enrich_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/enrich"
	"github.com/mailpipe/mailpipe/pkg/enrich/companydb"
	"github.com/mailpipe/mailpipe/pkg/enrich/rediscache"
	"github.com/mailpipe/mailpipe/pkg/enrich/redislookup"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/redisconn/redistest"
)

// countingTable counts the calls that reach the lookup table.
type countingTable struct {
	*redislookup.Table
	contacts, companies atomic.Int64
}

func (c *countingTable) LookupContact(ctx context.Context, email string) (enrich.ContactRecord, error) {
	c.contacts.Add(1)
	return c.Table.LookupContact(ctx, email)
}

func (c *countingTable) LookupCompany(ctx context.Context, domain string) (enrich.CompanyRecord, error) {
	c.companies.Add(1)
	return c.Table.LookupCompany(ctx, domain)
}

// realRig is an enricher on real Redis: the lookup table and the cache under the test's prefix.
func realRig(t testing.TB, opts ...enrich.Option) (*enrich.Enricher, *countingTable, redis.UniversalClient, string) {
	client, prefix := redistest.Client(t)
	tab := &countingTable{Table: redislookup.New(client, redislookup.WithPrefix(prefix+"crm:"))}
	db, err := companydb.Load(strings.NewReader(dataset), companydb.CSV)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]enrich.Option{
		enrich.WithCompanies(db),
		enrich.WithCache(rediscache.New(client, rediscache.WithPrefix(prefix+"enrich:")), time.Hour, 10*time.Minute),
		enrich.WithContactLookup(tab), enrich.WithCompanyLookup(tab),
	}, opts...)
	e, _ := newEnricher(t, opts...)
	return e, tab, client, prefix
}

func TestEnrichRealRedis(t *testing.T) {
	// given a lookup table an operator filled
	e, tab, client, prefix := realRig(t)
	ctx := t.Context()
	if err := tab.PutContact(ctx, "ann@acme.com", enrich.ContactRecord{Owner: "jo@seller.example", CRMIDs: map[string]string{"hubspot.contact": "101"}}); err != nil {
		t.Fatal(err)
	}
	if err := tab.PutCompany(ctx, "acme.com", enrich.CompanyRecord{Owner: "kim@seller.example", CRMIDs: map[string]string{"hubspot.company": "9"}}); err != nil {
		t.Fatal(err)
	}
	check := func(en events.Enrichment, cache string) {
		t.Helper()
		if en.Contact == nil || !en.Contact.Known || en.Owner != "jo@seller.example" ||
			en.CRMIds["hubspot.contact"] != "101" || en.CRMIds["hubspot.company"] != "9" || en.Company.Name != "Acme Corp" {
			t.Errorf("enrichment %s", show(en))
		}
		for _, name := range []string{"crm_contact", "crm_company"} {
			if s := crmSource(en, name); s.Status != enrich.StatusOK || s.Cache != cache || s.Reason != "" {
				t.Errorf("%s: %+v; want ok, cache %s", name, s, cache)
			}
		}
	}

	// when a message from a known contact comes in
	first, err := e.Enrich(ctx, classified(addr("ann@acme.com")))
	if err != nil {
		t.Fatal(err)
	}
	// and, after the table lost the contact and the company, a second one
	if err := client.Del(ctx, tab.ContactKey("ann@acme.com"), tab.CompanyKey("acme.com")).Err(); err != nil {
		t.Fatal(err)
	}
	second, err := e.Enrich(ctx, classified(addr("ann@acme.com")))
	if err != nil {
		t.Fatal(err)
	}
	// and one from a contact the table does not know
	third, err := e.Enrich(ctx, classified(addr("eve@mail.acme.com")))
	if err != nil {
		t.Fatal(err)
	}

	// then the first asked the table, the second only the cache
	check(first.Enrichment, enrich.CacheMiss)
	check(second.Enrichment, enrich.CacheHit)
	if s := crmSource(third.Enrichment, "crm_contact"); s.Status != enrich.StatusMiss || s.Cache != enrich.CacheMiss || third.Enrichment.Contact.Known {
		t.Errorf("unknown contact: %+v", s)
	}
	if s := crmSource(third.Enrichment, "crm_company"); s.Status != enrich.StatusOK || s.Cache != enrich.CacheHit {
		t.Errorf("company of the unknown contact: %+v; want the cached acme.com", s)
	}
	if tab.contacts.Load() != 2 || tab.companies.Load() != 1 {
		t.Errorf("table asked %d times for contacts, %d for companies; want 2 and 1", tab.contacts.Load(), tab.companies.Load())
	}
	// and the answers are cached with their TTLs, the negative one shorter
	for key, want := range map[string]time.Duration{
		prefix + "enrich:crm_contact:ann@acme.com":      time.Hour,
		prefix + "enrich:crm_company:acme.com":          time.Hour,
		prefix + "enrich:crm_contact:eve@mail.acme.com": 10 * time.Minute,
	} {
		if ttl := client.PTTL(ctx, key).Val(); ttl <= want-time.Minute || ttl > want {
			t.Errorf("PTTL(%s) = %s, want about %s", key, ttl, want)
		}
	}

	// and through Handle, the record on the topic is the same
	_, codec := newEnricher(t)
	v, err := codec.Encode(kafka.TopicClassified, classified(addr("ann@acme.com")))
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.Handle(ctx, &kgo.Record{Topic: kafka.TopicClassified, Value: v})
	if err != nil {
		t.Fatal(err)
	}
	var got events.Enriched
	if err := codec.Decode(ctx, kafka.TopicEnriched, out[0].Value, &got); err != nil {
		t.Fatal(err)
	}
	check(got.Enrichment, enrich.CacheHit)
}

// BenchmarkEnrich measures the enricher's handler (decode, enrich, encode) on real Redis with
// both CRM sources on the lookup table behind the cache, and reports messages per second:
//
//   - cold: every message has a new sender, so both lookups miss the cache, ask the table and
//     write the answer (GET, HGETALL, SET per source);
//   - warm: the senders' answers are cached (one GET per source);
//   - no-crm: role, free-mail and dataset only, no Redis, for the cost of the codec.
//
// "seq" is one partition's worth (one record after another); "par" runs GOMAXPROCS handlers
// at once, as the stage does with one partition per worker. docs/enrichment.md has the figures.
//
//	go test -run '^$' -bench Enrich -benchtime 3s ./enrich/
func BenchmarkEnrich(b *testing.B) {
	// Generous deadlines: the figures are about the cache and the table, not about a loaded
	// test machine tripping the production deadlines (which would send warm lookups to the table).
	benchTimeouts := []enrich.Option{enrich.WithCacheTimeout(time.Second), enrich.WithLookupTimeout(2 * time.Second)}
	text := strings.Repeat("We are evaluating your product for 200 seats; please send pricing. ", 30)
	_, codec := newEnricher(b)
	record := func(b *testing.B, i int, run string) *kgo.Record {
		in := classified(addr(fmt.Sprintf("person%d@company%d-%s.example", i, i, run)))
		in.Message.Text = text
		v, err := codec.Encode(kafka.TopicClassified, in)
		if err != nil {
			b.Fatal(err)
		}
		return &kgo.Record{Topic: kafka.TopicClassified, Key: []byte(in.Message.ThreadKey), Value: v}
	}
	// records pre-encodes n messages with distinct senders, all known to the table.
	records := func(b *testing.B, tab *countingTable, client redis.UniversalClient, n int, run string) []*kgo.Record {
		recs := make([]*kgo.Record, n)
		p := client.Pipeline()
		for i := range n {
			recs[i] = record(b, i, run)
			p.HSet(b.Context(), tab.ContactKey(fmt.Sprintf("person%d@company%d-%s.example", i, i, run)), "owner", "jo", "id:hubspot.contact", fmt.Sprint(i))
			p.HSet(b.Context(), tab.CompanyKey(fmt.Sprintf("company%d-%s.example", i, run)), "name", "Company", "id:hubspot.company", fmt.Sprint(i))
			if p.Len() >= 2000 {
				if _, err := p.Exec(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
		}
		if _, err := p.Exec(b.Context()); err != nil {
			b.Fatal(err)
		}
		return recs
	}
	handle := func(b *testing.B, e *enrich.Enricher, rec *kgo.Record) {
		out, err := e.Handle(context.Background(), rec)
		if err != nil || len(out) != 1 {
			b.Fatalf("Handle = %v, %v", out, err)
		}
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	}

	runs := 0
	for _, mode := range []string{"seq", "par"} {
		b.Run("cold/"+mode, func(b *testing.B) {
			e, tab, client, _ := realRig(b, benchTimeouts...)
			runs++
			recs := records(b, tab, client, b.N, fmt.Sprintf("c%d", runs))
			b.ResetTimer()
			if mode == "seq" {
				for i := range b.N {
					handle(b, e, recs[i])
				}
			} else {
				var next atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						handle(b, e, recs[next.Add(1)-1])
					}
				})
			}
			report(b)
			if n := tab.contacts.Load(); n != int64(b.N) {
				b.Errorf("%d table lookups for %d cold messages", n, b.N)
			}
		})
		b.Run("warm/"+mode, func(b *testing.B) {
			e, tab, client, _ := realRig(b, benchTimeouts...)
			runs++
			const senders = 1000
			recs := records(b, tab, client, senders, fmt.Sprintf("w%d", runs))
			for _, r := range recs {
				handle(b, e, r)
			}
			tab.contacts.Store(0)
			b.ResetTimer()
			if mode == "seq" {
				for i := range b.N {
					handle(b, e, recs[i%senders])
				}
			} else {
				var next atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						handle(b, e, recs[(next.Add(1)-1)%senders])
					}
				})
			}
			report(b)
			if n := tab.contacts.Load(); n != 0 {
				b.Errorf("%d table lookups with a warm cache", n)
			}
		})
		b.Run("no-crm/"+mode, func(b *testing.B) {
			db, err := companydb.Load(strings.NewReader(dataset), companydb.CSV)
			if err != nil {
				b.Fatal(err)
			}
			e, _ := newEnricher(b, enrich.WithCompanies(db))
			rec := record(b, 0, "n")
			b.ResetTimer()
			if mode == "seq" {
				for range b.N {
					handle(b, e, rec)
				}
			} else {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						handle(b, e, rec)
					}
				})
			}
			report(b)
		})
	}
}
