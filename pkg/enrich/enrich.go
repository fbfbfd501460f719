// Package enrich is the enricher stage handler: it reads an events.Classified record from
// mail.classified.v1 and writes an events.Enriched record on mail.enriched.v1.
//
// This is the pass-through enricher. The contact is the From mailbox; the company is the From
// domain, flagged as free mail when the built-in list (package freemail) knows it. Each lookup
// is recorded in Enrichment.Sources. Company datasets, CRM lookups, owners, the Redis cache and
// per-lookup deadlines (a slow source degrades the record, never the stream) come later, as
// Source implementations behind this handler.
package enrich

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/enrich/freemail"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// Source names and statuses written to Enrichment.Sources (see mail.enriched.v1).
const (
	SourceFreeMail = "freemail"

	StatusOK   = "ok"
	StatusMiss = "miss" // nothing to look up (no sender domain)
)

// Option configures an [Enricher].
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	now func() time.Time
}

// WithClock sets the clock enriched_at and lookup durations are taken from (default
// time.Now), for tests.
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }

// Enricher is the enricher stage handler. It is safe for concurrent use.
type Enricher struct {
	codec *serde.Codec
	log   *slog.Logger
	now   func() time.Time
}

// New returns an enricher; codec and log are required.
func New(codec *serde.Codec, log *slog.Logger, opts ...Option) *Enricher {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	return &Enricher{codec: codec, log: log, now: o.now}
}

// Handle is the stage.Handler of the enricher service: one mail.enriched.v1 record per input,
// with the input's key and headers. Errors: failure.Schema for an undecodable record,
// failure.Internal for an output that cannot be encoded.
func (e *Enricher) Handle(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	var in events.Classified
	if err := e.codec.Decode(ctx, kafka.TopicClassified, rec.Value, &in); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("decoding classified record: %w", errors.Join(err, ctx.Err()))
		}
		return nil, failure.Wrap(failure.Schema, fmt.Errorf("decoding classified record: %w", err))
	}
	out := events.Enriched{
		Message:        in.Message,
		Classification: in.Classification,
		Enrichment:     e.enrich(&in.Message),
	}
	v, err := e.codec.Encode(kafka.TopicEnriched, &out)
	if err != nil {
		return nil, failure.Wrap(failure.Internal, fmt.Errorf("encoding enriched record of %s: %w", in.Message.ID, err))
	}
	e.log.LogAttrs(ctx, slog.LevelDebug, "enriched message", slog.String("message_id", in.Message.ID),
		slog.Bool("free_mail", out.Enrichment.Company != nil && out.Enrichment.Company.FreeMail))
	return []*kgo.Record{{
		Topic:   kafka.TopicEnriched,
		Key:     bytes.Clone(rec.Key),
		Value:   v,
		Headers: slices.Clone(rec.Headers),
	}}, nil
}

// enrich builds the enrichment of msg.
func (e *Enricher) enrich(msg *events.Parsed) events.Enrichment {
	var en events.Enrichment
	from := msg.From
	if from == nil || !strings.Contains(from.Address, "@") {
		en.Sources = []events.EnrichmentSource{{Name: SourceFreeMail, Status: StatusMiss}}
		en.EnrichedAt = e.now().UTC()
		return en
	}
	en.Contact = &events.Contact{Email: from.Address, Name: from.Name}
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	start := e.now()
	free := freemail.Is(domain) || (from.DomainASCII != "" && freemail.Is(from.DomainASCII))
	done := e.now()
	en.Company = &events.Company{Domain: domain, FreeMail: free}
	en.Sources = []events.EnrichmentSource{{Name: SourceFreeMail, Status: StatusOK, DurationMs: done.Sub(start).Milliseconds()}}
	en.EnrichedAt = done.UTC()
	return en
}
