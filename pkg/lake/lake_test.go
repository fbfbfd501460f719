package lake_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/events/eventstest"
	"github.com/mailpipe/mailpipe/pkg/lake"
)

const salt = "0123456789abcdef-test-salt"

func mapper(t *testing.T) *lake.Mapper {
	t.Helper()
	m, err := lake.NewMapper(salt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sample(t *testing.T) *events.Enriched {
	t.Helper()
	rec, ok := eventstest.Samples()["mail.enriched.v1"].(*events.Enriched)
	if !ok {
		t.Fatal("no enriched sample")
	}
	return rec
}

func TestNewMapperRejectsShortSalt(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("x", lake.MinSaltLen-1)} {
		if _, err := lake.NewMapper(s); err == nil {
			t.Errorf("NewMapper(%q) = nil error, want a rejection", s)
		}
	}
}

func TestHashAddress(t *testing.T) {
	m := mapper(t)
	sum := sha256.Sum256([]byte(salt + "ann@example.com"))
	want := hex.EncodeToString(sum[:])
	for _, tt := range []struct {
		name, addr, want string
	}{
		{"plain", "ann@example.com", want},
		{"case and spaces do not matter", "  Ann@Example.COM ", want},
		{"display name and brackets do not matter", `"Ann Example" <ann@example.com>`, want},
		{"other address differs", "bob@example.com", "!" + want},
		{"empty", "", ""},
		{"blank", "   ", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := m.HashAddress(tt.addr)
			if neg, ok := strings.CutPrefix(tt.want, "!"); ok {
				if got == neg || len(got) != 64 {
					t.Fatalf("HashAddress(%q) = %q, want a different 64-hex hash", tt.addr, got)
				}
				return
			}
			if got != tt.want {
				t.Fatalf("HashAddress(%q) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
	other, _ := lake.NewMapper("another-salt-of-16+bytes")
	if other.HashAddress("ann@example.com") == want {
		t.Error("the salt does not change the hash")
	}
}

func TestWorstOutcome(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"created"}, "created"},
		{[]string{"created", "updated"}, "updated"},
		{[]string{"updated", "deduped", "created"}, "deduped"},
		{[]string{"deduped", "shadow"}, "shadow"},
		{[]string{"created", "failed", "shadow"}, "failed"},
		{[]string{"created", "exploded"}, "failed"},
	} {
		t.Run(fmt.Sprint(tt.in), func(t *testing.T) {
			if got := lake.WorstOutcome(tt.in...); got != tt.want {
				t.Fatalf("WorstOutcome(%v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRow(t *testing.T) {
	m := mapper(t)
	rec := sample(t)
	received := rec.Message.ReceivedAt
	at := func(ms int) time.Time { return received.Add(time.Duration(ms) * time.Millisecond) }
	out := func(target, outcome string, written time.Time) events.CRMOutcome {
		return events.CRMOutcome{Target: target, Outcome: outcome, WrittenAt: written}
	}
	ptr := func(t time.Time) *time.Time { return &t }

	for _, tt := range []struct {
		name        string
		outcomes    []events.CRMOutcome
		outcome     string
		targets     []string
		deliveredAt *time.Time
		latency     int64
		duplicate   bool
	}{
		{"one target created", []events.CRMOutcome{out("webhook", "created", at(2500))}, "created", []string{"webhook"}, ptr(at(2500)), 2500, false},
		{
			"latest confirmation wins",
			[]events.CRMOutcome{out("webhook", "created", at(900)), out("hubspot", "updated", at(4000))},
			"updated",
			[]string{"webhook", "hubspot"},
			ptr(at(4000)), 4000, false,
		},
		{
			"failed target does not count as delivered",
			[]events.CRMOutcome{out("webhook", "created", at(700)), out("hubspot", "failed", at(9000))},
			"failed",
			[]string{"webhook", "hubspot"},
			ptr(at(700)), 700, false,
		},
		{"all failed", []events.CRMOutcome{out("webhook", "failed", at(100))}, "failed", []string{"webhook"}, nil, 0, false},
		{"all deduped is a duplicate", []events.CRMOutcome{out("a", "deduped", at(10)), out("b", "deduped", at(20))}, "deduped", []string{"a", "b"}, ptr(at(20)), 20, true},
		{"partly deduped is not", []events.CRMOutcome{out("a", "deduped", at(10)), out("b", "created", at(20))}, "deduped", []string{"a", "b"}, ptr(at(20)), 20, false},
		{"clock skew never gives negative latency", []events.CRMOutcome{out("a", "created", at(-50))}, "created", []string{"a"}, ptr(at(-50)), 0, false},
		{"no outcomes", nil, "", []string{}, nil, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			row := m.Row(rec, tt.outcomes)
			if row.Outcome != tt.outcome || !reflect.DeepEqual(row.Targets, tt.targets) || row.LatencyMs != tt.latency || row.Duplicate != tt.duplicate {
				t.Errorf("outcome %q targets %v latency %d duplicate %v; want %q %v %d %v",
					row.Outcome, row.Targets, row.LatencyMs, row.Duplicate, tt.outcome, tt.targets, tt.latency, tt.duplicate)
			}
			if !reflect.DeepEqual(row.DeliveredAt, tt.deliveredAt) {
				t.Errorf("delivered_at = %v, want %v", row.DeliveredAt, tt.deliveredAt)
			}
		})
	}
}

func TestRowCopiesMessageFacts(t *testing.T) {
	rec := sample(t)
	rec.Message.Attachments = append(rec.Message.Attachments, events.Attachment{Filename: "logo.png", Inline: true})
	rec.Enrichment.Company.FreeMail = true
	row := mapper(t).Row(rec, []events.CRMOutcome{{Target: "webhook", Outcome: "created", WrittenAt: rec.Message.ReceivedAt.Add(time.Second)}})

	sum := sha256.Sum256([]byte(salt + "a@example.com"))
	msg := rec.Message
	want := events.LakeRow{
		ID: msg.ID, ExternalID: msg.ExternalID, Tenant: "acme", RouteID: "r1", Source: "smtp",
		ReceivedAt: msg.ReceivedAt, ParsedAt: &msg.ParsedAt, ClassifiedAt: &rec.Classification.ClassifiedAt,
		EnrichedAt: &rec.Enrichment.EnrichedAt, DeliveredAt: row.DeliveredAt, LatencyMs: 1000,
		ParseStatus: "ok", Kind: "human", SpamScore: 0.5, LeadScore: 12, Queue: "sales",
		Outcome: "created", Targets: []string{"webhook"},
		FromHash: hex.EncodeToString(sum[:]), FromDomain: "example.com", FreeMail: true,
		AttachmentCount: 1, Size: msg.RawSize, ThreadDepth: 1,
	}
	if !reflect.DeepEqual(row, want) {
		t.Errorf("row =\n%+v\nwant\n%+v", row, want)
	}
}

// The row must carry no personal data beyond the salted hash: no address, name, subject or body.
func TestRowIsPIIMinimised(t *testing.T) {
	rec := sample(t)
	row := mapper(t).Row(rec, []events.CRMOutcome{{Target: "webhook", Outcome: "created"}})
	b, err := json.Marshal(row)
	if err != nil {
		t.Fatal(err)
	}
	msg := rec.Message
	for _, secret := range []string{
		msg.From.Address, msg.From.Name, msg.Subject, msg.Text, msg.StrippedText, msg.HTML,
		msg.To[0].Address, msg.Envelope.MailFrom, msg.Envelope.ClientIP, msg.MessageID,
		msg.Attachments[0].Filename, rec.Enrichment.Contact.Name, rec.Enrichment.Company.Name,
	} {
		if strings.Contains(string(b), secret) {
			t.Errorf("lake row %s contains %q", b, secret)
		}
	}
}

func TestRowWithoutSender(t *testing.T) {
	rec := sample(t)
	rec.Message.From = nil
	rec.Enrichment.Company = nil
	row := mapper(t).Row(rec, nil)
	if row.FromHash != "" || row.FromDomain != "" || row.FreeMail {
		t.Errorf("row without From has from_hash %q from_domain %q free_mail %v", row.FromHash, row.FromDomain, row.FreeMail)
	}
}

func TestRowDomainFallback(t *testing.T) {
	rec := sample(t)
	rec.Message.From = &events.Address{Address: "Ann@Mail.Example.ORG"}
	if got := mapper(t).Row(rec, nil).FromDomain; got != "mail.example.org" {
		t.Errorf("from_domain = %q, want the lower-cased part after @", got)
	}
}
