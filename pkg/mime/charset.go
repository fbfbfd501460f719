package mime

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/cention-sany/utf7"
	"github.com/gogs/chardet"
	"github.com/jhillyerd/enmime/v2"
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

// sevenBitCharset marks, in the charset our media-type hook gives enmime, a text part labelled
// with a 7-bit charset of the ISO-2022 family: "x-mailpipe-undeclared:iso-2022-jp". enmime finds
// no decoder for it and keeps the bytes; decodeSevenBitParts decodes them when they are 7-bit and
// treats the label as wrong when they are not: a 7-bit decoder turns every 8-bit byte into
// U+FFFD, and Japanese bounces often carry EUC-JP or UTF-8 under an ISO-2022-JP label. The prefix
// is undeclaredCharset's, so enmime's complaint about the unknown label is dropped with that one.
const sevenBitCharset = undeclaredCharset + ":"

// markCharset returns the charset label our media-type hook gives enmime for a text part that
// declares label (lower case): undeclaredCharset for none or us-ascii (mislabelled UTF-8 in
// practice), a sevenBitCharset mark for the ISO-2022 family, windows-1252 for ISO-8859-1 (as
// WHATWG and every mail client read it: its 0x80-0x9F are C1 controls nobody writes, and
// windows-1252 text labelled ISO-8859-1 is common), the standard name for Outlook's UTF-7
// labels, and label itself otherwise.
func markCharset(label string) string {
	switch label {
	case "", "us-ascii", "ascii", "us_ascii", "ansi_x3.4-1968", "iso646-us", "646", "us":
		return undeclaredCharset
	case "iso-2022-jp", "csiso2022jp", "iso-2022-jp-1", "iso-2022-jp-2", "iso-2022-jp-3", "iso-2022-kr", "csiso2022kr", "iso-2022-cn", "iso-2022-cn-ext":
		return sevenBitCharset + label
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "iso_8859-1:1987", "latin1", "l1", "cp819", "ibm819", "iso-ir-100", "csisolatin1":
		return "windows-1252"
	case "unicode-1-1-utf-7", "x-unicode-2-0-utf-7", "csunicode11utf7":
		return "utf-7" // unknown to enmime under these names
	}
	return label
}

// decodeSevenBitParts decodes the parts marked with sevenBitCharset, before the limits measure
// the content, so that the decoded size counts UTF-8 as it does for every other charset. A part
// whose bytes are not 7-bit is left to repairText as undeclared (kept when valid UTF-8, detected
// otherwise) with a charset_mismatch warning.
func decodeSevenBitParts(root *enmime.Part, w *warnings) {
	eachPart(root, func(p *enmime.Part) {
		label, ok := strings.CutPrefix(p.Charset, sevenBitCharset)
		if !ok {
			return
		}
		for _, c := range p.Content {
			if c >= 0x80 {
				p.Charset = ""
				w.add(Warning{Name: WarnCharsetMismatch, Detail: fmt.Sprintf("part %s (%s) declares the 7-bit charset %q but has 8-bit bytes; read as undeclared", p.PartID, p.ContentType, label)})
				return
			}
		}
		if s, ok := decodeCharset(label, p.Content); ok {
			p.Content, p.Charset = []byte(s), label
		} else {
			p.Charset = ""
			w.add(Warning{Name: WarnCharsetUnknown, Detail: fmt.Sprintf("part %s (%s): charset %q could not be decoded; read as undeclared", p.PartID, p.ContentType, label)})
		}
	})
}

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
