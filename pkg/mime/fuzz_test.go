package mime_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/mime"
)

// FuzzParse checks that no input panics, that output and error are never both set (nor both
// unset), that an error is always ErrNoHeaders, that the MIME-bomb limits hold and that no
// input takes long. Seeds are the synthetic bombs, the committed corpus in
// testdata/fuzz/FuzzParse (inputs the fuzzer found interesting, kept so every `go test` run
// replays them) and, when the shared corpus is present, its small messages.
func FuzzParse(f *testing.F) {
	f.Add([]byte(richMessage))
	f.Add(multipartOf(30))
	f.Add(nestedOf(12))
	f.Add(bigAttachment(6000))
	f.Add([]byte("From a@x Mon Jan 1 00:00:00 2024\nSubject: =?utf-8?B?w6Q=?=\n\nbody"))
	f.Add([]byte("Subject: x\rContent-Type: multipart/mixed; boundary=a\r\r--a\r\r--a--"))
	f.Add([]byte(""))
	f.Add([]byte("Subject: x\r\n" + strings.Repeat("X-A: b\r\n", 100) + "\r\nbody"))
	f.Add([]byte("From: a@x\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@y\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@z\r\n\r\nhi"))
	if dir := os.Getenv("MAILPIPE_CORPUS"); dir != "" || fileExists(filepath.Join("..", "..", "..", "shared", "corpus", "MANIFEST.tsv")) {
		for _, p := range corpusFiles(f, false) {
			if raw, err := os.ReadFile(p); err == nil && len(raw) < 4096 {
				f.Add(raw)
			}
		}
	}
	lim := mime.Limits{MaxParts: 20, MaxDepth: 4, MaxDecodedSize: 4096, MaxHeaderFields: 30, MaxHeaderBytes: 2048, MaxNestedDepth: 2}
	p, err := mime.NewParser(mime.WithLimits(lim), mime.WithMaxWarnings(20))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		start := time.Now()
		m, err := p.Parse(raw)
		// Generous for inputs of fuzzing size even under -race: a hang or a quadratic blow-up
		// shows as seconds, a normal parse as microseconds.
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("parsing %d bytes took %v", len(raw), d)
		}
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
		checkHeaderLimits(t, m, lim, 0)
		if len(m.Warnings) > 21 {
			t.Fatalf("%d warnings, cap is 20 plus the truncation note", len(m.Warnings))
		}
	})
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// checkHeaderLimits checks the header and nesting limits on m and its nested messages.
func checkHeaderLimits(t *testing.T, m *mime.Message, lim mime.Limits, level int) {
	t.Helper()
	if len(m.Headers) > lim.MaxHeaderFields {
		t.Fatalf("level %d: %d header fields, limit %d", level, len(m.Headers), lim.MaxHeaderFields)
	}
	for _, a := range m.Attachments {
		if a.Message == nil {
			continue
		}
		if level+1 > lim.MaxNestedDepth {
			t.Fatalf("nested message at level %d, limit %d", level+1, lim.MaxNestedDepth)
		}
		checkHeaderLimits(t, a.Message, lim, level+1)
	}
}
