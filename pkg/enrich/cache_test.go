package enrich_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/enrich"
	"github.com/mailpipe/mailpipe/pkg/enrich/rediscache"
	"github.com/mailpipe/mailpipe/pkg/events"
)

func crmSource(en events.Enrichment, name string) events.EnrichmentSource {
	for _, s := range en.Sources {
		if s.Name == name {
			return s
		}
	}
	return events.EnrichmentSource{}
}

// cacheRig is an enricher with both CRM sources behind a miniredis cache.
type cacheRig struct {
	e         *enrich.Enricher
	mr        *miniredis.Miniredis
	contacts  *contactTable
	companies *companyTable
}

func newCacheRig(t *testing.T) *cacheRig {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	r := &cacheRig{
		mr: mr,
		contacts: &contactTable{records: map[string]enrich.ContactRecord{
			"ann@acme.example": {Known: true, Owner: "jo", CRMIDs: map[string]string{"hubspot.contact": "1"}},
		}},
		companies: &companyTable{records: map[string]enrich.CompanyRecord{
			"acme.example": {Known: true, Name: "Acme"},
		}},
	}
	r.e, _ = newEnricher(t,
		enrich.WithCache(rediscache.New(client), time.Hour, 10*time.Minute),
		enrich.WithContactLookup(r.contacts), enrich.WithCompanyLookup(r.companies))
	return r
}

func (r *cacheRig) enrich(t *testing.T, from string) events.Enrichment {
	t.Helper()
	got, err := r.e.Enrich(t.Context(), classified(addr(from)))
	if err != nil {
		t.Fatal(err)
	}
	return got.Enrichment
}

func TestCache(t *testing.T) {
	for _, tt := range []struct {
		name string
		from string
		// after the first lookup, the clock moves on by wait and the message comes again
		wait        time.Duration
		wantCalls   int64 // contact source calls after both messages
		wantCache   string
		wantStatus  string
		wantContact bool
	}{
		{"hit does not call the source", "ann@acme.example", time.Minute, 1, enrich.CacheHit, enrich.StatusOK, true},
		{"negative answers are cached", "bob@acme.example", time.Minute, 1, enrich.CacheHit, enrich.StatusMiss, false},
		{"found answers expire after the TTL", "ann@acme.example", time.Hour + time.Second, 2, enrich.CacheMiss, enrich.StatusOK, true},
		{"negative answers expire after the shorter TTL", "bob@acme.example", 10*time.Minute + time.Second, 2, enrich.CacheMiss, enrich.StatusMiss, false},
		{"found answers outlive the negative TTL", "ann@acme.example", 10*time.Minute + time.Second, 1, enrich.CacheHit, enrich.StatusOK, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// given
			r := newCacheRig(t)
			first := r.enrich(t, tt.from)
			if s := crmSource(first, "crm_contact"); s.Cache != enrich.CacheMiss {
				t.Fatalf("first lookup: %+v; want a cache miss", s)
			}

			// when
			r.mr.FastForward(tt.wait)
			second := r.enrich(t, tt.from)

			// then
			s := crmSource(second, "crm_contact")
			if s.Cache != tt.wantCache || s.Status != tt.wantStatus || s.Reason != "" {
				t.Errorf("second lookup %+v; want status %s cache %s", s, tt.wantStatus, tt.wantCache)
			}
			if n := r.contacts.calls.Load(); n != tt.wantCalls {
				t.Errorf("contact source called %d times, want %d", n, tt.wantCalls)
			}
			if second.Contact.Known != tt.wantContact || second.Degraded {
				t.Errorf("known %v degraded %v", second.Contact.Known, second.Degraded)
			}
			if tt.wantContact && (second.Owner != "jo" || second.CRMIds["hubspot.contact"] != "1") {
				t.Errorf("cached answer lost fields: owner %q ids %v", second.Owner, second.CRMIds)
			}
		})
	}
}

func TestCacheKeysAndTTLs(t *testing.T) {
	r := newCacheRig(t)
	r.enrich(t, "ann@acme.example")
	r.enrich(t, "bob@other.example")
	for key, want := range map[string]time.Duration{
		"mailpipe:enrich:crm_contact:ann@acme.example":  time.Hour,
		"mailpipe:enrich:crm_company:acme.example":      time.Hour,
		"mailpipe:enrich:crm_contact:bob@other.example": 10 * time.Minute,
		"mailpipe:enrich:crm_company:other.example":     10 * time.Minute,
	} {
		if got := r.mr.TTL(key); got != want {
			t.Errorf("TTL(%s) = %s, want %s (keys %v)", key, got, want, r.mr.Keys())
		}
	}
	if n := r.companies.calls.Load(); n != 2 {
		t.Errorf("company source called %d times", n)
	}
}

// An entry the enricher cannot read is a miss, and the source's answer replaces it.
func TestCacheUnreadableEntry(t *testing.T) {
	r := newCacheRig(t)
	if err := r.mr.Set("mailpipe:enrich:crm_contact:ann@acme.example", "{not json"); err != nil {
		t.Fatal(err)
	}
	en := r.enrich(t, "ann@acme.example")
	if s := crmSource(en, "crm_contact"); s.Cache != enrich.CacheMiss || s.Status != enrich.StatusOK || r.contacts.calls.Load() != 1 {
		t.Errorf("source %+v after %d calls", s, r.contacts.calls.Load())
	}
	if v, _ := r.mr.Get("mailpipe:enrich:crm_contact:ann@acme.example"); !strings.HasPrefix(v, `{"found":true`) {
		t.Errorf("entry not replaced: %s", v)
	}
}

// Failed lookups are not cached: the next message asks the source again.
func TestCacheKeepsNoErrors(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = client.Close() }()
	var calls atomic.Int64
	e, _ := newEnricher(t, enrich.WithCache(rediscache.New(client), 0, 0), enrich.WithContactLookup(contactFunc(func(context.Context, string) (enrich.ContactRecord, error) {
		calls.Add(1)
		return enrich.ContactRecord{}, errors.New("down")
	})))
	for range 2 {
		if _, err := e.Enrich(t.Context(), classified(addr("ann@acme.example"))); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 2 || len(mr.Keys()) != 0 {
		t.Errorf("%d calls, keys %v; want 2 calls and nothing cached", calls.Load(), mr.Keys())
	}
}

// A cache that fails or hangs costs only the cache: the source answers, the record says the
// cache was unavailable and why, and it is not degraded.
func TestCacheUnavailable(t *testing.T) {
	down := miniredis.RunT(t)
	downAddr := down.Addr()
	down.Close()

	// A server that accepts connections and never answers.
	hung, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hung.Close() }()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			defer func() { _ = c.Close() }()
		}
	}()

	for _, tt := range []struct {
		name, addr, wantReason string
	}{
		{"redis down", downAddr, "cache: "},
		{"redis hangs", hung.Addr().String(), "cache: no answer within 50ms"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client := redis.NewClient(&redis.Options{Addr: tt.addr, MaxRetries: -1})
			defer func() { _ = client.Close() }()
			contacts := &contactTable{records: map[string]enrich.ContactRecord{"ann@acme.example": {Known: true}}}
			e, _ := newEnricher(t, enrich.WithCacheTimeout(50*time.Millisecond),
				enrich.WithCache(rediscache.New(client), 0, 0), enrich.WithContactLookup(contacts))
			start := time.Now()
			got, err := e.Enrich(t.Context(), classified(addr("ann@acme.example")))
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("Enrich took %s", took)
			}
			s := crmSource(got.Enrichment, "crm_contact")
			if s.Status != enrich.StatusOK || s.Cache != enrich.CacheUnavailable || !strings.HasPrefix(s.Reason, tt.wantReason) {
				t.Errorf("source %+v; want ok, cache unavailable, reason %q…", s, tt.wantReason)
			}
			if contacts.calls.Load() != 1 || !got.Enrichment.Contact.Known || got.Enrichment.Degraded {
				t.Errorf("calls %d known %v degraded %v", contacts.calls.Load(), got.Enrichment.Contact.Known, got.Enrichment.Degraded)
			}
		})
	}
}
