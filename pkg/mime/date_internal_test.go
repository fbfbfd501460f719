package mime

import (
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
