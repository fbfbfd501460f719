package stage

import (
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Option configures a [Stage] beyond its [Config].
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	middleware []Middleware
	meters     metric.MeterProvider
	tracers    trace.TracerProvider
	propagator propagation.TextMapPropagator
	kgoOpts    []kgo.Opt
}

func defaultOptions() options {
	return options{
		meters:     metricnoop.NewMeterProvider(),
		tracers:    tracenoop.NewTracerProvider(),
		propagator: propagation.TraceContext{},
	}
}

// WithMiddleware adds middleware around the handler, inside the built-in chain: they run once per
// attempt, under the attempt timeout, after the metrics middleware. The first one given is the
// outermost of them. May be repeated; the lists are concatenated.
func WithMiddleware(mw ...Middleware) Option {
	return optionFunc(func(o *options) { o.middleware = append(o.middleware, mw...) })
}

// WithMeterProvider sets where the stage's metrics go. Default: a no-op provider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(o *options) {
		if mp != nil {
			o.meters = mp
		}
	})
}

// WithTracerProvider sets where the per-record spans go. Default: a no-op provider, which still
// propagates an incoming W3C trace context to the outputs.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(o *options) {
		if tp != nil {
			o.tracers = tp
		}
	})
}

// WithPropagator sets how trace context is read from input headers and written to output
// headers. Default: W3C Trace Context (traceparent, tracestate).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return optionFunc(func(o *options) {
		if p != nil {
			o.propagator = p
		}
	})
}

// WithKgoOpts appends franz-go options after the ones the stage sets, so they win. Meant for tests
// (shorter timeouts, kfake quirks) and for tuning; options that break the stage's guarantees
// (another isolation level, ConsumePartitions, another transactional id) are the caller's
// responsibility.
func WithKgoOpts(opts ...kgo.Opt) Option {
	return optionFunc(func(o *options) { o.kgoOpts = append(o.kgoOpts, opts...) })
}
