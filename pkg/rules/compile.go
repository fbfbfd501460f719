package rules

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds a rules file; a larger file is refused before it is parsed.
const MaxFileSize = 1 << 20

// Defaults of the evaluation limits (see WithCostLimit and WithMaxTextBytes).
const (
	DefaultCostLimit    = 1_000_000
	DefaultMaxTextBytes = 64 << 10
)

// interruptEvery is how many comprehension iterations run between checks of the context.
const interruptEvery = 64

//go:embed default.yaml
var defaultSource string

// DefaultName is the name the embedded default rules are loaded under.
const DefaultName = "default.yaml"

// DefaultSource returns the embedded default rules file, the one docs/rules.md documents.
func DefaultSource() []byte { return []byte(defaultSource) }

// Default compiles the embedded default rules. It fails only if they were edited into an
// invalid file, which the package tests catch.
func Default(opts ...Option) (*Set, error) {
	return Parse(DefaultName, []byte(defaultSource), opts...)
}

// Option configures how a rules file is compiled and evaluated.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	costLimit uint64
	maxText   int
}

func defaultConfig() config {
	return config{costLimit: DefaultCostLimit, maxText: DefaultMaxTextBytes}
}

// WithCostLimit bounds the CEL cost of evaluating one condition (default DefaultCostLimit). A
// condition over the limit stops and is reported as a RuleError; it counts as not matched.
// Cost units follow cel-go's cost model: a regular expression match over a string costs about
// len(string)/10 × len(pattern)/4, so the default lets a condition run a dozen 30-character
// patterns over a text of DefaultMaxTextBytes. Zero keeps the default.
func WithCostLimit(limit uint64) Option {
	return optionFunc(func(c *config) {
		if limit > 0 {
			c.costLimit = limit
		}
	})
}

// WithMaxTextBytes bounds how much of Facts.Text and Facts.StrippedText conditions see
// (default DefaultMaxTextBytes, cut at a UTF-8 boundary). The cost limit is checked after each
// operation, so without this bound a single match over a huge body would run to its end; Go's
// regexp scans a case-insensitive, word-bounded pattern at roughly 10–30 MB/s, so 64 KiB keeps
// a match within a few milliseconds. Lead signals sit at the top of a message.
// Zero keeps the default; a negative value disables the bound.
func WithMaxTextBytes(n int) Option {
	return optionFunc(func(c *config) {
		if n != 0 {
			c.maxText = n
		}
	})
}

// Set is a compiled, validated rules file. It is immutable and safe for concurrent use.
type Set struct {
	name    string
	version string
	digest  string
	cfg     config
	adapter types.Adapter
	score   []scoreRule
	routes  []routeRule
}

type scoreRule struct {
	name   string
	points int64
	reason string
	prg    cel.Program
}

type routeRule struct {
	name   string
	queue  string
	sla    int
	always bool // the catch-all: matches without being evaluated
	prg    cel.Program
}

// Name is the name the set was loaded under (the file path for LoadFile).
func (s *Set) Name() string { return s.name }

// Version is the file's version field, recorded on every Result.
func (s *Set) Version() string { return s.version }

// Digest is the hex SHA-256 of the file's bytes; two sets with the same digest behave the same
// under the same options.
func (s *Set) Digest() string { return s.digest }

// RuleNames returns the names of the score rules and of the routes, in file order.
func (s *Set) RuleNames() (score, routes []string) {
	for _, r := range s.score {
		score = append(score, r.name)
	}
	for _, r := range s.routes {
		routes = append(routes, r.name)
	}
	return score, routes
}

// oneLine joins the lines of a multi-line condition with single spaces.
func oneLine(expr string) string {
	lines := strings.Split(strings.TrimSpace(expr), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, " ")
}

// LoadFile reads and compiles the rules file at path; errors name the file by path. Validation
// problems come back together as ValidationErrors.
func LoadFile(path string, opts ...Option) (*Set, error) {
	src, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, src, opts...)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening rules file: %w", err)
	}
	defer func() { _ = f.Close() }() // read only: closing cannot lose data
	src, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading rules file %s: %w", path, err)
	}
	if len(src) > MaxFileSize {
		return nil, ValidationErrors{{File: path, Msg: fmt.Sprintf("the file is larger than %d bytes", MaxFileSize)}}
	}
	return src, nil
}

// Parse validates and compiles a rules file held in memory; name is used in error messages
// and as Set.Name. It reports every problem it finds, in file order, as ValidationErrors.
func Parse(name string, src []byte, opts ...Option) (*Set, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	d := &decoder{file: name, lines: strings.Split(string(src), "\n")}
	doc := d.decode(src)
	if doc == nil {
		d.errs.sort()
		return nil, d.errs
	}
	envs, err := newEnvs()
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	sum := sha256.Sum256(src)
	s := &Set{
		name: name, version: doc.version, digest: hex.EncodeToString(sum[:]), cfg: cfg,
		adapter: envs.score.CELTypeAdapter(),
	}
	c := compiler{decoder: d, envs: envs, cfg: cfg, names: map[string]int{}}
	for _, r := range doc.score {
		c.checkDuplicate(r)
		prg, _, ok := c.condition(envs.score, r)
		if ok {
			reason := r.reason
			if reason == "" {
				reason = oneLine(r.when) // the condition explains a rule without a reason
			}
			s.score = append(s.score, scoreRule{name: r.name, points: r.points, reason: reason, prg: prg})
		}
	}
	var catchAll *ruleDoc
	for _, r := range doc.routes {
		c.checkDuplicate(r)
		if catchAll != nil {
			d.errAt(r.at, SectionRoutes, r.label(), "unreachable: route %q on line %d matches every message", catchAll.name, catchAll.at.Line)
		}
		prg, always, ok := c.condition(envs.route, r)
		if always && catchAll == nil {
			catchAll = r
		}
		if ok {
			s.routes = append(s.routes, routeRule{name: r.name, queue: r.queue, sla: r.sla, always: always, prg: prg})
		}
	}
	switch {
	case doc.routesKey != nil && len(doc.routes) == 0:
		d.errAt(doc.routesKey, "", "", "routes is empty; at least a catch-all route (when: 'true') is required")
	case len(doc.routes) > 0 && catchAll == nil && c.routesCompiled(doc.routes):
		last := doc.routes[len(doc.routes)-1]
		d.errAt(last.at, SectionRoutes, last.label(), "no catch-all route: the last route must have when: 'true', so every message gets a queue")
	}
	if len(d.errs) > 0 {
		d.errs.sort()
		return nil, d.errs
	}
	return s, nil
}

type envs struct{ score, route *cel.Env }

// newEnvs builds the CEL environments: score rules see the facts, routes see the facts and the
// score. The standard library only: the string extensions include functions whose output can
// grow quadratically (replace), which the cost limit would only notice afterwards.
func newEnvs() (envs, error) {
	opts := []cel.EnvOption{
		ext.NativeTypes(reflect.TypeFor[Facts](), ext.ParseStructTags(true)),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(maxExprLen),
		cel.ASTValidators(
			cel.ValidateComprehensionNestingLimit(2),
			cel.ValidateHomogeneousAggregateLiterals(),
			regexLiterals{},
		),
	}
	ft := reflect.TypeFor[Facts]()
	for i := range ft.NumField() {
		f := ft.Field(i)
		opts = append(opts, cel.Variable(f.Tag.Get("cel"), celTypeOf(f.Type)))
	}
	score, err := cel.NewEnv(opts...)
	if err != nil {
		return envs{}, err
	}
	route, err := score.Extend(cel.Variable(scoreVar, cel.IntType))
	if err != nil {
		return envs{}, err
	}
	return envs{score: score, route: route}, nil
}

// celTypeOf maps the Go types used in Facts to their declared CEL types.
func celTypeOf(t reflect.Type) *cel.Type {
	switch t.Kind() {
	case reflect.String:
		return cel.StringType
	case reflect.Bool:
		return cel.BoolType
	case reflect.Float64:
		return cel.DoubleType
	case reflect.Int64, reflect.Int:
		return cel.IntType
	case reflect.Slice:
		return cel.ListType(celTypeOf(t.Elem()))
	case reflect.Map:
		return cel.MapType(celTypeOf(t.Key()), celTypeOf(t.Elem()))
	case reflect.Struct:
		return cel.ObjectType("rules." + t.Name())
	}
	return cel.DynType
}

type compiler struct {
	*decoder
	envs  envs
	cfg   config
	names map[string]int // rule name → line of first use, across both sections
	bad   map[*ruleDoc]bool
}

func (c *compiler) checkDuplicate(r *ruleDoc) {
	if r.name == "" || r.nameNode == nil {
		return
	}
	if first, ok := c.names[r.name]; ok {
		at := r.nameNode
		if r.at.Kind == yaml.AliasNode {
			at = r.at // the name node is the anchored rule's, which is not where the repeat is
		}
		c.errAt(at, r.section, r.label(), "duplicate name (first used on line %d); names must be unique in the file", first)
		return
	}
	c.names[r.name] = r.nameNode.Line
}

// condition compiles r's when. always reports a condition that is constant true after constant
// folding; a constant false one is an error (the rule could never apply).
func (c *compiler) condition(env *cel.Env, r *ruleDoc) (prg cel.Program, always, ok bool) {
	if r.whenNode == nil || strings.TrimSpace(r.when) == "" {
		c.markBad(r)
		return nil, false, false
	}
	checked, iss := env.Compile(r.when)
	if iss.Err() != nil {
		for _, e := range iss.Errors() {
			line, col := c.exprPos(r.whenNode, e.Location.Line(), e.Location.Column())
			msg := e.Message
			if r.section == SectionScore && strings.Contains(msg, "undeclared reference to 'score'") {
				msg += " (score is only available in routes)"
			}
			c.errs = append(c.errs, &ValidationError{File: c.file, Line: line, Column: col, Section: r.section, Rule: r.label(), Msg: "condition: " + msg})
		}
		c.markBad(r)
		return nil, false, false
	}
	if t := checked.OutputType(); !t.IsExactType(cel.BoolType) {
		c.errAt(r.whenNode, r.section, r.label(), "condition must be bool, got %s", t)
		c.markBad(r)
		return nil, false, false
	}
	folded := checked
	if fold, err := cel.NewConstantFoldingOptimizer(); err == nil {
		if opt, err := cel.NewStaticOptimizer(fold); err == nil {
			if f, iss := opt.Optimize(env, checked); iss.Err() == nil {
				folded = f
			}
		}
	}
	if e := folded.NativeRep().Expr(); e.Kind() == celast.LiteralKind {
		if b, isBool := e.AsLiteral().(types.Bool); isBool {
			if !b {
				c.errAt(r.whenNode, r.section, r.label(), "condition is always false, so the rule never applies; delete it or comment it out")
				c.markBad(r)
				return nil, false, false
			}
			always = true
		}
	}
	prg, err := env.Program(folded,
		cel.EvalOptions(cel.OptOptimize),
		cel.CostLimit(c.cfg.costLimit),
		cel.InterruptCheckFrequency(interruptEvery),
	)
	if err != nil {
		c.errAt(r.whenNode, r.section, r.label(), "condition: %s", err.Error())
		c.markBad(r)
		return nil, false, false
	}
	return prg, always, true
}

func (c *compiler) markBad(r *ruleDoc) {
	if c.bad == nil {
		c.bad = map[*ruleDoc]bool{}
	}
	c.bad[r] = true
}

// routesCompiled reports whether every route's condition compiled; "no catch-all" is only
// reported then, because a broken last condition is probably the catch-all being edited.
func (c *compiler) routesCompiled(routes []*ruleDoc) bool {
	for _, r := range routes {
		if c.bad[r] {
			return false
		}
	}
	return true
}

// regexLiterals requires the pattern of matches() to be a valid string literal. A literal is
// compiled once when the program is built (cel.OptOptimize) instead of on every evaluation,
// and a pattern taken from the message would let senders feed regular expressions to the engine.
type regexLiterals struct{}

func (regexLiterals) Name() string { return "mailpipe.regex_literals" }

func (regexLiterals) Validate(_ *cel.Env, _ cel.ValidatorConfig, a *celast.AST, iss *cel.Issues) {
	for _, call := range celast.MatchDescendants(celast.NavigateAST(a), celast.FunctionMatcher("matches")) {
		args := call.AsCall().Args()
		if len(args) == 0 {
			continue
		}
		pat := args[len(args)-1] // s.matches(p) and matches(s, p) both end with the pattern
		if pat.Kind() != celast.LiteralKind {
			iss.ReportErrorAtID(pat.ID(), "the pattern of matches() must be a string literal")
			continue
		}
		s, ok := pat.AsLiteral().Value().(string)
		if !ok {
			continue
		}
		if _, err := regexp.Compile(s); err != nil {
			iss.ReportErrorAtID(pat.ID(), "invalid regular expression: %s", err.Error())
		}
	}
}
