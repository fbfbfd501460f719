package enrich

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// Metric names. Both instruments carry the attributes source, status and cache (empty when the
// source has no cache), so a dashboard shows the cache hit rate and the degraded share per source.
const (
	// MetricLookups counts CRM source lookups.
	MetricLookups = "mailpipe.enrich.lookups"
	// MetricLookupDuration is the duration of one CRM source lookup, cache included, in seconds.
	MetricLookupDuration = "mailpipe.enrich.lookup.duration"
)

type instruments struct {
	lookups  metric.Int64Counter
	duration metric.Float64Histogram
}

func newInstruments(mp metric.MeterProvider) (*instruments, error) {
	m := mp.Meter("github.com/mailpipe/mailpipe/pkg/enrich")
	lookups, err1 := m.Int64Counter(MetricLookups, metric.WithDescription("CRM source lookups by source, status and cache outcome."), metric.WithUnit("{lookup}"))
	duration, err2 := m.Float64Histogram(MetricLookupDuration, metric.WithDescription("Duration of one CRM source lookup, cache included."), metric.WithUnit("s"))
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return &instruments{lookups: lookups, duration: duration}, nil
}

func (in *instruments) lookup(ctx context.Context, rep events.EnrichmentSource, d time.Duration) {
	attrs := metric.WithAttributes(
		attribute.String("source", rep.Name), attribute.String("status", rep.Status), attribute.String("cache", rep.Cache))
	in.lookups.Add(ctx, 1, attrs)
	in.duration.Record(ctx, d.Seconds(), attrs)
}
