package spool_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/jhillyerd/enmime/v2"
	"github.com/jhillyerd/enmime/v2/mediatype"

	"github.com/mailpipe/mailpipe/pkg/spool"
)

// corpusDir returns the shared real-world corpus, read in place: $MAILPIPE_CORPUS, or
// ../shared/corpus next to the repository. Without it the test is skipped locally with the
// variable to set; under MAILPIPE_TEST_REQUIRE_SERVICES=1 (make test, CI) a missing corpus is a
// failure (STYLE.md habit 20).
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
// the sibling corpus-bounces folder, sorted.
func corpusFiles(t testing.TB) []string {
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
	b, err := filepath.Glob(filepath.Join(filepath.Dir(filepath.Clean(dir)), "corpus-bounces", "*.eml"))
	if err != nil {
		t.Fatalf("listing corpus-bounces: %v", err)
	}
	files = append(files, b...)
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatalf("no messages under %s", dir)
	}
	return files
}

// oracle parses with enmime configured as package mime configures it, except that every part
// is declared UTF-8 so that Content holds the transfer-decoded bytes without charset conversion
// (enmime's UTF-8 reader is the identity) — the bytes Split spools.
func oracle() *enmime.Parser {
	return enmime.NewParser(
		enmime.SkipMalformedParts(true),
		enmime.MultipartWOBoundaryAsSinglePart(true),
		enmime.SetReadPartErrorPolicy(enmime.AllowCorruptTextPartErrorPolicy),
		enmime.DisableCharacterDetection(true),
		enmime.DisableTextConversion(true),
		enmime.SetCustomParseMediaType(func(ct string) (string, map[string]string, []string, error) {
			mt, params, invalid, err := mediatype.ParseWithOptions(ct, mediatype.ParseOptions{StripMediaTypeInvalidCharacters: true})
			if params != nil {
				params["charset"] = "utf-8"
			}
			return mt, params, invalid, err
		}),
	)
}

// preprocess is what package mime does to the input before enmime reads it (mime.preprocess):
// drop a byte-order mark, read CR-only input as LF, drop leading white space and up to 8
// non-header lines before the first header field.
func preprocess(b []byte) []byte {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	if bytes.IndexByte(b, '\n') < 0 && bytes.IndexByte(b, '\r') >= 0 {
		b = bytes.ReplaceAll(b, []byte{'\r'}, []byte{'\n'})
	}
	b = bytes.TrimLeft(b, " \t\r\n")
	cut := func(b []byte) ([]byte, []byte) {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return bytes.TrimSuffix(b, []byte{'\r'}), nil
		}
		return bytes.TrimSuffix(b[:i], []byte{'\r'}), b[i+1:]
	}
	isField := func(line []byte) bool {
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			return false
		}
		name := bytes.TrimRight(line[:i], " \t")
		if len(name) == 0 {
			return false
		}
		for _, c := range name {
			if c < 33 || c > 126 {
				return false
			}
		}
		return true
	}
	rest, skipped := b, 0
	for range 8 {
		line, next := cut(rest)
		if len(line) == 0 || isField(line) {
			break
		}
		skipped++
		rest = next
		if len(rest) == 0 {
			break
		}
	}
	if skipped > 0 && len(rest) > 0 {
		if line, _ := cut(rest); isField(line) {
			b = rest
		}
	}
	return b
}

// leaves returns the leaf parts of an enmime tree by PartID.
func leaves(root *enmime.Part) map[string]*enmime.Part {
	out := map[string]*enmime.Part{}
	_ = root.DepthMatchAll(func(p *enmime.Part) bool {
		if p.FirstChild == nil {
			out[p.PartID] = p
		}
		return false
	})
	return out
}

// ids returns the PartIDs of every node of an enmime tree, in order.
func ids(root *enmime.Part) []string {
	var out []string
	_ = root.DepthMatchAll(func(p *enmime.Part) bool {
		out = append(out, p.PartID+":"+p.ContentType)
		return false
	})
	return out
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// hasBase64Error reports whether enmime gave up decoding the part's base64 (a byte above 0x7f):
// its content is then nil, or cut short for text parts (AllowCorruptTextPartErrorPolicy).
func hasBase64Error(p *enmime.Part) bool {
	for _, e := range p.Errors {
		if e.Name == enmime.ErrorMalformedBase64 && e.Severe || strings.Contains(e.Detail, "illegal base64") {
			return true
		}
	}
	return false
}

// readPart returns the content of a spooled part and checks it against its digest and size.
func readPart(t *testing.T, p *spool.Part) []byte {
	t.Helper()
	rc, err := p.Open()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != p.Size || sum(b) != p.SHA256 {
		t.Fatalf("part %s: file holds %d bytes %s, part says %d %s", p.PartID, len(b), sum(b), p.Size, p.SHA256)
	}
	n := min(len(b), spool.HeadSize)
	if !bytes.Equal(p.Head, b[:n]) {
		t.Fatalf("part %s: head differs from the file's first %d bytes", p.PartID, n)
	}
	return b
}

// checkAccounting checks that no byte is lost: the skeleton plus the removed bodies, less the
// field lines Split inserted, is as long as the input.
func checkAccounting(t *testing.T, name string, in []byte, res *spool.Result) {
	t.Helper()
	n := int64(len(res.Skeleton))
	for _, p := range res.Parts {
		n += p.EncodedSize
	}
	inserted := 0
	prefix := []byte(spool.Header + ": ")
	for rest := res.Skeleton; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		if v, ok := bytes.CutPrefix(line, prefix); ok {
			if _, ok := res.Lookup(string(v)); ok {
				inserted++
				n -= int64(len(line))
			}
		}
	}
	if inserted != len(res.Parts) {
		t.Errorf("%s: %d %s lines in the skeleton for %d spooled parts", name, inserted, spool.Header, len(res.Parts))
	}
	if n != int64(len(in)) {
		t.Errorf("%s: skeleton + spooled bodies - inserted lines = %d bytes, input %d", name, n, len(in))
	}
}

// matchEnmime checks a Split result against enmime (see oracle): enmime reads the skeleton as the
// same tree as the original; each spooled part is present once, empty, carrying its
// X-Mailpipe-Spooled field, at the position (PartID) it was spooled from, with the SHA-256 and
// size of the part enmime decodes there in the original; every other leaf has the same content.
func matchEnmime(t *testing.T, p *enmime.Parser, name string, raw []byte, res *spool.Result) {
	t.Helper()
	orig, oerr := p.ReadParts(bytes.NewReader(preprocess(raw)))
	skel, serr := p.ReadParts(bytes.NewReader(preprocess(res.Skeleton)))
	if (oerr != nil) != (serr != nil) {
		t.Errorf("%s: enmime on the original: %v, on the skeleton: %v", name, oerr, serr)
		return
	}
	if oerr != nil {
		// enmime fails both alike (a top-level multipart it cannot follow to the end); parts
		// spooled before that point are simply never referenced.
		return
	}
	if a, b := ids(orig), ids(skel); !slices.Equal(a, b) {
		t.Errorf("%s: trees differ:\noriginal %v\nskeleton %v", name, a, b)
		return
	}
	ol, sl := leaves(orig), leaves(skel)
	seen := map[string]bool{}
	for id, sp := range sl {
		op := ol[id]
		// A field of that name in the original is someone else's: Lookup must refuse it.
		var part *spool.Part
		for _, v := range sp.Header.Values(spool.Header) {
			p, ok := res.Lookup(v)
			forged := slices.Contains(op.Header.Values(spool.Header), v)
			switch {
			case ok && forged:
				t.Errorf("%s: part %s: Lookup accepted the field %q of the original", name, id, v)
			case ok:
				part = p
			case !forged:
				t.Errorf("%s: part %s: Lookup(%q) failed", name, id, v)
			}
		}
		if part == nil {
			if !bytes.Equal(op.Content, sp.Content) {
				t.Errorf("%s: part %s: skeleton content differs from the original's", name, id)
			}
			continue
		}
		switch {
		case part.PartID != id:
			t.Errorf("%s: part %s carries spooled part %s", name, id, part.PartID)
		case len(sp.Content) != 0:
			t.Errorf("%s: part %s: spooled but enmime reads %d bytes from the skeleton", name, id, len(sp.Content))
		}
		seen[part.PartID] = true
		b := readPart(t, part)
		if hasBase64Error(op) {
			// enmime gives up on base64 holding bytes above 0x7f (Content nil or cut short);
			// Split skips them. Nothing to compare against.
			t.Logf("%s: part %s: enmime could not decode the base64; Split kept %d bytes", name, id, len(b))
			continue
		}
		if got, want := part.SHA256, sum(op.Content); got != want || part.Size != int64(len(op.Content)) {
			t.Errorf("%s: part %s (%s, %s): spooled %d bytes %s, enmime decodes %d bytes %s",
				name, id, part.ContentType, part.Encoding, part.Size, got, len(op.Content), want)
		}
	}
	for _, part := range res.Parts {
		if !seen[part.PartID] {
			t.Errorf("%s: spooled part %s not found in the skeleton's tree", name, part.PartID)
		}
	}
}

// closeAtEnd closes the result when the test ends.
func closeAtEnd(t *testing.T, res *spool.Result) {
	t.Helper()
	t.Cleanup(func() {
		if err := res.Close(); err != nil {
			t.Error(err)
		}
	})
}
