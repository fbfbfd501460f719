package mime

import (
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/jhillyerd/enmime/v2"
)

// TestSplitBuildsEnmimesTree checks readParts (split, and the trimmed root header) against enmime on every message of the shared
// corpora and on the messages nested in them, as the parser reads them (after preprocess and
// prescan): where split reads a message, its tree must be enmime's, field for field.
func TestSplitBuildsEnmimesTree(t *testing.T) {
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	files := splitCorpus(t)
	var read, multipart int
	var check func(name string, raw []byte, level int)
	check = func(name string, raw []byte, level int) {
		input, heads := parserInput(p, raw)
		want, werr := p.newRun().readEnmime(input)
		_, ok := p.split(p.newRun(), input, heads)
		if want != nil && want.FirstChild != nil {
			multipart++
		}
		if !ok {
			if want != nil && want.FirstChild != nil {
				t.Logf("%s: split gave up on a multipart message", name)
			}
		} else {
			read++
		}
		got, gerr := p.readParts(p.newRun(), input, heads)
		switch {
		case (gerr != nil) != (werr != nil):
			t.Errorf("%s: readParts error %v, enmime's %v", name, gerr, werr)
		case werr == nil:
			if d := treeDiff(got, want, nil, nil); d != "" {
				t.Errorf("%s: readParts' tree differs from enmime's: %s", name, d)
			}
		}
		if want == nil || level >= 3 {
			return
		}
		_ = want.DepthMatchAll(func(part *enmime.Part) bool {
			if part.FirstChild == nil && NestedType(strings.ToLower(part.ContentType)) && len(part.Content) > 0 {
				check(name+" > "+part.PartID, part.Content, level+1)
			}
			return false
		})
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		check(filepath.Base(f), raw, 0)
	}
	t.Logf("split read %d messages, %d of them multipart to enmime", read, multipart)
	if read < multipart*9/10 {
		t.Errorf("split read %d messages of %d multipart ones: it gives up too often", read, multipart)
	}
}

// FuzzSplit checks that wherever split reads an input, it builds enmime's tree.
func FuzzSplit(f *testing.F) {
	for _, s := range splitSeeds {
		f.Add([]byte(s))
	}
	p, err := NewParser()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		scan := runPrescan(raw, p.cfg.limits, parseMediaType)
		in := scan.apply()
		got, gerr := p.readParts(p.newRun(), in, scan.headers())
		want, werr := p.newRun().readEnmime(in)
		if (gerr != nil) != (werr != nil) {
			t.Fatalf("readParts error %v, enmime's %v", gerr, werr)
		}
		if werr != nil {
			return
		}
		if d := treeDiff(got, want, nil, nil); d != "" {
			t.Fatalf("readParts' tree differs from enmime's: %s", d)
		}
	})
}

func TestSplitSeeds(t *testing.T) {
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range splitSeeds {
		scan := runPrescan([]byte(s), p.cfg.limits, parseMediaType)
		got, gerr := p.readParts(p.newRun(), scan.apply(), scan.headers())
		want, werr := p.newRun().readEnmime(scan.apply())
		if (gerr != nil) != (werr != nil) {
			t.Errorf("seed %d: readParts error %v, enmime's %v", i, gerr, werr)
			continue
		}
		if werr != nil {
			continue
		}
		if d := treeDiff(got, want, nil, nil); d != "" {
			t.Errorf("seed %d: split's tree differs from enmime's: %s", i, d)
		}
	}
}

// splitSeeds are multipart messages with the boundary reader's corner cases.
var splitSeeds = []string{
	"Content-Type: multipart/mixed; boundary=xx\r\n\r\npreamble\r\n--xx\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xx\r\n\r\nuntyped\r\n--xx--\r\nepilogue\r\n",
	"Content-Type: multipart/mixed; boundary=xx\n\n--xx\n\nno end\n",
	"Content-Type: multipart/mixed; boundary=xx\n\n--xx\nContent-Type: text/plain\n\nA\r\r\n--xx\nContent-Type: text/html; boundary=yy\n\n<p>\n--xx\n",
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n--inner\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n--inner--\r\ninner epilogue\r\n--outer\r\nContent-Type: image/png; name=a.png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--outer--",
	"Content-Type: multipart/mixed; boundary=xx\n\n--xx\n--xx\nX: y\n\n--xx--",
	"Content-Type: multipart/mixed; boundary=xx\n\n--xx \nContent-Disposition: attachment; filename=a.txt\n\nbody --xx mid\nline\n--xx--",
	"Content-Type: multipart/report; boundary=b1\n\n--b1\nContent-Type: message/rfc822\n\nFrom: a@b\nSubject: x\n\nhi\n--b1--\n",
	"Received: from x\r\n\tby y\r\nContent-Type: text/plain;\r\n charset=utf-8\r\nX-Mime-Depth: 1\r\nSubject: s\r\n\r\nbody\r\n",
	"Received: from x\r\nbad line\r\nContent-Type: text/html\r\n\r\n<p>x",
	"From : a@b\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n",
	"Subject: x\r\r\nContent-Type: text/plain\r\n\r\nbody",
	" folded: first\nContent-Type: text/plain\n\nbody",
	"X-Spam: a\rb\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\ncaf=E9",
	"DKIM-Signature: v=1;\n\tb=abc\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=zz\n\n--zz\n\nA\n--zz--",
}

// parserInput is what Parser.parse hands enmime for raw: preprocessed, headers within the
// limits, prescanned; and prescan's header summaries.
func parserInput(p *Parser, raw []byte) ([]byte, []entityHead) {
	b, _ := preprocess(raw)
	fields, body, _ := scanHeaders(b)
	if len(fields) == 0 {
		return b, nil
	}
	if kept, from, lw := p.cfg.limits.cutHeaders(fields, body); lw != nil {
		_ = kept
		b = dropHeaderFields(b, from, body)
	}
	scan := runPrescan(b, p.cfg.limits, parseMediaType)
	return scan.apply(), scan.headers()
}

// splitCorpus lists the messages of the shared corpus and of corpus-bounces.
func splitCorpus(t *testing.T) []string {
	t.Helper()
	dir := os.Getenv("MAILPIPE_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "corpus")
	}
	var files []string
	for _, d := range []string{dir, filepath.Join(filepath.Dir(filepath.Clean(dir)), "corpus-bounces")} {
		_ = filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() && strings.HasSuffix(path, ".eml") && !strings.Contains(e.Name(), ".expected") {
				files = append(files, path)
			}
			return nil
		})
	}
	if len(files) == 0 {
		if os.Getenv("MAILPIPE_TEST_REQUIRE_SERVICES") != "" {
			t.Fatalf("corpus not found at %s: set MAILPIPE_CORPUS", dir)
		}
		t.Skipf("corpus not found at %s: set MAILPIPE_CORPUS to the shared corpus directory", dir)
	}
	return files
}

// treeDiff describes the first difference between two enmime trees, "" when they are equal.
func treeDiff(a, b, aParent, bParent *enmime.Part) string {
	for ; a != nil || b != nil; a, b = a.NextSibling, b.NextSibling {
		if a == nil || b == nil {
			return fmt.Sprintf("one tree has an extra part (%v, %v)", a != nil, b != nil)
		}
		id := b.PartID
		if (a.Parent == aParent) != true || (b.Parent == bParent) != true {
			return id + ": wrong parent"
		}
		for _, f := range []struct {
			name string
			x, y any
		}{
			{"PartID", a.PartID, b.PartID},
			{"ContentType", a.ContentType, b.ContentType},
			{"Boundary", a.Boundary, b.Boundary},
			{"ContentID", a.ContentID, b.ContentID},
			{"Disposition", a.Disposition, b.Disposition},
			{"FileName", a.FileName, b.FileName},
			{"FileModDate", a.FileModDate, b.FileModDate},
			{"Charset", a.Charset, b.Charset},
			{"OrigCharset", a.OrigCharset, b.OrigCharset},
			{"Header", mimeFields(a.Header, aParent == nil), mimeFields(b.Header, bParent == nil)},
			{"Errors", errorList(a.Errors), errorList(b.Errors)},
			{"Content", string(a.Content), string(b.Content)},
			{"Epilogue", string(a.Epilogue), string(b.Epilogue)},
			{"ContentTypeParams", len(a.ContentTypeParams), len(b.ContentTypeParams)},
		} {
			if !reflect.DeepEqual(f.x, f.y) {
				return fmt.Sprintf("%s: %s %q, enmime %q", id, f.name, truncate([]byte(fmt.Sprint(f.x)), 300), truncate([]byte(fmt.Sprint(f.y)), 300))
			}
		}
		if d := treeDiff(a.FirstChild, b.FirstChild, a, b); d != "" {
			return d
		}
	}
	return ""
}

// mimeFields returns h, only the fields mimeHeader keeps when root is set: readParts drops
// the others from the message's own header.
func mimeFields(h textproto.MIMEHeader, root bool) textproto.MIMEHeader {
	if !root {
		return h
	}
	out := textproto.MIMEHeader{}
	for k, v := range h {
		if strings.HasPrefix(k, "Content-") || k == "Mime-Version" || k == depthMarker || k == SpoolHeader {
			out[k] = v
		}
	}
	return out
}

// errorList lists errs as strings. enmime reports the malformed parameters of a media type in
// map order, so those are sorted among themselves.
func errorList(errs []*enmime.Error) []string {
	out := make([]string, 0, len(errs))
	var at []int
	var params []string
	for i, e := range errs {
		out = append(out, e.Error())
		if strings.Contains(e.Detail, "has malformed parameter") {
			at = append(at, i)
			params = append(params, e.Error())
		}
	}
	sort.Strings(params)
	for k, i := range at {
		out[i] = params[k]
	}
	return out
}

// FuzzSummarizeHeaders checks summarizeHeaders against scanHeaders.
func FuzzSummarizeHeaders(f *testing.F) {
	for _, s := range splitSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(" lead\r\nContent-Type: text/plain;\r\n\tcharset=x\r\n: no\r\nbad name: x\r\nloose line\r\n \r\nContent-type: second\r\ncontent-transfer-encoding:\r\n  base64 \r\n\r\nbody"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fields, body, _ := scanHeaders(b)
		ct, _ := fieldSet(fields).first("Content-Type")
		cte, _ := fieldSet(fields).first("Content-Transfer-Encoding")
		want := headerSummary{fields: len(fields), body: body, ct: ct, cte: cte}
		got := summarizeHeaders(b)
		got.closed = false
		if got != want {
			t.Fatalf("summarizeHeaders = %+v, scanHeaders gives %+v", got, want)
		}
	})
}
