package redislookup_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/enrich"
	"github.com/mailpipe/mailpipe/pkg/enrich/redislookup"
	"github.com/mailpipe/mailpipe/pkg/redisconn/redistest"
)

// run checks the documented key layout: hashes written by hand (as redis-cli would) read back
// as records, and Put* writes what Lookup* reads.
func run(t *testing.T, client redis.UniversalClient, prefix string) {
	ctx := t.Context()
	tab := redislookup.New(client, redislookup.WithPrefix(prefix))
	hset := func(key string, fields ...string) {
		t.Helper()
		args := make([]any, len(fields))
		for i, f := range fields {
			args[i] = f
		}
		if err := client.HSet(ctx, key, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	hset(prefix+"contact:ann@acme.com", "owner", "jo@seller.example", "id:hubspot.contact", "123", "id:salesforce.contact", "003A", "note", "ignored")
	hset(prefix+"contact:bob@acme.com", "known", "1")
	hset(prefix+"contact:jörg@bücher.example", "owner", "kim")
	hset(prefix+"company:acme.com", "name", "Acme Corp", "size", "51-200", "industry", "Manufacturing", "country", "US", "owner", "kim", "id:hubspot.company", "456", "id:", "dropped")

	t.Run("contacts", func(t *testing.T) {
		for _, tt := range []struct {
			email string
			want  enrich.ContactRecord
		}{
			{"ann@acme.com", enrich.ContactRecord{Known: true, Owner: "jo@seller.example", CRMIDs: map[string]string{"hubspot.contact": "123", "salesforce.contact": "003A"}}},
			{"bob@acme.com", enrich.ContactRecord{Known: true}},
			{"jörg@bücher.example", enrich.ContactRecord{Known: true, Owner: "kim"}},
			{"eve@acme.com", enrich.ContactRecord{}},
		} {
			got, err := tab.LookupContact(ctx, tt.email)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("LookupContact(%s) = %+v, %v; want %+v", tt.email, got, err, tt.want)
			}
		}
	})
	t.Run("companies", func(t *testing.T) {
		for _, tt := range []struct {
			domain string
			want   enrich.CompanyRecord
		}{
			{"acme.com", enrich.CompanyRecord{Known: true, Name: "Acme Corp", Size: "51-200", Industry: "Manufacturing", Country: "US", Owner: "kim", CRMIDs: map[string]string{"hubspot.company": "456"}}},
			{"other.com", enrich.CompanyRecord{}},
		} {
			got, err := tab.LookupCompany(ctx, tt.domain)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("LookupCompany(%s) = %+v, %v; want %+v", tt.domain, got, err, tt.want)
			}
		}
	})
	t.Run("put", func(t *testing.T) {
		c := enrich.ContactRecord{Known: true, Owner: "o", CRMIDs: map[string]string{"pipedrive.person": "7"}}
		if err := tab.PutContact(ctx, "ann@acme.com", c); err != nil {
			t.Fatal(err)
		}
		if got, err := tab.LookupContact(ctx, "ann@acme.com"); err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("after PutContact: %+v, %v; want %+v (replaced, not merged)", got, err, c)
		}
		if err := tab.PutContact(ctx, "new@acme.com", enrich.ContactRecord{}); err != nil {
			t.Fatal(err)
		}
		if got, err := tab.LookupContact(ctx, "new@acme.com"); err != nil || !got.Known {
			t.Errorf("an empty record put is not known: %+v, %v", got, err)
		}
		co := enrich.CompanyRecord{Known: true, Name: "Initech", Country: "US"}
		if err := tab.PutCompany(ctx, "initech.example", co); err != nil {
			t.Fatal(err)
		}
		if got, err := tab.LookupCompany(ctx, "initech.example"); err != nil || !reflect.DeepEqual(got, co) {
			t.Errorf("after PutCompany: %+v, %v", got, err)
		}
	})
}

func TestTable(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = client.Close() }()
	run(t, client, redislookup.DefaultPrefix)
	if !mr.Exists("mailpipe:crm:contact:ann@acme.com") {
		t.Errorf("default layout not used: %v", mr.Keys())
	}
}

func TestTableRealRedis(t *testing.T) {
	client, prefix := redistest.Client(t)
	run(t, client, prefix)
}

func TestTableError(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	defer func() { _ = client.Close() }()
	mr.Close()
	tab := redislookup.New(client)
	if _, err := tab.LookupContact(context.Background(), "a@b.example"); err == nil {
		t.Error("LookupContact on a closed server succeeded")
	}
	if _, err := tab.LookupCompany(t.Context(), "b.example"); err == nil {
		t.Error("LookupCompany on a closed server succeeded")
	}
}
