package enrich_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/enrich"
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

func handle(t *testing.T, in *events.Classified) (*kgo.Record, *events.Enriched) {
	t.Helper()
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e := enrich.New(codec, slog.New(slog.DiscardHandler), enrich.WithClock(func() time.Time { return enrichedAt }))
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
	var got events.Enriched
	if err := codec.Decode(t.Context(), kafka.TopicEnriched, out[0].Value, &got); err != nil {
		t.Fatal(err)
	}
	return out[0], &got
}

func TestHandle(t *testing.T) {
	for _, tt := range []struct {
		name        string
		from        *events.Address
		wantContact *events.Contact
		wantCompany *events.Company
		wantStatus  string
	}{
		{
			name:        "company sender",
			from:        &events.Address{Address: "ann@acme.example", Name: "Ann", DomainASCII: "acme.example"},
			wantContact: &events.Contact{Email: "ann@acme.example", Name: "Ann"},
			wantCompany: &events.Company{Domain: "acme.example"},
			wantStatus:  enrich.StatusOK,
		},
		{
			name:        "free-mail sender",
			from:        &events.Address{Address: "bob@gmail.com", DomainASCII: "gmail.com"},
			wantContact: &events.Contact{Email: "bob@gmail.com"},
			wantCompany: &events.Company{Domain: "gmail.com", FreeMail: true},
			wantStatus:  enrich.StatusOK,
		},
		{
			name:        "IDN company domain",
			from:        &events.Address{Address: "jörg@bücher.example", DomainASCII: "xn--bcher-kva.example"},
			wantContact: &events.Contact{Email: "jörg@bücher.example"},
			wantCompany: &events.Company{Domain: "bücher.example"},
			wantStatus:  enrich.StatusOK,
		},
		{name: "no From", wantStatus: enrich.StatusMiss},
		{name: "From without a domain", from: &events.Address{Address: "mailer-daemon"}, wantStatus: enrich.StatusMiss},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// given
			in := classified(tt.from)

			// when
			rec, got := handle(t, in)

			// then
			if string(rec.Key) != "root@example.com" || len(rec.Headers) != 1 {
				t.Errorf("key %q headers %v; want the input's", rec.Key, rec.Headers)
			}
			if got.Message.ID != in.Message.ID || got.Classification.Kind != "human" || got.Classification.RulesVersion != "builtin-0" {
				t.Errorf("message or classification not passed through: %+v %+v", got.Message, got.Classification)
			}
			en := got.Enrichment
			if !equalPtr(en.Contact, tt.wantContact) || !equalPtr(en.Company, tt.wantCompany) {
				t.Errorf("contact %+v company %+v; want %+v %+v", en.Contact, en.Company, tt.wantContact, tt.wantCompany)
			}
			if len(en.Sources) != 1 || en.Sources[0].Name != enrich.SourceFreeMail || en.Sources[0].Status != tt.wantStatus {
				t.Errorf("sources %+v; want freemail %s", en.Sources, tt.wantStatus)
			}
			if !en.EnrichedAt.Equal(enrichedAt) || en.Degraded {
				t.Errorf("enriched at %v degraded %v", en.EnrichedAt, en.Degraded)
			}
		})
	}
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func TestHandleUndecodable(t *testing.T) {
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e := enrich.New(codec, slog.New(slog.DiscardHandler))
	out, err := e.Handle(t.Context(), &kgo.Record{Topic: kafka.TopicClassified, Value: []byte("junk")})
	if out != nil || failure.Classify(err) != failure.Schema {
		t.Errorf("Handle = %v, %v (class %s); want class schema", out, err, failure.Classify(err))
	}
}

// Handle has the pinned stage.Handler shape.
var _ stage.Handler = (*enrich.Enricher)(nil).Handle
