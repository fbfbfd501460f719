package classify_test

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/classify"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/parse"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// sharedDir is ../shared/<name> from the repository root, where the corpora live.
func sharedDir(t *testing.T, name string) string {
	t.Helper()
	d := filepath.Join("..", "..", "..", "shared", name)
	if _, err := os.Stat(filepath.Join(d, "MANIFEST.tsv")); err != nil {
		t.Fatalf("shared corpus %s not found next to the repository: %v", name, err)
	}
	return d
}

func readTSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var rows [][]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// envelopeFrom approximates the SMTP MAIL FROM of a stored message from its Return-Path, as
// ingress would have recorded it ("" for the null sender).
func envelopeFrom(raw []byte) string {
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Return-Path") {
			return strings.Trim(strings.TrimSpace(v), "<>")
		}
	}
	return "unknown@example.invalid"
}

// classifyFiles parses every file through the parser stage's own transformation and classifies
// the record, two at a time.
func classifyFiles(t *testing.T, paths []string) map[string]events.Classification {
	t.Helper()
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	p := parse.New(codec, nil, slog.New(slog.DiscardHandler))
	c := newClassifier(t)
	out := make(map[string]events.Classification, len(paths))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan string)
	for range 2 {
		wg.Go(func() {
			for path := range work {
				raw, err := os.ReadFile(path)
				if err != nil {
					t.Error(err)
					continue
				}
				in := &events.Raw{ID: filepath.Base(path), Envelope: events.Envelope{MailFrom: envelopeFrom(raw), Source: "smtp"}}
				msg, err := p.Parse(t.Context(), in, nil, raw)
				if err != nil {
					t.Logf("%s: %v", path, err) // not even a header: the DLQ's business
					continue
				}
				cl, err := c.Classify(t.Context(), msg)
				if err != nil {
					t.Error(err)
					continue
				}
				mu.Lock()
				out[path] = cl
				mu.Unlock()
			}
		})
	}
	for _, path := range paths {
		work <- path
	}
	close(work)
	wg.Wait()
	return out
}

// TestCorpusClassification classifies both shared corpora through the parser and prints the
// kinds per category. It fails below the targets: ≥ 98% of corpus-bounces' bounce
// files classified bounce with the expected recipient (pkg/bounce's reviewed expectations),
// no bounce among its auto-replies, and no bounce in ../shared/corpus outside its bounces/,
// reports/ and autoreplies/ folders (except the bounces its MANIFEST files elsewhere).
func TestCorpusClassification(t *testing.T) {
	if testing.Short() {
		t.Skip("parses 900 messages")
	}
	bdir := sharedDir(t, "corpus-bounces")
	category := map[string]string{}
	var paths []string
	for _, row := range readTSV(t, filepath.Join(bdir, "MANIFEST.tsv"))[1:] {
		p := filepath.Join(bdir, row[0])
		category[p] = "corpus-bounces/" + row[5]
		paths = append(paths, p)
	}
	cdir := sharedDir(t, "corpus")
	elsewhere := map[string]bool{}
	for _, row := range readTSV(t, filepath.Join(cdir, "MANIFEST.tsv"))[1:] {
		if !strings.HasSuffix(row[0], ".eml") {
			continue // a peer parser's expected output
		}
		p := filepath.Join(cdir, row[0])
		folder, _, _ := strings.Cut(row[0], "/")
		category[p] = "corpus/" + folder
		paths = append(paths, p)
		// The MANIFEST files some bounces under malformed/ and mbox/ (pkg/bounce's corpus test
		// explains the rule); they are bounces, not false ones.
		base := filepath.Base(row[2])
		if row[1] == "sisimai/set-of-emails" && folder != "bounces" && folder != "reports" && folder != "autoreplies" &&
			(strings.HasPrefix(base, "lhost-") || strings.HasPrefix(base, "rhost-") || strings.HasPrefix(base, "rfc3464-") ||
				(strings.HasPrefix(row[2], "mailbox/") && strings.Contains(strings.ToLower(row[6]), "bounces"))) {
			elsewhere[p] = true
		}
	}
	expected := map[string][]string{}
	for _, row := range readTSV(t, filepath.Join("..", "bounce", "testdata", "corpus-bounces.expected.tsv")) {
		expected[filepath.Join(bdir, row[0])] = strings.FieldsFunc(row[1], func(r rune) bool { return r == ',' || r == '|' })
	}

	got := classifyFiles(t, paths)
	kinds := map[string]map[string]int{}
	var bounceTotal, bounceRight int
	var falseBounces, autoBounces []string
	for _, p := range paths {
		cl, ok := got[p]
		kind := cl.Kind
		if !ok {
			kind = "(unparseable)"
		}
		cat := category[p]
		if kinds[cat] == nil {
			kinds[cat] = map[string]int{}
		}
		kinds[cat][kind]++
		switch {
		case cat == "corpus-bounces/bounce":
			bounceTotal++
			if kind == classify.KindBounce && cl.Bounce != nil && slices.ContainsFunc(cl.Bounce.Recipients, func(r events.BounceRecipient) bool {
				return slices.ContainsFunc(expected[p], func(e string) bool { return strings.EqualFold(e, r.Address) || strings.EqualFold(e, r.FinalRecipient) })
			}) {
				bounceRight++
			}
		case cat == "corpus-bounces/auto-reply" && kind == classify.KindBounce:
			autoBounces = append(autoBounces, p)
		case strings.HasPrefix(cat, "corpus/") && kind == classify.KindBounce && !elsewhere[p] &&
			cat != "corpus/bounces" && cat != "corpus/reports" && cat != "corpus/autoreplies":
			falseBounces = append(falseBounces, p)
		}
	}
	cats := make([]string, 0, len(kinds))
	for c := range kinds {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, c := range cats {
		var parts []string
		for k, n := range kinds[c] {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(parts)
		t.Logf("%-28s %s", c, strings.Join(parts, ", "))
	}
	recall := float64(bounceRight) / float64(bounceTotal)
	t.Logf("corpus-bounces bounce files classified bounce with the expected recipient: %d/%d (%.1f%%)", bounceRight, bounceTotal, 100*recall)
	t.Logf("false bounces in corpus outside bounces/reports/autoreplies: %d; bounces among auto-replies: %d", len(falseBounces), len(autoBounces))
	if bounceTotal < 450 || recall < 0.98 {
		t.Errorf("bounce recall %.3f over %d files; target ≥ 0.98", recall, bounceTotal)
	}
	if len(falseBounces) > 0 || len(autoBounces) > 0 {
		t.Errorf("false bounces: %v %v", falseBounces, autoBounces)
	}
}
