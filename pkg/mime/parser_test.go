package mime_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/mime"
)

func newParser(t testing.TB, opts ...mime.Option) *mime.Parser {
	t.Helper()
	p, err := mime.NewParser(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func warningNames(m *mime.Message) []string {
	var out []string
	for _, w := range m.Warnings {
		out = append(out, w.Name)
	}
	return out
}

func TestNewParserValidates(t *testing.T) {
	for _, tt := range []struct {
		name    string
		opts    []mime.Option
		wantErr string
	}{
		{"defaults", nil, ""},
		{"partial limits keep defaults", []mime.Option{mime.WithLimits(mime.Limits{MaxParts: 5})}, ""},
		{"negative parts", []mime.Option{mime.WithLimits(mime.Limits{MaxParts: -1})}, "max parts must be at least 1"},
		{"negative depth", []mime.Option{mime.WithLimits(mime.Limits{MaxDepth: -2})}, "max depth must be at least 1"},
		{"negative size", []mime.Option{mime.WithLimits(mime.Limits{MaxDecodedSize: -1})}, "max decoded size must be at least 1 byte"},
		{"zero warnings", []mime.Option{mime.WithMaxWarnings(0)}, "max warnings must be at least 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := mime.NewParser(tt.opts...)
			if tt.wantErr == "" {
				if err != nil || p == nil {
					t.Fatalf("NewParser: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewParser error = %v, want %q", err, tt.wantErr)
			}
		})
	}
	p := newParser(t, mime.WithLimits(mime.Limits{MaxParts: 5}))
	if got := p.Limits(); got.MaxParts != 5 || got.MaxDepth != mime.DefaultMaxDepth || got.MaxDecodedSize != mime.DefaultMaxDecodedSize {
		t.Errorf("Limits() = %+v", got)
	}
}

func TestParseRefusesInputWithoutHeaders(t *testing.T) {
	p := newParser(t)
	for _, tt := range []struct{ name, raw string }{
		{"empty", ""},
		{"white space", " \r\n\t\n"},
		{"not a message", "// Not an RFC-822 Document"},
		{"body only", "\r\n\r\nhello there\r\n"},
		{"binary", "\x00\x01\x02\x03"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := p.Parse([]byte(tt.raw))
			if !errors.Is(err, mime.ErrNoHeaders) || m != nil {
				t.Fatalf("Parse = %v, %v; want nil, ErrNoHeaders", m, err)
			}
		})
	}
}

const richMessage = "Received: from mx.example.net by in.example.com; Mon, 23 Nov 2026 10:30:01 +0000\r\n" +
	"From: =?utf-8?Q?J=C3=B6rg_M=C3=BCller?= <Joerg.Mueller@Bücher.Example>\r\n" +
	"Sender: list-bounces@lists.example.org\r\n" +
	"Reply-To: sales@example.com, \"Support\" <SUPPORT@example.com>\r\n" +
	"To: support+acme@in.example.com\r\n" +
	"Cc: a@example.com\r\n" +
	"Subject: =?utf-8?B?R3LDvMOfZQ==?= from\r\n  the team\r\n" +
	"Date: Mon, 23 Nov 2026 11:30:00 +0100 (CET)\r\n" +
	"Message-ID: <ABC123@Mail.Example.COM>\r\n" +
	"In-Reply-To: <root@example.com>\r\n" +
	"References: <root@example.com>\r\n <mid@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--outer\r\n" +
	"Content-Type: multipart/related; boundary=\"rel\"\r\n" +
	"\r\n" +
	"--rel\r\n" +
	"Content-Type: multipart/alternative; boundary=\"alt\"\r\n" +
	"\r\n" +
	"--alt\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Hello Gr=C3=BC=C3=9Fe\r\n" +
	"--alt\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"\r\n" +
	"<p>Hello <img src=\"cid:logo@x\"></p>\r\n" +
	"--alt--\r\n" +
	"--rel\r\n" +
	"Content-Type: image/png\r\n" +
	"Content-ID: <logo@x>\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\r\n" +
	"--rel--\r\n" +
	"--outer\r\n" +
	"Content-Type: application/pdf; name=\"=?utf-8?Q?Angebot_M=C3=A4rz.pdf?=\"\r\n" +
	"Content-Disposition: attachment; filename*=utf-8''Angebot%20M%C3%A4rz.pdf\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoK\r\n" +
	"--outer--\r\n"

func TestParseRichMessage(t *testing.T) {
	m, err := newParser(t).Parse([]byte(richMessage))
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != mime.StatusOK || len(m.Warnings) != 0 {
		t.Errorf("status %s, warnings %+v; want ok without warnings", m.Status, m.Warnings)
	}
	if m.From == nil || *m.From != (mime.Address{Address: "joerg.mueller@bücher.example", Name: "Jörg Müller", DomainASCII: "xn--bcher-kva.example"}) {
		t.Errorf("From = %+v", m.From)
	}
	if m.From.Domain() != "bücher.example" {
		t.Errorf("From.Domain() = %q", m.From.Domain())
	}
	if m.Sender == nil || m.Sender.Address != "list-bounces@lists.example.org" {
		t.Errorf("Sender = %+v", m.Sender)
	}
	if len(m.ReplyTo) != 2 || m.ReplyTo[1] != (mime.Address{Address: "support@example.com", Name: "Support", DomainASCII: "example.com"}) {
		t.Errorf("ReplyTo = %+v", m.ReplyTo)
	}
	if len(m.To) != 1 || m.To[0].Address != "support+acme@in.example.com" || len(m.Cc) != 1 {
		t.Errorf("To = %+v, Cc = %+v", m.To, m.Cc)
	}
	if m.Subject != "Grüße from the team" {
		t.Errorf("Subject = %q", m.Subject)
	}
	wantDate := time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)
	if m.Date == nil || !m.Date.Equal(wantDate) || m.Date.Location() != time.UTC {
		t.Errorf("Date = %v, want %v", m.Date, wantDate)
	}
	if m.DateRaw != "Mon, 23 Nov 2026 11:30:00 +0100 (CET)" {
		t.Errorf("DateRaw = %q", m.DateRaw)
	}
	if m.MessageID != "ABC123@mail.example.com" || m.InReplyTo != "root@example.com" ||
		!slices.Equal(m.References, []string{"root@example.com", "mid@example.com"}) {
		t.Errorf("ids = %q, %q, %q", m.MessageID, m.InReplyTo, m.References)
	}
	if m.Text != "Hello Grüße" {
		t.Errorf("Text = %q", m.Text)
	}
	if m.HTML != "<p>Hello <img src=\"cid:logo@x\"></p>" {
		t.Errorf("HTML = %q", m.HTML)
	}
	if len(m.Attachments) != 2 {
		t.Fatalf("attachments = %+v", m.Attachments)
	}
	img, pdf := m.Attachments[0], m.Attachments[1]
	if img.ContentType != "image/png" || img.SniffedType != "image/png" || img.ContentID != "logo@x" || !img.Inline || img.Filename != "" {
		t.Errorf("image = %+v", img)
	}
	pdfBytes, _ := base64.StdEncoding.DecodeString("JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoK")
	sum := sha256.Sum256(pdfBytes)
	if pdf.Filename != "Angebot März.pdf" || pdf.ContentType != "application/pdf" || pdf.SniffedType != "application/pdf" ||
		pdf.Inline || pdf.Size != int64(len(pdfBytes)) || pdf.SHA256 != hex.EncodeToString(sum[:]) || string(pdf.Content) != string(pdfBytes) {
		t.Errorf("pdf = %+v", pdf)
	}
	var names []string
	for _, h := range m.Headers {
		names = append(names, h.Name)
	}
	wantNames := []string{
		"Received", "From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
		"In-Reply-To", "References", "MIME-Version", "Content-Type",
	}
	if !slices.Equal(names, wantNames) {
		t.Errorf("header names = %q, want %q", names, wantNames)
	}
	if m.Headers[6].Value != "Grüße from the team" {
		t.Errorf("decoded Subject header = %q", m.Headers[6].Value)
	}
	if m.Stats != (mime.Stats{Parts: 7, Depth: 3, DecodedSize: m.Stats.DecodedSize}) || m.Stats.DecodedSize == 0 {
		t.Errorf("stats = %+v", m.Stats)
	}
}

func TestParseCharsetPolicy(t *testing.T) {
	msg := func(ctype, body string) []byte {
		h := "From: a@example.com\r\nDate: Mon, 23 Nov 2026 10:30:00 +0000\r\nMessage-ID: <x@y>\r\n"
		if ctype != "" {
			h += "Content-Type: " + ctype + "\r\n"
		}
		return []byte(h + "\r\n" + body)
	}
	latin1 := strings.Repeat("Gr\xfc\xdfe aus M\xfcnchen, sch\xf6ne Gr\xfc\xdfe. ", 6)
	for _, tt := range []struct {
		name     string
		raw      []byte
		wantText string
		wantWarn string
	}{
		{"declared charset is trusted", msg("text/plain; charset=iso-8859-1", "Gr\xfc\xdfe"), "Grüße", ""},
		{"undeclared valid UTF-8 is kept", msg("text/plain", "Grüße 👋"), "Grüße 👋", ""},
		{"no Content-Type, valid UTF-8 is kept", msg("", "Grüße"), "Grüße", ""},
		{"us-ascii label on UTF-8 is kept", msg("text/plain; charset=us-ascii", "naïve café"), "naïve café", ""},
		{"undeclared latin-1 is detected", msg("text/plain", latin1), strings.Repeat("Grüße aus München, schöne Grüße. ", 6), mime.WarnCharsetDetected},
		{"short undeclared latin-1 falls back to windows-1252", msg("text/plain", "caf\xe9"), "café", mime.WarnCharsetDetected},
		{"declared utf-8 that is not", msg("text/plain; charset=utf-8", "bad \xff byte but m\xc3\xa4ny g\xc3\xb6od \xc3\xbc \xc3\xa9"), "bad \uFFFD byte but mäny göod ü é", mime.WarnInvalidUTF8},
		{"unknown charset", msg("text/plain; charset=x-klingon", "plain"), "plain", mime.WarnCharsetUnknown},
		{"HTML meta charset", msg("text/html", "<html><head><meta charset=\"iso-8859-1\"></head><body>caf\xe9</body></html>"), "café", mime.WarnCharsetDetected},
		{"iso-8859-1 read as windows-1252 (WHATWG)", msg("text/plain; charset=ISO-8859-1", "\x93quoted\x94 \x80 5"), "“quoted” € 5", ""},
		{"iso-2022-jp", msg("text/plain; charset=iso-2022-jp", "\x1b$B$3$s$K$A$O\x1b(B"), "こんにちは", ""},
		{"iso-2022-jp label on UTF-8", msg("text/plain; charset=iso-2022-jp", "こんにちは"), "こんにちは", mime.WarnCharsetMismatch},
		{"iso-2022-jp label on EUC-JP", msg("text/plain; charset=ISO-2022-JP", strings.Repeat("\xa4\xb3\xa4\xf3\xa4\xcb\xa4\xc1\xa4\xcf\xa1\xa2\xc0\xa4\xb3\xa6\xa1\xa3", 4)), strings.Repeat("こんにちは、世界。", 4), mime.WarnCharsetMismatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newParser(t).Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if m.Text != tt.wantText {
				t.Errorf("Text = %q, want %q", m.Text, tt.wantText)
			}
			names := warningNames(m)
			if tt.wantWarn == "" && len(names) > 0 || tt.wantWarn != "" && !slices.Contains(names, tt.wantWarn) {
				t.Errorf("warnings = %+v, want %q", m.Warnings, tt.wantWarn)
			}
			if m.Status != mime.StatusOK {
				t.Errorf("status = %s, want ok", m.Status)
			}
		})
	}
}

// multipartOf builds a multipart/mixed message with n small text attachments.
func multipartOf(n int) []byte {
	var b strings.Builder
	b.WriteString("From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := range n {
		fmt.Fprintf(&b, "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=f%d.txt\r\n\r\npart %d\r\n", i, i)
	}
	b.WriteString("--b--\r\n")
	return []byte(b.String())
}

// nestedOf builds a message with depth nested multipart containers around one text part.
func nestedOf(depth int) []byte {
	var b strings.Builder
	b.WriteString("From: a@example.com\r\n")
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ninnermost\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return []byte(b.String())
}

// bigAttachment builds a message with a base64 attachment of n decoded bytes.
func bigAttachment(n int) []byte {
	data := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", n)))
	var b strings.Builder
	b.WriteString("From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n")
	b.WriteString("--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for len(data) > 76 {
		b.WriteString(data[:76] + "\r\n")
		data = data[76:]
	}
	b.WriteString(data + "\r\n--b--\r\n")
	return []byte(b.String())
}

func TestParseLimits(t *testing.T) {
	lim := mime.Limits{MaxParts: 10, MaxDepth: 4, MaxDecodedSize: 1000}
	for _, tt := range []struct {
		name     string
		raw      []byte
		wantWarn string // "" for a message within the limits
	}{
		{"within limits", multipartOf(5), ""},
		{"too many parts", multipartOf(50), mime.WarnLimitParts},
		{"far too many parts", multipartOf(5000), mime.WarnLimitParts},
		{"nesting at the limit", nestedOf(4), ""},
		{"too deep", nestedOf(5), mime.WarnLimitDepth},
		{"far too deep", nestedOf(3000), mime.WarnLimitDepth},
		{"decoded size at the limit", bigAttachment(900), ""},
		{"decoded size over the limit", bigAttachment(5000), mime.WarnLimitDecodedSize},
		{"single part over the limit", []byte("From: a@example.com\r\n\r\n" + strings.Repeat("y", 3000)), mime.WarnLimitDecodedSize},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newParser(t, mime.WithLimits(lim)).Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, tt.name, m, lim)
			if tt.wantWarn == "" {
				if m.Status != mime.StatusOK {
					t.Errorf("status %s, warnings %+v; want ok", m.Status, m.Warnings)
				}
				return
			}
			if m.Status != mime.StatusPartial || !slices.Contains(warningNames(m), tt.wantWarn) {
				t.Errorf("status %s, warnings %+v; want partial with %s", m.Status, m.Warnings, tt.wantWarn)
			}
			for _, w := range m.Warnings {
				if w.Name == tt.wantWarn && !w.Severe {
					t.Errorf("limit warning %+v not severe", w)
				}
			}
		})
	}
	// What was read before the limit is kept.
	m, _ := newParser(t, mime.WithLimits(lim)).Parse(multipartOf(50))
	if len(m.Attachments) == 0 || m.Attachments[0].Filename != "f0.txt" || m.From == nil {
		t.Errorf("content before the limit lost: from %+v, attachments %+v", m.From, m.Attachments)
	}
	m, _ = newParser(t, mime.WithLimits(lim)).Parse(nestedOf(3000))
	if m.Stats.Depth > lim.MaxDepth {
		t.Errorf("depth %d beyond the limit", m.Stats.Depth)
	}
	// The too-deep container is listed, empty, with its type; enmime never read its content.
	if len(m.Attachments) != 1 || m.Attachments[0].ContentType != "multipart/mixed" || m.Attachments[0].Size != 0 ||
		slices.Contains(warningNames(m), mime.WarnContentTypeMissing) {
		t.Errorf("attachments %+v warnings %+v", m.Attachments, m.Warnings)
	}
}

func TestParseWarningsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("From: a@example.com\r\n")
	for i := range 50 {
		fmt.Fprintf(&b, "Bad\x01Name%d: x\r\n", i)
	}
	b.WriteString("\r\nbody")
	m, err := newParser(t, mime.WithMaxWarnings(5)).Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Warnings) != 6 || m.Warnings[5].Name != mime.WarnTruncated {
		t.Errorf("warnings = %+v; want 5 and a %s", m.Warnings, mime.WarnTruncated)
	}
}

func TestParseDoesNotShareInput(t *testing.T) {
	raw := []byte(bigAttachment(100))
	m, err := newParser(t).Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	before := m.Text
	for i := range raw {
		raw[i] = 'z'
	}
	if m.Text != before || string(m.Attachments[0].Content) != strings.Repeat("x", 100) {
		t.Error("Message changed when the input was overwritten")
	}
}

func TestParseConcurrently(t *testing.T) {
	p := newParser(t)
	raw := []byte(richMessage)
	want, err := p.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			m, err := p.Parse(raw)
			if err == nil && (m.Text != want.Text || len(m.Attachments) != len(want.Attachments)) {
				err = errors.New("different result")
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
