package mime_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mailpipe/mailpipe/pkg/mime"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.json from the current output")

// goldenFiles is the corpus subset with golden output: a few files per category, small enough
// to review in a diff, chosen for what they exercise.
var goldenFiles = []string{
	"attachments/mail-gem--attachment_emails-attachment_content_disposition.eml",
	"attachments/php-mmp--m0011.eml",
	"attachments/stalwart--legacy-006.eml",
	"autoreplies/sisimai--maildir-bsd-rfc3834-01.eml",
	"bounces/enmime--dsn-testdata-simple_dsn_with_html.eml",
	"bounces/sisimai--maildir-bsd-lhost-opensmtpd-03.eml",
	"bounces/sisimai--maildir-err-make-test-24.eml",     // local-only From (MAILER-DAEMON)
	"bounces/sisimai--maildir-bsd-lhost-outlook-01.eml", // charset unicode-1-1-utf-7
	"calendar/php-mmp--m0020.eml",
	"charsets/mail-gem--multi_charset-japanese.eml",
	"charsets/php-mmp--issue116.eml",
	"charsets/spamassassin--nice-cjk-big5-base64.1.eml",
	"charsets/spamassassin--nice-cjk-gb2312.2.eml",
	"charsets/spamassassin--nice-cjk-iso-2022-jp.1.eml",
	"charsets/enmime--parts-chardet-success-iso-8859-1.eml", // no charset, not UTF-8: detected
	"dkim/postal--dkim_signing-email1.eml",
	"forwarded/flanker--enclosed-broken-body.eml",
	"forwarded/flanker--enclosed-broken.eml", // leading white space before the header
	"headers/flanker--multi-received-headers.eml",
	"headers/mail-gem--error_emails-header_fields_with_empty_values.eml",
	"headers/mail-gem--rfc6532-utf8_headers.eml",
	"headers/spamassassin--nice-authres.eml",
	"headers/spamassassin--nice-spf4-received-spf-nofold.eml",
	"headers/stalwart--legacy-009.eml", // 8-bit bytes inside encoded words
	"html/enmime--mail-non-mime-html.eml",
	"html/inbucket--nonmime-html-inlined.eml",
	"inline-images/enmime--mail-html-mime-bad-unknown-charset-inline.eml",
	"inline-images/mailpit--inline-attachment.eml",
	"inline-images/php-mmp--m0129.eml",
	"lists/spamassassin--welcomelists-amazon_co_uk_ship.eml",
	"malformed/enmime--low-quality-incorrect-charset.eml",
	"malformed/enmime--low-quality-unk-charset-html-only.eml",
	"malformed/enmime--low-quality-unk-charset-part.eml",
	"malformed/enmime--mail-multipart-wo-boundary.eml",
	"malformed/enmime--parts-ctype-invalid-characters.eml",
	"malformed/mail--error_emails--bad_subject.eml",
	"malformed/sisimai--maildir-mac-lhost-gmail-01.eml", // CR-only line endings
	"malformed/stalwart--malformed-019.eml",
	"mbox/mimekit--mbox-unmunged.mbox.eml", // BOM + From_ line
	"multipart/enmime--mail--unknown-part-type.eml",
	"multipart/flanker--multipart.eml",
	"multipart/mimekit--messages-body.7.eml",
	"multipart/stalwart--legacy-030.eml",
	"plain/mail--plain_emails--raw_email5.eml",
	"plain/mail-gem--plain_emails-raw_email_trailing_dot.eml",
	"plain/mail-gem--rfc2822-example10.eml", // comments everywhere in addresses
	"plain/sisimai--maildir-not-is-not-bounce-02.eml",
	"reports/sisimai--maildir-bsd-arf-24.eml",
	"smime/zbateson--m4002.eml",
	"spam/spamassassin--spam-002.eml",
	"tnef/mimekit--tnef-ukr.eml",
}

// TestGolden parses the golden subset of the corpus and compares the normalized JSON of each
// Message with testdata/golden/<name>.json. Regenerate with `go test ./mime -run Golden -update`
// and review the diff.
func TestGolden(t *testing.T) {
	dir := corpusDir(t)
	p, err := mime.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range goldenFiles {
		name := strings.TrimSuffix(filepath.Base(rel), ".eml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			m, err := p.Parse(raw)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := normalizedJSON(t, m)
			path := filepath.Join("testdata", "golden", name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading golden file (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run with -update and review the diff):\n%s", path, lineDiff(string(want), string(got)))
			}
		})
	}
}

// bodyLimit is the length above which text and HTML are abbreviated in golden files.
const bodyLimit = 3000

// normalizedJSON renders m deterministically for a golden file: indented, with long bodies
// abbreviated to a head plus their length and digest (a change anywhere still shows).
func normalizedJSON(t *testing.T, m *mime.Message) []byte {
	t.Helper()
	c := *m
	c.Text = abbreviate(c.Text)
	c.HTML = abbreviate(c.HTML)
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func abbreviate(s string) string {
	if len(s) <= bodyLimit {
		return s
	}
	head := s[:bodyLimit]
	for !utf8.ValidString(head) {
		head = head[:len(head)-1]
	}
	sum := sha256.Sum256([]byte(s))
	return fmt.Sprintf("%s…[%d bytes, sha256 %s]", head, len(s), hex.EncodeToString(sum[:8]))
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
