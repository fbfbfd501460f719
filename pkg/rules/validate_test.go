package rules_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/rules"
)

// catchAll ends every file below that is not about routes.
const catchAll = "routes:\n  - name: default\n    when: 'true'\n    queue: inbox\n"

// scoreFile is a file with one score rule whose lines are given (indented under "  - ").
func scoreFile(rule ...string) string {
	return "version: 1\nscore_rules:\n  - " + strings.Join(rule, "\n    ") + "\n" + catchAll
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		src  string
		want []string
	}{
		// The file as a whole.
		{"YAML syntax", "version: 1\nroutes: [\n", []string{
			"r.yaml:2: invalid YAML: did not find expected node content",
		}},
		{"tab indentation", "version: 1\n\tfoo: 2\n", []string{
			"r.yaml:2: invalid YAML: found a tab character that violates indentation",
		}},
		{"empty", "", []string{"r.yaml: the file is empty; it needs version and routes"}},
		{"only a comment", "# nothing\n", []string{"r.yaml: the file is empty; it needs version and routes"}},
		{"not a mapping", "- a\n", []string{
			"r.yaml:1:1: the file must be a mapping with version, score_rules and routes, not a list",
		}},
		{"unknown top-level field and missing version", "rules_version: 1\n" + catchAll, []string{
			`r.yaml:1:1: unknown field "rules_version" (want one of version, score_rules, routes)`,
			"r.yaml:1:1: version is missing; give the file a version (e.g. version: 2026-11-23.1) so every score names the rules that made it",
		}},
		{"field given twice", "version: 1\nversion: 2\n" + catchAll, []string{
			"r.yaml:2:1: version is given twice (first on line 1)",
		}},
		{"version with a space", "version: 'a b'\n" + catchAll, []string{
			`r.yaml:1:10: version "a b" may contain only letters, digits and . _ : + -`,
		}},
		{"empty version", "version: ''\n" + catchAll, []string{"r.yaml:1:10: version is empty"}},
		{"version is a list", "version: [1]\n" + catchAll, []string{
			"r.yaml:1:10: version must be a single value, not a list",
		}},
		{"score_rules is a mapping", "version: 1\nscore_rules: {a: 1}\n" + catchAll, []string{
			"r.yaml:2:14: score_rules must be a list of rules, not a mapping",
		}},

		// Fields of a rule.
		{"rule is a string", "version: 1\nscore_rules:\n  - just a string\n" + catchAll, []string{
			`r.yaml:3:5: score rule #1: each rule must be a mapping with name, when, points, reason, not the value "just a string"`,
		}},
		{"name missing", scoreFile("when: 'true'", "points: 1"), []string{"r.yaml:3:5: score rule #1: name is missing"}},
		{"bad name", scoreFile("name: Bad Name", "when: 'true'", "points: 1"), []string{
			`r.yaml:3:11: score rule "Bad Name": name "Bad Name" may contain only a-z, 0-9, '_', '.' and '-', starting with a letter or digit`,
		}},
		{"duplicate name across sections", scoreFile("name: default", "when: 'true'", "points: 1"), []string{
			`r.yaml:7:11: route "default": duplicate name (first used on line 3); names must be unique in the file`,
		}},
		{"duplicate through an alias", "version: 1\nscore_rules:\n  - &r\n    name: a\n    when: 'true'\n    points: 1\n  - *r\n" + catchAll, []string{
			`r.yaml:7:5: score rule "a": duplicate name (first used on line 4); names must be unique in the file`,
		}},
		{"when missing, typo field", scoreFile("name: a", "whne: 'true'", "points: 1"), []string{
			`r.yaml:3:5: score rule "a": when is missing; write when: 'true' for a rule that always applies`,
			`r.yaml:4:5: score rule "a": unknown field "whne" (want one of name, when, points, reason)`,
		}},
		{"when empty", scoreFile("name: a", "when: ''", "points: 1"), []string{`r.yaml:4:11: score rule "a": when is empty`}},
		{
			"points", "version: 1\nscore_rules:\n" +
				"  - name: a\n    when: 'true'\n" +
				"  - name: b\n    when: 'true'\n    points: 2.5\n" +
				"  - name: c\n    when: 'true'\n    points: -1001\n" +
				"  - name: d\n    when: 'true'\n    points: ten\n" +
				"  - name: e\n    when: 'true'\n    points: 20.0\n" + catchAll,
			[]string{
				`r.yaml:3:5: score rule "a": points is missing`,
				`r.yaml:7:13: score rule "b": points must be a whole number between -1000 and 1000, got 2.5`,
				`r.yaml:10:13: score rule "c": points must be between -1000 and 1000, got -1001`,
				`r.yaml:13:13: score rule "d": points must be a whole number, got "ten"`,
			},
		},
		{"reason too long", scoreFile("name: a", "when: 'true'", "points: 1", "reason: "+strings.Repeat("x", 201)), []string{
			`r.yaml:6:13: score rule "a": reason is longer than 200 characters`,
		}},

		// Conditions.
		{"CEL syntax", scoreFile("name: a", `when: 'subject.contains("x" &&'`, "points: 1"), []string{
			`r.yaml:4:35: score rule "a": condition: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}`,
		}},
		{"unknown fact", scoreFile("name: a", `when: 'sender.company == "x"'`, "points: 1"), []string{
			`r.yaml:4:18: score rule "a": condition: undefined field 'company'`,
		}},
		{"score in a score rule", scoreFile("name: a", "when: 'score > 10'", "points: 1"), []string{
			`r.yaml:4:12: score rule "a": condition: undeclared reference to 'score' (score is only available in routes)`,
		}},
		{"not bool", scoreFile("name: a", "when: 'subject'", "points: 1"), []string{
			`r.yaml:4:11: score rule "a": condition must be bool, got string`,
		}},
		{"wrong operand types", scoreFile("name: a", `when: 'headers["x"] == "a"'`, "points: 1"), []string{
			`r.yaml:4:25: score rule "a": condition: found no matching overload for '_==_' applied to '(list(string), string)'`,
		}},
		{"always false", scoreFile("name: a", "when: '1 > 2 || false'", "points: 1"), []string{
			`r.yaml:4:11: score rule "a": condition is always false, so the rule never applies; delete it or comment it out`,
		}},
		{
			"regex", "version: 1\nscore_rules:\n" +
				"  - name: a\n    when: 'text.matches(\"(unclosed\")'\n    points: 1\n" +
				"  - name: b\n    when: 'text.matches(subject)'\n    points: 1\n" + catchAll,
			[]string{
				"r.yaml:4:25: score rule \"a\": condition: invalid regular expression: error parsing regexp: missing closing ): `(unclosed`",
				`r.yaml:7:25: score rule "b": condition: the pattern of matches() must be a string literal`,
			},
		},
		{"comprehensions nested three deep", scoreFile("name: a", "when: 'attachments.all(x, attachments.all(y, attachments.all(z, true)))'", "points: 1"), []string{
			`r.yaml:4:65: score rule "a": condition: comprehension exceeds nesting limit`,
		}},
		{"mixed list", scoreFile("name: a", `when: '[1, "a"].size() > 1'`, "points: 1"), []string{
			`r.yaml:4:16: score rule "a": condition: expected type 'int' but found 'string'`,
		}},

		// Routes.
		{
			"routes", "version: 1\nroutes:\n" +
				"  - name: a\n    when: 'true'\n" +
				"  - name: b\n    when: 'true'\n    queue: Inbox!\n    sla_minutes: -5\n" +
				"  - name: c\n    when: 'score > 5'\n    queue: c\n    sla_minutes: 600000\n",
			[]string{
				`r.yaml:3:5: route "a": queue is missing`,
				`r.yaml:5:5: route "b": unreachable: route "a" on line 3 matches every message`,
				`r.yaml:7:12: route "b": queue "Inbox!" may contain only a-z, 0-9, '_', '.' and '-', starting with a letter or digit`,
				`r.yaml:8:18: route "b": sla_minutes must be between 0 and 525600, got -5`,
				`r.yaml:9:5: route "c": unreachable: route "a" on line 3 matches every message`,
				`r.yaml:12:18: route "c": sla_minutes must be between 0 and 525600, got 600000`,
			},
		},
		{"no catch-all", "version: 1\nroutes:\n  - name: a\n    when: 'score > 5'\n    queue: a\n", []string{
			`r.yaml:3:5: route "a": no catch-all route: the last route must have when: 'true', so every message gets a queue`,
		}},
		{"catch-all by constant folding, then unreachable", "version: 1\nroutes:\n  - name: a\n    when: '1 < 2'\n    queue: a\n  - name: b\n    when: 'true'\n    queue: b\n", []string{
			`r.yaml:6:5: route "b": unreachable: route "a" on line 3 matches every message`,
		}},
		{"routes empty", "version: 1\nroutes: []\n", []string{
			"r.yaml:2:1: routes is empty; at least a catch-all route (when: 'true') is required",
		}},
		{"routes null", "version: 1\nroutes:\n", []string{
			"r.yaml:2:1: routes is empty; at least a catch-all route (when: 'true') is required",
		}},
		{"routes missing", "version: 1\n", []string{
			"r.yaml:1:1: routes is missing; at least a catch-all route (when: 'true') is required",
		}},

		// Where in a condition an error is, for each way of writing it.
		{
			"positions", "version: 1\nscore_rules:\n" +
				"  - name: a\n    when: \"subject == \\\"\\\\u00e9\\\" && sender.nme == 'x'\"\n    points: 1\n" +
				"  - name: b\n    when: 'subject == ''x'' && sender.nme == \"x\"'\n    points: 1\n" +
				"  - name: c\n    when: subject == \"x\" && sender.nme == \"x\"\n    points: 1\n" +
				"  - name: d\n    when: |\n      subject != \"\" &&\n        sender.nme == \"x\"\n    points: 1\n" +
				"  - name: e\n    when: >\n      subject != \"\" &&\n      sender.nme == \"x\"\n    points: 1\n" + catchAll,
			[]string{
				`r.yaml:4:44: score rule "a": condition: undefined field 'nme'`,
				`r.yaml:7:38: score rule "b": condition: undefined field 'nme'`,
				`r.yaml:10:35: score rule "c": condition: undefined field 'nme'`,
				`r.yaml:15:15: score rule "d": condition: undefined field 'nme'`,
				`r.yaml:18:11: score rule "e": condition: undefined field 'nme'`, // folded: the value's start
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			set, err := rules.Parse("r.yaml", []byte(tt.src))
			if set != nil || err == nil {
				t.Fatalf("Parse succeeded, want %d errors", len(tt.want))
			}
			var ves rules.ValidationErrors
			if !errors.As(err, &ves) {
				t.Fatalf("error %T is not ValidationErrors: %v", err, err)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "))
			}
			if len(ves) != len(tt.want) {
				t.Errorf("%d ValidationErrors, want %d", len(ves), len(tt.want))
			}
			var one *rules.ValidationError
			if !errors.As(err, &one) || one != ves[0] {
				t.Errorf("errors.As(*ValidationError) = %v, want the first error", one)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	for _, tt := range []struct{ name, src string }{
		{"bare true catch-all", "version: 1\nroutes:\n  - name: d\n    when: true\n    queue: q\n"},
		{"date version", "version: 2026-11-23\n" + catchAll},
		{"no score rules", "version: 1\nscore_rules: []\n" + catchAll},
		{"always-true score rule is a base score", scoreFile("name: base", "when: 'true'", "points: 5")},
		{"points written as 20.0", scoreFile("name: a", "when: 'true'", "points: 20.0")},
		{"optional header lookup", scoreFile("name: a", `when: 'headers[?"x-foo"].orValue([]).exists(v, v == "1")'`, "points: 1")},
		{"int compared with double", scoreFile("name: a", "when: 'spam_score > 5'", "points: 1")},
		{"matches as a function", scoreFile("name: a", `when: 'matches(subject, r"(?i)^re:")'`, "points: 1")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := rules.Parse("r.yaml", []byte(tt.src)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestBrokenFile keeps a file with many problems and the full report it gets, the example of
// docs/rules.md: every problem is reported, not only the first.
func TestBrokenFile(t *testing.T) {
	path := filepath.Join("testdata", "broken.yaml")
	_, err := rules.LoadFile(path)
	if err == nil {
		t.Fatal("broken.yaml loaded")
	}
	want, rerr := os.ReadFile(filepath.Join("testdata", "broken.errors"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	if got := err.Error() + "\n"; got != string(want) {
		t.Errorf("errors of broken.yaml:\n%s\nwant (testdata/broken.errors):\n%s", got, want)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, rules.MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.yaml"), "opening rules file: open " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"},
		{"too big", big, big + ": the file is larger than 1048576 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rules.LoadFile(tt.path)
			if err == nil || err.Error() != tt.want {
				t.Errorf("LoadFile error = %v, want %s", err, tt.want)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	set, err := rules.Default()
	if err != nil {
		t.Fatalf("the embedded default rules do not compile:\n%v", err)
	}
	if set.Name() != rules.DefaultName || set.Version() == "" || len(set.Digest()) != 64 {
		t.Errorf("default set: name %q version %q digest %q", set.Name(), set.Version(), set.Digest())
	}
	src := rules.DefaultSource()
	src[0] = 'X' // a copy: the embedded source cannot be changed through it
	if rules.DefaultSource()[0] == 'X' {
		t.Error("DefaultSource returned the embedded bytes, not a copy")
	}
}

// TestDocsListEveryFact keeps docs/rules.md in step with Facts: every CEL name of a fact appears
// in its table.
func TestDocsListEveryFact(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "rules.md"))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := prefix + f.Tag.Get("cel")
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && prefix == "" && f.Type.Kind() != reflect.Slice {
				walk(name+".", ft)
				continue
			}
			if !strings.Contains(string(doc), "| `"+name+"` |") {
				t.Errorf("docs/rules.md does not list the fact %s", name)
			}
			if ft.Kind() == reflect.Struct {
				for j := range ft.NumField() {
					if sub := ft.Field(j).Tag.Get("cel"); !strings.Contains(string(doc), sub) {
						t.Errorf("docs/rules.md does not mention %s of %s", sub, name)
					}
				}
			}
		}
	}
	walk("", reflect.TypeFor[rules.Facts]())
}
