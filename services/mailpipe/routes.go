package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/route"
	"github.com/mailpipe/mailpipe/pkg/route/kafkaroute"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

const routesUsage = `usage: mailpipe routes <command> [flags]

commands:
  add --pattern P [--tenant T] [--crm hubspot,webhook] [...]   store a route
  list [-o table|json|yaml]                                     list the route table
  show [-o yaml|json] ID                                        show one route
  rm ID                                                         delete a route
  import [--dry-run] FILE.yaml                                  store a YAML list of routes

Patterns: support@in.example.com (exact), support+{tenant}@in.example.com (tenant from the tag),
deals+*@in.example.com (any tag), *@in.example.com (catch-all). Routes are read from and written
to $MAILPIPE_ROUTES_TOPIC (default mail.routes.v1) on $MAILPIPE_KAFKA_BROKERS.
Run 'mailpipe routes <command> -h' for a command's flags.`

// runRoutes implements `mailpipe routes add|list|show|rm|import`: it reads the route table from
// mail.routes.v1 to its end, and writes routes keyed by id (acks=all) after validating them
// against that table.
func runRoutes(ctx context.Context, env app.Env) error {
	if len(env.Args) == 0 {
		fmt.Fprintln(env.Stderr, routesUsage)
		return app.ConfigError(errors.New("routes: no command given"))
	}
	cmd, args := env.Args[0], env.Args[1:]
	switch cmd {
	case "add":
		return routesAdd(ctx, env, args)
	case "list", "ls":
		return routesList(ctx, env, args)
	case "show":
		return routesShow(ctx, env, args)
	case "rm", "delete":
		return routesRm(ctx, env, args)
	case "import":
		return routesImport(ctx, env, args)
	case "help", "-h", "--help":
		fmt.Fprintln(env.Stdout, routesUsage)
		return nil
	default:
		fmt.Fprintln(env.Stderr, routesUsage)
		return app.ConfigError(fmt.Errorf("routes: unknown command %q", cmd))
	}
}

// routesFlags are the connection flags every routes command takes.
type routesFlags struct {
	brokers string
	topic   string
	timeout time.Duration
}

func newRoutesFlagSet(env app.Env, name string) (*flag.FlagSet, *routesFlags) {
	fs := flag.NewFlagSet("routes "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	rf := &routesFlags{}
	topic := env.Getenv(pipelineRoutesTopicVar)
	if topic == "" {
		topic = kafka.TopicRoutes
	}
	fs.StringVar(&rf.brokers, "brokers", "", "seed brokers (default $MAILPIPE_KAFKA_BROKERS)")
	fs.StringVar(&rf.topic, "topic", topic, "routes topic (default $"+pipelineRoutesTopicVar+" or mail.routes.v1)")
	fs.DurationVar(&rf.timeout, "timeout", 30*time.Second, "bound on reading the table and on each write")
	return fs, rf
}

// pipelineRoutesTopicVar is the variable ingress reads the routes topic from, so the CLI and the
// services agree on the topic by default.
const pipelineRoutesTopicVar = "MAILPIPE_ROUTES_" + kafkaroute.EnvTopic

// routesSession is the route table read to its end and, for writes, a running follower with a
// store on it.
type routesSession struct {
	f      *kafkaroute.Follower
	store  *kafkaroute.Store
	closed func()
}

func openRoutes(ctx context.Context, env app.Env, rf *routesFlags, write bool) (*routesSession, error) {
	kcfg, err := kafkaConfig(env, rf.brokers)
	if err != nil {
		return nil, err
	}
	codec, err := serde.NewFromEnv(ctx, env.Getenv)
	if err != nil {
		return nil, fmt.Errorf("building the codec: %w", err)
	}
	f, err := kafkaroute.Open(ctx, kafkaroute.Config{Topic: rf.topic, LoadTimeout: rf.timeout}, kcfg, codec, env.Logger)
	if err != nil {
		return nil, err
	}
	s := &routesSession{f: f, closed: func() { _ = f.Close(ctx) }}
	if !write {
		return s, nil
	}
	prod, err := kafka.NewProducer(kcfg, env.Logger)
	if err != nil {
		s.closed()
		return nil, fmt.Errorf("building the producer: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	s.closed = func() {
		_ = f.Close(ctx)
		if err := <-done; err != nil {
			env.Logger.WarnContext(ctx, "route follower stopped with an error", "error", err.Error())
		}
		prod.Close()
	}
	if s.store, err = kafkaroute.NewStore(kafkaroute.StoreOptions{Producer: prod, Codec: codec, Follower: f, Logger: env.Logger}); err != nil {
		s.closed()
		return nil, err
	}
	return s, nil
}

// warnLeftOut prints the routes on the topic that the table leaves out, so an operator listing
// routes sees why one does not take mail.
func (s *routesSession) warnLeftOut(w io.Writer) {
	for _, p := range s.f.Problems() {
		fmt.Fprintf(w, "warning: route %s is not in effect: %s\n", p.ID, p.String())
	}
}

func routesAdd(ctx context.Context, env app.Env, args []string) error {
	fs, rf := newRoutesFlagSet(env, "add")
	var r events.Route
	fs.StringVar(&r.ID, "id", "", "route id (default: derived from the pattern)")
	fs.StringVar(&r.Pattern, "pattern", "", "address pattern (required)")
	fs.StringVar(&r.Tenant, "tenant", "", "tenant (required unless the pattern has {tenant})")
	fs.StringVar(&r.IntegrationKey, "integration", "", "integration key")
	fs.StringVar(&r.Pipeline, "pipeline", "", "pipeline name (default pipeline when empty)")
	fs.StringVar(&r.RulesSet, "rules", "", "rules set used by the classifier")
	crm := fs.String("crm", "", "CRM targets, comma-separated: "+strings.Join(route.KnownTargets(), ", "))
	allow := fs.String("allow", "", "sender patterns accepted, comma-separated (alice@x.example, *@x.example, *@*.x.example, <>)")
	deny := fs.String("deny", "", "sender patterns refused, comma-separated")
	fs.Int64Var(&r.MaxSize, "max-size", 0, "message size limit in bytes (0: server default)")
	fs.BoolVar(&r.Shadow, "shadow", false, "shadow mode: record CRM writes without performing them")
	replace := fs.Bool("replace", false, "replace the route with this id if it exists (default: fail)")
	if err := fs.Parse(args); err != nil {
		return app.ConfigError(err)
	}
	if fs.NArg() > 0 {
		return app.ConfigError(fmt.Errorf("routes add: unexpected argument %q (every field is a flag)", fs.Arg(0)))
	}
	if r.Pattern == "" {
		return app.ConfigError(errors.New("usage: mailpipe routes add --pattern PATTERN [--tenant TENANT] [flags]"))
	}
	r.CRMTargets, r.AllowSenders, r.DenySenders = splitList(*crm), splitList(*allow), splitList(*deny)
	// Validate the route on its own before touching the cluster, so a typo fails fast.
	if _, err := route.Canonical(r); err != nil {
		return reportInvalid(env.Stderr, "", nil, err)
	}
	s, err := openRoutes(ctx, env, rf, true)
	if err != nil {
		return err
	}
	defer s.closed()
	wctx, cancel := context.WithTimeout(ctx, rf.timeout)
	defer cancel()
	store := s.store.Create
	if *replace {
		store = s.store.Put
	}
	out, err := store(wctx, r)
	if errors.Is(err, kafkaroute.ErrExists) {
		return fmt.Errorf("%w (use --replace to overwrite it)", err)
	}
	if err != nil {
		return reportInvalid(env.Stderr, "", nil, err)
	}
	fmt.Fprintf(env.Stdout, "stored route %s\n", out.ID)
	return writeYAML(env.Stdout, route.SpecOf(out))
}

func routesList(ctx context.Context, env app.Env, args []string) error {
	fs, rf := newRoutesFlagSet(env, "list")
	format := fs.String("o", "table", "output: table, json or yaml (yaml is an import file)")
	if err := fs.Parse(args); err != nil {
		return app.ConfigError(err)
	}
	if fs.NArg() > 0 {
		return app.ConfigError(errors.New("usage: mailpipe routes list [-o table|json|yaml]"))
	}
	if *format != "table" && *format != "json" && *format != "yaml" {
		return app.ConfigError(fmt.Errorf("routes list: unknown output %q (table, json or yaml)", *format))
	}
	s, err := openRoutes(ctx, env, rf, false)
	if err != nil {
		return err
	}
	defer s.closed()
	specs := []route.Spec{}
	for _, r := range s.f.Table().Load().Routes() {
		specs = append(specs, route.SpecOf(r))
	}
	s.warnLeftOut(env.Stderr)
	switch *format {
	case "json":
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(specs)
	case "yaml":
		return writeYAML(env.Stdout, specs)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPATTERN\tTENANT\tCRM\tPIPELINE\tRULES\tOPTIONS")
	for _, sp := range specs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sp.ID, sp.Pattern, dash(sp.Tenant, "{tag}"),
			dash(strings.Join(sp.CRMTargets, ","), "-"), dash(sp.Pipeline, "-"), dash(sp.RulesSet, "-"), options(sp))
	}
	return tw.Flush()
}

func dash(s, empty string) string {
	if s == "" {
		return empty
	}
	return s
}

// options summarizes the fields the table has no column for.
func options(sp route.Spec) string {
	var o []string
	if sp.Shadow {
		o = append(o, "shadow")
	}
	if sp.MaxSize > 0 {
		o = append(o, "max-size="+strconv.FormatInt(sp.MaxSize, 10))
	}
	if len(sp.AllowSenders) > 0 {
		o = append(o, fmt.Sprintf("allow=%d", len(sp.AllowSenders)))
	}
	if len(sp.DenySenders) > 0 {
		o = append(o, fmt.Sprintf("deny=%d", len(sp.DenySenders)))
	}
	if sp.IntegrationKey != "" {
		o = append(o, "integration="+sp.IntegrationKey)
	}
	return dash(strings.Join(o, " "), "-")
}

func routesShow(ctx context.Context, env app.Env, args []string) error {
	fs, rf := newRoutesFlagSet(env, "show")
	format := fs.String("o", "yaml", "output: yaml or json")
	if err := fs.Parse(args); err != nil {
		return app.ConfigError(err)
	}
	if fs.NArg() != 1 {
		return app.ConfigError(errors.New("usage: mailpipe routes show [-o yaml|json] ID"))
	}
	s, err := openRoutes(ctx, env, rf, false)
	if err != nil {
		return err
	}
	defer s.closed()
	id := fs.Arg(0)
	r, ok := s.f.Table().Load().Get(id)
	if !ok {
		for _, p := range s.f.Problems() {
			if p.ID == id {
				return fmt.Errorf("route %s is on the topic but not in effect: %s", id, p.String())
			}
		}
		return fmt.Errorf("%w: %s", kafkaroute.ErrNotFound, id)
	}
	if *format == "json" {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(route.SpecOf(r))
	}
	return writeYAML(env.Stdout, route.SpecOf(r))
}

func routesRm(ctx context.Context, env app.Env, args []string) error {
	fs, rf := newRoutesFlagSet(env, "rm")
	if err := fs.Parse(args); err != nil {
		return app.ConfigError(err)
	}
	if fs.NArg() == 0 {
		return app.ConfigError(errors.New("usage: mailpipe routes rm ID [ID ...]"))
	}
	s, err := openRoutes(ctx, env, rf, true)
	if err != nil {
		return err
	}
	defer s.closed()
	for _, id := range fs.Args() {
		wctx, cancel := context.WithTimeout(ctx, rf.timeout)
		err := s.store.Delete(wctx, id)
		cancel()
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "deleted route %s\n", id)
	}
	return nil
}

func routesImport(ctx context.Context, env app.Env, args []string) error {
	fs, rf := newRoutesFlagSet(env, "import")
	dry := fs.Bool("dry-run", false, "validate and print what would change without writing")
	if err := fs.Parse(args); err != nil {
		return app.ConfigError(err)
	}
	if fs.NArg() != 1 {
		return app.ConfigError(errors.New("usage: mailpipe routes import [--dry-run] FILE.yaml (- for stdin)"))
	}
	file := fs.Arg(0)
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	entries, shapeErr := route.DecodeYAML(data)
	if entries == nil {
		return reportInvalid(env.Stderr, file, nil, shapeErr)
	}
	batch := make([]events.Route, len(entries))
	for i, e := range entries {
		batch[i] = e.Spec.Route()
	}
	// Check the file on its own, then against the current table, and report every problem of
	// both kinds at once. A file that is wrong on its own is still reported when the cluster
	// cannot be reached.
	_, fileErr := (&route.Snapshot{}).ValidateBatch(batch)
	s, err := openRoutes(ctx, env, rf, !*dry)
	if err != nil {
		if shapeErr != nil || fileErr != nil {
			fmt.Fprintf(env.Stderr, "warning: not checked against the current routes: %v\n", err)
			return reportInvalid(env.Stderr, file, entries, joinProblems(entries, shapeErr, fileErr))
		}
		return err
	}
	defer s.closed()
	current := s.f.Table().Load()
	canon, tableErr := current.ValidateBatch(batch)
	if err := joinProblems(entries, shapeErr, tableErr); err != nil {
		return reportInvalid(env.Stderr, file, entries, err)
	}
	// Unchanged routes are not written again: importing the same file twice writes nothing.
	var changes []events.Route
	var changed []int // file index of each change
	for i, c := range canon {
		old, ok := current.Get(c.ID)
		verb := "create"
		if ok {
			old.UpdatedAt = time.Time{}
			if sameRoute(old, c) {
				fmt.Fprintf(env.Stdout, "unchanged %s %s\n", c.ID, c.Pattern)
				continue
			}
			verb = "update"
		}
		fmt.Fprintf(env.Stdout, "%-9s %s %s\n", verb, c.ID, c.Pattern)
		changes, changed = append(changes, c), append(changed, i)
	}
	if *dry {
		fmt.Fprintf(env.Stdout, "%d of %d routes to write (dry run: nothing written)\n", len(changes), len(canon))
		return nil
	}
	if len(changes) == 0 {
		fmt.Fprintf(env.Stdout, "0 of %d routes to write\n", len(canon))
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, rf.timeout)
	defer cancel()
	if _, err := s.store.Import(wctx, changes); err != nil {
		// Someone changed the table since the check above; report against the file anyway.
		var ve *route.ValidationError
		if errors.As(err, &ve) {
			for i := range ve.Problems {
				ve.Problems[i].Index = changed[ve.Problems[i].Index]
			}
		}
		return reportInvalid(env.Stderr, file, entries, err)
	}
	fmt.Fprintf(env.Stdout, "wrote %d of %d routes\n", len(changes), len(canon))
	return nil
}

// sameRoute compares two canonical routes, treating nil and empty lists and maps alike (a
// route read back from the topic has empty ones where the file had none).
func sameRoute(a, b events.Route) bool {
	norm := func(r events.Route) events.Route {
		for _, l := range []*[]string{&r.CRMTargets, &r.AllowSenders, &r.DenySenders} {
			if len(*l) == 0 {
				*l = nil
			}
		}
		if len(r.Consent) == 0 {
			r.Consent = nil
		}
		return r
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// joinProblems merges the problems of *route.ValidationErrors about entries, in file order,
// leaving out route checks of malformed entries (an item that is not a mapping has no fields to
// check). It returns nil when there are none.
func joinProblems(entries []route.Entry, errs ...error) error {
	var ps []route.Problem
	for _, err := range errs {
		var ve *route.ValidationError
		if !errors.As(err, &ve) {
			continue
		}
		for _, p := range ve.Problems {
			if p.Line == 0 && p.Index >= 0 && p.Index < len(entries) {
				if entries[p.Index].Malformed {
					continue
				}
				p.Line = entries[p.Index].LineOf(p.Field)
			}
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	slices.SortStableFunc(ps, func(a, b route.Problem) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.Line, b.Line))
	})
	return &route.ValidationError{Problems: ps}
}

// reportInvalid prints every problem of a *route.ValidationError as "FILE:LINE: routes[i]:
// field: detail" (lines from entries when given) and returns a short error; other errors are
// returned as they are.
func reportInvalid(w io.Writer, file string, entries []route.Entry, err error) error {
	var ve *route.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	for _, p := range ve.Problems {
		if p.Line == 0 && p.Index >= 0 && p.Index < len(entries) {
			p.Line = entries[p.Index].LineOf(p.Field)
		}
		prefix := ""
		if file != "" {
			prefix = file + ":"
			if p.Line > 0 {
				prefix += strconv.Itoa(p.Line) + ":"
			}
			prefix += " "
			p.Line = 0 // already in the prefix
		}
		fmt.Fprintf(w, "%s%s\n", prefix, p.String())
	}
	n := len(ve.Problems)
	plural := "s"
	if n == 1 {
		plural = ""
	}
	return fmt.Errorf("%d problem%s found; nothing was written: %w", n, plural, route.ErrInvalid)
}

func writeYAML(w io.Writer, v any) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing YAML: %w", err)
	}
	return enc.Close()
}
