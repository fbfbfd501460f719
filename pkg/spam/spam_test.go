package spam_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/mime"
	"github.com/mailpipe/mailpipe/pkg/spam"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// clean is a message no rule should flag.
func clean() *events.Parsed {
	d := now.Add(-time.Hour)
	return &events.Parsed{
		MessageID: "m1@example.com",
		From:      &events.Address{Address: "ann@example.com", Name: "Ann Example", DomainASCII: "example.com"},
		To:        []events.Address{{Address: "support@in.example.com"}},
		Subject:   "Question about our invoice",
		Date:      &d,
		Authentication: events.Authentication{
			SPF: "pass", DMARC: "pass", DKIM: []events.DKIMResult{{Domain: "example.com", Result: "pass"}},
		},
	}
}

func TestScore(t *testing.T) {
	for _, tt := range []struct {
		name  string
		edit  func(m *events.Parsed)
		flags []string
	}{
		{name: "clean", edit: func(*events.Parsed) {}},
		{name: "spf fail", edit: func(m *events.Parsed) { m.Authentication.SPF = "fail" }, flags: []string{"SPF_FAIL"}},
		{name: "spf softfail", edit: func(m *events.Parsed) { m.Authentication.SPF = "softfail" }, flags: []string{"SPF_SOFTFAIL"}},
		{name: "dkim fail without a pass", edit: func(m *events.Parsed) {
			m.Authentication.DKIM = []events.DKIMResult{{Result: "fail"}, {Result: "permerror"}}
		}, flags: []string{"DKIM_FAIL"}},
		{name: "one passing signature is enough", edit: func(m *events.Parsed) {
			m.Authentication.DKIM = []events.DKIMResult{{Result: "fail"}, {Result: "pass"}}
		}},
		{name: "dmarc fail reject", edit: func(m *events.Parsed) {
			m.Authentication.DMARC, m.Authentication.DMARCPolicy = "fail", "reject"
		}, flags: []string{"DMARC_FAIL_REJECT"}},
		{name: "dmarc fail quarantine", edit: func(m *events.Parsed) {
			m.Authentication.DMARC, m.Authentication.DMARCPolicy = "fail", "quarantine"
		}, flags: []string{"DMARC_FAIL_QUARANTINE"}},
		{name: "dmarc fail none", edit: func(m *events.Parsed) {
			m.Authentication.DMARC, m.Authentication.DMARCPolicy = "fail", "none"
		}, flags: []string{"DMARC_FAIL"}},
		{name: "executable attachment", edit: func(m *events.Parsed) {
			m.Attachments = []events.Attachment{{Filename: "setup.EXE"}}
		}, flags: []string{"ATTACHMENT_EXECUTABLE"}},
		{name: "double extension", edit: func(m *events.Parsed) {
			m.Attachments = []events.Attachment{{Filename: "Invoice 2026.pdf.scr"}}
		}, flags: []string{"ATTACHMENT_DOUBLE_EXTENSION"}},
		{name: "executable content under a harmless name", edit: func(m *events.Parsed) {
			m.Attachments = []events.Attachment{{Filename: "photo.jpg", ContentType: "image/jpeg", SniffedType: "application/x-msdownload"}}
		}, flags: []string{"ATTACHMENT_EXECUTABLE_CONTENT"}},
		{name: "documents are fine", edit: func(m *events.Parsed) {
			m.Attachments = []events.Attachment{{Filename: "report.pdf", SniffedType: "application/pdf"}}
		}},
		{
			name: "no date, no message id", edit: func(m *events.Parsed) { m.Date, m.MessageID = nil, "" },
			flags: []string{"DATE_MISSING", "MESSAGE_ID_MISSING"},
		},
		{
			name: "date in the future", edit: func(m *events.Parsed) { d := now.Add(72 * time.Hour); m.Date = &d },
			flags: []string{"DATE_IN_FUTURE"},
		},
		{
			name: "display name spoof", edit: func(m *events.Parsed) { m.From.Name = "service@paypal.com" },
			flags: []string{"FROM_NAME_SPOOF"},
		},
		{name: "own address in the display name is fine", edit: func(m *events.Parsed) { m.From.Name = "ann@example.com" }},
		{name: "no from", edit: func(m *events.Parsed) { m.From = nil }, flags: []string{"FROM_MISSING"}},
		{
			name: "subject in capitals", edit: func(m *events.Parsed) { m.Subject = "YOU HAVE WON A PRIZE!!!" },
			flags: []string{"SUBJECT_ALL_CAPS"},
		},
		{name: "short capitals are fine", edit: func(m *events.Parsed) { m.Subject = "RE: SSO" }},
		{name: "only blind copies", edit: func(m *events.Parsed) {
			m.To, m.Bcc = nil, []events.Address{{Address: "support@in.example.com"}}
		}, flags: []string{"RECIPIENTS_UNDISCLOSED"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := clean()
			tt.edit(m)
			score, flags := spam.Score(m, now)
			var names []string
			var sum float64
			for _, f := range flags {
				names = append(names, f.Name)
				sum += f.Points
				if f.Detail == "" {
					t.Errorf("flag %s has no evidence", f.Name)
				}
			}
			if !slices.Equal(names, tt.flags) {
				t.Fatalf("flags %v; want %v", names, tt.flags)
			}
			if score != sum || (len(flags) > 0) != (score != 0) {
				t.Fatalf("score %v; flags sum to %v", score, sum)
			}
		})
	}
}

// A phishing-style message crosses the spam threshold; the clean one stays far below it.
func TestScoreThreshold(t *testing.T) {
	if s, _ := spam.Score(clean(), now); s >= spam.DefaultThreshold {
		t.Fatalf("clean message scores %v", s)
	}
	m := clean()
	m.Authentication.DMARC, m.Authentication.DMARCPolicy = "fail", "reject"
	m.From.Name = "security@yourbank.example"
	if s, _ := spam.Score(m, now); s < spam.DefaultThreshold {
		t.Fatalf("spoofed message with DMARC reject scores %v, under %v", s, spam.DefaultThreshold)
	}
}

// The rebuilt message reads back with the same headers, bodies and attachment names.
func TestMessageRoundTrip(t *testing.T) {
	in := clean()
	in.Headers = []events.Header{
		{Name: "From", Value: "Jürgen <juergen@example.com>"},
		{Name: "Subject", Value: "Grüße"},
		{Name: "Content-Type", Value: "text/plain"},
		{Name: "X-Folded", Value: "a\r\n b"},
	}
	in.Text = "hello\nworld"
	in.HTML = "<p>hello</p>"
	in.Attachments = []events.Attachment{{Filename: "résumé.pdf", ContentType: "application/pdf"}}
	p, err := mime.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Parse(spam.Message(in))
	if err != nil {
		t.Fatal(err)
	}
	if m.From == nil || m.From.Address != "juergen@example.com" || m.From.Name != "Jürgen" || m.Subject != "Grüße" {
		t.Fatalf("from %+v subject %q", m.From, m.Subject)
	}
	if strings.TrimSpace(m.Text) != "hello\nworld" || !strings.Contains(m.HTML, "<p>hello</p>") {
		t.Fatalf("text %q html %q", m.Text, m.HTML)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Filename != "résumé.pdf" {
		t.Fatalf("attachments %+v", m.Attachments)
	}
	for _, h := range m.Headers {
		if h.Name == "Content-Type" && h.Value == "text/plain" {
			t.Fatal("the original Content-Type was kept beside the rebuilt one")
		}
	}
}
