package webhook

import (
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// EventType is the type of every event the connector sends.
const EventType = "message.received"

// Payload is the JSON body of every webhook request. Its envelope follows the Standard Webhooks
// recommendation ({type, timestamp, data}); data describes the message. The shape is a public
// contract with receivers: fields are only ever added.
//
// The body is deterministic for a message: a redelivery (stage retry, DLQ replay) sends the same
// bytes under the same webhook-id, and only the webhook-timestamp header and the signature
// change. Receivers dedupe on webhook-id (= data.external_id).
type Payload struct {
	// Type is always EventType.
	Type string `json:"type"`
	// Timestamp is when ingress accepted the message (UTC, RFC 3339), not when it was sent.
	Timestamp time.Time `json:"timestamp"`
	// Data is the message.
	Data Message `json:"data"`
}

// Message is the data of a message.received event. It carries the text bodies, not HTML, and
// attachment metadata, not attachment bytes or blob-store URLs (they are internal to mailpipe).
type Message struct {
	// ExternalID is the idempotency key: hex sha256 of normalized Message-ID and sender. It is
	// also the webhook-id header.
	ExternalID string `json:"external_id"`
	// ID is mailpipe's message id (ULID), stable across topics.
	ID string `json:"id"`
	// ThreadKey is the normalized Message-ID of the conversation root.
	ThreadKey string `json:"thread_key"`
	// Tenant owns the receiving route.
	Tenant string `json:"tenant"`
	// RouteID is the route the recipient resolved to; empty without routes.
	RouteID string `json:"route_id"`
	// MessageID is the normalized Message-ID; empty if the message had none.
	MessageID string `json:"message_id"`
	// InReplyTo is the normalized first In-Reply-To id; empty if none.
	InReplyTo string `json:"in_reply_to"`
	// ReceivedAt is when ingress accepted the message (UTC).
	ReceivedAt time.Time `json:"received_at"`
	// From is the first From mailbox; null if none could be read.
	From *Address `json:"from"`
	// To and Cc are the header recipients; never null.
	To []Address `json:"to"`
	Cc []Address `json:"cc"`
	// Subject is the decoded subject.
	Subject string `json:"subject"`
	// Text is the plain-text body (rendered from HTML for HTML-only mail).
	Text string `json:"text"`
	// StrippedText is the new text of a reply, without quoted history and signature.
	StrippedText string `json:"stripped_text"`
	// Attachments lists attachment and inline-part metadata; never null.
	Attachments []Attachment `json:"attachments"`
	// Classification is what the classifier decided.
	Classification Classification `json:"classification"`
	// Enrichment is what the enricher added.
	Enrichment Enrichment `json:"enrichment"`
}

// Address is one mailbox.
type Address struct {
	Address string `json:"address"`
	Name    string `json:"name"`
}

// Attachment is the metadata of one attachment or inline part.
type Attachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	// Size is the decoded size in bytes.
	Size int64 `json:"size"`
	// Sha256 is the hex SHA-256 of the decoded bytes.
	Sha256 string `json:"sha256"`
	Inline bool   `json:"inline"`
}

// Classification is the classifier's verdict.
type Classification struct {
	// Kind is human, auto_reply, bounce, feedback_report, list, notification or spam.
	Kind      string  `json:"kind"`
	SpamScore float64 `json:"spam_score"`
	LeadScore float64 `json:"lead_score"`
	Queue     string  `json:"queue"`
	// SLAMinutes is the queue's response SLA; 0 if none.
	SLAMinutes int `json:"sla_minutes"`
}

// Enrichment is what is known about the sender.
type Enrichment struct {
	// Contact is null when there is no usable sender.
	Contact *Contact `json:"contact"`
	// Company is null when unknown.
	Company *Company `json:"company"`
	Owner   string   `json:"owner"`
	// CRMIDs are known CRM object ids by target and type, e.g. "hubspot.contact" → "101";
	// never null.
	CRMIDs map[string]string `json:"crm_ids"`
	// Degraded is true when a lookup failed and the message went on without it.
	Degraded bool `json:"degraded"`
}

// Contact is the sender as a contact.
type Contact struct {
	Email string `json:"email"`
	Name  string `json:"name"`
	Known bool   `json:"known"`
}

// Company is the sender's company.
type Company struct {
	Domain   string `json:"domain"`
	Name     string `json:"name"`
	FreeMail bool   `json:"free_mail"`
}

// NewPayload maps an enriched message to the webhook payload. It copies what it keeps, so the
// payload does not alias rec.
func NewPayload(rec *events.Enriched) Payload {
	m := &rec.Message
	data := Message{
		ExternalID:   m.ExternalID,
		ID:           m.ID,
		ThreadKey:    m.ThreadKey,
		Tenant:       m.Tenant,
		RouteID:      m.RouteID,
		MessageID:    m.MessageID,
		InReplyTo:    m.InReplyTo,
		ReceivedAt:   m.ReceivedAt.UTC(),
		To:           addresses(m.To),
		Cc:           addresses(m.Cc),
		Subject:      m.Subject,
		Text:         m.Text,
		StrippedText: m.StrippedText,
		Attachments:  make([]Attachment, 0, len(m.Attachments)),
		Classification: Classification{
			Kind:       rec.Classification.Kind,
			SpamScore:  rec.Classification.SpamScore,
			LeadScore:  rec.Classification.LeadScore,
			Queue:      rec.Classification.Queue,
			SLAMinutes: rec.Classification.SLAMinutes,
		},
		Enrichment: Enrichment{
			Owner:    rec.Enrichment.Owner,
			CRMIDs:   make(map[string]string, len(rec.Enrichment.CRMIds)),
			Degraded: rec.Enrichment.Degraded,
		},
	}
	if m.From != nil {
		data.From = &Address{Address: m.From.Address, Name: m.From.Name}
	}
	for _, a := range m.Attachments {
		data.Attachments = append(data.Attachments, Attachment{
			Filename: a.Filename, ContentType: a.ContentType, Size: a.Size, Sha256: a.Sha256, Inline: a.Inline,
		})
	}
	if c := rec.Enrichment.Contact; c != nil {
		data.Enrichment.Contact = &Contact{Email: c.Email, Name: c.Name, Known: c.Known}
	}
	if c := rec.Enrichment.Company; c != nil {
		data.Enrichment.Company = &Company{Domain: c.Domain, Name: c.Name, FreeMail: c.FreeMail}
	}
	for k, v := range rec.Enrichment.CRMIds {
		data.Enrichment.CRMIDs[k] = v
	}
	return Payload{Type: EventType, Timestamp: m.ReceivedAt.UTC(), Data: data}
}

func addresses(in []events.Address) []Address {
	out := make([]Address, 0, len(in))
	for _, a := range in {
		out = append(out, Address{Address: a.Address, Name: a.Name})
	}
	return out
}
