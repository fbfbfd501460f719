package rules

import (
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
)

// Facts is what rule conditions see: one message with its route and the fields the parser and
// the classifier computed before the rules run. Nothing here depends on enrichment, so the score
// of a message never changes because a lookup was slow.
//
// The CEL name of every field is in its cel tag; docs/rules.md lists them with their types.
// Callers fill Facts from events.Parsed (and the classifier's kind and spam score); the zero
// value of a field is what a condition sees when the message lacks it, never a missing variable.
// Evaluate neither modifies nor retains Facts.
type Facts struct {
	// Sender is the author (the first From mailbox).
	Sender Sender `cel:"sender"`
	// Subject is the decoded subject.
	Subject string `cel:"subject"`
	// Text is the plain-text body; conditions see at most the configured text limit of it
	// (WithMaxTextBytes).
	Text string `cel:"text"`
	// StrippedText is the new text of a reply, without quoted history and signature; truncated
	// like Text.
	StrippedText string `cel:"stripped_text"`
	// Kind is the classifier's kind: human, auto_reply, bounce, feedback_report, list,
	// notification or spam.
	Kind string `cel:"kind"`
	// SpamScore is the classifier's spam score; higher is more likely spam.
	SpamScore float64 `cel:"spam_score"`
	// Auth holds the SPF, DKIM and DMARC results.
	Auth Auth `cel:"auth"`
	// Attachments are the message's attachments and inline parts.
	Attachments []Attachment `cel:"attachments"`
	// Headers maps lower-case header names to their values in received order. Use AddHeader to
	// fill it; a key that is not lower case can never match a condition.
	Headers map[string][]string `cel:"headers"`
	// Route is the address route the message came in on.
	Route RouteFacts `cel:"route"`
	// Recipients are the envelope recipients (RCPT TO), lower case.
	Recipients []string `cel:"recipients"`
}

// Sender is the message's author.
type Sender struct {
	// Address is the normalized mailbox, lower case.
	Address string `cel:"address"`
	// Domain is the address's domain, lower case (ASCII form).
	Domain string `cel:"domain"`
	// FreeMail reports whether Domain belongs to a free-mail provider (see pkg/enrich/freemail).
	FreeMail bool `cel:"free_mail"`
	// Name is the decoded display name.
	Name string `cel:"name"`
}

// Auth holds the sender authentication results; an empty string means "not checked".
type Auth struct {
	// SPF is pass, fail, softfail, neutral, none, temperror or permerror.
	SPF string `cel:"spf"`
	// DKIM has one result per DKIM-Signature header.
	DKIM []DKIM `cel:"dkim"`
	// DMARC is pass, fail, none, temperror or permerror.
	DMARC string `cel:"dmarc"`
	// DMARCPolicy is the From domain's published policy: none, quarantine or reject.
	DMARCPolicy string `cel:"dmarc_policy"`
}

// DKIM is the verification result of one DKIM signature.
type DKIM struct {
	// Domain is the signing domain (d=).
	Domain string `cel:"domain"`
	// Selector is the selector (s=).
	Selector string `cel:"selector"`
	// Result is pass, fail, neutral, temperror, permerror or none.
	Result string `cel:"result"`
}

// Attachment is one attachment or inline part.
type Attachment struct {
	// Filename is the decoded file name; empty if none was given.
	Filename string `cel:"filename"`
	// ContentType is the declared media type, lower case, without parameters.
	ContentType string `cel:"content_type"`
	// Size is the decoded size in bytes.
	Size int64 `cel:"size"`
}

// RouteFacts describes the address route a message came in on.
type RouteFacts struct {
	// Tenant owns the route.
	Tenant string `cel:"tenant"`
	// RouteID is the route's id.
	RouteID string `cel:"route_id"`
	// Tag is the plus-address tag of the recipient; empty if none.
	Tag string `cel:"tag"`
	// RulesSet is the name of the rules set the route asks for.
	RulesSet string `cel:"rules_set"`
}

// AddHeader appends a header value under its lower-cased name, allocating Headers when nil.
func (f *Facts) AddHeader(name, value string) {
	if f.Headers == nil {
		f.Headers = make(map[string][]string)
	}
	k := strings.ToLower(name)
	f.Headers[k] = append(f.Headers[k], value)
}

// The variables conditions see are the cel-tagged fields of Facts (declared in newEnvs) plus
// score in routes. These indexes name them in activation.vals.
const (
	varSender = iota
	varSubject
	varText
	varStrippedText
	varKind
	varSpamScore
	varAuth
	varAttachments
	varHeaders
	varRoute
	varRecipients
	numVars
)

const scoreVar = "score"

// activation resolves the variables of one evaluation. Each value is converted to a CEL value
// once, on first use, and shared by every rule of the set; an activation belongs to one
// goroutine.
type activation struct {
	facts   Facts // a copy, so the texts can be cut without touching the caller's struct
	adapter types.Adapter
	vals    [numVars]ref.Val
	score   ref.Val // nil while score rules run: they cannot see the score
}

func newActivation(f *Facts, adapter types.Adapter, maxText int) *activation {
	a := &activation{facts: *f, adapter: adapter}
	a.facts.Text = truncate(a.facts.Text, maxText)
	a.facts.StrippedText = truncate(a.facts.StrippedText, maxText)
	return a
}

func (a *activation) ResolveName(name string) (any, bool) {
	var i int
	switch name {
	case "sender":
		i = varSender
	case "subject":
		i = varSubject
	case "text":
		i = varText
	case "stripped_text":
		i = varStrippedText
	case "kind":
		i = varKind
	case "spam_score":
		i = varSpamScore
	case "auth":
		i = varAuth
	case "attachments":
		i = varAttachments
	case "headers":
		i = varHeaders
	case "route":
		i = varRoute
	case "recipients":
		i = varRecipients
	case scoreVar:
		return a.score, a.score != nil
	default:
		return nil, false
	}
	if v := a.vals[i]; v != nil {
		return v, true
	}
	v := a.adapter.NativeToValue(a.native(i))
	a.vals[i] = v
	return v, true
}

// native returns variable i as a Go value; nil slices and maps become empty ones so that
// size(attachments) and "x" in headers work on a message without any.
func (a *activation) native(i int) any {
	f := &a.facts
	switch i {
	case varSender:
		return f.Sender
	case varSubject:
		return f.Subject
	case varText:
		return f.Text
	case varStrippedText:
		return f.StrippedText
	case varKind:
		return f.Kind
	case varSpamScore:
		return f.SpamScore
	case varAuth:
		if f.Auth.DKIM == nil {
			f.Auth.DKIM = []DKIM{}
		}
		return f.Auth
	case varAttachments:
		if f.Attachments == nil {
			return []Attachment{}
		}
		return f.Attachments
	case varHeaders:
		if f.Headers == nil {
			return map[string][]string{}
		}
		return f.Headers
	case varRoute:
		return f.Route
	default:
		if f.Recipients == nil {
			return []string{}
		}
		return f.Recipients
	}
}

func (a *activation) Parent() interpreter.Activation { return nil }

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence; n < 0 means no limit.
func truncate(s string, n int) string {
	if n < 0 || len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
