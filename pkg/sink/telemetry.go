package sink

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/mailpipe/mailpipe/pkg/failure"
)

// Metric names. Attributes: target on all; tenant on the latency; outcome or error.class as
// stated.
const (
	// MetricIngestionLatency is the time from ingress receipt to the confirmed CRM write, in
	// seconds (attributes tenant, target): the pipeline's end-to-end KPI.
	MetricIngestionLatency = "mailpipe.ingestion.duration"
	// MetricConnectorCalls counts connector calls (attribute status: ok or the error class).
	MetricConnectorCalls = "mailpipe.crm.calls"
	// MetricConnectorCallDuration is the duration of one connector call in seconds.
	MetricConnectorCallDuration = "mailpipe.crm.call.duration"
	// MetricRetries counts connector calls that were retries of a failed one.
	MetricRetries = "mailpipe.crm.retries"
	// MetricOutcomes counts per-target outcomes (attribute outcome).
	MetricOutcomes = "mailpipe.crm.outcomes"
	// MetricDedupeHits counts targets skipped because the dedupe store knew the delivery.
	MetricDedupeHits = "mailpipe.crm.dedupe.hits"
	// MetricDeadLetters counts the sink's per-target dead letters (attributes target,
	// error.class); the stage's own dead letters are mailpipe.stage.dead_letters.
	MetricDeadLetters = "mailpipe.crm.dead_letters"
)

// WithMeterProvider sets where the sink's metrics go. Default: a no-op provider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(o *options) {
		if mp != nil {
			o.meters = mp
		}
	})
}

// WithTracerProvider sets where the connector-call spans go (children of the stage's span for
// the record). Default: a no-op provider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(o *options) {
		if tp != nil {
			o.tracers = tp
		}
	})
}

type instruments struct {
	latency      metric.Float64Histogram
	calls        metric.Int64Counter
	callDuration metric.Float64Histogram
	retries      metric.Int64Counter
	outcomes     metric.Int64Counter
	dedupeHits   metric.Int64Counter
	deadLetters  metric.Int64Counter
	tracer       trace.Tracer
}

func newInstruments(mp metric.MeterProvider, tp trace.TracerProvider) (*instruments, error) {
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	m := mp.Meter("github.com/mailpipe/mailpipe/pkg/sink")
	var errs []error
	counter := func(name, desc, unit string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string, bounds ...float64) metric.Float64Histogram {
		opts := []metric.Float64HistogramOption{metric.WithDescription(desc), metric.WithUnit("s")}
		if len(bounds) > 0 {
			opts = append(opts, metric.WithExplicitBucketBoundaries(bounds...))
		}
		h, err := m.Float64Histogram(name, opts...)
		errs = append(errs, err)
		return h
	}
	in := &instruments{tracer: tp.Tracer("github.com/mailpipe/mailpipe/pkg/sink")}
	// Ingestion takes seconds to minutes (retries, Retry-After), not the milliseconds the
	// default buckets are made for.
	in.latency = histogram(MetricIngestionLatency, "Time from ingress receipt to the confirmed CRM write.",
		0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
	in.calls = counter(MetricConnectorCalls, "Connector calls by status (ok or error class).", "{call}")
	in.callDuration = histogram(MetricConnectorCallDuration, "Duration of one connector call.")
	in.retries = counter(MetricRetries, "Connector calls that retried a failed one.", "{call}")
	in.outcomes = counter(MetricOutcomes, "Per-target outcomes of messages.", "{outcome}")
	in.dedupeHits = counter(MetricDedupeHits, "Targets skipped because the dedupe store knew the delivery.", "{message}")
	in.deadLetters = counter(MetricDeadLetters, "Per-target dead letters written by the crm-sink.", "{record}")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return in, nil
}

// startCall opens the span of one connector call; end records it and the call metrics.
func (in *instruments) startCall(ctx context.Context, target string, attempt int) (context.Context, func(error)) {
	ctx, span := in.tracer.Start(ctx, "crm upsert "+target, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("mailpipe.crm.target", target), attribute.Int("mailpipe.crm.attempt", attempt)))
	start := time.Now()
	tgt := attribute.String("target", target)
	if attempt > 1 {
		in.retries.Add(ctx, 1, metric.WithAttributes(tgt))
	}
	return ctx, func(err error) {
		status := "ok"
		if err != nil {
			status = string(failure.Classify(err))
			span.RecordError(err)
			span.SetStatus(codes.Error, status)
			span.SetAttributes(attribute.String("error.type", status))
		}
		in.calls.Add(ctx, 1, metric.WithAttributes(tgt, attribute.String("status", status)))
		in.callDuration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(tgt, attribute.String("status", status)))
		span.End()
	}
}

// outcome records one target's outcome, and the ingestion latency of a confirmed write.
func (in *instruments) outcome(ctx context.Context, tenant, target, outcome string, latency time.Duration, delivered bool) {
	tgt := attribute.String("target", target)
	in.outcomes.Add(ctx, 1, metric.WithAttributes(tgt, attribute.String("outcome", outcome)))
	if outcome == "deduped" {
		in.dedupeHits.Add(ctx, 1, metric.WithAttributes(tgt))
	}
	if delivered {
		in.latency.Record(ctx, max(latency, 0).Seconds(), metric.WithAttributes(tgt, attribute.String("tenant", tenant)))
	}
}

// deadLetter counts one per-target dead letter.
func (in *instruments) deadLetter(ctx context.Context, target string, class failure.Class) {
	in.deadLetters.Add(ctx, 1, metric.WithAttributes(attribute.String("target", target), attribute.String("error.class", string(class))))
}
