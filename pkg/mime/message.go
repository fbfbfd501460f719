package mime

import "time"

// Status says how much of a message could be read. The string values are written to
// mail.parsed.v1 (parse_status) and are part of the wire contract.
type Status string

// The parse statuses.
const (
	// StatusOK: everything was read; there may be non-severe warnings.
	StatusOK Status = "ok"
	// StatusPartial: some content could not be read or was dropped (a severe warning, or a
	// limit was exceeded). What was read is in the Message.
	StatusPartial Status = "partial"
	// StatusFailed: the MIME structure could not be read at all; only the header fields are
	// in the Message.
	StatusFailed Status = "failed"
)

// Message is a parsed, normalized message. JSON field names follow mail.parsed.v1, so the JSON
// of a Message reads like the matching subset of an events.Parsed record.
type Message struct {
	// MessageID is the normalized Message-ID (mailid.MessageID: no angle brackets, comments or
	// white space, domain lower-cased); empty if the message had none.
	MessageID string `json:"message_id"`
	// InReplyTo is the first normalized In-Reply-To id; empty if none.
	InReplyTo string `json:"in_reply_to"`
	// References are the normalized References ids, oldest first, without duplicates.
	References []string `json:"references"`

	// From is the first From mailbox; nil if none could be read.
	From *Address `json:"from"`
	// Sender is the Sender mailbox; nil if absent.
	Sender *Address `json:"sender"`
	// ReplyTo, To and Cc are the mailboxes of those headers (group members included).
	ReplyTo []Address `json:"reply_to"`
	To      []Address `json:"to"`
	Cc      []Address `json:"cc"`

	// Subject is the decoded Subject (RFC 2047), surrounding white space trimmed.
	Subject string `json:"subject"`
	// Date is the Date header in UTC; nil when missing or unparseable (then a warning says so).
	Date *time.Time `json:"date"`
	// DateRaw is the Date header as received (unfolded).
	DateRaw string `json:"date_raw"`

	// Text is the plain-text body in UTF-8 with LF line endings. When the message has only
	// HTML it is rendered from the HTML. Several inline text parts of a multipart/mixed are
	// joined by "\n--\n".
	Text string `json:"text"`
	// HTML is the first HTML body part in UTF-8, as sent.
	HTML string `json:"html"`

	// Attachments lists every leaf part that is not the text or HTML body, in document order.
	Attachments []Attachment `json:"attachments"`
	// Headers are the top-level header fields in received order.
	Headers []Header `json:"headers"`

	// Status is ok, partial or failed.
	Status Status `json:"parse_status"`
	// Warnings are the problems worked around, in the order met.
	Warnings []Warning `json:"warnings"`

	// Stats describe the MIME tree that was read (after limits were applied).
	Stats Stats `json:"stats"`
}

// Address is one mailbox.
type Address struct {
	// Address is local@domain, lower case, the domain in Unicode (IDN decoded).
	Address string `json:"address"`
	// Name is the decoded display name; empty if none.
	Name string `json:"name"`
	// DomainASCII is the domain in ASCII (Punycode) form, lower case; empty when the address
	// has no domain.
	DomainASCII string `json:"domain_ascii"`
}

// Domain returns the Unicode domain of the address (the part after the last '@'), or "".
func (a Address) Domain() string {
	for i := len(a.Address) - 1; i >= 0; i-- {
		if a.Address[i] == '@' {
			return a.Address[i+1:]
		}
	}
	return ""
}

// Attachment describes an attachment or inline part and carries its decoded bytes.
type Attachment struct {
	// Filename is decoded from RFC 2231 / RFC 2047 parameters; empty if none was given.
	Filename string `json:"filename"`
	// ContentType is the declared media type, lower case, without parameters; empty if the
	// part declared none.
	ContentType string `json:"content_type"`
	// SniffedType is the media type detected from the bytes (WHATWG sniffing), without
	// parameters.
	SniffedType string `json:"sniffed_type"`
	// Size is the decoded size in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex SHA-256 of Content.
	SHA256 string `json:"sha256"`
	// ContentID is the Content-ID without angle brackets; empty if none.
	ContentID string `json:"content_id"`
	// Inline is true for parts shown inline: Content-Disposition inline, or referenced from
	// the HTML body by cid:.
	Inline bool `json:"inline"`
	// Content holds the decoded bytes (transfer encoding removed). Text parts with a declared
	// charset are converted to UTF-8 by enmime; parts without one are kept as sent. The slice
	// belongs to the Message; it is not copied.
	Content []byte `json:"-"`
	// Message describes the message this part carries, for message/rfc822, message/global and
	// text/rfc822-headers parts (see [NestedType]) within Limits.MaxNestedDepth; nil otherwise.
	// Its attachments have no Content: their bytes are inside this part's Content.
	Message *Message `json:"message,omitempty"`
	// Spooled is set, and Content nil, for a part whose body was moved out before parsing
	// ([Parser.ParseSpooled]).
	Spooled *Spooled `json:"-"`
}

// Header is one top-level header field.
type Header struct {
	// Name is the field name as written.
	Name string `json:"name"`
	// Value is the unfolded value with RFC 2047 encoded words decoded, in UTF-8.
	Value string `json:"value"`
}

// Warning is a problem the parser met and worked around.
type Warning struct {
	// Name is machine-readable, snake_case, e.g. "charset_detected" (see the Warn* constants).
	Name string `json:"name"`
	// Detail is human-readable.
	Detail string `json:"detail"`
	// Severe is true when content may have been lost.
	Severe bool `json:"severe"`
}

// Stats describe the MIME tree that was read.
type Stats struct {
	// Parts counts every MIME entity, the root and multipart containers included.
	Parts int `json:"parts"`
	// Depth is the deepest nesting level (the root is level 0).
	Depth int `json:"depth"`
	// DecodedSize is the sum of the decoded content sizes of all leaf parts.
	DecodedSize int64 `json:"decoded_size"`
}
