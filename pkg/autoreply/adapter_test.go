package autoreply_test

import (
	"strings"

	"github.com/mailpipe/mailpipe/pkg/autoreply"
	"github.com/mailpipe/mailpipe/pkg/mime"
)

// fromMIME builds the detector input from a parsed message, as the classifier will from a
// mail.parsed.v1 record.
func fromMIME(m *mime.Message) *autoreply.Message {
	out := &autoreply.Message{Subject: m.Subject}
	if m.From != nil {
		out.From = m.From.Address
	}
	for _, h := range m.Headers {
		out.Headers = append(out.Headers, autoreply.Header{Name: h.Name, Value: h.Value})
		if strings.EqualFold(h.Name, "Return-Path") && out.EnvelopeFrom == "" {
			out.EnvelopeFrom = strings.TrimSpace(h.Value)
			if strings.Trim(out.EnvelopeFrom, "<> ") == "" {
				out.EnvelopeFrom = "<>"
			}
		}
	}
	return out
}
