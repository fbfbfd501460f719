package mime

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// decodeWords decodes the RFC 2047 encoded words in a header value to UTF-8. Unlike
// mime.WordDecoder it joins the bytes of adjacent words in the same charset before converting
// them, so a multi-byte character split across two words (common in long Subjects) survives;
// it drops white space between adjacent words (RFC 2047 section 6.2), accepts RFC 2231 language
// suffixes (=?utf-8*en?Q?...?=) and leaves malformed words as they are. Raw 8-bit text outside
// words that is not UTF-8 is rescued; rescued reports that.
func decodeWords(s string) (out string, rescued bool) {
	if !strings.Contains(s, "=?") {
		return validUTF8(s)
	}
	var b strings.Builder
	var pendCharset string
	var pend []byte
	flush := func() {
		if pend == nil {
			return
		}
		text, ok := "", false
		if singleByteCharset(pendCharset) && utf8.Valid(pend) && !isASCII(pend) {
			// 8-bit UTF-8 written literally into a word labelled with a legacy charset (seen
			// from several mailers); valid multi-byte UTF-8 by accident is vanishingly rare in
			// single-byte text.
			text, ok = string(pend), true
		} else {
			text, ok = decodeCharset(pendCharset, pend)
		}
		if !ok || !utf8.ValidString(text) {
			text, _ = rescue(pend, false)
		}
		b.WriteString(text)
		pend, pendCharset = nil, ""
	}
	writeText := func(t string) {
		if t == "" {
			return
		}
		if pend != nil && strings.TrimLeft(t, " \t\r\n") == "" {
			return // white space between two encoded words is not displayed
		}
		flush()
		t, r := validUTF8(t)
		rescued = rescued || r
		b.WriteString(t)
	}
	for len(s) > 0 {
		i := strings.Index(s, "=?")
		if i < 0 {
			writeText(s)
			break
		}
		charset, data, n, ok := parseWord(s[i:])
		if !ok {
			writeText(s[:i+2])
			s = s[i+2:]
			continue
		}
		writeText(s[:i])
		s = s[i+n:]
		if pend != nil && !strings.EqualFold(pendCharset, charset) {
			flush()
		}
		if pend == nil {
			pend = []byte{}
		}
		pendCharset = charset
		pend = append(pend, data...)
	}
	flush()
	return b.String(), rescued
}

// parseWord parses one encoded word at the start of s ("=?charset?enc?text?=") and returns the
// charset (without an RFC 2231 language), the decoded bytes and the length consumed.
func parseWord(s string) (charset string, data []byte, n int, ok bool) {
	rest := s[2:]
	q1 := strings.IndexByte(rest, '?')
	if q1 <= 0 || q1 > 64 || len(rest) < q1+3 || rest[q1+2] != '?' {
		return "", nil, 0, false
	}
	charset = rest[:q1]
	if strings.ContainsAny(charset, " \t\r\n") {
		return "", nil, 0, false
	}
	if star := strings.IndexByte(charset, '*'); star >= 0 {
		charset = charset[:star]
	}
	enc := rest[q1+1]
	text := rest[q1+3:]
	end := strings.Index(text, "?=")
	if end < 0 {
		return "", nil, 0, false
	}
	text = text[:end]
	n = 2 + q1 + 3 + end + 2
	switch enc {
	case 'B', 'b':
		data, ok = decodeB(text)
	case 'Q', 'q':
		data, ok = decodeQ(text), true
	default:
		return "", nil, 0, false
	}
	return charset, data, n, ok
}

// decodeB decodes the base64 text of a B word, tolerating missing padding, white space and
// trailing garbage (it keeps the longest decodable prefix).
func decodeB(text string) ([]byte, bool) {
	text = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, text)
	text = strings.TrimRight(text, "=")
	if d, err := base64.RawStdEncoding.DecodeString(text); err == nil {
		return d, true
	}
	for n := len(text) - len(text)%4; n > 0; n -= 4 {
		if d, err := base64.RawStdEncoding.DecodeString(text[:n]); err == nil {
			return d, true
		}
	}
	return nil, false
}

// decodeQ decodes the text of a Q word: '_' is a space, =XX a byte; a stray '=' stays.
func decodeQ(text string) []byte {
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '_':
			out = append(out, ' ')
		case c == '=' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]):
			out = append(out, unhex(text[i+1])<<4|unhex(text[i+2]))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// singleByteCharset reports whether a charset label names a single-byte charset.
func singleByteCharset(label string) bool {
	l := strings.ToLower(label)
	for _, p := range []string{"iso-8859-", "iso8859-", "windows-125", "cp125", "us-ascii", "ascii", "latin", "koi8"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
