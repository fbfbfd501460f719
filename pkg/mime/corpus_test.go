package mime_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/mailpipe/mailpipe/pkg/mime"
)

// noHeaderFiles are the corpus files that are not messages at all; Parse must refuse them.
var noHeaderFiles = map[string]bool{
	"enmime--mail--erroneous.eml": true, // "// Not an RFC-822 Document"
}

// TestParseWholeCorpus parses every corpus message (and corpus-bounces) and checks the
// invariants every record must meet; it logs how many were ok, partial and failed.
func TestParseWholeCorpus(t *testing.T) {
	files := corpusFiles(t, true)
	p, err := mime.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	bounceCounts := map[string]int{} // of those, the corpus-bounces folder
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := parseNoPanic(t, p, f, raw)
		base := filepath.Base(f)
		if filepath.Base(filepath.Dir(f)) == "corpus-bounces" {
			if err != nil {
				bounceCounts["error"]++
			} else {
				bounceCounts[string(m.Status)]++
			}
		}
		switch {
		case err != nil && noHeaderFiles[base]:
			counts["error"]++
			continue
		case err != nil:
			t.Errorf("%s: Parse: %v", f, err)
			continue
		case noHeaderFiles[base]:
			t.Errorf("%s: Parse accepted a file without a header", f)
		}
		counts[string(m.Status)]++
		checkInvariants(t, f, m, p.Limits())
	}
	t.Logf("parsed %d files: ok=%d partial=%d failed=%d error=%d (corpus-bounces: ok=%d partial=%d failed=%d error=%d)",
		len(files), counts["ok"], counts["partial"], counts["failed"], counts["error"],
		bounceCounts["ok"], bounceCounts["partial"], bounceCounts["failed"], bounceCounts["error"])
}

func parseNoPanic(t *testing.T, p *mime.Parser, name string, raw []byte) (m *mime.Message, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s: Parse panicked: %v", name, r)
		}
	}()
	return p.Parse(raw)
}

// checkInvariants checks what every parsed Message promises: a known status, valid UTF-8 in
// every string (Avro strings and most consumers require it), attachment sizes and digests that
// match their bytes, and the limits.
func checkInvariants(t *testing.T, name string, m *mime.Message, lim mime.Limits) {
	t.Helper()
	switch m.Status {
	case mime.StatusOK, mime.StatusPartial, mime.StatusFailed:
	default:
		t.Errorf("%s: status %q", name, m.Status)
	}
	strs := []string{m.MessageID, m.InReplyTo, m.Subject, m.DateRaw, m.Text, m.HTML}
	strs = append(strs, m.References...)
	for _, a := range addresses(m) {
		strs = append(strs, a.Address, a.Name, a.DomainASCII)
	}
	for _, h := range m.Headers {
		strs = append(strs, h.Name, h.Value)
	}
	for _, w := range m.Warnings {
		strs = append(strs, w.Name, w.Detail)
		if w.Severe && m.Status == mime.StatusOK {
			t.Errorf("%s: severe warning %s but status ok", name, w.Name)
		}
	}
	var attSize int64
	for _, a := range m.Attachments {
		strs = append(strs, a.Filename, a.ContentType, a.SniffedType, a.ContentID)
		if a.Size != int64(len(a.Content)) {
			t.Errorf("%s: attachment %q size %d but %d bytes", name, a.Filename, a.Size, len(a.Content))
		}
		sum := sha256.Sum256(a.Content)
		if a.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: attachment %q sha256 does not match its bytes", name, a.Filename)
		}
		attSize += a.Size
	}
	for _, s := range strs {
		if !utf8.ValidString(s) {
			t.Errorf("%s: invalid UTF-8 in %q", name, s)
		}
	}
	if m.Date != nil && m.Date.Location().String() != "UTC" {
		t.Errorf("%s: date %v not in UTC", name, m.Date)
	}
	if m.Stats.Parts > lim.MaxParts || m.Stats.Depth > lim.MaxDepth || m.Stats.DecodedSize > lim.MaxDecodedSize {
		t.Errorf("%s: stats %+v exceed limits %+v", name, m.Stats, lim)
	}
	if attSize > m.Stats.DecodedSize || len(m.Attachments) > max(m.Stats.Parts, 1) {
		t.Errorf("%s: %d attachments of %d bytes but stats %+v", name, len(m.Attachments), attSize, m.Stats)
	}
}

func addresses(m *mime.Message) []mime.Address {
	var out []mime.Address
	if m.From != nil {
		out = append(out, *m.From)
	}
	if m.Sender != nil {
		out = append(out, *m.Sender)
	}
	out = append(out, m.ReplyTo...)
	out = append(out, m.To...)
	return append(out, m.Cc...)
}

// BenchmarkParseCorpus parses every message of the corpus (9 MB, 434 files) per iteration;
// MB/s is over the raw bytes.
func BenchmarkParseCorpus(b *testing.B) {
	files := corpusFiles(b, false)
	raws := make([][]byte, len(files))
	var total int64
	for i, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		raws[i] = raw
		total += int64(len(raw))
	}
	p, err := mime.NewParser()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for _, raw := range raws {
			if _, err := p.Parse(raw); err != nil && !errors.Is(err, mime.ErrNoHeaders) {
				b.Fatal(err)
			}
		}
	}
}
