package mime_test

import (
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/mime"
)

// wrap returns a message that forwards inner as a message/rfc822 part.
func wrap(subject, inner string) string {
	return "From: fwd@example.com\r\nSubject: " + subject + "\r\nContent-Type: multipart/mixed; boundary=\"" + subject + "\"\r\n\r\n" +
		"--" + subject + "\r\nContent-Type: text/plain\r\n\r\nsee below\r\n" +
		"--" + subject + "\r\nContent-Type: message/rfc822\r\n\r\n" + inner + "\r\n--" + subject + "--\r\n"
}

func TestNestedMessages(t *testing.T) {
	const original = "From: =?utf-8?q?J=C3=BCrgen?= <JUERGEN@Example.COM>\r\nTo: a@example.org\r\n" +
		"Subject: the original\r\nDate: Tue, 3 Mar 2026 10:00:00 +0100\r\nMessage-ID: <orig@example.com>\r\n" +
		"Content-Type: multipart/mixed; boundary=inner\r\n\r\n" +
		"--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\noriginal text\r\n" +
		"--inner\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--inner--\r\n"

	t.Run("forwarded message", func(t *testing.T) {
		m := parseWith(t, mime.DefaultLimits(), wrap("outer", original))
		a := onlyAttachment(t, m, "message/rfc822")
		n := a.Message
		if n == nil {
			t.Fatal("no nested message")
		}
		if n.Subject != "the original" || n.From == nil || n.From.Address != "juergen@example.com" || n.From.Name != "Jürgen" ||
			n.MessageID != "orig@example.com" || n.Date == nil || n.Date.Hour() != 9 || strings.TrimSpace(n.Text) != "original text" {
			t.Fatalf("nested = subject %q from %+v id %q date %v text %q", n.Subject, n.From, n.MessageID, n.Date, n.Text)
		}
		if len(n.Attachments) != 1 || n.Attachments[0].Filename != "a.pdf" || n.Attachments[0].Size != 5 || n.Attachments[0].Content != nil {
			t.Fatalf("nested attachments = %+v; want a.pdf of 5 bytes, no content", n.Attachments)
		}
		if strings.TrimSpace(m.Text) != "see below" {
			t.Fatalf("outer text %q", m.Text)
		}
	})
	t.Run("headers only", func(t *testing.T) {
		raw := "From: mailer-daemon@example.com\r\nSubject: failure\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n" +
			"--r\r\nContent-Type: text/plain\r\n\r\nbounced\r\n" +
			"--r\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: me@example.com\r\nSubject: hello\r\nMessage-ID: <m1@example.com>\r\n--r--\r\n"
		n := onlyAttachment(t, parseWith(t, mime.DefaultLimits(), raw), "text/rfc822-headers").Message
		if n == nil || n.Subject != "hello" || n.MessageID != "m1@example.com" || n.Text != "" {
			t.Fatalf("nested = %+v; want the returned headers", n)
		}
	})
	t.Run("nesting limit", func(t *testing.T) {
		raw := wrap("l1", wrap("l2", wrap("l3", original)))
		m := parseWith(t, mime.Limits{MaxNestedDepth: 2}, raw)
		l2 := onlyAttachment(t, m, "message/rfc822").Message
		if l2 == nil || l2.Subject != "l2" {
			t.Fatalf("level 1 = %+v", l2)
		}
		l3 := onlyAttachment(t, l2, "message/rfc822").Message
		if l3 == nil || l3.Subject != "l3" {
			t.Fatalf("level 2 = %+v", l3)
		}
		if deeper := onlyAttachment(t, l3, "message/rfc822").Message; deeper != nil {
			t.Fatalf("level 3 described despite MaxNestedDepth 2: %+v", deeper)
		}
		if !hasWarningNamed(l3, mime.WarnNestedTooDeep) {
			t.Fatalf("level 2 warnings %+v; want %s", l3.Warnings, mime.WarnNestedTooDeep)
		}
		if m.Status != mime.StatusOK {
			t.Fatalf("status %s; a nesting limit loses nothing, want ok", m.Status)
		}
	})
	t.Run("unreadable nested message", func(t *testing.T) {
		m := parseWith(t, mime.DefaultLimits(), wrap("outer", "this is not a message at all"))
		if a := onlyAttachment(t, m, "message/rfc822"); a.Message != nil || a.Size == 0 {
			t.Fatalf("attachment %+v; want kept without a nested message", a)
		}
		if !hasWarningNamed(m, mime.WarnNestedUnreadable) {
			t.Fatalf("warnings %+v; want %s", m.Warnings, mime.WarnNestedUnreadable)
		}
	})
}

func parseWith(t *testing.T, l mime.Limits, raw string) *mime.Message {
	t.Helper()
	p, err := mime.NewParser(mime.WithLimits(l))
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// onlyAttachment returns the single attachment of type ct.
func onlyAttachment(t *testing.T, m *mime.Message, ct string) mime.Attachment {
	t.Helper()
	var found []mime.Attachment
	for _, a := range m.Attachments {
		if a.ContentType == ct {
			found = append(found, a)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s attachments in %+v; want 1", len(found), ct, m.Attachments)
	}
	return found[0]
}

func hasWarningNamed(m *mime.Message, name string) bool {
	for _, w := range m.Warnings {
		if w.Name == name {
			return true
		}
	}
	return false
}

// A multipart message whose boundary never appears keeps its body as text, flagged partial.
func TestMultipartBoundaryNeverFound(t *testing.T) {
	raw := "From: MAILER-DAEMON@example.net\r\nSubject: Returned mail\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status;\r\n    boundary=\"NOT/THERE\"\r\n\r\n" +
		"The following addresses had permanent fatal errors\r\n\r\nFinal-Recipient: RFC822; kijitora@example.edu\r\nStatus: 5.5.0\r\n"
	m := parseWith(t, mime.DefaultLimits(), raw)
	if !strings.Contains(m.Text, "Final-Recipient: RFC822; kijitora@example.edu\nStatus: 5.5.0") {
		t.Fatalf("text %q; want the body", m.Text)
	}
	if m.Status != mime.StatusPartial || !hasWarningNamed(m, mime.WarnBoundaryMissing) {
		t.Fatalf("status %s warnings %+v; want partial with %s", m.Status, m.Warnings, mime.WarnBoundaryMissing)
	}
}
