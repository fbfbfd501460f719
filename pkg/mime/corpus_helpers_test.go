package mime_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// corpusDir returns the shared real-world corpus (read in place, never copied into the repo):
// $MAILPIPE_CORPUS, or ../shared/corpus next to the repository. Without it the test is skipped
// locally with the variable to set; under MAILPIPE_TEST_REQUIRE_SERVICES=1 (make test, CI) a
// missing corpus is a failure (STYLE.md habit 20).
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

// corpusFiles lists the messages of the corpus (the .expected.* oracle files excluded) and of
// the sibling corpus-bounces folder when withBounces is set, sorted, as paths.
func corpusFiles(t testing.TB, withBounces bool) []string {
	t.Helper()
	dir := corpusDir(t)
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".eml") && !strings.Contains(filepath.Base(p), ".expected") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing corpus: %v", err)
	}
	if withBounces {
		b, err := filepath.Glob(filepath.Join(filepath.Dir(filepath.Clean(dir)), "corpus-bounces", "*.eml"))
		if err != nil {
			t.Fatalf("listing corpus-bounces: %v", err)
		}
		files = append(files, b...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatalf("no messages under %s", dir)
	}
	return files
}
