package parse_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/parse"
)

// claimCheckAbove is the raw size above which the test stores the raw message in the blob
// store, like ingress's inline limit.
const claimCheckAbove = 512 << 10

// maxRecordBytes is the broker's default message size limit; every parsed record must fit.
const maxRecordBytes = 1 << 20

// TestHandleWholeCorpus runs every message of the shared corpus through Handle with a blob
// store: each must yield a record that encodes, decodes and stays under the broker's default
// message size, or fail with class parse. (Skipped without the corpus unless
// MAILPIPE_TEST_REQUIRE_SERVICES is set; see pkg/mime.)
func TestHandleWholeCorpus(t *testing.T) {
	dir := os.Getenv("MAILPIPE_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "corpus")
	}
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST.tsv")); err != nil {
		if os.Getenv("MAILPIPE_TEST_REQUIRE_SERVICES") != "" {
			t.Fatalf("corpus not found at %s: set MAILPIPE_CORPUS", dir)
		}
		t.Skipf("corpus not found at %s: set MAILPIPE_CORPUS to the shared corpus directory", dir)
	}
	codec := newCodec(t)
	blobs := newMemBlobs()
	p := parse.New(codec, blobs, discard())
	counts := map[string]int{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".eml") || strings.Contains(d.Name(), ".expected") {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		in := rawEvent(string(raw))
		if len(raw) > claimCheckAbove {
			// As ingress does (claim check); hamba/avro also refuses inline bytes over 1 MiB.
			ref, err := blobs.Put(t.Context(), "raw/"+in.Sha256, strings.NewReader(string(raw)))
			if err != nil {
				return err
			}
			in.Raw, in.RawBlobRef = nil, &ref
		}
		out, err := p.Handle(t.Context(), record(t, codec, in))
		if err != nil {
			if failure.Classify(err) != failure.Parse {
				t.Errorf("%s: %v (class %s)", path, err, failure.Classify(err))
			}
			counts["error"]++
			return nil
		}
		if n := len(out[0].Value); n > maxRecordBytes {
			t.Errorf("%s: parsed record of %d bytes", path, n)
		}
		counts[decodeParsed(t, codec, out).ParseStatus]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("records: ok=%d partial=%d failed=%d error=%d", counts["ok"], counts["partial"], counts["failed"], counts["error"])
}
