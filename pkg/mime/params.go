package mime

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// cleanMediaType repairs the three things in a Content-Type or Content-Disposition value that
// make enmime's media-type parser (Go's mime.ParseMediaType underneath) lose a parameter, most
// often the attachment's filename:
//
//   - raw 8-bit bytes that are not UTF-8 (`name="Fr\xf6sche.txt"`, Eudora): enmime replaces
//     them with U+FFFD; here they are decoded like raw 8-bit header text (see rescue);
//   - white space around '=' (`filename= "x.pdf"; size=1`, Outlook when it folds): the value
//     then swallows the following parameters;
//   - RFC 2231 values in a charset other than UTF-8 (`name*=iso-8859-1”Fr%F6sche.txt`): Go
//     drops them; here they are converted to UTF-8, continuations (name*0*, name*1*) joined
//     first so a multi-byte character split between two of them survives.
//
// Anything else is left to enmime's own repairs; a value with unbalanced quotes is returned
// unchanged apart from the 8-bit repair.
func cleanMediaType(v string) string {
	if !utf8.ValidString(v) {
		v, _ = validUTF8(v)
	}
	if !strings.Contains(v, "=") {
		return v
	}
	segs, ok := splitParams(v)
	if !ok || len(segs) < 2 {
		return v
	}
	changed := false
	params := make([]mediaParam, 0, len(segs)-1)
	for _, s := range segs[1:] {
		p := parseParam(s)
		changed = changed || p.spaced
		params = append(params, p)
	}
	params, conv := convertExtended(params)
	if !changed && !conv {
		return v
	}
	var b strings.Builder
	b.WriteString(strings.TrimSpace(segs[0]))
	for _, p := range params {
		b.WriteString("; ")
		if p.name == "" {
			b.WriteString(strings.TrimSpace(p.raw))
			continue
		}
		b.WriteString(p.name)
		b.WriteByte('=')
		b.WriteString(p.value)
	}
	return b.String()
}

// mediaParam is one parameter of a media-type value.
type mediaParam struct {
	raw    string // the segment as written
	name   string // lower-case name; "" when the segment has no '='
	value  string // the value as written (quoted or not), white space trimmed
	spaced bool   // white space around '=' was removed
}

func parseParam(s string) mediaParam {
	p := mediaParam{raw: s}
	eq := strings.IndexByte(s, '=')
	if eq <= 0 {
		return p
	}
	name := strings.TrimSpace(s[:eq])
	if name == "" || strings.ContainsAny(name, " \t\r\n\"") {
		return p
	}
	rest := s[eq+1:]
	p.name = strings.ToLower(name)
	p.value = strings.TrimSpace(rest)
	p.spaced = name != strings.TrimLeft(s[:eq], " \t\r\n") || (p.value != "" && p.value != strings.TrimRight(rest, " \t\r\n"))
	return p
}

// splitParams splits a media-type value at the semicolons outside quoted strings. ok is false
// when a quoted string is not closed.
func splitParams(v string) (segs []string, ok bool) {
	quoted := false
	start := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == ';':
			segs = append(segs, v[start:i])
			start = i + 1
		}
	}
	if quoted {
		return nil, false
	}
	segs = append(segs, v[start:])
	// A trailing ';' leaves an empty segment: drop it.
	if len(segs) > 1 && strings.TrimSpace(segs[len(segs)-1]) == "" {
		segs = segs[:len(segs)-1]
	}
	return segs, true
}

// extSegment is one piece of an RFC 2231 parameter: name*, name*N or name*N*.
type extSegment struct {
	index    int
	extended bool // percent-encoded (ends in '*')
	value    string
}

// convertExtended rewrites each RFC 2231 parameter whose charset is neither UTF-8 nor US-ASCII
// (nor empty) into one name*=utf-8”... parameter. conv reports whether anything changed.
func convertExtended(params []mediaParam) ([]mediaParam, bool) {
	groups := map[string][]extSegment{}
	for _, p := range params {
		base, seg, ok := extendedName(p.name)
		if !ok {
			continue
		}
		seg.value = unquote(p.value)
		groups[base] = append(groups[base], seg)
	}
	var convert []string
	for base, segs := range groups {
		sort.Slice(segs, func(i, j int) bool { return segs[i].index < segs[j].index })
		if segs[0].index != 0 || !segs[0].extended {
			continue
		}
		cs, _, _, ok := splitExtValue(segs[0].value)
		if !ok {
			continue
		}
		switch strings.ToLower(cs) {
		case "", "utf-8", "utf8", "us-ascii":
			continue
		}
		convert = append(convert, base)
	}
	if len(convert) == 0 {
		return params, false
	}
	sort.Strings(convert)
	out := make([]mediaParam, 0, len(params))
	done := map[string]bool{}
	for _, p := range params {
		base, _, ok := extendedName(p.name)
		if !ok || !contains(convert, base) {
			out = append(out, p)
			continue
		}
		if done[base] {
			continue
		}
		done[base] = true
		out = append(out, mediaParam{name: base + "*", value: "utf-8''" + pctEncode(decodeExtended(groups[base]))})
	}
	return out, true
}

// extendedName splits an RFC 2231 parameter name: "name*" (index 0, extended), "name*3"
// (index 3), "name*3*" (index 3, extended). ok is false for a plain name.
func extendedName(name string) (base string, seg extSegment, ok bool) {
	star := strings.IndexByte(name, '*')
	if star <= 0 {
		return "", seg, false
	}
	base, rest := name[:star], name[star+1:]
	if rest == "" {
		return base, extSegment{extended: true}, true
	}
	if strings.HasSuffix(rest, "*") {
		seg.extended = true
		rest = rest[:len(rest)-1]
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || n > 999 {
		return "", seg, false
	}
	seg.index = n
	return base, seg, true
}

// splitExtValue splits the first segment of an extended value: charset'language'text.
func splitExtValue(v string) (charset, lang, text string, ok bool) {
	parts := strings.SplitN(v, "'", 3)
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// decodeExtended joins the segments of one RFC 2231 parameter (sorted, the first extended) and
// converts the result to UTF-8; an unknown charset or undecodable bytes are rescued.
func decodeExtended(segs []extSegment) string {
	charset, _, first, _ := splitExtValue(segs[0].value)
	var raw []byte
	for i, s := range segs {
		v := s.value
		if i == 0 {
			v = first
		}
		if s.extended {
			raw = append(raw, pctDecode(v)...)
		} else {
			raw = append(raw, v...)
		}
	}
	if s, ok := decodeCharset(charset, raw); ok && utf8.ValidString(s) {
		return s
	}
	s, _ := rescue(raw, false)
	return s
}

func unquote(v string) string {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v
	}
	v = v[1 : len(v)-1]
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

func pctDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return out
}

// pctEncode percent-encodes every byte that is not an RFC 2231 attribute-char.
func pctEncode(s string) string {
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&15])
	}
	return b.String()
}

// quickMediaType parses the media-type values that need none of enmime's repairs, which is
// nearly all of them, as mediatype.ParseWithOptions does, without its five rewriting passes
// over the value: "type/subtype" (or a disposition type) and "; name=value" parameters whose names are tokens, whose
// values are tokens or quoted strings of printable ASCII without quotes or backslashes, no
// encoded word, no RFC 2231 name, no repeated name (nor a name mediatype would take for a
// repeat, see below). ok is false for anything else, which goes to mediatype.
func quickMediaType(v string) (mtype string, params map[string]string, ok bool) {
	if strings.Contains(v, "=?") {
		return "", nil, false // mediatype decodes encoded words in parameters
	}
	j := tokenEnd(v, 0, false)
	if j == 0 {
		return "", nil, false
	}
	if j < len(v) && v[j] == '/' { // a disposition ("attachment") has no subtype
		k := tokenEnd(v, j+1, false)
		if k == j+1 {
			return "", nil, false
		}
		j = k
	}
	mtype = strings.ToLower(v[:j])
	params = map[string]string{}
	pos := j
	for pos < len(v) {
		for pos < len(v) && v[pos] == ' ' {
			pos++
		}
		if pos == len(v) || v[pos] != ';' {
			return "", nil, false
		}
		pos++
		for pos < len(v) && v[pos] == ' ' {
			pos++
		}
		if pos == len(v) {
			if v[len(v)-1] == ' ' {
				return "", nil, false
			}
			break // a trailing ';'
		}
		start := pos
		end := tokenEnd(v, pos, true)
		if end == pos || end == len(v) || v[end] != '=' {
			return "", nil, false
		}
		// mediatype drops a parameter whose "name=" occurs anywhere before it (a value, or the
		// end of a longer name: "filename=" hides a later "name=").
		if strings.Contains(v[:start], v[start:end+1]) {
			return "", nil, false
		}
		name := strings.ToLower(v[start:end])
		if _, dup := params[name]; dup {
			return "", nil, false
		}
		pos = end + 1
		var value string
		if pos < len(v) && v[pos] == '"' {
			k := pos + 1
			for k < len(v) && v[k] != '"' {
				if c := v[k]; c < 0x20 || c > 0x7e || c == '\\' {
					return "", nil, false
				}
				k++
			}
			if k == len(v) {
				return "", nil, false
			}
			value, pos = v[pos+1:k], k+1
		} else {
			k := tokenEnd(v, pos, false)
			if k == pos {
				return "", nil, false
			}
			value, pos = v[pos:k], k
		}
		params[name] = value
	}
	return mtype, params, true
}

// tokenEnd returns the end of the RFC 2045 token starting at v[i] (i when there is none); with
// name set, '*' (RFC 2231) ends it too.
func tokenEnd(v string, i int, name bool) int {
	for ; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'+-.^_`{|}~", c) >= 0:
		case c == '*' && !name:
		default:
			return i
		}
	}
	return i
}
