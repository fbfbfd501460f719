package parse

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/mailid"
	"github.com/mailpipe/mailpipe/pkg/mime"
	"github.com/mailpipe/mailpipe/pkg/reply"
	"github.com/mailpipe/mailpipe/pkg/thread"
)

// Warning names this package adds to those of package mime.
const (
	WarnBodyTruncated   = "body_truncated"
	WarnHeaderTruncated = "header_truncated"
	WarnRawDigest       = "raw_digest_mismatch"
	// WarnLimitDKIM: more DKIM-Signature fields than the verifier's cap; the rest were not
	// verified (severe: the authentication section is incomplete).
	WarnLimitDKIM = "limit_dkim_signatures"
)

// build maps the parsed message onto the mail.parsed.v1 record.
func (p *Parser) build(in *events.Raw, key []byte, src *source, m *mime.Message, refs map[string]string) *events.Parsed {
	out := &events.Parsed{
		ID:          in.ID,
		ThreadKey:   in.ThreadKey,
		Tenant:      in.Tenant,
		RouteID:     in.RouteID,
		RouteTag:    in.RouteTag,
		ReceivedAt:  in.ReceivedAt.UTC(),
		ParsedAt:    p.opts.now().UTC(),
		Envelope:    in.Envelope,
		MessageID:   m.MessageID,
		InReplyTo:   m.InReplyTo,
		References:  m.References,
		From:        address(m.From),
		Sender:      address(m.Sender),
		ReplyTo:     addresses(m.ReplyTo),
		To:          addresses(m.To),
		Cc:          addresses(m.Cc),
		Subject:     m.Subject,
		Date:        m.Date,
		DateRaw:     m.DateRaw,
		ParseStatus: string(m.Status),
		RawSize:     in.Size,
		RawSha256:   in.Sha256,
		RawBlobRef:  in.RawBlobRef,
	}
	if out.ThreadKey == "" {
		out.ThreadKey = string(key) // every stage keys by thread key; the record key is it
	}
	if out.MessageID == "" && in.MessageID != "" {
		out.MessageID = in.MessageID
	}
	if len(m.Warnings) > 0 {
		out.Warnings = make([]events.Warning, 0, len(m.Warnings)+1)
	}
	for _, w := range m.Warnings {
		out.Warnings = append(out.Warnings, events.Warning{Name: w.Name, Detail: w.Detail, Severe: w.Severe})
	}
	warn := func(name, detail string, severe bool) {
		out.Warnings = append(out.Warnings, events.Warning{Name: name, Detail: detail, Severe: severe})
		if severe && out.ParseStatus == string(mime.StatusOK) {
			out.ParseStatus = string(mime.StatusPartial)
		}
	}
	sum := src.sha256
	if out.RawSize == 0 {
		out.RawSize = src.size
	}
	switch {
	case out.RawSha256 == "":
		out.RawSha256 = sum
	case out.RawSha256 != sum:
		warn(WarnRawDigest, fmt.Sprintf("raw message sha256 %s differs from %s recorded by ingress", sum, out.RawSha256), false)
	}

	out.Bcc = bcc(in.Envelope.RcptTo, m.To, m.Cc)
	out.ExternalID = externalID(in, src, m)

	var cut bool
	if out.Text, cut = truncate(m.Text, p.opts.maxBodySize); cut {
		warn(WarnBodyTruncated, fmt.Sprintf("text body of %d bytes cut to %d", len(m.Text), len(out.Text)), true)
	}
	if out.HTML, cut = truncate(m.HTML, p.opts.maxBodySize); cut {
		warn(WarnBodyTruncated, fmt.Sprintf("HTML body of %d bytes cut to %d", len(m.HTML), len(out.HTML)), true)
	}
	// Both derive from the bounded bodies, so they cost no more than the bodies themselves.
	out.StrippedText = reply.Strip(out.Text)
	if out.HTML != "" {
		// Escaping can make the sanitized copy longer than the original; it is bounded the same.
		sanitized := p.policy.Sanitize(out.HTML)
		if out.HTMLSanitized, cut = truncate(sanitized, p.opts.maxBodySize); cut {
			warn(WarnBodyTruncated, fmt.Sprintf("sanitized HTML body of %d bytes cut to %d", len(sanitized), len(out.HTMLSanitized)), true)
		}
	}
	if len(m.Headers) > 0 {
		out.Headers = make([]events.Header, 0, len(m.Headers))
	}
	for _, h := range m.Headers {
		v, cut := truncate(h.Value, p.opts.maxHeaderValue)
		if cut {
			warn(WarnHeaderTruncated, fmt.Sprintf("%s value of %d bytes cut to %d", h.Name, len(h.Value), len(v)), false)
		}
		out.Headers = append(out.Headers, events.Header{Name: h.Name, Value: v})
	}
	left := budget{nestedText: maxNestedText, report: maxReportText}
	if len(m.Attachments) > 0 {
		out.Attachments = make([]events.Attachment, 0, len(m.Attachments))
	}
	for _, a := range m.Attachments {
		att := events.Attachment{
			Filename:    a.Filename,
			ContentType: a.ContentType,
			SniffedType: a.SniffedType,
			Size:        a.Size,
			Sha256:      a.SHA256,
			ContentID:   a.ContentID,
			Inline:      a.Inline,
		}
		if ref, ok := refs[a.SHA256]; ok {
			att.BlobRef = &ref
		}
		if a.Message != nil {
			att.Message = p.nested(a.Message, &left)
		}
		if reportType(a.ContentType) {
			text, _ := truncate(strings.ToValidUTF8(string(a.Content), "\uFFFD"), min(maxReportText, left.report))
			left.report -= len(text)
			att.Text = &text
		}
		out.Attachments = append(out.Attachments, att)
	}
	return out
}

// Bounds of what nested messages and report parts add to a record, summed over the message:
// they ride along with the bodies, which already use most of the broker's record size limit.
const (
	maxNestedText  = 64 << 10
	maxReportText  = 64 << 10
	maxNestedField = 200 // header fields kept per nested message
)

// budget is what is left of those bounds while a record is built.
type budget struct{ nestedText, report int }

// reportType reports whether parts of media type ct are machine-readable reports whose text
// goes on the record (Attachment.Text): delivery status (RFC 3464, RFC 6533), feedback
// reports (RFC 5965) and disposition notifications (RFC 8098).
func reportType(ct string) bool {
	switch ct {
	case "message/delivery-status", "message/global-delivery-status", "message/feedback-report",
		"message/disposition-notification", "message/global-disposition-notification":
		return true
	}
	return false
}

// nested maps a nested message onto the record, within the budget.
func (p *Parser) nested(m *mime.Message, b *budget) *events.NestedMessage {
	n := &events.NestedMessage{
		MessageID:   m.MessageID,
		Subject:     m.Subject,
		From:        address(m.From),
		To:          addresses(m.To),
		Cc:          addresses(m.Cc),
		Date:        m.Date,
		ParseStatus: string(m.Status),
	}
	n.Text, _ = truncate(m.Text, min(p.opts.maxBodySize, b.nestedText))
	b.nestedText -= len(n.Text)
	for i, h := range m.Headers {
		if i == maxNestedField {
			break
		}
		v, _ := truncate(h.Value, p.opts.maxHeaderValue)
		n.Headers = append(n.Headers, events.Header{Name: h.Name, Value: v})
	}
	for _, a := range m.Attachments {
		n.Attachments = append(n.Attachments, events.NestedAttachment{Filename: a.Filename, ContentType: a.ContentType, Size: a.Size, Sha256: a.SHA256})
	}
	return n
}

func address(a *mime.Address) *events.Address {
	if a == nil {
		return nil
	}
	return &events.Address{Address: a.Address, Name: a.Name, DomainASCII: a.DomainASCII}
}

func addresses(as []mime.Address) []events.Address {
	if len(as) == 0 {
		return nil
	}
	out := make([]events.Address, len(as))
	for i, a := range as {
		out[i] = events.Address{Address: a.Address, Name: a.Name, DomainASCII: a.DomainASCII}
	}
	return out
}

// bcc returns the envelope recipients that are in neither To nor Cc: the blind copies this
// mailbox received. Addresses compare in both Unicode and Punycode form.
func bcc(rcpts []string, to, cc []mime.Address) []events.Address {
	listed := map[string]bool{}
	for _, list := range [][]mime.Address{to, cc} {
		for _, a := range list {
			listed[a.Address] = true
			if a.DomainASCII != "" {
				listed[asciiForm(a)] = true
			}
		}
	}
	var out []events.Address
	seen := map[string]bool{}
	for _, r := range rcpts {
		a, ok := mime.NewAddress(r, "")
		if !ok || listed[a.Address] || listed[asciiForm(a)] || seen[a.Address] {
			continue
		}
		seen[a.Address] = true
		out = append(out, events.Address{Address: a.Address, DomainASCII: a.DomainASCII})
	}
	return out
}

func asciiForm(a mime.Address) string {
	if d := a.Domain(); d != "" && a.DomainASCII != "" {
		return a.Address[:len(a.Address)-len(d)] + a.DomainASCII
	}
	return a.Address
}

// externalID is mailid.ExternalID of the message's Message-ID and author (the From address, or
// the envelope sender when the message has no From). A message without a Message-ID gets the
// synthetic id ingress derived its thread key from (thread.SyntheticID over the same raw
// header values and body digest), so the id is stable across redeliveries and stages.
func externalID(in *events.Raw, src *source, m *mime.Message) string {
	sender := in.Envelope.MailFrom
	if m.From != nil && m.From.Address != "" {
		sender = m.From.Address
	}
	msgID := m.MessageID
	if msgID == "" {
		msgID = in.MessageID
	}
	if msgID == "" {
		msgID = src.synthetic()
	}
	return mailid.ExternalID(msgID, sender)
}

// syntheticID is ingress's synthetic id for a message without a Message-ID (thread.FromRaw
// reads the headers and body digest exactly as ingress does).
func syntheticID(raw []byte) string {
	return thread.SyntheticID(thread.FromRaw(raw))
}

// truncate cuts s to at most n bytes at a character boundary.
func truncate(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n-- // s is valid UTF-8: cut before the rune that n falls into
	}
	return s[:n], true
}
