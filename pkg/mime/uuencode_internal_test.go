package mime

import (
	"strings"
	"testing"
)

func TestUUDecode(t *testing.T) {
	for _, tt := range []struct {
		name, in, want, file string
		ok                   bool
	}{
		{"classic", "begin 644 cat.txt\n#0V%T\n`\nend\n", "Cat", "cat.txt", true},
		{"leading blank lines and CRLF", "\r\n\r\nbegin 600 a b.txt\r\n#0V%T\r\n`\r\nend\r\n", "Cat", "a b.txt", true},
		{"trailing blanks stripped in transit", "begin 644 x\n\"80``\nend\n", "a\x00", "x", true},
		{"stripped blanks padded", "begin 644 x\n\"80\nend\n", "a\x00", "x", true},
		{"missing end", "begin 644 x\n#0V%T\n", "Cat", "x", true},
		{"space for zero", "begin 644 x\n#0V%T\n \nend\n", "Cat", "x", true},
		{"no begin line", "#0V%T\nend\n", "", "", false},
		{"not uuencode", "begin 644 x\n#0v%t{{{\nend\n", "", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, file, ok := uudecode([]byte(tt.in))
			if ok != tt.ok || string(got) != tt.want || file != tt.file {
				t.Errorf("uudecode(%q) = %q, %q, %v; want %q, %q, %v", tt.in, got, file, ok, tt.want, tt.file, tt.ok)
			}
		})
	}
}

func TestParseUUEncodedAttachment(t *testing.T) {
	raw := strings.Join([]string{
		"From: a@example.com",
		"Date: Fri, 19 May 2000 00:59:31 -0400",
		"Message-ID: <1@example.com>",
		`Content-Type: multipart/mixed; boundary="b"`,
		"",
		"--b",
		"Content-Type: text/plain; charset=us-ascii",
		"",
		"Hi",
		"--b",
		`Content-Type: application/octet-stream; name="cat.bin"`,
		"Content-Transfer-Encoding: x-uuencode",
		"",
		"begin 600 cat.bin",
		"#0V%T",
		"`",
		"end",
		"--b",
		"Content-Type: text/plain; charset=iso-8859-1",
		"Content-Transfer-Encoding: uuencode",
		"Content-Disposition: attachment",
		"",
		"begin 600 caf\xe9.txt",
		"$8V%FZ0``",
		"`",
		"end",
		"--b",
		"Content-Type: image/png",
		"Content-Transfer-Encoding: x-uuencode",
		"",
		"not uuencode at all",
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
	if len(m.Attachments) != 3 {
		t.Fatalf("got %d attachments, want 3: %+v", len(m.Attachments), m.Attachments)
	}
	for i, want := range []struct{ name, content string }{
		{"cat.bin", "Cat"},
		{"café.txt", "café"}, // name from the begin line; content converted from iso-8859-1
		{"", "not uuencode at all"},
	} {
		a := m.Attachments[i]
		if a.Filename != want.name || string(a.Content) != want.content || a.Size != int64(len(want.content)) {
			t.Errorf("attachment %d = %q %q (size %d), want %q %q", i, a.Filename, a.Content, a.Size, want.name, want.content)
		}
	}
	var unknown int
	for _, w := range m.Warnings {
		if w.Name == WarnTransferEncodingUnknown {
			unknown++
		}
	}
	if unknown != 1 {
		t.Errorf("got %d transfer_encoding_unknown warnings, want 1 (the part that is not uuencode): %+v", unknown, m.Warnings)
	}
}
