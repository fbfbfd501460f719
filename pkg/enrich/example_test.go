package enrich_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/mailpipe/mailpipe/pkg/enrich"
	"github.com/mailpipe/mailpipe/pkg/enrich/companydb"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// A CRM that knows one contact, standing in for a connector or the Redis lookup table.
type exampleCRM map[string]enrich.ContactRecord

func (c exampleCRM) LookupContact(_ context.Context, email string) (enrich.ContactRecord, error) {
	return c[email], nil
}

func ExampleEnricher_Enrich() {
	ctx := context.Background()
	codec, err := serde.New(ctx)
	if err != nil {
		panic(err)
	}
	db, err := companydb.Load(strings.NewReader("domain,name,size\nacme.com,Acme Corp,51-200\n"), companydb.CSV)
	if err != nil {
		panic(err)
	}
	e, err := enrich.New(codec, slog.New(slog.DiscardHandler),
		enrich.WithCompanies(db),
		enrich.WithContactLookup(exampleCRM{"sales@eu.acme.com": {Known: true, Owner: "jo@seller.example"}}),
	)
	if err != nil {
		panic(err)
	}

	out, err := e.Enrich(ctx, &events.Classified{Message: events.Parsed{
		From: &events.Address{Address: "sales@eu.acme.com", DomainASCII: "eu.acme.com"},
	}})
	if err != nil {
		panic(err)
	}
	en := out.Enrichment
	fmt.Printf("contact %s known=%v role=%s owner=%s\n", en.Contact.Email, en.Contact.Known, en.Contact.Role, en.Owner)
	fmt.Printf("company %s %q size %s free_mail=%v\n", en.Company.Domain, en.Company.Name, en.Company.Size, en.Company.FreeMail)
	for _, s := range en.Sources {
		fmt.Printf("source %s: %s\n", s.Name, s.Status)
	}
	fmt.Println("degraded:", en.Degraded)
	// Output:
	// contact sales@eu.acme.com known=true role=sales owner=jo@seller.example
	// company acme.com "Acme Corp" size 51-200 free_mail=false
	// source role: ok
	// source freemail: miss
	// source companydb: ok
	// source crm_contact: ok
	// degraded: false
}
