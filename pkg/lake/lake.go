// Package lake maps a delivered message to the flat, PII-minimised rows analysts read from
// mail.lake.v1, one per CRM target: timestamps per stage, tenant, kind, scores, route, the
// target's outcome, and the addresses only as keyed hashes (HMAC-SHA256 under an operator
// secret) plus the sender's domain. No bodies, subjects, names or raw addresses ever reach a row.
//
// The package is pure (no Kafka, Redis or HTTP); the crm-sink stage calls it.
package lake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/mailid"
)

// MinSaltLen is the shortest accepted hash key. A hash of an email address under no key or a
// guessable one is reversed by hashing a list of known addresses, which would make from_hash
// personal data again.
const MinSaltLen = 16

// Outcomes, ordered from worst to best by [WorstOutcome]. They are the strings of mail.crm.v1
// (crm.Outcome*), repeated here because this pure package does not import crm.
const (
	outcomeFailed    = "failed"
	outcomeShadow    = "shadow"
	outcomeDeduped   = "deduped"
	outcomeUnchanged = "unchanged"
	outcomeUpdated   = "updated"
	outcomeCreated   = "created"
)

// rank orders outcomes from worst (0) to best. Unknown outcomes are not listed and count as
// failed: a row must never look better than what happened.
var rank = map[string]int{
	outcomeFailed:    0,
	outcomeShadow:    1,
	outcomeDeduped:   2,
	outcomeUnchanged: 3,
	outcomeUpdated:   4,
	outcomeCreated:   5,
}

// Mapper builds lake rows with one deployment's hash key. It is immutable and safe for
// concurrent use.
type Mapper struct {
	salt []byte
}

// NewMapper returns a mapper hashing addresses under salt, the HMAC key, which must be at least
// MinSaltLen bytes and should be a secret kept per deployment: rows from deployments with
// different keys cannot be joined on from_hash, by design. Changing the key breaks the
// continuity of from_hash over time.
func NewMapper(salt string) (*Mapper, error) {
	if len(salt) < MinSaltLen {
		return nil, errors.New("lake salt must be at least 16 bytes")
	}
	return &Mapper{salt: []byte(salt)}, nil
}

// HashAddress returns hex HMAC-SHA256(key, normalized address), or "" for an empty address.
// A keyed MAC rather than a salted hash: its output reveals nothing about the key, and it is
// not open to the length-extension games a plain hash of key+data allows.
// Normalization is mailid.Address (display name, brackets and spaces dropped, ASCII lower-cased),
// the same the external id uses, so the hash does not depend on how a sender wrote the address.
func (m *Mapper) HashAddress(addr string) string {
	norm := mailid.Address(addr)
	if norm == "" {
		return ""
	}
	h := hmac.New(sha256.New, m.salt)
	h.Write([]byte(norm))
	return hex.EncodeToString(h.Sum(nil))
}

// Rows maps rec and its delivery outcomes (one per target, in the order the targets were
// written) to lake rows, one per outcome; with no outcomes (a route without targets) it returns
// one row with an empty target and outcome, so every message is counted.
//
//   - from_hash / from_domain come from the From header mailbox; both are empty without one.
//     recipient_hashes hash the To and Cc mailboxes.
//   - delivered_at is the target's written_at unless it failed; latency_ms is delivered_at −
//     received_at (never negative; 0 when not delivered).
//   - targets lists every target of the message; duplicate is true when the target reported
//     deduped.
//   - attachment_count and attachment_bytes count attachments shown as such, not inline parts
//     (logos, signature images); size is the raw message size; thread_depth the number of
//     References ids.
func (m *Mapper) Rows(rec *events.Enriched, outcomes []events.CRMOutcome) []events.LakeRow {
	base := m.base(rec)
	for _, o := range outcomes {
		if !slices.Contains(base.Targets, o.Target) {
			base.Targets = append(base.Targets, o.Target)
		}
	}
	if len(outcomes) == 0 {
		return []events.LakeRow{base}
	}
	rows := make([]events.LakeRow, len(outcomes))
	for i, o := range outcomes {
		row := base
		row.Target = o.Target
		row.Outcome = o.Outcome
		row.Attempts = o.Attempts
		row.Duplicate = o.Outcome == outcomeDeduped
		if _, known := rank[o.Outcome]; !known {
			// A row must never look better than what happened.
			row.Outcome = outcomeFailed
		}
		if row.Outcome == outcomeFailed {
			row.ErrorClass = o.ErrorClass
		} else if !o.WrittenAt.IsZero() {
			row.DeliveredAt = optTime(o.WrittenAt)
			if ms := o.WrittenAt.Sub(rec.Message.ReceivedAt).Milliseconds(); ms > 0 {
				row.LatencyMs = ms
			}
		}
		rows[i] = row
	}
	return rows
}

// base fills the fields every row of rec shares.
func (m *Mapper) base(rec *events.Enriched) events.LakeRow {
	msg := &rec.Message
	row := events.LakeRow{
		ID:              msg.ID,
		ExternalID:      msg.ExternalID,
		Tenant:          msg.Tenant,
		RouteID:         msg.RouteID,
		Source:          msg.Envelope.Source,
		ReceivedAt:      msg.ReceivedAt.UTC(),
		ParsedAt:        optTime(msg.ParsedAt),
		ClassifiedAt:    optTime(rec.Classification.ClassifiedAt),
		EnrichedAt:      optTime(rec.Enrichment.EnrichedAt),
		ParseStatus:     msg.ParseStatus,
		Kind:            rec.Classification.Kind,
		SpamScore:       rec.Classification.SpamScore,
		LeadScore:       rec.Classification.LeadScore,
		Queue:           rec.Classification.Queue,
		Targets:         []string{},
		Size:            msg.RawSize,
		ThreadDepth:     len(msg.References),
		RecipientHashes: []string{},
	}
	if from := msg.From; from != nil {
		row.FromHash = m.HashAddress(from.Address)
		row.FromDomain = senderDomain(from)
	}
	for _, list := range [][]events.Address{msg.To, msg.Cc} {
		for _, a := range list {
			if h := m.HashAddress(a.Address); h != "" && !slices.Contains(row.RecipientHashes, h) {
				row.RecipientHashes = append(row.RecipientHashes, h)
			}
		}
	}
	if c := rec.Enrichment.Company; c != nil {
		row.FreeMail = c.FreeMail
	}
	for _, a := range msg.Attachments {
		if !a.Inline {
			row.AttachmentCount++
			row.AttachmentBytes += a.Size
		}
	}
	return row
}

// WorstOutcome returns the worst of outcomes in the order failed < shadow < deduped <
// unchanged < updated < created. An unknown outcome counts as failed. It returns "" for no outcomes.
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
