package crosscheck_test

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/mime"
)

var draft = flag.Bool("draft", false, "print draft disagreements.tsv lines for the disagreements that are not listed (they still fail the test: review each, then fix mailpipe or add it with its reason)")

// listFile is the reviewed list of known disagreements.
const listFile = "testdata/disagreements.tsv"

// key names one disagreement: a corpus file (relative, as in the list), a field and a peer.
type key struct{ file, field, peer string }

func (k key) String() string { return k.file + " " + k.field + " " + k.peer }

// allPeers are the peers in the order the figures are logged.
var allPeers = []string{peerMailparser, peerPostalMime, peerRust}

// TestCrossCheck parses every message of the shared corpus and of corpus-bounces with mailpipe
// and with each peer (mailparser and postal-mime once over all files; the Rust mail-parser
// output where the corpus has one) and compares subject, from, to, text and attachments. It
// fails on a disagreement that is not in testdata/disagreements.tsv and on a listed one that
// no longer occurs. With -v it logs the agreement figures per peer and field.
func TestCrossCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("the cross-check runs Node over the whole corpus; skipped under -short")
	}
	node := checkNode(t)
	files := corpusFiles(t)
	listed := readList(t, files)

	mp, peers := readAll(t, node, files)
	found, tallies := crossCheck(files, mp, peers, listed)

	var unlisted, stale []key
	for k := range found {
		if _, ok := listed[k]; !ok {
			unlisted = append(unlisted, k)
		}
	}
	for k := range listed {
		if _, ok := found[k]; !ok {
			stale = append(stale, k)
		}
	}
	sortKeys(unlisted)
	sortKeys(stale)
	for _, k := range unlisted {
		t.Errorf("%s: not in %s: %s", k, listFile, found[k])
	}
	for _, k := range stale {
		t.Errorf("%s: listed in %s but mailpipe and %s now agree: remove the entry", k, listFile, k.peer)
	}

	for _, peer := range allPeers {
		var b strings.Builder
		for _, fld := range fields {
			tl := tallies[peer][fld]
			fmt.Fprintf(&b, "  %s %d/%d (listed %d)", fld, tl.agree, tl.compared, tl.listed)
		}
		t.Logf("agreement with %s over %d files:%s", peer, len(peers[peer]), b.String())
	}
	t.Logf("%d files, %d disagreements listed, %d unlisted, %d stale", len(files), len(listed), len(unlisted), len(stale))

	if *draft && len(unlisted) > 0 {
		// Printed to stdout, not through t.Log, so the lines can be copied as they are.
		fmt.Printf("# draft for %s: write the reason mailpipe is right, or fix mailpipe\n", listFile)
		for _, k := range unlisted {
			fmt.Printf("# %s\n%s\t%s\t%s\tTODO\n", found[k], k.file, k.field, k.peer)
		}
	}
}

// readAll returns what mailpipe and every peer read from the files, by path: mailpipe parses
// them while Node runs each JavaScript peer once over all of them.
func readAll(t *testing.T, node string, files []corpusFile) (mp map[string]record, peers map[string]map[string]record) {
	t.Helper()
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.path
	}
	type peerResult struct {
		peer string
		recs map[string]record
		err  error
	}
	results := make(chan peerResult, len(nodePeers))
	for _, peer := range nodePeers {
		go func() {
			recs, err := runPeer(t, node, peer, paths)
			results <- peerResult{peer, recs, err}
		}()
	}

	p, err := mime.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	mp = make(map[string]record, len(files))
	peers = map[string]map[string]record{peerRust: {}}
	for _, f := range files {
		raw, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		mp[f.path] = fromMailpipe(p.Parse(raw))
		r, ok, err := rustExpected(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			peers[peerRust][f.path] = r
		}
	}
	for range nodePeers {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		peers[r.peer] = r.recs
	}
	return mp, peers
}

// tally counts one peer's agreement on one field.
type tally struct{ agree, compared, listed int }

// crossCheck compares mailpipe's record of every file with each peer's and returns the
// disagreements (with a description of the difference) and the counts per peer and field. A
// field is compared only when both parsers read the message (parse compares that), and text
// only when the peer's text is known.
func crossCheck(files []corpusFile, mp map[string]record, peers map[string]map[string]record, listed map[key]string) (map[key]string, map[string]map[string]*tally) {
	found := map[key]string{}
	tallies := map[string]map[string]*tally{}
	for _, peer := range allPeers {
		tallies[peer] = map[string]*tally{}
		for _, fld := range fields {
			tallies[peer][fld] = &tally{}
		}
		for _, f := range files {
			pr, ok := peers[peer][f.path]
			if !ok {
				continue
			}
			m := mp[f.path]
			diff := compare(m, pr)
			for _, fld := range fields {
				if fld != fieldParse && (!m.OK || !pr.OK) || fld == fieldText && pr.noText {
					continue
				}
				tl := tallies[peer][fld]
				tl.compared++
				d, bad := diff[fld]
				if !bad {
					tl.agree++
					continue
				}
				k := key{f.rel, fld, peer}
				found[k] = d
				if _, ok := listed[k]; ok {
					tl.listed++
				}
			}
		}
	}
	return found, tallies
}

func sortKeys(ks []key) {
	sort.Slice(ks, func(i, j int) bool {
		a, b := ks[i], ks[j]
		if a.file != b.file {
			return a.file < b.file
		}
		if a.field != b.field {
			return a.field < b.field
		}
		return a.peer < b.peer
	})
}

// readList reads the reviewed disagreements: lines of file, field, peer and reason separated by
// tabs; blank lines and lines starting with # are comments. A malformed line, an unknown field
// or peer, a file that is not in the corpus, a duplicate and a missing reason fail the test.
func readList(t *testing.T, files []corpusFile) map[key]string {
	t.Helper()
	data, err := os.ReadFile(listFile)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, c := range files {
		known[c.rel] = true
	}
	list := map[key]string{}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) != 4 {
			t.Errorf("%s:%d: want 4 tab-separated columns (file, field, peer, reason), got %d", listFile, n, len(cols))
			continue
		}
		k := key{cols[0], cols[1], cols[2]}
		reason := strings.TrimSpace(cols[3])
		switch {
		case !known[k.file]:
			t.Errorf("%s:%d: %s is not a corpus file", listFile, n, k.file)
		case !slices.Contains(fields, k.field):
			t.Errorf("%s:%d: unknown field %q (want one of %v)", listFile, n, k.field, fields)
		case !slices.Contains(allPeers, k.peer):
			t.Errorf("%s:%d: unknown peer %q", listFile, n, k.peer)
		case reason == "" || strings.HasPrefix(reason, "TODO"):
			t.Errorf("%s:%d: %s: no reason given", listFile, n, k)
		}
		if _, dup := list[k]; dup {
			t.Errorf("%s:%d: %s listed twice", listFile, n, k)
		}
		list[k] = reason
	}
	return list
}

// corpusFile is one message: its path and its name in the list ("plain/x.eml" for the corpus,
// "corpus-bounces/y.eml" for the sibling folder, as pkg/mime's golden files name them).
type corpusFile struct{ path, rel string }

// corpusDir returns the shared corpus: $MAILPIPE_CORPUS, or ../shared/corpus next to the
// repository. As in pkg/mime, a missing corpus skips the test locally with the variable to set
// and fails it under MAILPIPE_TEST_REQUIRE_SERVICES=1 (make test, CI).
func corpusDir(t *testing.T) string {
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
	return filepath.Clean(d)
}

// corpusFiles lists the messages of the corpus (the .expected.* peer outputs excluded) and of
// corpus-bounces, sorted by name.
func corpusFiles(t *testing.T) []corpusFile {
	t.Helper()
	dir := corpusDir(t)
	var files []corpusFile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".eml") && !strings.Contains(filepath.Base(p), ".expected") {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			files = append(files, corpusFile{p, filepath.ToSlash(rel)})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing corpus: %v", err)
	}
	bounces, err := filepath.Glob(filepath.Join(filepath.Dir(dir), "corpus-bounces", "*.eml"))
	if err != nil {
		t.Fatalf("listing corpus-bounces: %v", err)
	}
	if len(bounces) == 0 {
		t.Fatalf("no messages in %s", filepath.Join(filepath.Dir(dir), "corpus-bounces"))
	}
	for _, p := range bounces {
		files = append(files, corpusFile{p, "corpus-bounces/" + filepath.Base(p)})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	return files
}
