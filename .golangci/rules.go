//go:build ruleguard

// Package gorules holds the ruleguard rules golangci-lint's gocritic runs (STYLE.md habit 10).
package gorules

import "github.com/quasilyte/go-ruleguard/dsl"

// failedToError: wrap errors with a gerund phrase ("decoding raw record: %w"), never
// "failed to …", which stacks into "failed to x: failed to y: failed to z".
func failedToError(m dsl.Matcher) {
	m.Match(`fmt.Errorf($s, $*_)`, `errors.New($s)`).
		Where(m["s"].Text.Matches(`^"[Ff]ailed to`)).
		Report(`error text starts with "failed to": use a gerund phrase, e.g. "decoding record: %w"`)
}

// errorfVerb: an error formatted with %v/%s/%+v loses errors.Is/As; use %w.
func errorfVerb(m dsl.Matcher) {
	m.Match(`fmt.Errorf($s, $*_, $err)`, `fmt.Errorf($s, $err)`).
		Where(m["err"].Type.Implements("error") && m["s"].Text.Matches(`(%v|%s|%\+v)"$`)).
		Report(`wrap the error with %w so errors.Is and errors.As see it`)
}
