// Package eventstest provides one fully populated sample value per topic, for round-trip and
// subscriber-view tests that must exercise every field type (unions set, arrays and maps filled).
package eventstest

import (
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// Samples returns a new sample value per topic name, each a pointer to the topic's type.
func Samples() map[string]any {
	at := time.Date(2026, 11, 23, 10, 30, 0, 123456000, time.UTC)
	later := at.Add(1500 * time.Millisecond)
	raw := []byte("From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n")
	blob := "file:///var/lib/mailpipe/blobs/att/1"
	env := events.Envelope{
		MailFrom: "a@example.com", RcptTo: []string{"support+acme@in.example.com"},
		ClientIP: "192.0.2.7", Helo: "mx.example.com", Source: "smtp",
		TLS: &events.TLSInfo{Version: "TLS1.3", Cipher: "TLS_AES_128_GCM_SHA256"},
	}
	from := &events.Address{Address: "a@example.com", Name: "Ann Example", DomainASCII: "example.com"}
	parsed := events.Parsed{
		ID: "01JB6Y2M3Q7V0000000000000", ExternalID: "9f2c", ThreadKey: "root@example.com",
		Tenant: "acme", RouteID: "r1", ReceivedAt: at, ParsedAt: later, Envelope: env,
		MessageID: "m2@example.com", InReplyTo: "root@example.com", References: []string{"root@example.com"},
		From: from, Sender: nil, ReplyTo: []events.Address{*from},
		To:      []events.Address{{Address: "support+acme@in.example.com", DomainASCII: "in.example.com"}},
		Subject: "Re: Grüße", Date: &at, DateRaw: "Mon, 23 Nov 2026 10:30:00 +0000",
		Text: "thanks\n> old", HTML: "<p>thanks</p>", HTMLSanitized: "<p>thanks</p>", StrippedText: "thanks",
		Attachments: []events.Attachment{{
			Filename: "a.pdf", ContentType: "application/pdf",
			SniffedType: "application/pdf", Size: 42, Sha256: "ab", BlobRef: &blob,
		}},
		Authentication: events.Authentication{SPF: "pass", DKIM: []events.DKIMResult{{
			Domain:   "example.com",
			Selector: "s1", Result: "pass",
		}}, DMARC: "pass", DMARCPolicy: "reject"},
		Headers:     []events.Header{{Name: "Subject", Value: "Re: Grüße"}},
		ParseStatus: "ok", Warnings: []events.Warning{{Name: "charset_guessed", Detail: "x"}},
		RawSize: int64(len(raw)), RawSha256: "cd",
	}
	class := events.Classification{
		Kind: "human", Evidence: []string{"no auto headers"}, SpamScore: 0.5, SpamFlags: []string{"X"},
		Bounce:    &events.Bounce{Recipient: "b@example.org", Status: "5.1.1", Hard: true},
		LeadScore: 12, LeadContributions: []events.Contribution{{Rule: "pricing", Points: 12, Reason: "subject"}},
		Queue: "sales", SLAMinutes: 60, RulesVersion: "v1", ClassifiedAt: later,
	}
	enr := events.Enrichment{
		Contact: &events.Contact{Email: "a@example.com", Name: "Ann Example"},
		Company: &events.Company{Domain: "example.com", Name: "Example Inc"},
		CRMIds:  map[string]string{"hubspot.contact": "101"},
		Sources: []events.EnrichmentSource{{Name: "freemail", Status: "ok", DurationMs: 1}}, EnrichedAt: later,
	}
	return map[string]any{
		"mail.raw.v1": &events.Raw{
			ID: parsed.ID, ReceivedAt: at, Envelope: env, Tenant: "acme", RouteID: "r1",
			ThreadKey: "root@example.com", MessageID: "m2@example.com", Size: int64(len(raw)), Sha256: "cd", Raw: &raw,
		},
		"mail.parsed.v1":     &parsed,
		"mail.classified.v1": &events.Classified{Message: parsed, Classification: class},
		"mail.enriched.v1":   &events.Enriched{Message: parsed, Classification: class, Enrichment: enr},
		"mail.crm.v1": &events.CRMOutcome{
			ID: parsed.ID, ExternalID: "9f2c", ThreadKey: "root@example.com",
			Tenant: "acme", Target: "webhook", Outcome: "created", ObjectIds: map[string]string{"webhook": "msg_1"},
			Attempts: 1, ReceivedAt: at, WrittenAt: later,
		},
		"mail.lake.v1": &events.LakeRow{
			ID: parsed.ID, ExternalID: "9f2c", Tenant: "acme", Source: "smtp",
			ReceivedAt: at, DeliveredAt: &later, LatencyMs: 1500, ParseStatus: "ok", Kind: "human",
			Outcome: "created", Targets: []string{"webhook"}, FromHash: "ee", FromDomain: "example.com",
		},
		"mail.routes.v1": &events.Route{
			ID: "r1", Pattern: "support+{tenant}@in.example.com", Tenant: "acme",
			CRMTargets: []string{"webhook"}, UpdatedAt: at,
		},
	}
}
