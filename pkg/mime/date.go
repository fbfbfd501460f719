package mime

import (
	"net/mail"
	"regexp"
	"strings"
	"time"
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
	weekdayRE     = regexp.MustCompile(`^(?i)(mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?\s*,?\s*`)
)

// maybeWeekday reports whether a string starting with c may match weekdayRE: m, t, w, f or s
// in either case, or the first byte of U+017F, which (?i) folds to s.
func maybeWeekday(c byte) bool {
	switch c {
	case 'm', 'M', 't', 'T', 'w', 'W', 'f', 'F', 's', 'S', 0xc5:
		return true
	}
	return false
}

// gmtOffset is gmtOffsetRE.FindStringSubmatch(tok), skipped for tokens without a sign.
func gmtOffset(tok string) []string {
	if !strings.ContainsAny(tok, "+-") {
		return nil
	}
	return gmtOffsetRE.FindStringSubmatch(tok)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseDate reads a Date header value leniently and returns it in UTC.
func parseDate(raw string) (time.Time, bool) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return time.Time{}, false
	}
	// The byte tests only skip patterns that cannot match; most dates have no comment.
	if strings.IndexByte(s, '(') >= 0 {
		s = dateCommentRE.ReplaceAllString(s, " ")
	}
	if s = strings.TrimSpace(s); s != "" && maybeWeekday(s[0]) {
		s = weekdayRE.ReplaceAllString(s, "")
	}
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
