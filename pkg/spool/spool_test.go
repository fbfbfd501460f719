package spool_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/spool"
)

// Bodies must pass 4 KiB to be spooled inside a multipart (see TestSplit).
var (
	// long is 5120 bytes of text.
	long = strings.Repeat("0123456789abcdef", 320)
	// payload is 5000 bytes, and payload64 its base64 in 76-character lines.
	payload = func() []byte {
		b := make([]byte, 5000)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}()
	payload64 = wrap(base64.StdEncoding.EncodeToString(payload), 76)
)

func wrap(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

// crlf turns LF line endings into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

var nested = `From: a@example.com
To: b@example.com
Subject: nested
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

preamble
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain

short text
--inner
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>=48ello, ` + long + `=
 end.</p>
--inner--
--outer
Content-Type: application/octet-stream; name="a.bin"
Content-Transfer-Encoding: base64

` + payload64 + `
--outer--
epilogue
`

var nestedSkeleton = `From: a@example.com
To: b@example.com
Subject: nested
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

preamble
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain

short text
--inner
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable
X-Mailpipe-Spooled: 0 TOKEN


--inner--
--outer
Content-Type: application/octet-stream; name="a.bin"
Content-Transfer-Encoding: base64
X-Mailpipe-Spooled: 1 TOKEN


--outer--
epilogue
`

var html = "<p>Hello, " + long + " end.</p>"

type wantPart struct {
	id, ctype, enc, content string
	truncated               bool
}

// TestSplit covers the structure cases. Every result is also checked against enmime (see
// matchEnmime) and for lost bytes (checkAccounting). Bodies inside a multipart are over 4 KiB:
// one that ends in the first 4 KiB of a part is never spooled (see stopCut).
func TestSplit(t *testing.T) {
	for _, tt := range []struct {
		name     string
		in       string
		opts     spool.Options // Threshold 64 unless set
		skeleton string        // with TOKEN for the token; empty: the input itself
		parts    []wantPart
		warnings []string
	}{
		{
			name:     "nested multipart, LF",
			in:       nested,
			skeleton: nestedSkeleton,
			parts: []wantPart{
				{id: "1.2", ctype: "text/html", enc: "quoted-printable", content: html},
				{id: "2", ctype: "application/octet-stream", enc: "base64", content: string(payload)},
			},
		},
		{
			name:     "nested multipart, CRLF",
			in:       crlf(nested),
			skeleton: crlf(nestedSkeleton),
			parts: []wantPart{
				{id: "1.2", ctype: "text/html", enc: "quoted-printable", content: html},
				{id: "2", ctype: "application/octet-stream", enc: "base64", content: string(payload)},
			},
		},
		{
			name:     "small parts are left alone",
			in:       nested,
			opts:     spool.Options{Threshold: 1 << 20},
			skeleton: "",
		},
		{
			name: "folded Content-Type with a quoted boundary holding specials",
			in: crlf("Content-Type: multipart/mixed;\n\tboundary=\"=_a b?c\"\n\n--=_a b?c\nContent-Type: text/plain\n\n" +
				long + "\n--=_a b?c--\n"),
			skeleton: crlf("Content-Type: multipart/mixed;\n\tboundary=\"=_a b?c\"\n\n--=_a b?c\nContent-Type: text/plain\n" +
				"X-Mailpipe-Spooled: 0 TOKEN\n\n\n--=_a b?c--\n"),
			parts: []wantPart{{id: "1", ctype: "text/plain", content: long}},
		},
		{
			name:     "RFC 2231 continued boundary",
			in:       "Content-Type: multipart/mixed; boundary*0=ab; boundary*1=cd\n\n--abcd\n\n" + long + "\n--abcd--\n",
			skeleton: "Content-Type: multipart/mixed; boundary*0=ab; boundary*1=cd\n\n--abcd\nX-Mailpipe-Spooled: 0 TOKEN\n\n\n--abcd--\n",
			parts:    []wantPart{{id: "1", content: long}},
		},
		{
			name:     "missing final boundary: the last part runs to the end",
			in:       "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: base64\n\n" + payload64 + "\n",
			skeleton: "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: base64\nX-Mailpipe-Spooled: 0 TOKEN\n\n",
			parts:    []wantPart{{id: "1", enc: "base64", content: string(payload)}},
		},
		{
			name:     "last part without a trailing line break",
			in:       "Content-Type: multipart/mixed; boundary=b\n\n--b\n\n" + long,
			skeleton: "Content-Type: multipart/mixed; boundary=b\n\n--b\nX-Mailpipe-Spooled: 0 TOKEN\n\n",
			parts:    []wantPart{{id: "1", content: long}},
		},
		{
			name:     "delimiter with trailing white space",
			in:       "Content-Type: multipart/mixed; boundary=b\n\n--b \t\n\n" + long + "\n--b\t\n\nsmall\n--b-- \n",
			skeleton: "Content-Type: multipart/mixed; boundary=b\n\n--b \t\nX-Mailpipe-Spooled: 0 TOKEN\n\n\n--b\t\n\nsmall\n--b-- \n",
			parts:    []wantPart{{id: "1", content: long}},
		},
		{
			name: "inner part ends at an enclosing boundary",
			in: "Content-Type: multipart/mixed; boundary=outer\n\n--outer\nContent-Type: multipart/related; boundary=inner\n\n" +
				"--inner\n\n" + long + "\n--outer\n\nsmall\n--outer--\n",
			skeleton: "Content-Type: multipart/mixed; boundary=outer\n\n--outer\nContent-Type: multipart/related; boundary=inner\n\n" +
				"--inner\nX-Mailpipe-Spooled: 0 TOKEN\n\n\n--outer\n\nsmall\n--outer--\n",
			parts: []wantPart{{id: "1.1", content: long}},
		},
		{
			name: "quoted-printable with junk",
			in: "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: Quoted-Printable\n\n" +
				"caf\xe9 =E9t=E9 =ZZ trailing   \nsoft=\nbreak and a very long line " + long + " end=",
			skeleton: "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: Quoted-Printable\nX-Mailpipe-Spooled: 0 TOKEN\n\n",
			parts: []wantPart{{
				id: "0", ctype: "text/plain", enc: "quoted-printable",
				content: "caf\xe9 \xe9t\xe9 =ZZ trailing\nsoftbreak and a very long line " + long + " end=",
			}},
		},
		{
			name: "base64 with junk, padding in the middle and a lone last character",
			in: "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n" +
				"AAEC!!AwQF\r\n====\n" + strings.Repeat("BgcI", 20) + "\n*\xffQ",
			skeleton: "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\nX-Mailpipe-Spooled: 0 TOKEN\n\n",
			parts: []wantPart{{
				id: "0", ctype: "application/octet-stream", enc: "base64",
				content: "\x00\x01\x02\x03\x04\x05" + strings.Repeat("\x06\x07\x08", 20),
			}},
			warnings: []string{spool.WarnBase64Junk, spool.WarnBase64Incomplete},
		},
		{
			name: "message/rfc822 is a leaf, spooled whole",
			in: "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\n" +
				"Subject: inner\nContent-Type: multipart/alternative; boundary=c\n\n--c\n\n" + long + "\n--c--\n" +
				"\n--b--\n",
			skeleton: "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\nX-Mailpipe-Spooled: 0 TOKEN\n\n\n--b--\n",
			parts: []wantPart{{
				id: "1", ctype: "message/rfc822",
				content: "Subject: inner\nContent-Type: multipart/alternative; boundary=c\n\n--c\n\n" + long + "\n--c--\n",
			}},
		},
		{
			name:     "single part: the root body is spooled, the top header kept",
			in:       crlf("From: a@example.com\nSubject: big\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n" + payload64 + "\n"),
			skeleton: crlf("From: a@example.com\nSubject: big\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\nX-Mailpipe-Spooled: 0 TOKEN\n\n"),
			parts:    []wantPart{{id: "0", ctype: "application/pdf", enc: "base64", content: string(payload)}},
		},
		{
			name:     "mbox From_ line, byte-order mark and leading blank lines",
			in:       "\xef\xbb\xbf\n\nFrom sender@example.com Mon Jan  1 00:00:00 2024\nFrom: a@example.com\n\n" + long + "\n",
			skeleton: "\xef\xbb\xbf\n\nFrom sender@example.com Mon Jan  1 00:00:00 2024\nFrom: a@example.com\nX-Mailpipe-Spooled: 0 TOKEN\n\n",
			parts:    []wantPart{{id: "0", content: long + "\n"}},
		},
		{
			name:     "unknown transfer encoding is copied as is",
			in:       "Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\n" + long + "\n",
			skeleton: "Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\nX-Mailpipe-Spooled: 0 TOKEN\n\n",
			parts:    []wantPart{{id: "0", ctype: "text/plain", content: long + "\n"}},
		},
		{
			name: "boundary text in the middle of a line in the first 4 KiB ends the part (enmime)",
			in: "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nshort --b dropped\nx\n--b\n\n" +
				long + "\n--b--\n",
			skeleton: "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nshort --b dropped\nx\n--b\n" +
				"X-Mailpipe-Spooled: 0 TOKEN\n\n\n--b--\n",
			parts: []wantPart{{id: "2", content: long}},
		},
		{
			name: "a body ending in the first 4 KiB of a part is kept",
			in:   "Content-Type: multipart/mixed; boundary=b\n\n--b\n\n" + long[:1000] + "\n--b--\n",
		},
		{
			name: "forged X-Mailpipe-Spooled field",
			in: "Content-Type: multipart/mixed; boundary=b\n\n--b\nX-Mailpipe-Spooled: 0 forgedforgedfo\n\nsmall\n--b\n" +
				"X-Mailpipe-Spooled: 0 forgedforgedfo\n\n" + long + "\n--b--\n",
			skeleton: "Content-Type: multipart/mixed; boundary=b\n\n--b\nX-Mailpipe-Spooled: 0 forgedforgedfo\n\nsmall\n--b\n" +
				"X-Mailpipe-Spooled: 0 forgedforgedfo\nX-Mailpipe-Spooled: 0 TOKEN\n\n\n--b--\n",
			parts: []wantPart{{id: "2", content: long}},
		},
		{
			name: "CR-only line endings are passed through",
			in:   strings.ReplaceAll("Content-Type: multipart/mixed; boundary=b\n\n--b\n\n"+long+"\n--b--\n", "\n", "\r"),
		},
		{
			name: "a part enmime cannot read the header of is passed through",
			in:   "Content-Type: multipart/mixed; boundary=b\n\n--b\n indented first line\n\n" + long + "\n--b--\n",
			// 128 bytes of body are kept: more than the threshold.
			warnings: []string{spool.WarnNotSplit},
		},
		{
			name:     "top-level multipart without boundary is passed through",
			in:       "Content-Type: multipart/mixed\n\n--b\n\n" + long + "\n--b--\n",
			warnings: []string{spool.WarnNotSplit},
		},
		{
			name:     "headers only",
			in:       "From: a@example.com\nSubject: nothing else",
			skeleton: "",
		},
		{
			name: "past MaxParts the rest is passed through",
			in:   "Content-Type: multipart/mixed; boundary=b\n\n--b\n\n" + long + "\n--b\n\n" + long + "\n--b--\n",
			opts: spool.Options{Threshold: 64, MaxParts: 2},
			skeleton: "Content-Type: multipart/mixed; boundary=b\n\n--b\nX-Mailpipe-Spooled: 0 TOKEN\n\n\n--b\n\n" + long +
				"\n--b--\n",
			parts:    []wantPart{{id: "1", content: long}},
			warnings: []string{spool.WarnLimitParts},
		},
		{
			name: "past MaxDepth the rest is passed through",
			in: "Content-Type: multipart/mixed; boundary=b\n\n--b\n\n" + long + "\n--b\nContent-Type: multipart/mixed; boundary=c\n\n" +
				"--c\n\n" + long + "\n--c--\n--b--\n",
			opts: spool.Options{Threshold: 64, MaxDepth: 1},
			skeleton: "Content-Type: multipart/mixed; boundary=b\n\n--b\nX-Mailpipe-Spooled: 0 TOKEN\n\n\n--b\nContent-Type: multipart/mixed; boundary=c\n\n" +
				"--c\n\n" + long + "\n--c--\n--b--\n",
			parts:    []wantPart{{id: "1", content: long}},
			warnings: []string{spool.WarnLimitDepth},
		},
		{
			name: "MaxDecodedSize cuts the spooled parts",
			in:   "Content-Type: multipart/mixed; boundary=b\n\n--b\n\n" + long + "\n--b\n\n" + long + "\n--b--\n",
			opts: spool.Options{Threshold: 64, MaxDecodedSize: 100},
			skeleton: "Content-Type: multipart/mixed; boundary=b\n\n--b\nX-Mailpipe-Spooled: 0 TOKEN\n\n\n--b\n" +
				"X-Mailpipe-Spooled: 1 TOKEN\n\n\n--b--\n",
			parts:    []wantPart{{id: "1", content: long[:100], truncated: true}, {id: "2", truncated: true}},
			warnings: []string{spool.WarnLimitDecodedSize, spool.WarnLimitDecodedSize},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts.Threshold == 0 {
				opts.Threshold = 64
			}
			opts.TempDir = t.TempDir()

			res, err := spool.Split(t.Context(), strings.NewReader(tt.in), opts)
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, res)

			want := tt.skeleton
			if want == "" {
				want = tt.in
			}
			if got := tokenRE.ReplaceAllString(string(res.Skeleton), "${1}TOKEN"); got != want {
				t.Errorf("skeleton:\n%q\nwant:\n%q", got, want)
			}
			if len(res.Parts) != len(tt.parts) {
				t.Fatalf("%d parts spooled, want %d", len(res.Parts), len(tt.parts))
			}
			truncated := false
			for i, w := range tt.parts {
				p := &res.Parts[i]
				if got := readPart(t, p); string(got) != w.content {
					t.Errorf("part %d content:\n%q\nwant:\n%q", i, got, w.content)
				}
				if p.PartID != w.id || p.ContentType != w.ctype || p.Encoding != w.enc || p.Truncated != w.truncated {
					t.Errorf("part %d: id %q type %q encoding %q truncated %v, want %q %q %q %v",
						i, p.PartID, p.ContentType, p.Encoding, p.Truncated, w.id, w.ctype, w.enc, w.truncated)
				}
				truncated = truncated || p.Truncated
			}
			var names []string
			for _, w := range res.Warnings {
				names = append(names, w.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.warnings, ",") {
				t.Errorf("warnings %v, want %v", res.Warnings, tt.warnings)
			}
			checkAccounting(t, tt.name, []byte(tt.in), res)
			if !truncated {
				matchEnmime(t, oracle(), tt.name, []byte(tt.in), res)
			}
		})
	}
}

// tokenRE matches the value Split writes, with the padding it may add.
var tokenRE = regexp.MustCompile(`(X-Mailpipe-Spooled: \d+ )[0-9a-f]{16} *`)

// TestSplitLongLines: lines longer than MaxLineLength are streamed in pieces; a base64 body on
// one line and a header longer than the buffer still split right.
func TestSplitLongLines(t *testing.T) {
	raw := make([]byte, 50_000)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	oneLine := base64.StdEncoding.EncodeToString(raw) // ~67 KB, on one line
	in := "Content-Type: multipart/mixed; boundary=b\r\nX-Long: " + strings.Repeat("x", 20_000) + "\r\n\r\n--b\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + oneLine + "\r\n--b\r\n\r\n" + strings.Repeat("y", 9000) + "\r\n--b--\r\n"
	res, err := spool.Split(t.Context(), strings.NewReader(in), spool.Options{Threshold: 8 << 10, MaxLineLength: 4096, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, res)
	if len(res.Parts) != 2 {
		t.Fatalf("%d parts spooled, want 2", len(res.Parts))
	}
	if got := readPart(t, &res.Parts[0]); !bytes.Equal(got, raw) {
		t.Errorf("one-line base64 part: %d bytes, want %d", len(got), len(raw))
	}
	if got := readPart(t, &res.Parts[1]); string(got) != strings.Repeat("y", 9000) {
		t.Errorf("second part: %d bytes, want 9000", len(got))
	}
	checkAccounting(t, "long lines", []byte(in), res)
	matchEnmime(t, oracle(), "long lines", []byte(in), res)
}

// TestSplitFilesRemoved: Close removes the files, also when Split fails midway.
func TestSplitFilesRemoved(t *testing.T) {
	msg := "Content-Type: multipart/mixed; boundary=b\n\n--b\n\n" + strings.Repeat("a", 5000) + "\n--b\n\n" + strings.Repeat("b", 5000) + "\n--b--\n"
	t.Run("Close", func(t *testing.T) {
		// given
		dir := t.TempDir()
		res, err := spool.Split(t.Context(), strings.NewReader(msg), spool.Options{Threshold: 1000, TempDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if n := countFiles(t, dir); n != 2 {
			t.Fatalf("%d files in the temp dir, want 2", n)
		}
		// when
		if err := res.Close(); err != nil {
			t.Fatal(err)
		}
		// then
		if n := countFiles(t, dir); n != 0 {
			t.Errorf("%d files left after Close", n)
		}
		if _, err := res.Parts[0].Open(); err == nil {
			t.Error("Open after Close succeeded")
		}
		if err := res.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	t.Run("read error midway", func(t *testing.T) {
		dir := t.TempDir()
		boom := errors.New("boom")
		r := io.MultiReader(strings.NewReader(msg[:len(msg)-200]), errReader{boom})
		_, err := spool.Split(t.Context(), r, spool.Options{Threshold: 1000, TempDir: dir})
		if !errors.Is(err, boom) {
			t.Fatalf("Split error %v, want %v", err, boom)
		}
		if n := countFiles(t, dir); n != 0 {
			t.Errorf("%d files left after a failed Split", n)
		}
	})
	t.Run("context canceled", func(t *testing.T) {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		big := "Content-Type: text/plain\n\n" + strings.Repeat("line\n", 10_000)
		_, err := spool.Split(ctx, strings.NewReader(big), spool.Options{Threshold: 1000, TempDir: dir})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Split error %v, want context.Canceled", err)
		}
		if n := countFiles(t, dir); n != 0 {
			t.Errorf("%d files left after a canceled Split", n)
		}
	})
	t.Run("temp dir missing", func(t *testing.T) {
		_, err := spool.Split(t.Context(), strings.NewReader(msg), spool.Options{Threshold: 1000, TempDir: t.TempDir() + "/missing"})
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Split error %v, want os.ErrNotExist", err)
		}
	})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts spool.Options
		ok   bool
	}{
		{name: "zero value", opts: spool.Options{}, ok: true},
		{name: "negative threshold", opts: spool.Options{Threshold: -1}},
		{name: "negative limits", opts: spool.Options{MaxDecodedSize: -1, MaxParts: -1, MaxDepth: -1}},
		{name: "line buffer too small", opts: spool.Options{MaxLineLength: 100}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if (err == nil) != tt.ok {
				t.Errorf("Validate() = %v", err)
			}
			if _, err := spool.Split(t.Context(), strings.NewReader("a: b\n\n"), tt.opts); (err == nil) != tt.ok {
				t.Errorf("Split error %v", err)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	in := "Content-Type: text/plain\n\n" + strings.Repeat("x", 100)
	res, err := spool.Split(t.Context(), strings.NewReader(in), spool.Options{Threshold: 10, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, res)
	m := regexp.MustCompile(`X-Mailpipe-Spooled: (.*)\n`).FindStringSubmatch(string(res.Skeleton))
	if m == nil {
		t.Fatal("no X-Mailpipe-Spooled field in the skeleton")
	}
	token := strings.Fields(m[1])[1]
	for _, tt := range []struct {
		value string
		ok    bool
	}{
		{m[1], true},
		{"  0   " + token + " ", true},
		{"0", false},
		{"1 " + token, false},
		{"-1 " + token, false},
		{"0 forgedforgedfo", false},
		{"0 " + token + " x", false},
		{"", false},
	} {
		if p, ok := res.Lookup(tt.value); ok != tt.ok || ok && p != &res.Parts[0] {
			t.Errorf("Lookup(%q) = %v, %v", tt.value, p, ok)
		}
	}
	var nilRes *spool.Result
	if err := nilRes.Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}
}
