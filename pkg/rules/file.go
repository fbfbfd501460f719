package rules

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Limits of a rules file. They keep a typo (points: 3000 instead of 30) from dominating every
// score and keep a file readable; raise them with care, they are documented in docs/rules.md.
const (
	MaxPoints     = 1000   // |points| of one score rule
	MaxSLAMinutes = 525600 // one year
	maxNameLen    = 64
	maxReasonLen  = 200
	maxVersionLen = 64
	maxExprLen    = 4096 // code points of one condition
)

var (
	// Names are identifiers people grep logs and events for; queues are handed to other systems.
	namePattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	versionPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:+-]*$`)
	yamlLinePrefix = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// ruleDoc is one entry of score_rules or routes as written, with the nodes needed to point
// errors at it.
type ruleDoc struct {
	section string
	index   int        // 1-based position in the section
	at      *yaml.Node // where the rule is written: its mapping, or the alias (*x) standing for it

	name     string
	nameNode *yaml.Node
	when     string
	whenNode *yaml.Node

	points     int64 // score rules
	pointsNode *yaml.Node
	reason     string

	queue     string // routes
	sla       int
	queueNode *yaml.Node
}

func (r *ruleDoc) label() string {
	if r.name != "" {
		return r.name
	}
	return "#" + strconv.Itoa(r.index)
}

type fileDoc struct {
	version     string
	versionNode *yaml.Node
	score       []*ruleDoc
	routes      []*ruleDoc
	routesKey   *yaml.Node // the "routes" key, for "no routes" errors
	root        *yaml.Node
}

// decoder turns the YAML into a fileDoc, collecting every problem it meets.
type decoder struct {
	file  string
	lines []string
	errs  ValidationErrors
}

func (d *decoder) errAt(n *yaml.Node, section, rule, format string, args ...any) {
	e := &ValidationError{File: d.file, Section: section, Rule: rule, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

func (d *decoder) decode(src []byte) *fileDoc {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		e := &ValidationError{File: d.file, Msg: err.Error()}
		if m := yamlLinePrefix.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = "invalid YAML: " + m[2]
		}
		d.errs = append(d.errs, e)
		return nil
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		d.errAt(nil, "", "", "the file is empty; it needs version and routes")
		return nil
	}
	doc := deref(root.Content[0])
	if doc.Kind != yaml.MappingNode {
		d.errAt(doc, "", "", "the file must be a mapping with version, score_rules and routes, not %s", kindName(doc))
		return nil
	}
	f := &fileDoc{root: doc}
	for _, kv := range d.fields(doc, "", "", "version", "score_rules", "routes") {
		switch kv.key.Value {
		case "version":
			f.versionNode = kv.val
			if s, ok := d.scalar(kv.val, "", "", "version"); ok {
				f.version = s
				d.checkVersion(kv.val, s)
			}
		case "score_rules":
			f.score = d.rules(kv.val, SectionScore)
		case "routes":
			f.routesKey = kv.key
			f.routes = d.rules(kv.val, SectionRoutes)
		}
	}
	if f.versionNode == nil {
		d.errAt(doc, "", "", "version is missing; give the file a version (e.g. version: 2026-11-23.1) so every score names the rules that made it")
	}
	if f.routesKey == nil {
		d.errAt(doc, "", "", "routes is missing; at least a catch-all route (when: 'true') is required")
	}
	return f
}

func (d *decoder) checkVersion(n *yaml.Node, v string) {
	switch {
	case v == "":
		d.errAt(n, "", "", "version is empty")
	case utf8.RuneCountInString(v) > maxVersionLen:
		d.errAt(n, "", "", "version is longer than %d characters", maxVersionLen)
	case !versionPattern.MatchString(v):
		d.errAt(n, "", "", "version %q may contain only letters, digits and . _ : + -", v)
	}
}

type keyVal struct{ key, val *yaml.Node }

// fields returns the pairs of mapping n whose keys are in allowed, reporting unknown and
// repeated keys (yaml.v3 accepts repeated keys in a Node tree; the last one would silently win).
func (d *decoder) fields(n *yaml.Node, section, rule string, allowed ...string) []keyVal {
	var out []keyVal
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.errAt(k, section, rule, "keys must be plain names")
			continue
		}
		if first, ok := seen[k.Value]; ok {
			d.errAt(k, section, rule, "%s is given twice (first on line %d)", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		known := false
		for _, a := range allowed {
			known = known || a == k.Value
		}
		if !known {
			d.errAt(k, section, rule, "unknown field %q (want one of %s)", k.Value, strings.Join(allowed, ", "))
			continue
		}
		out = append(out, keyVal{k, v})
	}
	return out
}

// scalar returns the text of a scalar node; YAML's type (a bare true, a date) does not matter
// because every scalar field is read as text and checked on its own.
func (d *decoder) scalar(n *yaml.Node, section, rule, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errAt(n, section, rule, "%s must be a single value, not %s", field, kindName(n))
		return "", false
	}
	if n.ShortTag() == "!!null" {
		return "", true
	}
	return n.Value, true
}

func (d *decoder) rules(n *yaml.Node, section string) []*ruleDoc {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errAt(n, "", "", "%s must be a list of rules, not %s", section, kindName(n))
		return nil
	}
	allowed := []string{"name", "when", "points", "reason"}
	if section == SectionRoutes {
		allowed = []string{"name", "when", "queue", "sla_minutes"}
	}
	out := make([]*ruleDoc, 0, len(n.Content))
	for i, at := range n.Content {
		item := deref(at)
		r := &ruleDoc{section: section, index: i + 1, at: at}
		if item.Kind != yaml.MappingNode {
			d.errAt(at, section, r.label(), "each rule must be a mapping with %s, not %s", strings.Join(allowed, ", "), kindName(item))
			continue
		}
		// The name first, so every other error can say which rule it is about.
		for j := 0; j+1 < len(item.Content); j += 2 {
			if item.Content[j].Value == "name" {
				r.nameNode = deref(item.Content[j+1])
				if s, ok := d.scalar(r.nameNode, section, r.label(), "name"); ok {
					r.name = s
				}
				break
			}
		}
		for _, kv := range d.fields(item, section, r.label(), allowed...) {
			switch kv.key.Value {
			case "when":
				r.whenNode = kv.val
				if s, ok := d.scalar(kv.val, section, r.label(), "when"); ok {
					r.when = s
				}
			case "points":
				r.pointsNode = kv.val
				if v, ok := d.integer(kv.val, section, r.label(), "points", -MaxPoints, MaxPoints); ok {
					r.points = v
				}
			case "reason":
				if s, ok := d.scalar(kv.val, section, r.label(), "reason"); ok {
					r.reason = strings.TrimSpace(s)
					if utf8.RuneCountInString(r.reason) > maxReasonLen {
						d.errAt(kv.val, section, r.label(), "reason is longer than %d characters", maxReasonLen)
					}
				}
			case "queue":
				r.queueNode = kv.val
				if s, ok := d.scalar(kv.val, section, r.label(), "queue"); ok {
					r.queue = s
					d.checkName(kv.val, section, r.label(), "queue", s)
				}
			case "sla_minutes":
				if v, ok := d.integer(kv.val, section, r.label(), "sla_minutes", 0, MaxSLAMinutes); ok {
					r.sla = int(v)
				}
			}
		}
		if r.nameNode == nil {
			d.errAt(at, section, r.label(), "name is missing")
		} else {
			d.checkName(r.nameNode, section, r.label(), "name", r.name)
		}
		if r.whenNode == nil {
			d.errAt(at, section, r.label(), "when is missing; write when: 'true' for a rule that always applies")
		} else if strings.TrimSpace(r.when) == "" {
			d.errAt(r.whenNode, section, r.label(), "when is empty")
		}
		if section == SectionScore && r.pointsNode == nil {
			d.errAt(at, section, r.label(), "points is missing")
		}
		if section == SectionRoutes && r.queueNode == nil {
			d.errAt(at, section, r.label(), "queue is missing")
		}
		out = append(out, r)
	}
	return out
}

func (d *decoder) checkName(n *yaml.Node, section, rule, field, v string) {
	switch {
	case v == "":
		d.errAt(n, section, rule, "%s is empty", field)
	case len(v) > maxNameLen:
		d.errAt(n, section, rule, "%s is longer than %d characters", field, maxNameLen)
	case !namePattern.MatchString(v):
		d.errAt(n, section, rule, "%s %q may contain only a-z, 0-9, '_', '.' and '-', starting with a letter or digit", field, v)
	}
}

func (d *decoder) integer(n *yaml.Node, section, rule, field string, lo, hi int64) (int64, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errAt(n, section, rule, "%s must be a whole number, not %s", field, kindName(n))
		return 0, false
	}
	if n.ShortTag() == "!!float" {
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil && f == math.Trunc(f) && !math.IsInf(f, 0) {
			n64 := int64(f)
			if n64 >= lo && n64 <= hi {
				return n64, true
			}
		}
		d.errAt(n, section, rule, "%s must be a whole number between %d and %d, got %s", field, lo, hi, n.Value)
		return 0, false
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if n.ShortTag() != "!!int" || err != nil {
		d.errAt(n, section, rule, "%s must be a whole number, got %q", field, n.Value)
		return 0, false
	}
	if v < lo || v > hi {
		d.errAt(n, section, rule, "%s must be between %d and %d, got %d", field, lo, hi, v)
		return 0, false
	}
	return v, true
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "empty"
		}
		return fmt.Sprintf("the value %q", n.Value)
	default:
		return "a document"
	}
}

// exprPos maps a position inside a condition (CEL's 1-based line, 0-based column in code points)
// to the file. It is exact for conditions on one line (plain, '…' or "…", escapes included) and
// for literal block scalars (when: |); otherwise it falls back to the start of the value.
func (d *decoder) exprPos(n *yaml.Node, celLine, celCol int) (line, col int) {
	line, col = n.Line, n.Column
	switch n.Style {
	case yaml.LiteralStyle:
		// The value starts on the line after the "|" indicator; every line keeps the block's
		// indentation, which is that of its first non-empty line.
		indent := -1
		for i := n.Line; i < len(d.lines); i++ {
			if t := strings.TrimLeft(d.lines[i], " "); t != "" {
				indent = len(d.lines[i]) - len(t)
				break
			}
		}
		if indent < 0 || n.Line+celLine-1 >= len(d.lines) {
			return line, col
		}
		return n.Line + celLine, indent + celCol + 1
	case yaml.FoldedStyle:
		return line, col
	}
	if celLine != 1 || n.Line-1 >= len(d.lines) {
		return line, col
	}
	raw := []rune(d.lines[n.Line-1])
	i := n.Column - 1 // rune index of the value's first character (the quote, if any)
	if i < 0 || i > len(raw) {
		return line, col
	}
	switch n.Style {
	case yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		i++
	default:
		return line, n.Column + celCol
	}
	for k := 0; k < celCol; k++ {
		if i >= len(raw) {
			return line, col // the value continues on the next line
		}
		switch {
		case n.Style == yaml.SingleQuotedStyle && raw[i] == '\'':
			i += 2 // '' is one quote
		case n.Style == yaml.DoubleQuotedStyle && raw[i] == '\\' && i+1 < len(raw):
			switch raw[i+1] {
			case 'x':
				i += 4
			case 'u':
				i += 6
			case 'U':
				i += 10
			default:
				i += 2
			}
		default:
			i++
		}
	}
	if i > len(raw) {
		return line, col
	}
	return line, i + 1
}
