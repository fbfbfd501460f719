package rules

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Sections of a rules file, as they appear in ValidationError.Section and RuleError.Section.
const (
	SectionScore  = "score_rules"
	SectionRoutes = "routes"
)

// ValidationError is one problem found while loading a rules file. Its Error text reads
//
//	rules.yaml:12:9: score rule "x": condition must be bool, got string
//
// with the column left out when it is unknown and the rule left out for file-level problems.
type ValidationError struct {
	// File is the name the rules were loaded under (the path for LoadFile).
	File string
	// Line is 1-based; 0 when the problem has no position (an empty file).
	Line int
	// Column is 1-based; 0 when unknown.
	Column int
	// Section is SectionScore or SectionRoutes for a problem in one rule, else "".
	Section string
	// Rule is the rule's name, or "#n" (1-based position in its section) when it has none.
	Rule string
	// Msg says what is wrong.
	Msg string
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	switch e.Section {
	case SectionScore:
		fmt.Fprintf(&b, "score rule %s: ", quoteRule(e.Rule))
	case SectionRoutes:
		fmt.Fprintf(&b, "route %s: ", quoteRule(e.Rule))
	}
	b.WriteString(e.Msg)
	return b.String()
}

func quoteRule(r string) string {
	if strings.HasPrefix(r, "#") {
		return r
	}
	return fmt.Sprintf("%q", r)
}

// ValidationErrors is every problem found in a rules file, in file order. Parse, LoadFile and
// Holder.Load return it (as error) when a file does not validate; use errors.As to get the list.
type ValidationErrors []*ValidationError

func (es ValidationErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the single errors, so errors.As finds a *ValidationError too.
func (es ValidationErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

func (es ValidationErrors) sort() {
	slices.SortStableFunc(es, func(a, b *ValidationError) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
}

// RuleError is a condition that failed at evaluation time, e.g. headers["x-foo"] on a message
// without that header, or a condition over its cost limit. The rule counts as not matched.
type RuleError struct {
	// Section is SectionScore or SectionRoutes.
	Section string `json:"section"`
	// Rule is the rule's name.
	Rule string `json:"rule"`
	// Err is the evaluation error.
	Err error `json:"-"`
}

func (e RuleError) Error() string {
	kind := "score rule"
	if e.Section == SectionRoutes {
		kind = "route"
	}
	return fmt.Sprintf("%s %q: %v", kind, e.Rule, e.Err)
}

func (e RuleError) Unwrap() error { return e.Err }

// MarshalJSON writes the error text under "error", which the Err field cannot carry.
func (e RuleError) MarshalJSON() ([]byte, error) {
	msg := ""
	if e.Err != nil {
		msg = e.Err.Error()
	}
	return json.Marshal(struct {
		Section string `json:"section"`
		Rule    string `json:"rule"`
		Error   string `json:"error"`
	}{e.Section, e.Rule, msg})
}
