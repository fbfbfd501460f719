package mime_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/mime"
)

// FuzzParse checks that no input panics, that output and error are never both set (nor both
// unset), that an error is always ErrNoHeaders, and that the MIME-bomb limits hold. Seeds are
// the synthetic bombs and, when the shared corpus is present, its small messages.
func FuzzParse(f *testing.F) {
	f.Add([]byte(richMessage))
	f.Add(multipartOf(30))
	f.Add(nestedOf(12))
	f.Add(bigAttachment(6000))
	f.Add([]byte("From a@x Mon Jan 1 00:00:00 2024\nSubject: =?utf-8?B?w6Q=?=\n\nbody"))
	f.Add([]byte("Subject: x\rContent-Type: multipart/mixed; boundary=a\r\r--a\r\r--a--"))
	f.Add([]byte(""))
	if dir := os.Getenv("MAILPIPE_CORPUS"); dir != "" || fileExists(filepath.Join("..", "..", "..", "shared", "corpus", "MANIFEST.tsv")) {
		for _, p := range corpusFiles(f, false) {
			if raw, err := os.ReadFile(p); err == nil && len(raw) < 4096 {
				f.Add(raw)
			}
		}
	}
	lim := mime.Limits{MaxParts: 20, MaxDepth: 4, MaxDecodedSize: 4096}
	p, err := mime.NewParser(mime.WithLimits(lim), mime.WithMaxWarnings(20))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := p.Parse(raw)
		if (m == nil) == (err == nil) {
			t.Fatalf("Parse returned message %v and error %v", m != nil, err)
		}
		if err != nil {
			if !errors.Is(err, mime.ErrNoHeaders) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		checkInvariants(t, "fuzz input", m, lim)
		if len(m.Warnings) > 21 {
			t.Fatalf("%d warnings, cap is 20 plus the truncation note", len(m.Warnings))
		}
	})
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
