// Package rules is mailpipe's lead scoring and routing engine: a versioned rules file whose
// conditions are CEL expressions (cel.dev/cel-go) over a message's Facts.
//
// A file has score rules, each adding points when its condition holds, and routes, tried in order
// after scoring, the first matching one giving the queue and response SLA:
//
//	version: 2026-11-23.1
//	score_rules:
//	  - name: business_domain
//	    when: '!sender.free_mail && sender.domain != ""'
//	    points: 30
//	    reason: sender domain is not a free-mail provider
//	routes:
//	  - name: ae_priority
//	    when: 'score >= 70'
//	    queue: ae_priority
//	    sla_minutes: 15
//	  - name: default
//	    when: 'true'
//	    queue: inbox
//	    sla_minutes: 1440
//
// Parse and LoadFile validate the whole file at once (YAML, required fields, CEL parse and type
// check, duplicate names, unreachable routes, a missing catch-all, ranges) and report every
// problem with its line and column as ValidationErrors. Set.Evaluate returns the score with every
// matched rule's contribution, the route and the rules version, so each score is explainable; a
// condition that fails at runtime is reported in the Result and counts as not matched. Each
// condition's CEL cost is bounded (WithCostLimit) and the body text it sees is capped
// (WithMaxTextBytes), so one message cannot stall the stream.
//
// Holder keeps the set in use and swaps in a new one only when it is valid, so a bad file never
// replaces a good one; Watch polls the file. Compare and Summary show what a new file would
// change, for `mailpipe rules simulate`. docs/rules.md is the user documentation; the embedded
// default file (DefaultSource) is its example.
//
// The package is pure: no Kafka, Redis or HTTP. The classifier maps events.Parsed to Facts.
package rules
