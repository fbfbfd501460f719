package mime

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gogs/chardet"
)

// field is one header field of a header block.
type field struct {
	// name is the field name as written, surrounding white space removed.
	name string
	// raw is the unfolded value, not decoded, surrounding white space removed.
	raw string
	// off is the offset of the line that starts the field within the scanned block.
	off int
}

// maxLeadingJunkLines bounds how many lines before the first header field are skipped (an mbox
// From_ line, a BSMTP wrapper); more than that and the input is not taken for a message.
const maxLeadingJunkLines = 8

// preprocess repairs what would stop enmime before the first header: a byte-order mark, classic
// Mac (CR-only) line endings, leading white space, an mbox From_ line and other non-header lines
// in front of the header block, and a missing close delimiter at the end (closeFinalDelimiter).
// It copies b only when it changes line endings or adds the close delimiter.
func preprocess(b []byte) ([]byte, []Warning) {
	var warns []Warning
	if bytes.HasPrefix(b, []byte("\xef\xbb\xbf")) {
		b = b[3:]
		warns = append(warns, Warning{Name: WarnByteOrderMark, Detail: "message starts with a UTF-8 byte-order mark"})
	}
	if bytes.IndexByte(b, '\n') < 0 && bytes.IndexByte(b, '\r') >= 0 {
		b = bytes.ReplaceAll(b, []byte{'\r'}, []byte{'\n'})
		warns = append(warns, Warning{Name: WarnLineEndings, Detail: "message uses CR-only line endings; read as LF"})
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) != len(b) {
		warns = append(warns, Warning{Name: WarnLeadingJunk, Detail: fmt.Sprintf("skipped %d bytes of white space before the header", len(b)-len(t))})
		b = t
	}
	var skipped []string
	rest := b
	for range maxLeadingJunkLines {
		line, next := cutLine(rest)
		if len(line) == 0 || isFieldLine(line) {
			break
		}
		skipped = append(skipped, string(truncate(line, 60)))
		rest = next
		if len(rest) == 0 {
			break
		}
	}
	if len(skipped) > 0 && len(rest) > 0 {
		if line, _ := cutLine(rest); isFieldLine(line) {
			name := WarnLeadingJunk
			if len(skipped) == 1 && strings.HasPrefix(skipped[0], "From ") {
				name = WarnMboxFromLine
			}
			warns = append(warns, Warning{Name: name, Detail: fmt.Sprintf("skipped %d line(s) before the header: %q", len(skipped), skipped)})
			b = bsmtpEnd(rest, skipped)
		}
	}
	if fixed, w := closeFinalDelimiter(b); w != nil {
		b = fixed
		warns = append(warns, *w)
	}
	return b, warns
}

// cutLine returns the first line of b without its line ending, and the rest after it.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.TrimSuffix(b, []byte{'\r'}), nil
	}
	return bytes.TrimSuffix(b[:i], []byte{'\r'}), b[i+1:]
}

// isFieldLine reports whether line starts a header field in the strict RFC 5322 sense: a name
// of printable ASCII other than ':' (optionally followed by blanks) and a colon.
func isFieldLine(line []byte) bool {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !fieldNameByte(c) {
			return false
		}
	}
	return true
}

// fieldNameByte reports whether c may appear in a header field name (RFC 5322: 33-126 but ':').
func fieldNameByte(c byte) bool { return c >= 33 && c <= 126 && c != ':' }

// scanHeaders reads the header block at the start of b with the same rules as enmime's
// ReadHeader, so both agree on where the body starts: a line starting with a blank continues the
// previous field; a line with a colon starts a field (a blank before the colon is dropped, a
// name with invalid bytes drops the line); a line without a colon continues the previous field
// (and is warned about); an empty line or the end of b ends the block. body is the offset just
// after the empty line (len(b) when there is none).
func scanHeaders(b []byte) (fields []field, body int, warns []Warning) {
	// The block is copied into one string, and names and values are substrings of it: a
	// message's header has dozens of fields, and a copy of each was a tenth of the bytes the
	// parser allocated on bounces.
	block := string(b[:headerEnd(b)])
	fields = make([]field, 0, strings.Count(block, "\n")+1) // at most one per line
	// Continuation pieces of the last field are collected and joined once: a folded header of
	// thousands of lines (seen: a 135 KB To) must not cost quadratic copying.
	var pieces []string
	finish := func() {
		if n := len(fields); n > 0 && len(pieces) > 0 {
			fields[n-1].raw = strings.Join(append([]string{fields[n-1].raw}, pieces...), " ")
			fields[n-1].raw = strings.TrimSpace(fields[n-1].raw)
		}
		pieces = pieces[:0]
	}
	pos := 0
	for pos < len(block) {
		line, next := cutLineString(block, pos)
		lineOff := pos
		pos = next
		if len(line) == 0 {
			finish()
			return fields, pos, warns
		}
		if line[0] == ' ' || line[0] == '\t' {
			if t := strings.TrimSpace(line); t != "" && len(fields) > 0 {
				pieces = append(pieces, t)
			}
			continue
		}
		colon := strings.IndexByte(line, ':')
		switch {
		case colon == 0:
			warns = append(warns, Warning{Name: WarnHeaderMalformed, Detail: fmt.Sprintf("header line %q starts with a colon; dropped", truncate([]byte(line), 60))})
		case colon > 0:
			name := strings.TrimSpace(line[:colon])
			if !validFieldName(name) {
				warns = append(warns, Warning{Name: WarnHeaderMalformed, Detail: fmt.Sprintf("header name %q has invalid characters; line dropped", truncate([]byte(name), 60))})
				continue
			}
			finish()
			fields = append(fields, field{name: name, raw: strings.TrimSpace(line[colon+1:]), off: lineOff})
		default:
			if t := strings.TrimSpace(line); len(fields) > 0 {
				pieces = append(pieces, t)
			}
			warns = append(warns, Warning{Name: WarnHeaderMalformed, Detail: fmt.Sprintf("header line %q has no colon; read as a continuation", truncate([]byte(line), 60))})
		}
	}
	finish()
	return fields, len(b), warns
}

// headerEnd returns the offset just after the empty line that ends the header block at the
// start of b, or len(b) when there is none: the body offset scanHeaders returns.
func headerEnd(b []byte) int {
	pos := 0
	for pos < len(b) {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			return len(b)
		}
		if i == 0 || i == 1 && b[pos] == '\r' {
			return pos + i + 1
		}
		pos += i + 1
	}
	return len(b)
}

// cutLineString is cutLine over a string: the line of s starting at pos without its line
// ending, and the offset of the next line (len(s) for the last).
func cutLineString(s string, pos int) (line string, next int) {
	i := strings.IndexByte(s[pos:], '\n')
	if i < 0 {
		return strings.TrimSuffix(s[pos:], "\r"), len(s)
	}
	return strings.TrimSuffix(s[pos:pos+i], "\r"), pos + i + 1
}

// validFieldName mirrors enmime: printable ASCII but ':', inner spaces tolerated.
func validFieldName[T string | []byte](name T) bool {
	if len(name) == 0 {
		return false
	}
	for i := range len(name) {
		if c := name[i]; c != ' ' && !fieldNameByte(c) {
			return false
		}
	}
	return true
}

// headerSummary is what prescan and split need of a MIME entity's header block, as scanHeaders
// reads it.
type headerSummary struct {
	fields int    // how many fields scanHeaders finds
	body   int    // the offset scanHeaders returns for the body
	ct     string // the raw value of the first Content-Type field, "" when there is none
	cte    string // the raw value of the first Content-Transfer-Encoding field
	closed bool   // the block ended at an empty line, not at the end of b
}

// summarizeHeaders reads the header block at the start of b with scanHeaders' rules, but keeps
// only the two fields MIME structure depends on: every part is read this way by prescan and
// split, and scanHeaders' copy of every field of every part was a tenth of the parser's
// allocations.
func summarizeHeaders(b []byte) headerSummary {
	var h headerSummary
	var cur *string // the value the last field feeds: h.ct, h.cte or none
	var pieces []string
	finish := func() {
		if cur != nil && len(pieces) > 0 {
			*cur = strings.TrimSpace(strings.Join(append([]string{*cur}, pieces...), " "))
		}
		cur, pieces = nil, pieces[:0]
	}
	seenCT, seenCTE := false, false
	pos := 0
	for pos < len(b) {
		line, rest := cutLine(b[pos:])
		if rest == nil {
			pos = len(b)
		} else {
			pos = len(b) - len(rest)
		}
		if len(line) == 0 {
			finish()
			h.body, h.closed = pos, true
			return h
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur != nil {
				if t := bytes.TrimSpace(line); len(t) > 0 {
					pieces = append(pieces, string(t))
				}
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		switch {
		case colon == 0:
		case colon > 0:
			name := bytes.TrimSpace(line[:colon])
			if !validFieldName(name) {
				continue
			}
			finish()
			h.fields++
			switch {
			case !seenCT && bytes.EqualFold(name, []byte("Content-Type")):
				seenCT, h.ct, cur = true, string(bytes.TrimSpace(line[colon+1:])), &h.ct
			case !seenCTE && bytes.EqualFold(name, []byte("Content-Transfer-Encoding")):
				seenCTE, h.cte, cur = true, string(bytes.TrimSpace(line[colon+1:])), &h.cte
			}
		default:
			if cur != nil {
				pieces = append(pieces, string(bytes.TrimSpace(line)))
			}
		}
	}
	finish()
	h.body = len(b)
	return h
}

func truncate(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return append(b[:n:n], "..."...)
}

// fieldSet gives case-insensitive access to the fields of a header block.
type fieldSet []field

// first returns the raw value of the first field called name, and whether there is one.
func (fs fieldSet) first(name string) (string, bool) {
	for _, f := range fs {
		if strings.EqualFold(f.name, name) {
			return f.raw, true
		}
	}
	return "", false
}

// all returns the raw values of every field called name, in order.
func (fs fieldSet) all(name string) []string {
	var out []string
	for _, f := range fs {
		if strings.EqualFold(f.name, name) {
			out = append(out, f.raw)
		}
	}
	return out
}

// dropHeaderFields returns a copy of b without the header lines from offset from up to the
// blank line that ends the header block (body is the offset just after it, as scanHeaders
// returns), so that enmime reads the same fields the limits kept.
func dropHeaderFields(b []byte, from, body int) []byte {
	end := body
	if body < len(b) || (body > 0 && b[body-1] == '\n') {
		// body follows the blank line: keep that line, it separates header and body.
		end = body - 1
		if end > 0 && b[end-1] == '\r' {
			end--
		}
	}
	if from >= end {
		return b
	}
	out := make([]byte, 0, len(b)-(end-from))
	return append(append(out, b[:from]...), b[end:]...)
}

// decodeRaw8bit converts the raw 8-bit text of the header fields that are not UTF-8 (outside
// encoded words, which carry their own charset) to UTF-8 with one charset for the whole header
// block: the charset the top-level Content-Type declares when it reads every such field
// cleanly, else the charset detected over all of them together. Mailers that write raw 8-bit
// headers write them in the charset of the body, and one short display name alone is too
// little for a detector (a GB2312 From name came out as Latin-1 mojibake while the Subject
// beside it was read right). Fields it cannot settle (mostly UTF-8, or no charset found) are
// left to decodeWords, which rescues each on its own. The warning names the fields converted.
func (fs fieldSet) decodeRaw8bit() (fieldSet, []Warning) {
	var idx []int
	var sample []byte
	for i, f := range fs {
		if utf8.ValidString(f.raw) || mostlyUTF8([]byte(f.raw)) {
			continue
		}
		var text []byte
		for _, seg := range splitWords(f.raw) {
			if !seg.word {
				text = append(append(text, seg.text...), ' ')
			}
		}
		if utf8.Valid(text) {
			continue // the 8-bit bytes are inside encoded words: decodeWords reads them
		}
		idx = append(idx, i)
		sample = append(sample, text...)
	}
	if len(idx) == 0 {
		return fs, nil
	}
	cs, how := fs.headerCharset(sample)
	if cs == "" {
		return fs, nil
	}
	out := slices.Clone(fs)
	names := make([]string, 0, len(idx))
	for _, i := range idx {
		var b strings.Builder
		for _, seg := range splitWords(out[i].raw) {
			if t, ok := decodeCharset(cs, []byte(seg.text)); ok && !seg.word && !utf8.ValidString(seg.text) {
				b.WriteString(t)
				continue
			}
			b.WriteString(seg.text)
		}
		out[i].raw = b.String()
		if !contains(names, out[i].name) {
			names = append(names, out[i].name)
		}
	}
	return out, []Warning{{
		Name:   WarnHeaderNotUTF8,
		Detail: fmt.Sprintf("raw 8-bit bytes that are not UTF-8 in %s; read as %s (%s)", strings.Join(names, ", "), cs, how),
	}}
}

// headerCharset chooses the charset of raw 8-bit header text (see decodeRaw8bit); "" when none
// reads sample cleanly.
func (fs fieldSet) headerCharset(sample []byte) (charset, how string) {
	clean := func(cs string) bool {
		s, ok := decodeCharset(cs, sample)
		return ok && utf8.ValidString(s) && !strings.ContainsRune(s, utf8.RuneError)
	}
	if ct, ok := fs.first("Content-Type"); ok {
		if _, params, _, err := parseMediaType(ct); err == nil {
			switch cs := strings.ToLower(strings.TrimSpace(params["charset"])); cs {
			case "", undeclaredCharset, "utf-8", "utf8":
			default:
				if clean(cs) {
					return cs, "the charset the message declares"
				}
			}
		}
	}
	if r, ok := detect(chardet.NewTextDetector(), sample); ok && r.Confidence >= minDetectConfidence && !strings.EqualFold(r.Charset, "utf-8") {
		if cs := strings.ToLower(r.Charset); clean(cs) {
			return cs, "detected"
		}
	}
	return "", ""
}

// wordSegment is a piece of a header value: an RFC 2047 encoded word as written, or the text
// between words.
type wordSegment struct {
	text string
	word bool
}

// splitWords splits a raw header value into encoded words and the text around them, with the
// word syntax decodeWords accepts.
func splitWords(s string) []wordSegment {
	var out []wordSegment
	text := 0
	for i := 0; i < len(s); {
		j := strings.Index(s[i:], "=?")
		if j < 0 {
			break
		}
		at := i + j
		if _, _, n, ok := parseWord(s[at:]); ok {
			if at > text {
				out = append(out, wordSegment{text: s[text:at]})
			}
			out = append(out, wordSegment{text: s[at : at+n], word: true})
			i = at + n
			text = i
			continue
		}
		i = at + 2
	}
	if text < len(s) {
		out = append(out, wordSegment{text: s[text:]})
	}
	return out
}
