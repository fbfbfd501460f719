package mime

import (
	"strings"
	"testing"
)

// A part without a Content-Type has the RFC 2045/2046 default (text/plain, or message/rfc822
// inside a multipart/digest): nothing is missing, so there is no warning.
func TestParseDefaultContentTypeIsNoProblem(t *testing.T) {
	raw := strings.Join([]string{
		"From: a@example.com",
		"Date: Fri, 19 May 2000 00:59:31 -0400",
		"Message-ID: <1@example.com>",
		`Content-Type: multipart/mixed; boundary="b"`,
		"",
		"--b",
		"",
		"The text, without headers.",
		"--b",
		`Content-Type: multipart/digest; boundary="d"`,
		"",
		"--d",
		"",
		"From: b@example.com",
		"Subject: one",
		"",
		"First.",
		"--d--",
		"--b--",
		"",
	}, "\r\n")
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range m.Warnings {
		if w.Name == WarnContentTypeMissing {
			t.Errorf("warning %+v for a part with the default type", w)
		}
	}
	if !strings.HasPrefix(m.Text, "The text, without headers.") {
		t.Errorf("text = %q", m.Text)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].ContentType != "message/rfc822" {
		t.Fatalf("attachments = %+v, want one message/rfc822", m.Attachments)
	}
	if n := m.Attachments[0].Message; n == nil || n.Subject != "one" {
		t.Errorf("digest entry described as %+v, want subject one", n)
	}
}

// A text part that carries a boundary parameter is read whole as text (enmime's "data has
// boundary"): a warning, but nothing is lost, so the message stays ok.
func TestParseTextPartWithBoundaryIsComplete(t *testing.T) {
	raw := strings.Join([]string{
		"From: a@example.com",
		"Date: Fri, 19 May 2000 00:59:31 -0400",
		"Message-ID: <1@example.com>",
		`Content-Type: multipart/mixed; boundary="outer"`,
		"",
		"--outer",
		`Content-Type: text/plain; report-type=delivery-status; boundary="inner"; charset=us-ascii`,
		"",
		"All of this is text.",
		"--outer--",
		"",
	}, "\r\n")
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != StatusOK || !hasWarning(m.Warnings, WarnDataHasBoundary) || m.Text != "All of this is text." {
		t.Errorf("status %s, text %q, warnings %+v; want ok, the whole text and a data_has_boundary warning", m.Status, m.Text, m.Warnings)
	}
}
