package route

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// Spec is a route as operators write and read it: an entry of a YAML import file, and the JSON
// body of the /v1/routes admin API. Field names are those of the mail.routes.v1 schema.
type Spec struct {
	// ID is optional on input: a route without one gets [DefaultID] of its pattern.
	ID             string   `json:"id" yaml:"id,omitempty"`
	Pattern        string   `json:"pattern" yaml:"pattern"`
	Tenant         string   `json:"tenant" yaml:"tenant,omitempty"`
	IntegrationKey string   `json:"integration_key" yaml:"integration_key,omitempty"`
	Pipeline       string   `json:"pipeline" yaml:"pipeline,omitempty"`
	CRMTargets     []string `json:"crm_targets" yaml:"crm_targets,omitempty"`
	RulesSet       string   `json:"rules_set" yaml:"rules_set,omitempty"`
	AllowSenders   []string `json:"allow_senders" yaml:"allow_senders,omitempty"`
	DenySenders    []string `json:"deny_senders" yaml:"deny_senders,omitempty"`
	// MaxSize in bytes; 0 uses the server default.
	MaxSize int64 `json:"max_size" yaml:"max_size,omitempty"`
	Shadow  bool  `json:"shadow" yaml:"shadow,omitempty"`
	// Consent maps consent flag names (lower-case, e.g. marketing) to what mail to this route
	// implies; the enricher copies them to the sender's contact.
	Consent map[string]bool `json:"consent" yaml:"consent,omitempty"`
	// UpdatedAt is set by the store when the route is written; it is ignored on input, so a
	// listing can be imported again.
	UpdatedAt *time.Time `json:"updated_at,omitempty" yaml:"updated_at,omitempty"`
}

// Route converts s to the topic's value type (UpdatedAt is left zero).
func (s Spec) Route() events.Route {
	return events.Route{
		ID: s.ID, Pattern: s.Pattern, Tenant: s.Tenant, IntegrationKey: s.IntegrationKey,
		Pipeline: s.Pipeline, CRMTargets: s.CRMTargets, RulesSet: s.RulesSet,
		AllowSenders: s.AllowSenders, DenySenders: s.DenySenders, MaxSize: s.MaxSize, Shadow: s.Shadow,
		Consent: s.Consent,
	}
}

// SpecOf converts r for output. Lists are never nil, so JSON shows [] rather than null; a zero
// UpdatedAt is left out.
func SpecOf(r events.Route) Spec {
	s := Spec{
		ID: r.ID, Pattern: r.Pattern, Tenant: r.Tenant, IntegrationKey: r.IntegrationKey,
		Pipeline: r.Pipeline, RulesSet: r.RulesSet, MaxSize: r.MaxSize, Shadow: r.Shadow,
		CRMTargets:   orEmpty(r.CRMTargets),
		AllowSenders: orEmpty(r.AllowSenders),
		DenySenders:  orEmpty(r.DenySenders),
		Consent:      maps.Clone(r.Consent),
	}
	if s.Consent == nil {
		s.Consent = map[string]bool{}
	}
	if !r.UpdatedAt.IsZero() {
		t := r.UpdatedAt.UTC()
		s.UpdatedAt = &t
	}
	return s
}

func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return slices.Clone(l)
}

// Entry is one route of a YAML file with the lines it came from.
type Entry struct {
	Spec Spec
	// Line is the line where the entry starts.
	Line int
	// Malformed is set when the entry is not a mapping; Spec is then empty.
	Malformed bool
	lines     map[string]int
}

// LineOf returns the line of field in the file ("tenant", "crm_targets[1]"), falling back to
// the list's line for an item the file does not have and to the entry's line for a field it does
// not have, so a [Problem] can always point somewhere.
func (e Entry) LineOf(field string) int {
	if l, ok := e.lines[field]; ok {
		return l
	}
	if base, _, ok := strings.Cut(field, "["); ok {
		if l, ok := e.lines[base]; ok {
			return l
		}
	}
	return e.Line
}

// specFields returns the keys a route entry may have, from Spec's yaml tags.
func specFields() []string {
	var out []string
	t := reflect.TypeFor[Spec]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		out = append(out, name)
	}
	return out
}

// DecodeYAML reads a route file: a YAML list of routes, each a mapping with the fields of
// [Spec]:
//
//	# routes.yaml
//	- pattern: support+{tenant}@in.example.com
//	  crm_targets: [hubspot]
//	- id: sales
//	  pattern: sales@in.example.com
//	  tenant: acme
//
// It checks the file's shape (a list of mappings, known field names, value types) and reports
// every problem found with its entry index and line; the routes themselves are checked by
// [Snapshot.ValidateBatch]. The error is a [*ValidationError].
//
// When the file is a list, entries holds one Entry per item even when err is not nil: what could
// be decoded, with Malformed set on items that are not mappings. Callers can then check the routes
// as well and report every problem of the file at once.
func DecodeYAML(data []byte) ([]Entry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlLine(strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, &ValidationError{Problems: []Problem{{Index: -1, Line: line, Detail: msg}}}
	}
	if len(doc.Content) == 0 {
		return nil, &ValidationError{Problems: []Problem{{Index: -1, Line: 1, Detail: "the file holds no routes: write a YAML list (- pattern: …)"}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.SequenceNode {
		return nil, &ValidationError{Problems: []Problem{{Index: -1, Line: root.Line, Detail: "the file must be a YAML list of routes (- pattern: …)"}}}
	}
	entries := make([]Entry, len(root.Content))
	fields := specFields()
	var ps []Problem
	for i, item := range root.Content {
		entries[i] = Entry{Line: item.Line, lines: map[string]int{}}
		if item.Kind != yaml.MappingNode {
			ps = append(ps, Problem{Index: i, Line: item.Line, Detail: "a route must be a mapping of fields (pattern: …, tenant: …)"})
			entries[i].Malformed = true
			continue
		}
		for k := 0; k+1 < len(item.Content); k += 2 {
			key, val := item.Content[k], item.Content[k+1]
			if !slices.Contains(fields, key.Value) {
				ps = append(ps, Problem{
					Index: i, Line: key.Line, Field: key.Value,
					Detail: "unknown field; the fields are " + strings.Join(fields, ", "),
				})
				continue
			}
			entries[i].lines[key.Value] = key.Line
			for j, v := range val.Content {
				if val.Kind == yaml.SequenceNode {
					entries[i].lines[fmt.Sprintf("%s[%d]", key.Value, j)] = v.Line
				}
			}
		}
		if err := item.Decode(&entries[i].Spec); err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				te = &yaml.TypeError{Errors: []string{err.Error()}}
			}
			for _, m := range te.Errors {
				line, msg := yamlLine(m)
				if line == 0 {
					line = item.Line
				}
				ps = append(ps, Problem{Index: i, Line: line, Detail: msg})
			}
		}
		entries[i].Spec.UpdatedAt = nil // written by the store, never taken from a file
	}
	return entries, validationError(ps)
}

// yamlLine splits yaml.v3's "line N: message" into N and the message.
func yamlLine(msg string) (int, string) {
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0, msg
	}
	num, text, ok := strings.Cut(rest, ": ")
	if !ok {
		return 0, msg
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return 0, msg
	}
	return n, text
}
