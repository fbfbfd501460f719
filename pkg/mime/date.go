package mime

import (
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// zoneOffsets are the zone names seen in real Date headers, RFC 822's among them. time.Parse
// would read an unknown abbreviation as UTC, five hours off for "EST".
var zoneOffsets = map[string]string{
	"UT": "+0000", "UTC": "+0000", "GMT": "+0000", "Z": "+0000", "WET": "+0000",
	"EST": "-0500", "EDT": "-0400", "CST": "-0600", "CDT": "-0500",
	"MST": "-0700", "MDT": "-0600", "PST": "-0800", "PDT": "-0700",
	"AKST": "-0900", "AKDT": "-0800", "HST": "-1000",
	"BST": "+0100", "CET": "+0100", "CEST": "+0200", "MET": "+0100", "MEST": "+0200",
	"EET": "+0200", "EEST": "+0300", "MSK": "+0300", "IST": "+0530",
	"JST": "+0900", "KST": "+0900", "HKT": "+0800", "SGT": "+0800", "AEST": "+1000", "AEDT": "+1100",
	"NZST": "+1200", "NZDT": "+1300",
}

// dateLayouts are tried in order after the weekday is removed and zone names are made numeric.
var dateLayouts = []string{
	"2 Jan 2006 15:04:05 -0700",
	"2 Jan 2006 15:04 -0700",
	"2 Jan 06 15:04:05 -0700",
	"2 Jan 06 15:04 -0700",
	"2 January 2006 15:04:05 -0700",
	"2-Jan-2006 15:04:05 -0700",
	"2 Jan 2006 15:04:05",
	"2 Jan 2006 15:04",
	"2 Jan 06 15:04:05",
	"Jan 2 15:04:05 2006",
	"Jan 2 15:04:05 -0700 2006",
	"Jan 2 2006 15:04:05 -0700",
	"Jan 2 2006 15:04:05",
	"January 2 2006 15:04:05 -0700",
	"January 2 2006 3:04 PM",
	"January 2 2006 3:04:05 PM -0700",
	"January 2 2006 3:04 PM -0700",
	"2006-01-02T15:04:05Z07:00",
	"2006-01-02T15:04:05-0700",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
	"2006/01/02 15:04:05 -0700",
	"2006/01/02 15:04:05",
	"02.01.2006 15:04:05 -0700",
	"02.01.2006 15:04:05",
}

var (
	dateCommentRE = regexp.MustCompile(`\([^()]*\)`)
	gmtOffsetRE   = regexp.MustCompile(`^(?i)(?:GMT|UTC|UT)?([+-])(\d{1,2})(?::?(\d{2}))?$`)
)

// maybeWeekday reports whether a string starting with c may start with a weekday name (see
// skipWeekday): m, t, w, f or s in either case, or the first byte of U+017F, which (?i) folds
// to s.
func maybeWeekday(c byte) bool {
	switch c {
	case 'm', 'M', 't', 'T', 'w', 'W', 'f', 'F', 's', 'S', 0xc5:
		return true
	}
	return false
}

// skipWeekday cuts a weekday name and what may follow it (more letters, '.', white space, ',',
// white space) from the start of s, as `^(?i)(mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?\s*,?\s*`
// would (weekdayRE in the tests, which hold the two to the same result); the expression ran
// on nearly every Date. (?i) makes the long s (U+017F) an s and the Kelvin sign
// (U+212A) a k, so they count as letters.
func skipWeekday(s string) string {
	if s == "" || !maybeWeekday(s[0]) {
		return s
	}
	i := -1
	for _, name := range [...]string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"} {
		if n, ok := foldPrefix(s, name); ok {
			i = n
			break
		}
	}
	if i < 0 {
		return s
	}
	for i < len(s) {
		if c := s[i]; c < utf8.RuneSelf {
			if c|0x20 < 'a' || c|0x20 > 'z' {
				break
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r != '\u017f' && r != '\u212a' {
			break
		}
		i += n
	}
	if i < len(s) && s[i] == '.' {
		i++
	}
	i = skipRESpace(s, i)
	if i < len(s) && s[i] == ',' {
		i++
	}
	return s[skipRESpace(s, i):]
}

// foldPrefix reports whether s starts with the lower-case ASCII word w under (?i) folding,
// and the length of that prefix.
func foldPrefix(s, w string) (int, bool) {
	i := 0
	for k := 0; k < len(w); k++ {
		if i >= len(s) {
			return 0, false
		}
		if c := s[i]; c < utf8.RuneSelf {
			if c|0x20 != w[k] || c < 'A' {
				return 0, false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r != '\u017f' || w[k] != 's') && (r != '\u212a' || w[k] != 'k') {
			return 0, false
		}
		i += n
	}
	return i, true
}

// skipRESpace skips the \s of package regexp (ASCII white space) from s[i].
func skipRESpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\f' || s[i] == '\r') {
		i++
	}
	return i
}

// gmtOffset is gmtOffsetRE.FindStringSubmatch(tok), skipped for tokens without a sign, and
// worked out without it for the usual numeric zone ("+0200").
func gmtOffset(tok string) []string {
	if !strings.ContainsAny(tok, "+-") {
		return nil
	}
	if isNumericZone(tok) && isDigit(tok[1]) && isDigit(tok[2]) && isDigit(tok[3]) && isDigit(tok[4]) {
		return []string{tok, tok[:1], tok[1:3], tok[3:]}
	}
	return gmtOffsetRE.FindStringSubmatch(tok)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseDate reads a Date header value leniently and returns it in UTC.
func parseDate(raw string) (time.Time, bool) {
	s := strings.TrimSpace(raw)
	if rest, ok := plainDate(s); ok {
		if t, err := mail.ParseDate(rest); err == nil {
			return t.UTC(), true
		}
	}
	return parseLooseDate(s)
}

// plainDate reports whether s is a Date in the plain RFC 5322 form ("Mon, 2 Jan 2006 15:04:05
// -0700": an optional English weekday, one or two digits, an English month, four digits,
// hh:mm:ss and a numeric zone, single spaces), which most mail sends, and returns what
// parseLooseDate's normalization makes of it (the value without its weekday) so that
// net/mail reads the same text without the normalization's passes. (FuzzParseDate holds the
// two to the same result.)
func plainDate(s string) (string, bool) {
	if len(s) > 5 && s[3] == ',' && s[4] == ' ' && strings.Contains("Mon Tue Wed Thu Fri Sat Sun", s[:3]) && s[0] != ' ' && s[2] != ' ' {
		s = s[5:]
	}
	// d[d] Mon yyyy hh:mm:ss +hhmm
	i := 0
	digits := func(n int) bool {
		for k := 0; k < n; k++ {
			if i >= len(s) || !isDigit(s[i]) {
				return false
			}
			i++
		}
		return true
	}
	lit := func(c byte) bool {
		if i < len(s) && s[i] == c {
			i++
			return true
		}
		return false
	}
	if !digits(1) {
		return "", false
	}
	if i < len(s) && isDigit(s[i]) {
		i++
	}
	if !lit(' ') || i+3 > len(s) || !strings.Contains("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec", s[i:i+3]) || s[i] == ' ' || s[i+2] == ' ' {
		return "", false
	}
	i += 3
	if !lit(' ') || !digits(4) || !lit(' ') || !digits(2) || !lit(':') || !digits(2) || !lit(':') || !digits(2) || !lit(' ') {
		return "", false
	}
	if i >= len(s) || s[i] != '+' && s[i] != '-' {
		return "", false
	}
	i++
	if !digits(4) || i != len(s) {
		return "", false
	}
	return s, true
}

// parseLooseDate reads a Date value in any of the forms seen in real mail.
func parseLooseDate(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	// The byte tests only skip patterns that cannot match; most dates have no comment.
	if strings.IndexByte(s, '(') >= 0 {
		s = dateCommentRE.ReplaceAllString(s, " ")
	}
	s = skipWeekday(strings.TrimSpace(s))
	toks := strings.Fields(s)
	// Normalize tokens: "12," → "12", "029" → "29", zone names and "GMT+2:00" → numeric offsets, and drop a
	// zone name that merely repeats a numeric offset ("+0000 GMT").
	out := toks[:0]
	for i, tok := range toks {
		tok = strings.TrimRight(tok, ",.")
		if len(tok) == 3 && tok[0] == '0' && isDigit(tok[1]) && isDigit(tok[2]) { // ^0\d\d$
			tok = tok[1:] // "029": a zero-padded day seen from some MTAs
		}
		if off, ok := zoneOffsets[strings.ToUpper(tok)]; ok && i > 0 {
			if len(out) > 0 && isNumericZone(out[len(out)-1]) {
				continue
			}
			tok = off
		} else if m := gmtOffset(tok); m != nil && i > 0 {
			h, mm := m[2], m[3]
			if len(h) == 1 {
				h = "0" + h
			}
			if mm == "" {
				mm = "00"
			}
			tok = m[1] + h + mm
		}
		if tok != "" {
			out = append(out, tok)
		}
	}
	s = strings.Join(out, " ")
	// net/mail knows RFC 5322 well but reads zone names such as "EST" as UTC, so it only
	// sees the value after zone names were made numeric.
	if t, err := mail.ParseDate(s); err == nil {
		return t.UTC(), true
	}
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	// Trailing junk after a complete date: try shorter prefixes of the tokens.
	for n := len(out) - 1; n >= 4; n-- {
		p := strings.Join(out[:n], " ")
		for _, layout := range dateLayouts {
			if t, err := time.Parse(layout, p); err == nil {
				return t.UTC(), true
			}
		}
	}
	return time.Time{}, false
}

func isNumericZone(tok string) bool {
	return len(tok) == 5 && (tok[0] == '+' || tok[0] == '-')
}
