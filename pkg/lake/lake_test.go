package lake_test

import (
	"crypto/hmac"
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

// mac is the expected hash: HMAC-SHA256 under the test key, written out independently of the
// package.
func mac(addr string) string {
	h := hmac.New(sha256.New, []byte(salt))
	h.Write([]byte(addr))
	return hex.EncodeToString(h.Sum(nil))
}

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
	want := mac("ann@example.com")
	if plain := sha256.Sum256([]byte(salt + "ann@example.com")); want == hex.EncodeToString(plain[:]) {
		t.Fatal("test key makes HMAC and salted hash agree")
	}
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
		{[]string{"updated", "unchanged"}, "unchanged"},
		{[]string{"unchanged", "deduped"}, "deduped"},
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

func TestRows(t *testing.T) {
	m := mapper(t)
	rec := sample(t)
	received := rec.Message.ReceivedAt
	at := func(ms int) time.Time { return received.Add(time.Duration(ms) * time.Millisecond) }
	out := func(target, outcome string, written time.Time) events.CRMOutcome {
		return events.CRMOutcome{Target: target, Outcome: outcome, WrittenAt: written, Attempts: 2, ErrorClass: "crm_5xx"}
	}
	ptr := func(t time.Time) *time.Time { return &t }
	type want struct {
		target, outcome string
		deliveredAt     *time.Time
		latency         int64
		duplicate       bool
		errorClass      string
	}

	for _, tt := range []struct {
		name     string
		outcomes []events.CRMOutcome
		targets  []string
		rows     []want
	}{
		{
			"one target created",
			[]events.CRMOutcome{out("webhook", "created", at(2500))},
			[]string{"webhook"},
			[]want{{"webhook", "created", ptr(at(2500)), 2500, false, ""}},
		},
		{
			"a row per target, each with its own confirmation",
			[]events.CRMOutcome{out("webhook", "created", at(900)), out("hubspot", "updated", at(4000))},
			[]string{"webhook", "hubspot"},
			[]want{{"webhook", "created", ptr(at(900)), 900, false, ""}, {"hubspot", "updated", ptr(at(4000)), 4000, false, ""}},
		},
		{
			"a failed target is not delivered and keeps its class",
			[]events.CRMOutcome{out("webhook", "created", at(700)), out("hubspot", "failed", at(9000))},
			[]string{"webhook", "hubspot"},
			[]want{{"webhook", "created", ptr(at(700)), 700, false, ""}, {"hubspot", "failed", nil, 0, false, "crm_5xx"}},
		},
		{
			"deduped is a duplicate",
			[]events.CRMOutcome{out("a", "deduped", at(10)), out("b", "unchanged", at(20))},
			[]string{"a", "b"},
			[]want{{"a", "deduped", ptr(at(10)), 10, true, ""}, {"b", "unchanged", ptr(at(20)), 20, false, ""}},
		},
		{
			"unknown outcome counts as failed",
			[]events.CRMOutcome{out("a", "exploded", at(10))},
			[]string{"a"},
			[]want{{"a", "failed", nil, 0, false, "crm_5xx"}},
		},
		{
			"clock skew never gives negative latency",
			[]events.CRMOutcome{out("a", "created", at(-50))},
			[]string{"a"},
			[]want{{"a", "created", ptr(at(-50)), 0, false, ""}},
		},
		{"no outcomes still gives one row", nil, []string{}, []want{{"", "", nil, 0, false, ""}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rows := m.Rows(rec, tt.outcomes)
			if len(rows) != len(tt.rows) {
				t.Fatalf("%d rows, want %d", len(rows), len(tt.rows))
			}
			for i, row := range rows {
				w := tt.rows[i]
				got := want{row.Target, row.Outcome, row.DeliveredAt, row.LatencyMs, row.Duplicate, row.ErrorClass}
				if !reflect.DeepEqual(got, w) {
					t.Errorf("row %d = %+v, want %+v", i, got, w)
				}
				if !reflect.DeepEqual(row.Targets, tt.targets) {
					t.Errorf("row %d targets %v, want %v", i, row.Targets, tt.targets)
				}
				if len(tt.outcomes) > 0 && row.Attempts != 2 {
					t.Errorf("row %d attempts %d, want the outcome's 2", i, row.Attempts)
				}
			}
		})
	}
}

func TestRowCopiesMessageFacts(t *testing.T) {
	rec := sample(t)
	rec.Message.Attachments = append(rec.Message.Attachments, events.Attachment{Filename: "logo.png", Inline: true})
	rec.Enrichment.Company.FreeMail = true
	rec.Message.Attachments[0].Size = 1234
	rec.Message.Attachments = append(rec.Message.Attachments, events.Attachment{Filename: "b.pdf", Size: 66})
	rec.Message.Cc = []events.Address{{Address: "C@Example.com"}, {Address: rec.Message.To[0].Address}}
	row := mapper(t).Rows(rec, []events.CRMOutcome{{Target: "webhook", Outcome: "created", Attempts: 1, WrittenAt: rec.Message.ReceivedAt.Add(time.Second)}})[0]

	msg := rec.Message
	want := events.LakeRow{
		ID: msg.ID, ExternalID: msg.ExternalID, Tenant: "acme", RouteID: "r1", Source: "smtp",
		ReceivedAt: msg.ReceivedAt, ParsedAt: &msg.ParsedAt, ClassifiedAt: &rec.Classification.ClassifiedAt,
		EnrichedAt: &rec.Enrichment.EnrichedAt, DeliveredAt: row.DeliveredAt, LatencyMs: 1000,
		ParseStatus: "ok", Kind: "human", SpamScore: 0.5, LeadScore: 12, Queue: "sales",
		Outcome: "created", Targets: []string{"webhook"}, Target: "webhook", Attempts: 1,
		FromHash: mac("a@example.com"), FromDomain: "example.com", FreeMail: true,
		AttachmentCount: 2, AttachmentBytes: 1300, Size: msg.RawSize, ThreadDepth: 1,
		RecipientHashes: []string{mac(strings.ToLower(msg.To[0].Address)), mac("c@example.com")},
	}
	if !reflect.DeepEqual(row, want) {
		t.Errorf("row =\n%+v\nwant\n%+v", row, want)
	}
}

// The row must carry no personal data beyond the keyed hashes: no address, name, subject or body.
func TestRowIsPIIMinimised(t *testing.T) {
	rec := sample(t)
	row := mapper(t).Rows(rec, []events.CRMOutcome{{Target: "webhook", Outcome: "created"}})[0]
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
	row := mapper(t).Rows(rec, nil)[0]
	if row.FromHash != "" || row.FromDomain != "" || row.FreeMail {
		t.Errorf("row without From has from_hash %q from_domain %q free_mail %v", row.FromHash, row.FromDomain, row.FreeMail)
	}
}

func TestRowDomainFallback(t *testing.T) {
	rec := sample(t)
	rec.Message.From = &events.Address{Address: "Ann@Mail.Example.ORG"}
	if got := mapper(t).Rows(rec, nil)[0].FromDomain; got != "mail.example.org" {
		t.Errorf("from_domain = %q, want the lower-cased part after @", got)
	}
}
