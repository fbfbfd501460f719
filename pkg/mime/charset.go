package mime

import (
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/cention-sany/utf7"
	"github.com/gogs/chardet"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
)

// undeclaredCharset is the charset our media-type hook gives enmime for a text part that declares
// none (or us-ascii). enmime, with character detection disabled, then fails to find a decoder
// for it and keeps the bytes as they are; we decide afterwards (see repairText). This is how the
// policy "detect only when nothing is declared and the bytes are not UTF-8" is built on enmime,
// which otherwise runs its detector on every undeclared part, valid UTF-8 or not.
const undeclaredCharset = "x-mailpipe-undeclared"

// minDetectConfidence is the chardet confidence (0-100) below which a detected charset is not
// trusted and windows-1252 is used instead.
const minDetectConfidence = 50

// lookupEncoding finds a decoder for a charset label (WHATWG labels first, then IANA names).
// It returns nil for UTF-8 (no conversion needed) and ok=false for unknown labels.
func lookupEncoding(label string) (enc encoding.Encoding, ok bool) {
	label = strings.ToLower(strings.Trim(strings.TrimSpace(label), `"'`))
	if label == "" {
		return nil, false
	}
	switch label {
	case "utf-8", "utf8":
		return nil, true
	case "gb-18030":
		label = "gb18030"
	case "utf-7", "utf7", "unicode-1-1-utf-7", "x-unicode-2-0-utf-7", "csunicode11utf7":
		// Not in the WHATWG or IANA indexes of x/text; Outlook still labels encoded words
		// with it. enmime decodes UTF-7 bodies with the same package.
		return utf7.UTF7, true
	}
	if e, err := htmlindex.Get(label); err == nil {
		if e == encoding.Nop {
			return nil, false
		}
		return e, true
	}
	if e, err := ianaindex.MIME.Encoding(label); err == nil && e != nil {
		return e, true
	}
	if e, err := ianaindex.IANA.Encoding(label); err == nil && e != nil {
		return e, true
	}
	return nil, false
}

// decodeCharset converts b from the named charset to UTF-8. ok is false when the charset is
// unknown; the result is then the bytes as they are.
func decodeCharset(label string, b []byte) (string, bool) {
	enc, ok := lookupEncoding(label)
	if !ok {
		return string(b), false
	}
	if enc == nil {
		return string(b), true
	}
	out, err := enc.NewDecoder().Bytes(b)
	if err != nil {
		return string(b), false
	}
	return string(out), true
}

// rescue turns bytes that are not valid UTF-8 into UTF-8 and says how. Mostly-UTF-8 input keeps
// its valid runes and gets U+FFFD for the broken bytes; otherwise the charset is detected, and
// windows-1252 (which maps every byte, and is what "Latin-1" means in practice) is the fallback.
func rescue(b []byte, html bool) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	if mostlyUTF8(b) {
		return strings.ToValidUTF8(string(b), "\uFFFD"), "kept as UTF-8 with invalid bytes replaced"
	}
	if html {
		if cs := metaCharset(b); cs != "" {
			if s, ok := decodeCharset(cs, b); ok && utf8.ValidString(s) {
				return s, "decoded as " + cs + " (HTML meta charset)"
			}
		}
	}
	det := chardet.NewTextDetector()
	if html {
		det = chardet.NewHtmlDetector()
	}
	if r, ok := detect(det, b); ok && r.Confidence >= minDetectConfidence && !strings.EqualFold(r.Charset, "utf-8") {
		if s, ok := decodeCharset(r.Charset, b); ok && utf8.ValidString(s) {
			return s, "decoded as " + strings.ToLower(r.Charset) + " (detected)"
		}
	}
	s, _ := charmap.Windows1252.NewDecoder().Bytes(b)
	return string(s), "decoded as windows-1252 (fallback)"
}

// detect returns chardet's best guess. chardet's own DetectBest lets the first of several
// equally confident recognizers win, and they run concurrently; ties are broken here by name so
// the same bytes always give the same text.
func detect(det *chardet.Detector, b []byte) (chardet.Result, bool) {
	all, err := det.DetectAll(b)
	if err != nil || len(all) == 0 {
		return chardet.Result{}, false
	}
	best := all[0]
	for _, r := range all[1:] {
		if r.Confidence > best.Confidence || r.Confidence == best.Confidence && r.Charset < best.Charset {
			best = r
		}
	}
	return best, true
}

// mostlyUTF8 reports whether b has more valid multi-byte sequences than invalid bytes, the mark
// of UTF-8 text with a few corrupt bytes rather than text in a legacy charset.
func mostlyUTF8(b []byte) bool {
	var valid, invalid int
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			invalid++
		} else {
			valid++
		}
		i += n
	}
	return valid > 2*invalid
}

var metaCharsetRE = regexp.MustCompile(`(?i)<meta[^>]{0,200}?charset\s*=\s*["']?\s*([a-z0-9_:.+-]{1,40})`)

// metaCharset returns the charset named by an HTML <meta> tag near the top of b, or "".
func metaCharset(b []byte) string {
	if len(b) > 4096 {
		b = b[:4096]
	}
	if m := metaCharsetRE.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

// validUTF8 returns s unchanged when it is valid UTF-8 and a rescued copy otherwise; changed
// reports the latter.
func validUTF8(s string) (string, bool) {
	if utf8.ValidString(s) {
		return s, false
	}
	out, _ := rescue([]byte(s), false)
	return out, true
}
