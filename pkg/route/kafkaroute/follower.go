// Package kafkaroute keeps a route.Table in step with the compacted topic mail.routes.v1 and
// writes routes to it.
//
// A [Follower] reads the topic from its start to its end before it reports ready, so a service
// never resolves addresses against a half-loaded table, then follows updates live: a record
// keyed by a route id sets the route, a tombstone (null value) deletes it. A [Store] validates
// routes against the follower's table and produces them keyed by id with acks=all, and waits until
// the follower applied them, so a write is visible in the table when the call returns.
package kafkaroute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/route"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// Environment variable names of [Config], relative to the prefix the service gives the section
// (ingress reads them as MAILPIPE_ROUTES_<NAME>).
const (
	EnvEnabled     = "ENABLED"
	EnvTopic       = "TOPIC"
	EnvLoadTimeout = "LOAD_TIMEOUT"
)

// DefaultLoadTimeout bounds reading the route table at startup. A table of thousands of routes
// reads in well under a second; a minute covers a broker that is still electing leaders.
const DefaultLoadTimeout = time.Minute

// Config configures following the route table in a service.
type Config struct {
	// Enabled makes the service resolve recipients with the route table instead of its static
	// fallback (ingress: the ingest domain list). Default false.
	Enabled bool `env:"ENABLED" usage:"resolve recipients with the route table on mail.routes.v1 (instead of the ingest domain list)"`
	// Topic holding the routes. Default kafka.TopicRoutes; values always use the mail.routes.v1
	// schema. Override only to isolate an environment or a test.
	Topic string `env:"TOPIC" default:"mail.routes.v1" usage:"compacted topic holding the route table"`
	// LoadTimeout bounds reading the table to its end at startup; the service fails to start
	// when it passes (so an orchestrator retries) rather than refuse mail with an empty table.
	// Default 1m.
	LoadTimeout time.Duration `env:"LOAD_TIMEOUT" default:"1m" usage:"how long startup may take to read the route table to its end"`
}

// DefaultConfig returns routes disabled, on kafka.TopicRoutes, with a one-minute load timeout.
func DefaultConfig() Config {
	return Config{Topic: kafka.TopicRoutes, LoadTimeout: DefaultLoadTimeout}
}

// Validate checks the configuration after zero fields took their defaults.
func (c Config) Validate() error {
	var errs []error
	if c.LoadTimeout < 0 {
		errs = append(errs, errors.New("load timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// WithDefaults returns c with zero fields set from DefaultConfig.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Topic == "" {
		c.Topic = d.Topic
	}
	if c.LoadTimeout == 0 {
		c.LoadTimeout = d.LoadTimeout
	}
	return c
}

// Option configures a [Follower].
type Option interface{ apply(*options) }

type options struct {
	topic string
	extra []kgo.Opt
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithTopic reads routes from topic instead of kafka.TopicRoutes.
func WithTopic(topic string) Option {
	return optionFunc(func(o *options) {
		if topic != "" {
			o.topic = topic
		}
	})
}

// WithClientOpts appends kgo options to the follower's consumer (tests tune fetch waits with it).
// Options that change what or how it consumes (topics, groups, isolation) break the follower.
func WithClientOpts(opts ...kgo.Opt) Option {
	return optionFunc(func(o *options) { o.extra = append(o.extra, opts...) })
}

// ErrNotLoaded is returned by [Follower.Check] until the table was read to the end of the topic.
var ErrNotLoaded = errors.New("route table not loaded yet")

// errStopped is returned to waiters when the follower stops.
var errStopped = errors.New("route follower stopped")

// Follower keeps a route.Table in step with the routes topic. Create it with NewFollower, read the
// table to its end with Load (or let Run do it), follow updates with Run, and stop with Close.
// Table, Check, Routes, Problems and WaitFor are safe for concurrent use; Load and Run must not
// run at the same time.
type Follower struct {
	cl    *kgo.Client
	adm   *kadm.Client
	codec *serde.Codec
	log   *slog.Logger
	topic string
	table route.Table

	mu       sync.Mutex
	routes   map[string]events.Route // latest decoded value per key, valid or not
	problems []route.Problem         // of the current snapshot, with ids
	applied  map[int32]int64         // per partition, the offset after the last record in the table
	changed  chan struct{}           // closed and replaced whenever applied moves or the follower stops
	ready    bool

	started  atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once
	runDone  chan struct{}
	closed   sync.Once
	closeErr error
}

// NewFollower returns a follower of the routes topic on the cluster cfg describes. It connects
// lazily: nothing is read until Load or Run. The caller must Close it.
func NewFollower(cfg kafka.Config, codec *serde.Codec, log *slog.Logger, opts ...Option) (*Follower, error) {
	if codec == nil || log == nil {
		return nil, errors.New("configuring the route follower: codec and logger are required")
	}
	o := options{topic: kafka.TopicRoutes}
	for _, opt := range opts {
		opt.apply(&o)
	}
	// read_committed with control records kept: the consumer sees every offset up to the last
	// stable offset, including transaction markers, so "caught up" is a plain offset comparison
	// even when a transactional writer ever touches the topic.
	kopts := append([]kgo.Opt{
		kgo.ConsumeTopics(o.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	}, o.extra...)
	cl, err := kafka.NewClient(cfg, log, kopts...)
	if err != nil {
		return nil, fmt.Errorf("building the route follower client: %w", err)
	}
	return &Follower{
		cl: cl, adm: kadm.NewClient(cl), codec: codec, log: log.With(slog.String("topic", o.topic)), topic: o.topic,
		routes: map[string]events.Route{}, applied: map[int32]int64{}, changed: make(chan struct{}),
		stop: make(chan struct{}), runDone: make(chan struct{}),
	}, nil
}

// Open builds a follower of cfg.Topic on the cluster kcfg describes and reads the table to its
// end within cfg.LoadTimeout (zero fields of cfg take their defaults). It is how a service starts
// following routes: the table is complete before any address is resolved with it. The caller
// runs the returned follower's Actor (started before the components that resolve addresses, so
// it stops after them) and may register its Check as a readiness check. On error nothing is
// left open.
func Open(ctx context.Context, cfg Config, kcfg kafka.Config, codec *serde.Codec, log *slog.Logger, opts ...Option) (*Follower, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, app.ConfigError(fmt.Errorf("routes: %w", err))
	}
	f, err := NewFollower(kcfg, codec, log, append([]Option{WithTopic(cfg.Topic)}, opts...)...)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, cfg.LoadTimeout)
	defer cancel()
	if err := f.Load(lctx); err != nil {
		_ = f.Close(ctx) // Run never started: Close only closes the client
		return nil, fmt.Errorf("loading the route table from %s: %w", cfg.Topic, err)
	}
	return f, nil
}

// Table returns the table the follower keeps current. It is empty until Load returned.
func (f *Follower) Table() *route.Table { return &f.table }

// Topic returns the topic the follower reads.
func (f *Follower) Topic() string { return f.topic }

// Check is an admin readiness check: nil once the table was read to the end of the topic.
func (f *Follower) Check(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ready {
		return ErrNotLoaded
	}
	return nil
}

// Problems returns the routes on the topic that the table leaves out, and why (invalid, or
// competing with another route for the same addresses; see route.NewSnapshot). Each Problem
// carries the route id; Index is meaningless here. The slice is the caller's.
func (f *Follower) Problems() []route.Problem {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.problems)
}

// Known reports whether the topic holds a live (not deleted) record for id, even one the table
// leaves out.
func (f *Follower) Known(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.routes[id]
	return ok
}

// Load reads the topic from its start to the end offsets it lists when called, then installs
// the table and marks the follower ready. It fails when the topic does not exist (a service
// must not treat "no topic" as "no routes" and refuse all mail) and when ctx ends first.
func (f *Follower) Load(ctx context.Context) error {
	start := time.Now()
	target, err := f.endOffsets(ctx)
	if err != nil {
		return err
	}
	for !f.reached(target) {
		fs := f.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading the route table to its end: %w", err)
		}
		if err := f.fetchErrors(fs); err != nil {
			return err
		}
		f.apply(ctx, fs, false)
	}
	f.publish()
	f.mu.Lock()
	f.ready = true
	n := len(f.routes)
	f.mu.Unlock()
	f.log.InfoContext(ctx, "route table loaded", slog.Int("routes", f.table.Load().Len()), slog.Int("records", n),
		slog.Duration("took", time.Since(start)))
	return nil
}

// endOffsets lists, per partition that holds records, the offset Load must reach.
func (f *Follower) endOffsets(ctx context.Context) (map[int32]int64, error) {
	ends, err := f.adm.ListCommittedOffsets(ctx, f.topic)
	if err != nil {
		return nil, fmt.Errorf("listing the end offsets of %s: %w", f.topic, err)
	}
	starts, err := f.adm.ListStartOffsets(ctx, f.topic)
	if err != nil {
		return nil, fmt.Errorf("listing the start offsets of %s: %w", f.topic, err)
	}
	err = ends.Error()
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("reading the route table: topic %s does not exist (create it with `mailpipe topics apply`): %w", f.topic, err)
		}
		return nil, fmt.Errorf("listing the offsets of %s: %w", f.topic, err)
	}
	target := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Offset < o.Offset {
			target[o.Partition] = o.Offset
		}
	})
	return target, nil
}

func (f *Follower) reached(target map[int32]int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p, end := range target {
		if f.applied[p] < end {
			return false
		}
	}
	return true
}

// fetchErrors logs the fetch errors kgo keeps retrying and returns the ones that end consuming.
func (f *Follower) fetchErrors(fs kgo.Fetches) error {
	var fatal error
	fs.EachError(func(topic string, p int32, err error) {
		if errors.Is(err, kgo.ErrClientClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			fatal = errStopped
			return
		}
		f.log.Warn("fetching routes", slog.Int("partition", int(p)), slog.String("error", err.Error()))
	})
	return fatal
}

// apply folds the fetched records into the route set and, when publishNow is set, installs the
// new table before advancing the applied offsets (so WaitFor never returns before the table
// shows the record).
func (f *Follower) apply(ctx context.Context, fs kgo.Fetches, publishNow bool) {
	next := map[int32]int64{}
	changed := false
	fs.EachRecord(func(r *kgo.Record) {
		next[r.Partition] = r.Offset + 1
		if r.Attrs.IsControl() {
			return
		}
		id := string(r.Key)
		attrs := []any{slog.Int("partition", int(r.Partition)), slog.Int64("offset", r.Offset), slog.String("route_id", id)}
		if id == "" {
			f.log.WarnContext(ctx, "ignored a route record without a key", attrs...)
			return
		}
		changed = true
		if len(r.Value) == 0 {
			f.mu.Lock()
			delete(f.routes, id)
			f.mu.Unlock()
			return
		}
		var ev events.Route
		if err := f.codec.Decode(ctx, kafka.TopicRoutes, r.Value, &ev); err != nil {
			// The latest record is the route's state; an unreadable one removes it, so every
			// follower agrees whether it started before the bad write or after compaction.
			f.log.ErrorContext(ctx, "removed a route whose record cannot be decoded", append(attrs, slog.String("error", err.Error()))...)
			f.mu.Lock()
			delete(f.routes, id)
			f.mu.Unlock()
			return
		}
		if ev.ID != id {
			f.log.WarnContext(ctx, "route record id differs from its key; the key wins", append(attrs, slog.String("value_id", ev.ID))...)
			ev.ID = id
		}
		f.mu.Lock()
		f.routes[id] = ev
		f.mu.Unlock()
	})
	if changed && publishNow {
		f.publish()
	}
	if len(next) == 0 {
		return
	}
	f.mu.Lock()
	maps.Copy(f.applied, next)
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// publish builds a snapshot of the route set, installs it and logs routes newly left out.
func (f *Follower) publish() {
	f.mu.Lock()
	rs := slices.Collect(maps.Values(f.routes))
	f.mu.Unlock()
	slices.SortFunc(rs, func(a, b events.Route) int { return strings.Compare(a.ID, b.ID) })
	snap, err := route.NewSnapshot(rs)
	var ps []route.Problem
	var ve *route.ValidationError
	if errors.As(err, &ve) {
		ps = ve.Problems
		for i := range ps {
			ps[i].ID = rs[ps[i].Index].ID
			ps[i].Index = -1
		}
	}
	f.table.Store(snap)
	f.mu.Lock()
	old := f.problems
	f.problems = ps
	f.mu.Unlock()
	for _, p := range ps {
		if !slices.Contains(old, p) {
			f.log.Warn("route left out of the table", slog.String("route_id", p.ID), slog.String("field", p.Field), slog.String("problem", p.Detail))
		}
	}
}

// Run loads the table if Load has not, then follows the topic until Close (returning nil) or
// until ctx ends (returning its error). Call it once.
func (f *Follower) Run(ctx context.Context) error {
	if !f.started.CompareAndSwap(false, true) {
		return errors.New("route follower: Run called twice")
	}
	defer close(f.runDone)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-f.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	stopped := func() bool {
		select {
		case <-f.stop:
			return true
		default:
			return false
		}
	}
	if f.Check(ctx) != nil {
		if err := f.Load(ctx); err != nil {
			if stopped() {
				return nil
			}
			return err
		}
	}
	for {
		fs := f.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			if stopped() {
				return nil
			}
			return fmt.Errorf("following routes: %w", ctx.Err())
		}
		if err := f.fetchErrors(fs); err != nil {
			if stopped() {
				return nil
			}
			return fmt.Errorf("following routes: %w", err)
		}
		f.apply(ctx, fs, true)
	}
}

// WaitFor blocks until the table includes the record at offset of partition (and everything
// before it), ctx ends, or the follower stops.
func (f *Follower) WaitFor(ctx context.Context, partition int32, offset int64) error {
	for {
		f.mu.Lock()
		done, ch := f.ready && f.applied[partition] > offset, f.changed
		f.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-f.stop:
			return errStopped
		case <-ctx.Done():
			return fmt.Errorf("waiting for the route table to apply partition %d offset %d: %w", partition, offset, ctx.Err())
		}
	}
}

// Close stops Run (waiting for it within ctx's deadline) and closes the client. It is
// idempotent: later calls return the first result.
func (f *Follower) Close(ctx context.Context) error {
	f.closed.Do(func() {
		f.stopOnce.Do(func() { close(f.stop) })
		if f.started.Load() {
			select {
			case <-f.runDone:
			case <-ctx.Done():
				f.closeErr = fmt.Errorf("stopping the route follower: %w", ctx.Err())
			}
		}
		f.cl.Close()
	})
	return f.closeErr
}

// Actor runs the follower in an app.Run group. Start it before the components that resolve
// addresses with its table, so it stops after them.
func (f *Follower) Actor() app.Actor {
	return app.Actor{Name: "route-follower", Run: f.Run, Stop: f.Close}
}
