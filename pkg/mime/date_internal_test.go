package mime

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// FuzzDatePrefilters holds parseDate's byte tests to the patterns they stand in front of:
// where a test says no, the pattern must not match.
func FuzzDatePrefilters(f *testing.F) {
	dayRE := regexp.MustCompile(`^0\d\d$`)
	for _, s := range []string{"Mon, 1 Jan 2024", "ſat, 2 Feb", "(comment) 1 Jan", "GMT+2:00", "029", "0a9", "+0000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s != "" && !maybeWeekday(s[0]) && weekdayRE.MatchString(s) {
			t.Errorf("weekdayRE matches %q", s)
		}
		if !strings.Contains(s, "(") && dateCommentRE.MatchString(s) {
			t.Errorf("dateCommentRE matches %q", s)
		}
		if got, want := gmtOffset(s), gmtOffsetRE.FindStringSubmatch(s); (got == nil) != (want == nil) {
			t.Errorf("gmtOffset(%q) = %q, pattern %q", s, got, want)
		}
		if got, want := len(s) == 3 && s[0] == '0' && isDigit(s[1]) && isDigit(s[2]), dayRE.MatchString(s); got != want {
			t.Errorf("day test on %q = %v, pattern %v", s, got, want)
		}
	})
}

// weekdayRE is the expression skipWeekday stands for.
var weekdayRE = regexp.MustCompile(`^(?i)(mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?\s*,?\s*`)

// FuzzSkipWeekday checks skipWeekday against the regular expression it replaces.
func FuzzSkipWeekday(f *testing.F) {
	for _, s := range []string{"Mon, 2 Jan 2006", "TUESDAY 3 Jan", "wed.  ,x", "Thu,", "fri", "\u017fat, 1", "sunda\u212ay , 2", "Satx", "Mo", "2 Jan", "sun\t,\n 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := skipWeekday(s), weekdayRE.ReplaceAllString(s, ""); got != want {
			t.Fatalf("skipWeekday(%q) = %q, weekdayRE gives %q", s, got, want)
		}
	})
}

// FuzzGMTOffset checks gmtOffset against the regular expression it stands for.
func FuzzGMTOffset(f *testing.F) {
	for _, s := range []string{"+0000", "-0500", "GMT+2:00", "+12", "+1a00", "-99999", "UT-0130", "+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := gmtOffsetRE.FindStringSubmatch(s)
		if !strings.ContainsAny(s, "+-") {
			want = nil
		}
		if got := gmtOffset(s); !reflect.DeepEqual(got, want) {
			t.Fatalf("gmtOffset(%q) = %q, gmtOffsetRE gives %q", s, got, want)
		}
	})
}

// FuzzParseDate checks parseDate's shortcut for plain dates against the general reading.
func FuzzParseDate(f *testing.F) {
	for _, s := range []string{
		"Mon, 2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 +0000", "Sun, 31 Feb 2021 10:00:00 +0100",
		"Thu, 13 Feb 1969 23:32:54 EST", "Mon,  2 Jan 2006 15:04:05 -0700", "Xyz, 2 Jan 2006 15:04:05 -0700", "Mon, 02 Jan 2006 24:61:61 +9999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, gok := parseDate(s)
		want, wok := parseLooseDate(strings.TrimSpace(s))
		if gok != wok || !got.Equal(want) || got.Location() != want.Location() {
			t.Fatalf("parseDate(%q) = %v %v, parseLooseDate gives %v %v", s, got, gok, want, wok)
		}
	})
}
