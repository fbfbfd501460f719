package mime

import (
	"strings"
	"testing"
)

func TestBase64Junk(t *testing.T) {
	for _, tt := range []struct {
		name string
		body string
		want string // what is blanked; "" for nothing
	}{
		{"no padding", "QUJD\r\nREVG\r\n", ""},
		{"padding at the end", "QUJDRA==\r\n", ""},
		{"white space after the padding", "QUJDRA==\r\n\r\n  \r\n", ""},
		{"footer after the padding", "QUJDRA==\r\n\r\n____\r\nList mailing list\r\n", "\r\n\r\n____\r\nList mailing list\r\n"},
		{"word on the padding's line", "QUJDRA== ignored\n", " ignored\n"},
		{"every line padded", "QQ==\nQkM=\nREVG\n", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			from, to, ok := base64Junk([]byte(tt.body))
			got := ""
			if ok {
				got = tt.body[from:to]
			}
			if got != tt.want {
				t.Errorf("base64Junk(%q) blanks %q, want %q", tt.body, got, tt.want)
			}
		})
	}
}

func TestParseTransferEncodingRepairs(t *testing.T) {
	head := "From: a@example.com\r\nDate: Mon, 23 Nov 2026 10:30:00 +0000\r\nMessage-ID: <x@y>\r\n"
	for _, tt := range []struct {
		name     string
		raw      string
		wantText string
		wantSize int64 // of the first attachment; -1 for none
	}{
		{
			"list footer after base64 text",
			head + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZQ==\r\n\r\n___\r\nList-talk mailing list\r\n",
			"Grüße", -1,
		},
		{
			"truncated base64 attachment keeps what decodes",
			head + "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJDREVGR0hJ\r\nSktM\r\nQ\r\n--b--\r\n",
			"hi", 12,
		},
		{
			"quoted-printable part ending with a soft line break",
			head + "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nsoft=\r\nbreak=\r\n--b--\r\n",
			"softbreak", -1,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewParser()
			if err != nil {
				t.Fatal(err)
			}
			m, err := p.Parse([]byte(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(m.Text) != tt.wantText {
				t.Errorf("Text = %q, want %q", m.Text, tt.wantText)
			}
			switch {
			case tt.wantSize < 0 && len(m.Attachments) > 0:
				t.Errorf("attachments = %+v, want none", m.Attachments)
			case tt.wantSize >= 0 && (len(m.Attachments) != 1 || m.Attachments[0].Size != tt.wantSize):
				t.Errorf("attachments = %+v, want one of %d bytes", m.Attachments, tt.wantSize)
			}
		})
	}
}
