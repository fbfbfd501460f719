package rules_test

import (
	"testing"

	"github.com/mailpipe/mailpipe/pkg/rules"
)

// FuzzParse checks that no rules file makes Parse panic, that it returns a set or an error and
// never both, and that a set it returns evaluates without error.
func FuzzParse(f *testing.F) {
	f.Add(rules.DefaultSource())
	f.Add([]byte(invalid))
	f.Add([]byte(versioned("v1")))
	f.Add([]byte("version: 1\nscore_rules:\n  - &a {name: a, when: 'true', points: 1}\n  - *a\n" + catchAll))
	f.Fuzz(func(t *testing.T, src []byte) {
		set, err := rules.Parse("f.yaml", src)
		if (set == nil) == (err == nil) {
			t.Fatalf("Parse returned set %v and error %v", set, err)
		}
		if set != nil {
			res, err := set.Evaluate(t.Context(), lead())
			if err != nil || res.Route.Queue == "" {
				t.Fatalf("Evaluate = %+v, %v", res, err)
			}
		}
	})
}
