// Package sink is the crm-sink stage handler: it decodes an events.Enriched record from
// mail.enriched.v1, upserts it into every configured CRM target through crm.Connector, and
// emits one mail.crm.v1 outcome per target (key: thread key) and one mail.lake.v1 row (key:
// message id).
//
// # Delivery guarantee
//
// The sink is at-least-once with idempotent effects. The stage commits the input offset only
// after Handle returned its outputs, and Handle returns only after every connector confirmed its
// effect; a crash in between redelivers the record and the connectors' upserts (idempotent by
// external id) absorb the repeat.
//
// The dedupe store only saves work and is never the only guard. Its key for a target is
// "<target>:<external id>" ([DedupeKey]), and it is written only AFTER the connector confirmed
// the effect, so a crash or failure between the check and the write can never lose a delivery:
//
//  1. If the store can read keys (it implements [Seer]) and reports the key as seen, the target
//     already has the message: the connector is skipped and the outcome is deduped.
//  2. Otherwise the connector is called. A store error on the read means "not known", never
//     "duplicate", so the connector is called then too.
//  3. After a confirmed upsert the key is set with MarkSeen. A store error here is logged and
//     ignored: the worst case is one more idempotent upsert on a redelivery.
//
// Shadow outcomes are not recorded in the store: nothing was written, and a replay after the
// route left shadow mode must write for real.
//
// A dedupe.Store without Seen (pkg/dedupe today offers only the set-if-absent MarkSeen, which
// cannot be used as a read without claiming the key before the effect) still gives correct
// results: every redelivery calls the connectors again and their idempotency absorbs it.
//
// # Several targets
//
// Targets are written one after the other in the order given to [New]. For now they are not
// independent: when one target fails, Handle returns its classified error, the stage retries the
// whole record with backoff and finally dead-letters it; targets that already succeeded are
// skipped on the retry through the dedupe store (or upserted again, idempotently, when the store
// cannot read). Per-target retries and dead letters, with outcome "failed" on mail.crm.v1 for a
// target that gave up, are the next step.
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/lake"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// DefaultDedupeTTL is how long a confirmed delivery is remembered unless WithDedupeTTL says
// otherwise. It covers stage retries, rebalances and same-day replays; older redeliveries reach
// the connectors again, which is correct because their upserts are idempotent.
const DefaultDedupeTTL = 24 * time.Hour

// Seer is the optional read capability of a dedupe.Store: report whether key is live, without
// marking it. An error means "not known". The sink uses it, found by type assertion, to skip
// targets that already confirmed a message.
type Seer interface {
	Seen(ctx context.Context, key string) (seen bool, err error)
}

// DedupeKey returns the dedupe key of a message's delivery to one target.
func DedupeKey(target, externalID string) string { return target + ":" + externalID }

// Option configures a [Sink].
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	ttl      time.Duration
	now      func() time.Time
	lakeSalt string
}

// WithLakeSalt sets the per-deployment secret the lake row's sender hash is salted with (see
// lake.NewMapper: at least 16 bytes). Required.
func WithLakeSalt(salt string) Option { return optionFunc(func(o *options) { o.lakeSalt = salt }) }

// WithDedupeTTL sets how long a confirmed delivery is remembered, overriding the default 24h.
// It must be positive.
func WithDedupeTTL(d time.Duration) Option { return optionFunc(func(o *options) { o.ttl = d }) }

// WithClock sets the clock for written_at / delivered_at, for tests.
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }

// Sink is the crm-sink handler. It is safe for concurrent use when its connectors and dedupe
// store are.
type Sink struct {
	codec      *serde.Codec
	connectors []crm.Connector
	store      dedupe.Store // nil: no dedupe
	seer       Seer         // nil: the store cannot read
	lake       *lake.Mapper
	ttl        time.Duration
	now        func() time.Time
	log        *slog.Logger
}

// New returns a sink writing to connectors in order. store may be nil (no dedupe: every record
// reaches every connector). It returns an error naming every problem: a nil codec or logger, no
// connectors, a nil connector, an empty or repeated target name, a bad salt or ttl.
func New(codec *serde.Codec, connectors []crm.Connector, store dedupe.Store, log *slog.Logger, opts ...Option) (*Sink, error) {
	o := options{ttl: DefaultDedupeTTL, now: time.Now}
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
	names := map[string]bool{}
	for i, c := range connectors {
		switch {
		case c == nil:
			errs = append(errs, fmt.Errorf("connector %d is nil", i))
		case c.Name() == "":
			errs = append(errs, fmt.Errorf("connector %d has an empty name", i))
		case names[c.Name()]:
			errs = append(errs, fmt.Errorf("target name %q is used by two connectors; names key the dedupe store and mail.crm.v1", c.Name()))
		default:
			names[c.Name()] = true
		}
	}
	if o.ttl <= 0 {
		errs = append(errs, errors.New("dedupe ttl must be positive"))
	}
	mapper, err := lake.NewMapper(o.lakeSalt)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring crm sink: %w", err)
	}
	s := &Sink{
		codec:      codec,
		connectors: append([]crm.Connector(nil), connectors...),
		store:      store,
		lake:       mapper,
		ttl:        o.ttl,
		now:        o.now,
		log:        log,
	}
	if seer, ok := store.(Seer); ok {
		s.seer = seer
	}
	return s, nil
}

// Targets returns the target names in write order.
func (s *Sink) Targets() []string {
	out := make([]string, len(s.connectors))
	for i, c := range s.connectors {
		out[i] = c.Name()
	}
	return out
}

// Handle is the stage.Handler of crm-sink (see the package doc for the delivery guarantee).
// It returns one mail.crm.v1 record per target, in target order, then one mail.lake.v1 record.
// Errors: failure.Schema for an undecodable record or one without an external id; the
// connector's classified error when a target fails; failure.Internal for a connector that
// reports an unknown outcome or an output that cannot be encoded.
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
	outcomes := make([]events.CRMOutcome, 0, len(s.connectors))
	for _, c := range s.connectors {
		o, err := s.deliver(ctx, c, &msg)
		if err != nil {
			return nil, err
		}
		outcomes = append(outcomes, o)
	}
	return s.outputs(&msg, rec.Key, outcomes)
}

// deliver writes msg to one target, skipping it when the dedupe store knows it is there.
func (s *Sink) deliver(ctx context.Context, c crm.Connector, msg *events.Enriched) (events.CRMOutcome, error) {
	target := c.Name()
	key := DedupeKey(target, msg.Message.ExternalID)
	out := events.CRMOutcome{
		ID:         msg.Message.ID,
		ExternalID: msg.Message.ExternalID,
		ThreadKey:  msg.Message.ThreadKey,
		Tenant:     msg.Message.Tenant,
		Target:     target,
		ObjectIds:  map[string]string{},
		ReceivedAt: msg.Message.ReceivedAt.UTC(),
	}
	attrs := []slog.Attr{
		slog.String("target", target), slog.String("message_id", msg.Message.ID),
		slog.String("external_id", msg.Message.ExternalID),
	}

	if s.seer != nil {
		seen, err := s.seer.Seen(ctx, key)
		switch {
		case err != nil:
			s.log.LogAttrs(ctx, slog.LevelWarn, "dedupe lookup failed; delivering anyway",
				append(attrs, slog.Any("error", err))...)
		case seen:
			out.Outcome = crm.OutcomeDeduped
			out.WrittenAt = s.now().UTC()
			s.log.LogAttrs(ctx, slog.LevelDebug, "already delivered", attrs...)
			return out, nil
		}
	}

	res, err := c.Upsert(ctx, msg)
	if err != nil {
		return out, fmt.Errorf("upserting message %s to %s: %w", msg.Message.ID, target, err)
	}
	switch res.Outcome {
	case crm.OutcomeCreated, crm.OutcomeUpdated, crm.OutcomeDeduped, crm.OutcomeShadow:
	default:
		return out, failure.Wrap(failure.Internal,
			fmt.Errorf("upserting message %s to %s: connector reported unknown outcome %q", msg.Message.ID, target, res.Outcome))
	}
	out.Outcome = res.Outcome
	out.Attempts = max(res.Attempts, 1)
	out.WrittenAt = s.now().UTC()
	maps.Copy(out.ObjectIds, res.ObjectIDs)

	if s.store != nil && res.Outcome != crm.OutcomeShadow {
		if _, err := s.store.MarkSeen(ctx, key, s.ttl); err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "recording delivery in dedupe store failed",
				append(attrs, slog.Any("error", err))...)
		}
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "delivered", append(attrs, slog.String("outcome", res.Outcome))...)
	return out, nil
}

// outputs encodes the outcomes and the lake row.
func (s *Sink) outputs(msg *events.Enriched, inKey []byte, outcomes []events.CRMOutcome) ([]*kgo.Record, error) {
	threadKey := []byte(msg.Message.ThreadKey)
	if len(threadKey) == 0 {
		// Every stage keys by thread key; fall back to the input key so the outcome still lands
		// on the thread's partition.
		threadKey = append([]byte(nil), inKey...)
	}
	out := make([]*kgo.Record, 0, len(outcomes)+1)
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
	return out, nil
}
