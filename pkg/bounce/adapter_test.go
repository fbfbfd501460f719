package bounce_test

import (
	"bytes"
	"strings"

	"github.com/mailpipe/mailpipe/pkg/bounce"
	"github.com/mailpipe/mailpipe/pkg/mime"
)

// fromMIME builds the detector input from a parsed message the way the classifier will from a
// mail.parsed.v1 record: top-level headers, subject, bodies, the report parts, and only the
// header section of attached messages.
func fromMIME(m *mime.Message, envelopeFrom string) *bounce.Message {
	out := &bounce.Message{EnvelopeFrom: envelopeFrom, Subject: m.Subject, Text: m.Text, HTML: m.HTML}
	if m.From != nil {
		out.From = m.From.Address
	}
	for _, h := range m.Headers {
		out.Headers = append(out.Headers, bounce.Header{Name: h.Name, Value: h.Value})
	}
	for _, a := range m.Attachments {
		switch a.ContentType {
		case "message/delivery-status", "message/global-delivery-status", "message/feedback-report",
			"text/rfc822-headers", "message/disposition-notification", "message/global-headers":
			out.Parts = append(out.Parts, bounce.Part{ContentType: a.ContentType, Body: a.Content})
		case "message/rfc822", "message/global":
			out.Parts = append(out.Parts, bounce.Part{ContentType: a.ContentType, Body: headerSection(a.Content)})
		}
	}
	return out
}

// headerSection returns the header block of a raw message (up to the first empty line).
func headerSection(raw []byte) []byte {
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
		return raw[:i+1]
	}
	return raw
}

// envelopeFrom approximates the SMTP MAIL FROM of a stored message from its Return-Path, as
// the ingress would have recorded it: "<>" for the null sender, "" when unknown.
func envelopeFrom(m *mime.Message) string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, "Return-Path") {
			v := strings.TrimSpace(h.Value)
			if strings.Trim(v, "<> ") == "" {
				return "<>"
			}
			return strings.Trim(v, "<>")
		}
	}
	return ""
}
