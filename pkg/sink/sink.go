// Package sink is the crm-sink stage handler: it decodes an events.Enriched record from
// mail.enriched.v1, writes it to the CRM targets its route names through crm.Connector, and
// emits one mail.crm.v1 outcome per target (key: thread key), one mail.lake.v1 row per target
// (key: message id) and, for a target that gave up, one dead letter on mail.dlq.v1 that names
// the target.
//
// # Delivery guarantee
//
// The sink is at-least-once with idempotent effects. The stage commits the input offset only
// after Handle returned its outputs, and Handle returns only after every target confirmed its
// effect or gave up; a crash in between redelivers the record and the connectors' upserts
// (idempotent by external id) absorb the repeat.
//
// The dedupe store only saves work and is never the only guard. Its key for a target is
// "<target>:<external id>" ([DedupeKey]), and it is written only AFTER the connector confirmed
// the effect, so a crash or failure between the check and the write can never lose a delivery:
//
//  1. If the store can read keys (it implements [Seer]) and reports the key as seen, the target
//     already has the message: the connector is skipped and the outcome is deduped.
//  2. Otherwise the connector is called. A store error on the read means "not known", never
//     "duplicate", so the connector is called then too.
//  3. After a confirmed upsert the key is set with MarkSeen (SET NX EX in Redis). A store error
//     here is logged and ignored: the worst case is one more idempotent upsert on a redelivery.
//
// # Targets, routes and shadow mode
//
// Without a route lookup ([WithRoutes]) every message goes to every connector. With one, the
// message's route (events.Parsed.RouteID) chooses: its crm_targets name the targets (empty means
// every configured connector), and its shadow flag turns every write into a record of what
// would have been written (outcome shadow, nothing called, nothing remembered in the dedupe
// store, so a replay after the route leaves shadow mode writes for real). A route that names a
// target this deployment has not configured gives that target outcome failed with class config
// and a dead letter, so nothing is lost while the configuration is fixed.
//
// Targets are independent: each is written concurrently with its own retries, its own
// concurrency and rate limit, and its own outcome. A target whose error is not retryable, or
// that is still failing after Config.MaxAttempts calls (full-jitter exponential backoff, at
// least the server's Retry-After), gets outcome failed and a dead letter carrying the header
// [HeaderTarget]; the other targets' outcomes stand. Replaying that dead letter writes only to
// the named target.
//
// # Per-thread order
//
// Records of one thread share a partition and are handled one after another, so a reply is
// written after the message it answers. The one way to break that would be a reply written
// while its parent waits in the DLQ for the same target; so when a target gives up on a
// message, the sink holds the thread for that target (a key in the dedupe store, Config.HoldTTL)
// and later messages of the thread are dead-lettered for it with class blocked, behind the
// message that failed. Replaying the DLQ in order writes the parent first (it carries
// [HeaderHolder], which lets it through the hold and releases it on success), then the rest.
// A store error reading a hold means "not held": order is then best effort, delivery is not
// affected.
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/backoff"
	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/lake"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// Defaults of the options.
const (
	// DefaultDedupeTTL covers stage retries, rebalances and same-day replays; older
	// redeliveries reach the connectors again, which is correct because their upserts are
	// idempotent.
	DefaultDedupeTTL = 24 * time.Hour
	// DefaultHoldTTL bounds how long a thread stays held behind a dead letter: long enough for
	// ops to fix and replay, short enough that a forgotten dead letter does not stall a
	// conversation forever.
	DefaultHoldTTL        = 7 * 24 * time.Hour
	DefaultMaxAttempts    = 4
	DefaultInitialBackoff = 200 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	DefaultConcurrency    = 8
)

// Headers the sink puts on its dead letters (besides package dlq's). They are part of the wire
// contract of mail.dlq.v1.
const (
	// HeaderTarget names the target a dead letter is for; a replayed record carrying it is
	// written to that target only.
	HeaderTarget = "mailpipe.sink.target"
	// HeaderHolder marks the dead letter whose failure holds its thread for the target.
	HeaderHolder = "mailpipe.sink.holder"
)

// StageName is the stage name written to the sink's own dead letters.
const StageName = "crm-sink"

// Seer is the optional read capability of a dedupe.Store: report whether key is live, without
// marking it. An error means "not known". The sink uses it, found by type assertion, to skip
// targets that already confirmed a message and to read thread holds.
type Seer interface {
	Seen(ctx context.Context, key string) (seen bool, err error)
}

// Routes looks up a route by id; route.Table and kafkaroute's follower provide it.
type Routes interface {
	Get(id string) (events.Route, bool)
}

// RoutesFunc adapts a function to [Routes].
type RoutesFunc func(id string) (events.Route, bool)

// Get calls f.
func (f RoutesFunc) Get(id string) (events.Route, bool) { return f(id) }

// DedupeKey returns the dedupe key of a message's delivery to one target.
func DedupeKey(target, externalID string) string { return target + ":" + externalID }

// HoldKey returns the store key that holds a thread for a target.
func HoldKey(target, threadKey string) string { return "hold:" + target + ":" + threadKey }

// Sink is the crm-sink handler. It is safe for concurrent use when its connectors and stores
// are.
type Sink struct {
	codec     *serde.Codec
	targets   []*target
	byName    map[string]*target
	store     dedupe.Store // nil: no dedupe
	seer      Seer         // nil: the store cannot read (no dedupe skips, no holds)
	forgetter dedupe.Forgetter
	routes    Routes
	lake      *lake.Mapper
	backoff   *backoff.Backoff
	inst      *instruments
	o         options
	log       *slog.Logger
}

// target is one connector with its limits.
type target struct {
	conn    crm.Connector
	sem     chan struct{}
	limiter ratelimit.Limiter // nil: no rate limit
}

// New returns a sink writing to connectors. store may be nil (no dedupe: every record reaches
// every connector, and threads are never held). It returns an error naming every problem: a nil
// codec or logger, no connectors, a nil connector, an empty or repeated target name, bad
// options.
func New(codec *serde.Codec, connectors []crm.Connector, store dedupe.Store, log *slog.Logger, opts ...Option) (*Sink, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	var errs []error
	if codec == nil {
		errs = append(errs, errors.New("codec is required"))
	}
	if log == nil {
		errs = append(errs, errors.New("logger is required"))
	}
	if len(connectors) == 0 {
		errs = append(errs, errors.New("at least one connector is required"))
	}
	s := &Sink{codec: codec, byName: map[string]*target{}, store: store, routes: o.routes, o: o, log: log}
	for i, c := range connectors {
		switch {
		case c == nil:
			errs = append(errs, fmt.Errorf("connector %d is nil", i))
		case c.Name() == "":
			errs = append(errs, fmt.Errorf("connector %d has an empty name", i))
		case s.byName[c.Name()] != nil:
			errs = append(errs, fmt.Errorf("target name %q is used by two connectors; names key the dedupe store and mail.crm.v1", c.Name()))
		default:
			t := &target{conn: c, sem: make(chan struct{}, o.concurrency(c.Name()))}
			if l, ok := o.rates[c.Name()]; ok && l.Enabled() {
				lim, err := o.limiters("crm-sink-"+c.Name(), l)
				if err != nil {
					errs = append(errs, fmt.Errorf("rate limit of %s: %w", c.Name(), err))
				}
				t.limiter = lim
			}
			s.targets = append(s.targets, t)
			s.byName[c.Name()] = t
		}
	}
	for name := range o.rates {
		if s.byName[name] == nil && len(connectors) > 0 {
			errs = append(errs, fmt.Errorf("rate limit for unknown target %q", name))
		}
	}
	for name := range o.conc {
		if s.byName[name] == nil && len(connectors) > 0 {
			errs = append(errs, fmt.Errorf("concurrency for unknown target %q", name))
		}
	}
	errs = append(errs, o.validate()...)
	mapper, err := lake.NewMapper(o.lakeSalt)
	if err != nil {
		errs = append(errs, err)
	}
	b, err := backoff.New(o.initialBackoff, o.maxBackoff, backoff.WithMaxAttempts(max(o.maxAttempts, 1)))
	if err != nil {
		errs = append(errs, err)
	}
	inst, err := newInstruments(o.meters, o.tracers)
	if err != nil {
		errs = append(errs, fmt.Errorf("metrics: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring crm sink: %w", err)
	}
	s.lake, s.backoff, s.inst = mapper, b, inst
	if seer, ok := store.(Seer); ok {
		s.seer = seer
	}
	if f, ok := store.(dedupe.Forgetter); ok {
		s.forgetter = f
	}
	return s, nil
}

// Targets returns the configured target names in the order given to New.
func (s *Sink) Targets() []string {
	out := make([]string, len(s.targets))
	for i, t := range s.targets {
		out[i] = t.conn.Name()
	}
	return out
}

// plan is what one record asks of the sink.
type plan struct {
	targets []*target
	missing []string // named by the route, not configured
	shadow  bool
	routeID string
}

// plan chooses the targets of msg: the route's, cut to the replayed dead letter's target.
func (s *Sink) plan(ctx context.Context, msg *events.Enriched, rec *kgo.Record) plan {
	p := plan{routeID: msg.Message.RouteID, targets: s.targets}
	if s.routes != nil && p.routeID != "" {
		r, ok := s.routes.Get(p.routeID)
		switch {
		case !ok:
			// The route was deleted after ingress accepted the mail: the mail is still owed
			// to someone, so it goes where unrouted mail goes.
			s.log.WarnContext(ctx, "route not found; writing to every target",
				slog.String("route_id", p.routeID), slog.String("message_id", msg.Message.ID))
		default:
			p.shadow = r.Shadow
			if len(r.CRMTargets) > 0 {
				p.targets = nil
				for _, name := range r.CRMTargets {
					if t := s.byName[name]; t != nil {
						if !slices.Contains(p.targets, t) {
							p.targets = append(p.targets, t)
						}
					} else if !slices.Contains(p.missing, name) {
						p.missing = append(p.missing, name)
					}
				}
			}
		}
	}
	if only := headerValues(rec, HeaderTarget); len(only) > 0 {
		// A replayed dead letter is owed to the targets it names, whatever the route says now.
		p.targets, p.missing = nil, nil
		for _, name := range only {
			if t := s.byName[name]; t != nil {
				p.targets = append(p.targets, t)
			} else {
				p.missing = append(p.missing, name)
			}
		}
	}
	return p
}

// delivery is the result of writing to one target.
type delivery struct {
	outcome events.CRMOutcome
	err     error // non-nil: the target gave up
	holder  bool  // the failure holds the thread
	first   time.Time
	last    time.Time
}

// Handle is the stage.Handler of crm-sink (see the package doc). It returns, in target order,
// one mail.crm.v1 record per target, one mail.lake.v1 row per target, and one dead letter per
// target that gave up. Errors: failure.Schema for an undecodable record or one without an
// external id; a context error when the attempt was cut short (the stage retries or, when
// stopping, redelivers the record; targets already confirmed are skipped through the dedupe
// store); failure.Internal for an output that cannot be encoded.
func (s *Sink) Handle(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	var msg events.Enriched
	if err := s.codec.Decode(ctx, kafka.TopicEnriched, rec.Value, &msg); err != nil {
		if ctx.Err() != nil {
			// A registry lookup cut short by the attempt deadline says nothing about the record.
			return nil, fmt.Errorf("decoding enriched record: %w", errors.Join(err, ctx.Err()))
		}
		return nil, failure.Wrap(failure.Schema, fmt.Errorf("decoding enriched record: %w", err))
	}
	if msg.Message.ExternalID == "" {
		return nil, failure.New(failure.Schema, "enriched record has no external id")
	}
	p := s.plan(ctx, &msg, rec)
	holderFor := headerValues(rec, HeaderHolder)

	results := make([]delivery, len(p.targets)+len(p.missing))
	var wg sync.WaitGroup
	for i, t := range p.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.deliver(ctx, t, &msg, p, slices.Contains(holderFor, t.conn.Name()))
		}()
	}
	wg.Wait()
	for i, name := range p.missing {
		now := s.o.now()
		d := delivery{outcome: s.newOutcome(&msg, name, p.routeID), first: now, last: now}
		d.err = failure.New(failure.Config, fmt.Sprintf("route %s names CRM target %q, which this crm-sink does not configure", p.routeID, name))
		results[len(p.targets)+i] = d
	}
	for _, d := range results {
		if d.err != nil && ctx.Err() != nil && errors.Is(d.err, ctx.Err()) {
			// Cut short, not failed: say so to the stage instead of dead-lettering.
			return nil, fmt.Errorf("writing message %s: %w", msg.Message.ID, d.err)
		}
	}
	return s.outputs(ctx, &msg, rec, results)
}

func (s *Sink) newOutcome(msg *events.Enriched, target, routeID string) events.CRMOutcome {
	return events.CRMOutcome{
		ID:         msg.Message.ID,
		ExternalID: msg.Message.ExternalID,
		ThreadKey:  msg.Message.ThreadKey,
		Tenant:     msg.Message.Tenant,
		Target:     target,
		ObjectIds:  map[string]string{},
		ReceivedAt: msg.Message.ReceivedAt.UTC(),
		RouteID:    routeID,
	}
}

// deliver writes msg to one target: shadow, dedupe skip, thread hold, then the connector with
// retries.
func (s *Sink) deliver(ctx context.Context, t *target, msg *events.Enriched, p plan, holder bool) delivery {
	name := t.conn.Name()
	d := delivery{outcome: s.newOutcome(msg, name, p.routeID)}
	attrs := []slog.Attr{
		slog.String("target", name), slog.String("message_id", msg.Message.ID),
		slog.String("external_id", msg.Message.ExternalID),
	}
	if p.shadow {
		d.outcome.Outcome = crm.OutcomeShadow
		d.outcome.WrittenAt = s.o.now().UTC()
		s.log.LogAttrs(ctx, slog.LevelInfo, "shadow mode: not written", attrs...)
		return d
	}
	if s.seer != nil {
		seen, err := s.seer.Seen(ctx, DedupeKey(name, msg.Message.ExternalID))
		switch {
		case err != nil:
			s.log.LogAttrs(ctx, slog.LevelWarn, "dedupe lookup failed; delivering anyway", append(attrs, slog.Any("error", err))...)
		case seen:
			d.outcome.Outcome = crm.OutcomeDeduped
			d.outcome.WrittenAt = s.o.now().UTC()
			d.outcome.LatencyMs = latency(msg, d.outcome.WrittenAt)
			if holder {
				s.release(ctx, name, msg)
			}
			return d
		}
		if thread := msg.Message.ThreadKey; thread != "" && !holder {
			held, err := s.seer.Seen(ctx, HoldKey(name, thread))
			switch {
			case err != nil:
				s.log.LogAttrs(ctx, slog.LevelWarn, "thread hold lookup failed; writing without it", append(attrs, slog.Any("error", err))...)
			case held:
				d.first, d.last = s.o.now(), s.o.now()
				d.err = failure.New(failure.Blocked, fmt.Sprintf("an earlier message of thread %s is in the DLQ for target %s; replay it first", thread, name))
				return d
			}
		}
	}

	res, attempts, err := s.upsert(ctx, t, msg, &d)
	d.outcome.Attempts = attempts
	if err != nil {
		d.err = fmt.Errorf("upserting message %s to %s: %w", msg.Message.ID, name, err)
		d.holder = true
		return d
	}
	d.outcome.Outcome = res.Outcome
	d.outcome.WrittenAt = s.o.now().UTC()
	d.outcome.LatencyMs = latency(msg, d.outcome.WrittenAt)
	maps.Copy(d.outcome.ObjectIds, res.ObjectIDs)
	if s.store != nil {
		if _, err := s.store.MarkSeen(ctx, DedupeKey(name, msg.Message.ExternalID), s.o.ttl); err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "recording delivery in dedupe store failed", append(attrs, slog.Any("error", err))...)
		}
	}
	if holder {
		s.release(ctx, name, msg)
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "delivered", append(attrs, slog.String("outcome", res.Outcome), slog.Int("attempts", attempts))...)
	return d
}

// upsert calls the connector until it succeeds, fails for good, or the attempts are used up.
// It returns the connector calls made.
func (s *Sink) upsert(ctx context.Context, t *target, msg *events.Enriched, d *delivery) (crm.Result, int, error) {
	calls := 0
	for attempt := 1; ; attempt++ {
		res, err := s.call(ctx, t, msg, attempt)
		calls += max(res.Attempts, 1)
		if err == nil {
			switch res.Outcome {
			case crm.OutcomeCreated, crm.OutcomeUpdated, crm.OutcomeUnchanged:
				return res, calls, nil
			default:
				err = failure.Wrap(failure.Internal, fmt.Errorf("connector reported outcome %q, which connectors may not return", res.Outcome))
			}
		}
		now := s.o.now()
		if d.first.IsZero() {
			d.first = now
		}
		d.last = now
		if ctx.Err() != nil {
			return res, calls, errors.Join(err, ctx.Err())
		}
		if !failure.Retryable(err) || s.backoff.Exhausted(attempt) {
			return res, calls, err
		}
		wait := s.backoff.Delay(attempt)
		if after, ok := failure.RetryAfter(err); ok && after > wait {
			wait = min(after, s.o.maxBackoff)
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			// Waiting would outlive the attempt: give up now, with the real error, rather
			// than hand the stage a timeout that says nothing about the target.
			return res, calls, err
		}
		s.log.DebugContext(ctx, "retrying target", slog.String("target", t.conn.Name()),
			slog.Int("attempt", attempt), slog.Duration("wait", wait), slog.Any("error", err))
		if err := backoff.Sleep(ctx, wait); err != nil {
			return res, calls, err
		}
	}
}

// call makes one connector call within the target's concurrency and rate limits.
func (s *Sink) call(ctx context.Context, t *target, msg *events.Enriched, attempt int) (crm.Result, error) {
	if t.limiter != nil {
		for {
			ok, after, err := t.limiter.Allow(ctx, t.conn.Name())
			if err != nil {
				s.log.WarnContext(ctx, "rate limiter failed; calling anyway", slog.String("target", t.conn.Name()), slog.Any("error", err))
			}
			if ok {
				break
			}
			if err := backoff.Sleep(ctx, after); err != nil {
				return crm.Result{}, err
			}
		}
	}
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return crm.Result{}, ctx.Err()
	}
	defer func() { <-t.sem }()
	ctx, end := s.inst.startCall(ctx, t.conn.Name(), attempt)
	res, err := t.conn.Upsert(ctx, msg)
	end(err)
	return res, err
}

// release lifts the hold a dead letter put on its thread, once it was written.
func (s *Sink) release(ctx context.Context, target string, msg *events.Enriched) {
	if s.forgetter == nil || msg.Message.ThreadKey == "" {
		return
	}
	if err := s.forgetter.Forget(ctx, HoldKey(target, msg.Message.ThreadKey)); err != nil {
		s.log.WarnContext(ctx, "releasing thread hold failed", slog.String("target", target), slog.Any("error", err))
	}
}

// hold keeps the thread of a message that failed for target behind it.
func (s *Sink) hold(ctx context.Context, target string, msg *events.Enriched) {
	if s.store == nil || s.seer == nil || msg.Message.ThreadKey == "" {
		return
	}
	if _, err := s.store.MarkSeen(ctx, HoldKey(target, msg.Message.ThreadKey), s.o.holdTTL); err != nil {
		s.log.WarnContext(ctx, "holding the thread failed; later replies may be written first", slog.String("target", target), slog.Any("error", err))
	}
}

func latency(msg *events.Enriched, written time.Time) int64 {
	return max(written.Sub(msg.Message.ReceivedAt).Milliseconds(), 0)
}

// outputs encodes the outcomes, the lake rows and the dead letters.
func (s *Sink) outputs(ctx context.Context, msg *events.Enriched, rec *kgo.Record, results []delivery) ([]*kgo.Record, error) {
	threadKey := []byte(msg.Message.ThreadKey)
	if len(threadKey) == 0 {
		// Every stage keys by thread key; fall back to the input key so the outcome still lands
		// on the thread's partition.
		threadKey = append([]byte(nil), rec.Key...)
	}
	outcomes := make([]events.CRMOutcome, len(results))
	var letters []*kgo.Record
	for i := range results {
		d := &results[i]
		if d.err != nil {
			name := d.outcome.Target
			class := failure.Classify(d.err)
			d.outcome.Outcome = crm.OutcomeFailed
			d.outcome.Error = d.err.Error()
			d.outcome.ErrorClass = string(class)
			d.outcome.WrittenAt = s.o.now().UTC()
			letter := dlq.Build(rec, dlq.Info{
				Stage: StageName, Class: class, Message: d.err.Error(), Attempts: max(d.outcome.Attempts, 1),
				FirstFailure: d.first, LastFailure: d.last,
			})
			letter.Topic = s.o.dlqTopic
			letter.Headers = slices.DeleteFunc(letter.Headers, func(h kgo.RecordHeader) bool {
				return h.Key == HeaderTarget || h.Key == HeaderHolder
			})
			letter.Headers = append(letter.Headers, kgo.RecordHeader{Key: HeaderTarget, Value: []byte(name)})
			if d.holder {
				letter.Headers = append(letter.Headers, kgo.RecordHeader{Key: HeaderHolder, Value: []byte(name)})
				s.hold(ctx, name, msg)
			}
			s.log.WarnContext(ctx, "target gave up; dead-lettering it",
				slog.String("target", name), slog.String("message_id", msg.Message.ID),
				slog.String("error_class", string(class)), slog.Int("attempts", d.outcome.Attempts), slog.Any("error", d.err))
			letters = append(letters, letter)
			s.inst.deadLetter(ctx, name, class)
		}
		outcomes[i] = d.outcome
		o := &d.outcome
		confirmed := o.Outcome == crm.OutcomeCreated || o.Outcome == crm.OutcomeUpdated || o.Outcome == crm.OutcomeUnchanged
		s.inst.outcome(ctx, o.Tenant, o.Target, o.Outcome, o.WrittenAt.Sub(msg.Message.ReceivedAt), confirmed)
	}
	out := make([]*kgo.Record, 0, 2*len(outcomes)+len(letters)+1)
	for i := range outcomes {
		v, err := s.codec.Encode(kafka.TopicCRM, &outcomes[i])
		if err != nil {
			return nil, failure.Wrap(failure.Internal, fmt.Errorf("encoding crm outcome: %w", err))
		}
		out = append(out, &kgo.Record{Topic: kafka.TopicCRM, Key: threadKey, Value: v})
	}
	rows := s.lake.Rows(msg, outcomes)
	for i := range rows {
		v, err := s.codec.Encode(kafka.TopicLake, &rows[i])
		if err != nil {
			return nil, failure.Wrap(failure.Internal, fmt.Errorf("encoding lake row: %w", err))
		}
		out = append(out, &kgo.Record{Topic: kafka.TopicLake, Key: []byte(msg.Message.ID), Value: v})
	}
	return append(out, letters...), nil
}

// headerValues returns the values of rec's headers named key.
func headerValues(rec *kgo.Record, key string) []string {
	var out []string
	for _, h := range rec.Headers {
		if h.Key == key && len(h.Value) > 0 {
			out = append(out, string(h.Value))
		}
	}
	return out
}
