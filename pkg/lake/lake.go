// Package lake maps a delivered message to the flat, PII-minimised row analysts read from
// mail.lake.v1: timestamps per stage, tenant, kind, scores, route, the worst delivery outcome,
// and the sender only as a salted hash plus its domain. No bodies, subjects, names or raw
// addresses ever reach a row.
//
// The package is pure (no Kafka, Redis or HTTP); the crm-sink stage calls it.
package lake

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/mailid"
)

// MinSaltLen is the shortest accepted salt. An unsalted or short-salted hash of an email
// address is reversed by hashing a list of known addresses, which would make from_hash personal
// data again.
const MinSaltLen = 16

// Outcomes, ordered from worst to best by [WorstOutcome]. They are the strings of mail.crm.v1
// (crm.Outcome*), repeated here because this pure package does not import crm.
const (
	outcomeFailed  = "failed"
	outcomeShadow  = "shadow"
	outcomeDeduped = "deduped"
	outcomeUpdated = "updated"
	outcomeCreated = "created"
)

// rank orders outcomes from worst (0) to best. Unknown outcomes are not listed and count as
// failed: a row must never look better than what happened.
var rank = map[string]int{
	outcomeFailed:  0,
	outcomeShadow:  1,
	outcomeDeduped: 2,
	outcomeUpdated: 3,
	outcomeCreated: 4,
}

// Mapper builds lake rows with one deployment's salt. It is immutable and safe for concurrent
// use.
type Mapper struct {
	salt []byte
}

// NewMapper returns a mapper hashing sender addresses with salt, which must be at least
// MinSaltLen bytes and should be a secret kept per deployment: rows from deployments with
// different salts cannot be joined on from_hash, by design. Changing the salt breaks the
// continuity of from_hash over time.
func NewMapper(salt string) (*Mapper, error) {
	if len(salt) < MinSaltLen {
		return nil, errors.New("lake salt must be at least 16 bytes")
	}
	return &Mapper{salt: []byte(salt)}, nil
}

// HashAddress returns hex sha256(salt + normalized address), or "" for an empty address.
// Normalization is mailid.Address (display name, brackets and spaces dropped, ASCII lower-cased),
// the same the external id uses, so the hash does not depend on how a sender wrote the address.
func (m *Mapper) HashAddress(addr string) string {
	norm := mailid.Address(addr)
	if norm == "" {
		return ""
	}
	h := sha256.New()
	h.Write(m.salt)
	h.Write([]byte(norm))
	return hex.EncodeToString(h.Sum(nil))
}

// Row maps rec and its delivery outcomes (one per target, in the order the targets were
// written) to a lake row.
//
//   - from_hash / from_domain come from the From header mailbox; both are empty without one.
//   - delivered_at is the latest written_at of the outcomes that are not failed; it is null
//     when every target failed or there are none. latency_ms is delivered_at − received_at
//     (never negative; 0 when not delivered).
//   - outcome is the worst outcome ([WorstOutcome]); duplicate is true when every target
//     reported deduped.
//   - attachment_count counts attachments shown as such, not inline parts (logos, signature
//     images); size is the raw message size; thread_depth the number of References ids.
func (m *Mapper) Row(rec *events.Enriched, outcomes []events.CRMOutcome) events.LakeRow {
	msg := &rec.Message
	row := events.LakeRow{
		ID:           msg.ID,
		ExternalID:   msg.ExternalID,
		Tenant:       msg.Tenant,
		RouteID:      msg.RouteID,
		Source:       msg.Envelope.Source,
		ReceivedAt:   msg.ReceivedAt.UTC(),
		ParsedAt:     optTime(msg.ParsedAt),
		ClassifiedAt: optTime(rec.Classification.ClassifiedAt),
		EnrichedAt:   optTime(rec.Enrichment.EnrichedAt),
		ParseStatus:  msg.ParseStatus,
		Kind:         rec.Classification.Kind,
		SpamScore:    rec.Classification.SpamScore,
		LeadScore:    rec.Classification.LeadScore,
		Queue:        rec.Classification.Queue,
		Targets:      []string{},
		Size:         msg.RawSize,
		ThreadDepth:  len(msg.References),
	}
	if from := msg.From; from != nil {
		row.FromHash = m.HashAddress(from.Address)
		row.FromDomain = senderDomain(from)
	}
	if c := rec.Enrichment.Company; c != nil {
		row.FreeMail = c.FreeMail
	}
	for _, a := range msg.Attachments {
		if !a.Inline {
			row.AttachmentCount++
		}
	}

	names := make([]string, 0, len(outcomes))
	var delivered time.Time
	allDeduped := len(outcomes) > 0
	for _, o := range outcomes {
		names = append(names, o.Outcome)
		if !slices.Contains(row.Targets, o.Target) {
			row.Targets = append(row.Targets, o.Target)
		}
		if o.Outcome != outcomeDeduped {
			allDeduped = false
		}
		if o.Outcome != outcomeFailed && o.WrittenAt.After(delivered) {
			delivered = o.WrittenAt
		}
	}
	row.Outcome = WorstOutcome(names...)
	row.Duplicate = allDeduped
	if !delivered.IsZero() {
		row.DeliveredAt = optTime(delivered)
		if ms := delivered.Sub(msg.ReceivedAt).Milliseconds(); ms > 0 {
			row.LatencyMs = ms
		}
	}
	return row
}

// WorstOutcome returns the worst of outcomes in the order failed < shadow < deduped < updated
// < created. An unknown outcome counts as failed. It returns "" for no outcomes.
func WorstOutcome(outcomes ...string) string {
	if len(outcomes) == 0 {
		return ""
	}
	worst := outcomeCreated
	for _, o := range outcomes {
		r, ok := rank[o]
		if !ok {
			return outcomeFailed
		}
		if r < rank[worst] {
			worst = o
		}
	}
	return worst
}

// senderDomain prefers the ASCII (Punycode) domain, which is stable whatever form the address
// was written in, and falls back to the part after the last "@".
func senderDomain(a *events.Address) string {
	if a.DomainASCII != "" {
		return strings.ToLower(a.DomainASCII)
	}
	if i := strings.LastIndexByte(a.Address, '@'); i >= 0 {
		return strings.ToLower(strings.TrimSpace(a.Address[i+1:]))
	}
	return ""
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
