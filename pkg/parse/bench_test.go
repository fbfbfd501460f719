package parse_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/parse"
)

// BenchmarkParseCorpus runs every message of each shared corpus through Parser.Parse, the
// parser stage's whole transformation (MIME parse, bodies, HTML to text, sanitized HTML,
// stripped reply, attachment digests, record build) without Kafka or a blob store, one corpus
// per iteration; MB/s is over the raw bytes. The records ingress would have written are built
// before the clock starts. e2e/bench/parsers compares the same path with the JavaScript
// parsers; this one is for profiling:
//
//	go test -run '^$' -bench ParseCorpus -cpuprofile cpu.out ./parse/
func BenchmarkParseCorpus(b *testing.B) {
	for _, name := range []string{"corpus", "corpus-bounces"} {
		b.Run(name, func(b *testing.B) {
			msgs := loadCorpus(b, name)
			p := parse.New(newCodec(b), nil, discard())
			var total int64
			for _, m := range msgs {
				total += int64(len(m.raw))
			}
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				for _, m := range msgs {
					if _, err := p.Parse(b.Context(), m.in, m.key, m.raw); err != nil && failure.Classify(err) != failure.Parse {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

type corpusMessage struct {
	name     string // path inside the corpus
	in       *events.Raw
	key, raw []byte
}

// loadCorpus reads the messages of ../shared/<name> ($MAILPIPE_CORPUS for corpus, its sibling
// for the others), skipping the benchmark when the corpus is not there.
func loadCorpus(tb testing.TB, name string) []corpusMessage {
	tb.Helper()
	dir := os.Getenv("MAILPIPE_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "corpus")
	}
	dir = filepath.Join(filepath.Dir(filepath.Clean(dir)), name)
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".eml") && !strings.Contains(d.Name(), ".expected") {
			files = append(files, path)
		}
		return err
	})
	if err != nil || len(files) == 0 {
		tb.Skipf("corpus not found at %s (%v): set MAILPIPE_CORPUS to the shared corpus directory", dir, err)
	}
	sort.Strings(files)
	msgs := make([]corpusMessage, len(files))
	for i, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		in := rawEvent("")
		sum := sha256.Sum256(raw)
		in.Raw, in.Size, in.Sha256 = nil, int64(len(raw)), hex.EncodeToString(sum[:])
		rel, _ := filepath.Rel(dir, f)
		msgs[i] = corpusMessage{name: rel, in: in, key: []byte(in.ThreadKey), raw: raw}
	}
	return msgs
}
