package mime_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mailpipe/mailpipe/pkg/mime"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current output (and delete goldens without a corpus file)")

// goldenDir holds one golden file per corpus message: testdata/golden/<category>/<file>.json
// for corpus/<category>/<file>.eml, and testdata/golden/corpus-bounces/<file>.json for
// corpus-bounces/<file>.eml (a folder name the corpus itself does not use for a category, so
// the two never collide).
const goldenDir = "testdata/golden"

// bouncesFolder is the golden subfolder of the sibling corpus-bounces folder.
const bouncesFolder = "corpus-bounces"

// Abbreviation of long values. Bodies and header values longer than longLimit keep a prefix of
// prefixLen bytes plus the length and sha256 of the whole, so any change anywhere still fails.
// With these, the 908 golden files take about 3.7 MB.
const (
	longLimit = 8 << 10
	prefixLen = 4 << 10
)

// goldenCase is one corpus message and its golden file.
type goldenCase struct {
	src    string // path of the .eml
	rel    string // source path shown in the golden: "charsets/x.eml", "corpus-bounces/y.eml"
	golden string // path of the golden file
}

// goldenCases maps every message of the corpus and of corpus-bounces to its golden file.
func goldenCases(t *testing.T) []goldenCase {
	t.Helper()
	dir := filepath.Clean(corpusDir(t))
	bounces := filepath.Join(filepath.Dir(dir), bouncesFolder)
	var cases []goldenCase
	for _, f := range corpusFiles(t, true) {
		c := goldenCase{src: f}
		if r, err := filepath.Rel(dir, f); err == nil && !strings.HasPrefix(r, "..") {
			c.rel = filepath.ToSlash(r)
			if strings.HasPrefix(c.rel, bouncesFolder+"/") {
				t.Fatalf("corpus category %q collides with the corpus-bounces golden folder", bouncesFolder)
			}
		} else if r, err := filepath.Rel(bounces, f); err == nil && !strings.HasPrefix(r, "..") {
			c.rel = bouncesFolder + "/" + filepath.ToSlash(r)
		} else {
			t.Fatalf("corpus file %s is in neither %s nor %s", f, dir, bounces)
		}
		c.golden = filepath.Join(goldenDir, filepath.FromSlash(strings.TrimSuffix(c.rel, ".eml")+".json"))
		cases = append(cases, c)
	}
	return cases
}

// TestGolden parses every message of the shared corpus (and of corpus-bounces) and compares the
// normalized JSON of the result with its golden file. It fails on any difference, on a message
// without a golden file and on a golden file without a message. Regenerate with
// `go test ./mime -run Golden -update` and review the diff (`git diff --stat testdata`).
func TestGolden(t *testing.T) {
	checkGoldenCoversMessage(t)
	cases := goldenCases(t)
	p, err := mime.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, c := range cases {
		want[c.golden] = true
	}
	t.Run("orphans", func(t *testing.T) {
		err := filepath.WalkDir(goldenDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && path == goldenDir {
					return nil
				}
				return err
			}
			if d.IsDir() || want[path] {
				return nil
			}
			if *update {
				return os.Remove(path)
			}
			t.Errorf("golden file %s has no corpus file (run with -update to delete it)", path)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.rel, ".eml"), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(c.src)
			if err != nil {
				t.Fatal(err)
			}
			m, perr := p.Parse(raw)
			got := goldenJSON(t, c, m, perr)
			if *update {
				if old, err := os.ReadFile(c.golden); err == nil && bytes.Equal(old, got) {
					return
				}
				if err := os.MkdirAll(filepath.Dir(c.golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(c.golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantJSON, err := os.ReadFile(c.golden)
			if err != nil {
				t.Fatalf("reading golden file (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, wantJSON) {
				t.Errorf("output for %s differs from %s (run with -update and review the diff):\n%s", c.rel, c.golden, lineDiff(string(wantJSON), string(got)))
			}
		})
	}
}

// goldenMessage is the golden form of a mime.Message: every field, in an order made for review
// (status and warnings first, the long header list last), with attachments as metadata (their
// bytes are never serialized) and long strings abbreviated.
type goldenMessage struct {
	Source      string             `json:"source,omitempty"` // top level only
	Status      mime.Status        `json:"parse_status"`
	Warnings    []mime.Warning     `json:"warnings"`
	MessageID   string             `json:"message_id"`
	InReplyTo   string             `json:"in_reply_to"`
	References  []string           `json:"references"`
	From        *mime.Address      `json:"from"`
	Sender      *mime.Address      `json:"sender"`
	ReplyTo     []mime.Address     `json:"reply_to"`
	To          []mime.Address     `json:"to"`
	Cc          []mime.Address     `json:"cc"`
	Subject     string             `json:"subject"`
	Date        *time.Time         `json:"date"`
	DateRaw     string             `json:"date_raw"`
	Attachments []goldenAttachment `json:"attachments"`
	Stats       mime.Stats         `json:"stats"`
	Text        string             `json:"text"`
	TextWhole   *wholeValue        `json:"text_whole,omitempty"`
	HTML        string             `json:"html"`
	HTMLWhole   *wholeValue        `json:"html_whole,omitempty"`
	Headers     []mime.Header      `json:"headers"`
}

// goldenAttachment is the golden form of a mime.Attachment: its metadata (never its bytes) and
// the nested message it carries, in golden form too.
type goldenAttachment struct {
	Filename    string         `json:"filename"`
	ContentType string         `json:"content_type"`
	SniffedType string         `json:"sniffed_type"`
	Size        int64          `json:"size"`
	SHA256      string         `json:"sha256"`
	ContentID   string         `json:"content_id"`
	Inline      bool           `json:"inline"`
	Message     *goldenMessage `json:"message,omitempty"`
}

// wholeValue describes a value whose golden copy is only a prefix.
type wholeValue struct {
	Bytes  int    `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// checkGoldenCoversMessage fails when mime.Message or mime.Attachment gains (or loses) a JSON
// field, so that a new output field is added to the golden form rather than silently left out of
// every golden file.
func checkGoldenCoversMessage(t *testing.T) {
	t.Helper()
	for _, c := range []struct {
		v      any
		golden any
		extra  []string // fields only the golden form has
	}{
		{&mime.Message{}, &goldenMessage{}, []string{"source", "text_whole", "html_whole"}},
		{&mime.Attachment{Message: &mime.Message{}}, &goldenAttachment{Message: &goldenMessage{}}, nil},
	} {
		got, want := jsonFields(t, c.v), jsonFields(t, c.golden)
		want = slices.DeleteFunc(want, func(f string) bool { return slices.Contains(c.extra, f) })
		if !slices.Equal(got, want) {
			t.Fatalf("%T has JSON fields %v, its golden form %v: update the golden form", c.v, got, want)
		}
	}
}

// jsonFields returns the sorted JSON field names of v with every field set.
func jsonFields(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range fields {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// goldenJSON renders the result of parsing one corpus file deterministically: indented, HTML
// characters unescaped, long values abbreviated.
func goldenJSON(t *testing.T, c goldenCase, m *mime.Message, perr error) []byte {
	t.Helper()
	var v any
	if perr != nil {
		// Only the error: there is no record.
		v = struct {
			Source string `json:"source"`
			Error  string `json:"error"`
		}{c.rel, perr.Error()}
	} else {
		g := toGolden(m)
		g.Source = c.rel
		v = &g
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// toGolden converts m, and the messages nested in its attachments, to the golden form.
func toGolden(m *mime.Message) goldenMessage {
	g := goldenMessage{
		Status: m.Status, Warnings: m.Warnings,
		MessageID: m.MessageID, InReplyTo: m.InReplyTo, References: m.References,
		From: m.From, Sender: m.Sender, ReplyTo: m.ReplyTo, To: m.To, Cc: m.Cc,
		Subject: m.Subject, Date: m.Date, DateRaw: m.DateRaw,
		Stats: m.Stats,
	}
	g.Text, g.TextWhole = abbreviate(m.Text)
	g.HTML, g.HTMLWhole = abbreviate(m.HTML)
	for _, a := range m.Attachments {
		ga := goldenAttachment{
			Filename: a.Filename, ContentType: a.ContentType, SniffedType: a.SniffedType,
			Size: a.Size, SHA256: a.SHA256, ContentID: a.ContentID, Inline: a.Inline,
		}
		if a.Message != nil {
			n := toGolden(a.Message)
			ga.Message = &n
		}
		g.Attachments = append(g.Attachments, ga)
	}
	for _, h := range m.Headers {
		if v, whole := abbreviate(h.Value); whole != nil {
			h.Value = fmt.Sprintf("%s…[abbreviated: %d bytes, sha256 %s]", v, whole.Bytes, whole.SHA256)
		}
		g.Headers = append(g.Headers, h)
	}
	return g
}

// abbreviate returns s unchanged when it is at most longLimit bytes, and otherwise its first
// prefixLen bytes (cut at a rune boundary) with the length and sha256 of all of s.
func abbreviate(s string) (string, *wholeValue) {
	if len(s) <= longLimit {
		return s, nil
	}
	n := prefixLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	head := s[:n]
	sum := sha256.Sum256([]byte(s))
	return head, &wholeValue{Bytes: len(s), SHA256: hex.EncodeToString(sum[:])}
}

// lineDiff shows the first lines that differ, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want: %s\n  got:  %s\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}
