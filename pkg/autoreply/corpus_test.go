package autoreply_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/autoreply"
	"github.com/mailpipe/mailpipe/pkg/mime"
)

// corpusDir returns the shared corpus: $MAILPIPE_CORPUS, or ../shared/corpus next to the
// repository. Missing, the test skips locally and fails under MAILPIPE_TEST_REQUIRE_SERVICES
// (STYLE.md habit 20).
func corpusDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("MAILPIPE_CORPUS")
	if d == "" {
		d = filepath.Join("..", "..", "..", "shared", "corpus")
	}
	if _, err := os.Stat(filepath.Join(d, "MANIFEST.tsv")); err != nil {
		if os.Getenv("MAILPIPE_TEST_REQUIRE_SERVICES") != "" {
			t.Fatalf("corpus not found at %s: set MAILPIPE_CORPUS", d)
		}
		t.Skipf("corpus not found at %s: set MAILPIPE_CORPUS to the shared corpus directory", d)
	}
	return d
}

func detectFile(t testing.TB, p *mime.Parser, path string) *autoreply.Reply {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	m, err := p.Parse(raw)
	if err != nil {
		return nil
	}
	return autoreply.Detect(fromMIME(m))
}

// TestCorpus measures auto-reply detection: every auto-reply sample of corpus-bounces (MANIFEST
// category auto-reply) and of the corpus's autoreplies/ folder must be found as auto-replied;
// it reports what else is flagged across the corpus (bounces and reports are expected to carry
// Auto-Submitted; elsewhere an auto-replied verdict is a false positive and fails the test).
func TestCorpus(t *testing.T) {
	dir := corpusDir(t)
	p, err := mime.NewParser()
	if err != nil {
		t.Fatalf("creating parser: %v", err)
	}
	bdir := filepath.Join(filepath.Dir(filepath.Clean(dir)), "corpus-bounces")
	manifest, err := os.ReadFile(filepath.Join(bdir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatalf("reading corpus-bounces MANIFEST: %v", err)
	}
	counts := map[string][3]int{} // category → files, auto-replied, auto-generated
	for _, line := range strings.Split(strings.TrimSpace(string(manifest)), "\n")[1:] {
		f := strings.Split(line, "\t")
		r := detectFile(t, p, filepath.Join(bdir, f[0]))
		c := counts[f[5]]
		c[0]++
		switch {
		case r == nil:
		case r.Kind == autoreply.AutoReplied:
			c[1]++
		default:
			c[2]++
		}
		counts[f[5]] = c
		if f[5] == "auto-reply" && (r == nil || r.Kind != autoreply.AutoReplied) {
			t.Errorf("%s: auto-reply not detected (%v)", f[0], r)
		}
		if f[5] == "not-bounce" && r != nil && r.Kind == autoreply.AutoReplied {
			t.Errorf("%s: not an auto-reply, detected: %v", f[0], r.Evidence)
		}
	}
	for _, k := range []string{"auto-reply", "bounce", "feedback-report", "not-bounce"} {
		c := counts[k]
		t.Logf("corpus-bounces %-16s files %3d  auto-replied %3d  auto-generated %3d", k, c[0], c[1], c[2])
	}

	known := knownBounces(t, dir)
	var others, falseReplies, generated, oooFound, oooFiles int
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".eml") || strings.Contains(filepath.Base(path), ".expected") {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		folder, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		r := detectFile(t, p, path)
		switch folder {
		case "autoreplies":
			oooFiles++
			if r != nil && r.Kind == autoreply.AutoReplied {
				oooFound++
			} else {
				t.Errorf("%s: auto-reply not detected", rel)
			}
		case "bounces", "reports":
		default:
			if known[filepath.ToSlash(rel)] {
				return nil // a bounce filed elsewhere: the classifier reads it as a bounce first
			}
			others++
			switch {
			case r == nil:
			case r.Kind == autoreply.AutoReplied:
				falseReplies++
				t.Errorf("%s: detected as an auto-reply: %v", rel, r.Evidence)
			default:
				generated++
				t.Logf("%s: auto-generated: %v", rel, r.Evidence)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking corpus: %v", err)
	}
	t.Logf("corpus autoreplies/: %d/%d detected; other messages (outside bounces/reports/autoreplies): %d, auto-replied %d, auto-generated %d",
		oooFound, oooFiles, others, falseReplies, generated)
}

// knownBounces lists the corpus messages outside bounces/ that its MANIFEST identifies as
// sisimai bounce samples (line-ending variants under malformed/, an mbox of bounces under
// mbox/). They carry Auto-Submitted like every RFC 3464 report and are classified as bounces
// before auto-reply detection runs.
func knownBounces(t testing.TB, dir string) map[string]bool {
	raw, err := os.ReadFile(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatalf("reading MANIFEST: %v", err)
	}
	known := map[string]bool{}
	for _, line := range strings.Split(string(raw), "\n")[1:] {
		f := strings.Split(line, "\t")
		if len(f) < 7 || f[1] != "sisimai/set-of-emails" {
			continue
		}
		base := filepath.Base(f[2])
		if strings.HasPrefix(base, "lhost-") || strings.HasPrefix(base, "rhost-") || strings.HasPrefix(base, "rfc3464-") ||
			(strings.HasPrefix(f[2], "mailbox/") && strings.Contains(strings.ToLower(f[6]), "bounces")) {
			known[f[0]] = true
		}
	}
	return known
}
