// Package telemetry sets up OpenTelemetry tracing for a mailpipe process: a TracerProvider that
// exports over OTLP/HTTP when an endpoint is configured, the W3C TraceContext + Baggage
// propagator used on Kafka headers and HTTP, and an slog handler that stamps trace_id and span_id
// on every log line written with a traced context.
//
// Metrics are not set up here: the admin server owns the MeterProvider, because /metrics is
// where they are read (see package admin). Nothing is installed globally unless WithGlobal is
// given; pass Providers explicitly to kotel, HTTP middleware and the stage loop instead.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Environment variables read by Setup (standard OpenTelemetry names). Other OTEL_EXPORTER_OTLP_*
// settings (headers, timeout, compression, TLS) and OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
// and OTEL_TRACES_SAMPLER are read by the SDK itself from the process environment.
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"        // base URL; "/v1/traces" is appended
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" // full URL, used as is; wins over EnvEndpoint
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"                  // "true": no exporter
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"               // "none": no exporter
)

// Providers are what Setup builds. Hand them to every component that traces or propagates.
type Providers struct {
	// TracerProvider always creates real spans with valid ids, even when nothing is exported,
	// so trace ids still correlate logs, DLQ headers and downstream services.
	TracerProvider trace.TracerProvider
	// Propagator is W3C TraceContext plus Baggage.
	Propagator propagation.TextMapPropagator
	// Resource describes the process (service.name, SDK, OTEL_RESOURCE_ATTRIBUTES); reuse it for
	// the MeterProvider (admin.WithResource) so traces and metrics agree.
	Resource *resource.Resource
	// Endpoint is the OTLP traces URL spans go to, or "" when they are not exported.
	Endpoint string
}

// Option configures Setup.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	getenv   func(string) string
	global   bool
	exporter sdktrace.SpanExporter
	procs    []sdktrace.SpanProcessor
}

// WithGetenv replaces os.Getenv for the variables listed above (tests; embedding several
// services in one process). Settings the SDK reads itself still come from the process.
func WithGetenv(getenv func(string) string) Option {
	return optionFunc(func(c *config) { c.getenv = getenv })
}

// WithGlobal also installs the providers as the OTel globals (otel.SetTracerProvider,
// otel.SetTextMapPropagator) and routes OTel's internal errors to the logger, for libraries that
// only read the globals. Off by default: the project passes providers explicitly.
func WithGlobal() Option {
	return optionFunc(func(c *config) { c.global = true })
}

// WithSpanExporter exports spans to e (batched) instead of deciding from the environment; for
// tests and for the dev stack.
func WithSpanExporter(e sdktrace.SpanExporter) Option {
	return optionFunc(func(c *config) { c.exporter = e })
}

// WithSpanProcessor adds p to the TracerProvider, next to the exporter (if any). Meant for tests,
// which read ended spans synchronously from a tracetest.SpanRecorder; may be repeated.
func WithSpanProcessor(p sdktrace.SpanProcessor) Option {
	return optionFunc(func(c *config) { c.procs = append(c.procs, p) })
}

// Setup builds the tracing providers for serviceName. Spans are exported over OTLP/HTTP only
// when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is set (and neither
// OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none); otherwise nothing leaves the process.
//
// shutdown flushes buffered spans and stops the provider within ctx's deadline; call it last in
// the process's shutdown, after the components that create spans have stopped. It is safe to
// call more than once.
func Setup(ctx context.Context, serviceName string, log *slog.Logger, opts ...Option) (Providers, func(context.Context) error, error) {
	noop := func(context.Context) error { return nil }
	if log == nil {
		return Providers{}, noop, errors.New("telemetry: logger is required")
	}
	if serviceName == "" {
		return Providers{}, noop, errors.New("telemetry: service name is required")
	}
	cfg := config{getenv: os.Getenv}
	for _, o := range opts {
		o.apply(&cfg)
	}

	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // after service.name, so OTEL_SERVICE_NAME overrides it
	)
	if err != nil {
		return Providers{}, noop, fmt.Errorf("building otel resource: %w", err)
	}

	p := Providers{
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Resource:   res,
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	exporter := cfg.exporter
	if exporter == nil {
		p.Endpoint = endpoint(cfg.getenv)
		if p.Endpoint != "" {
			exporter, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(p.Endpoint))
			if err != nil {
				return Providers{}, noop, fmt.Errorf("creating otlp trace exporter: %w", err)
			}
		}
	}
	if exporter != nil {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exporter))
		log.InfoContext(ctx, "exporting traces", "endpoint", p.Endpoint)
	} else {
		log.InfoContext(ctx, "no OTLP endpoint configured, traces are not exported", "env", EnvEndpoint)
	}
	for _, sp := range cfg.procs {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(sp))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)
	p.TracerProvider = tp

	if cfg.global {
		otel.SetTracerProvider(tp)
		otel.SetTextMapPropagator(p.Propagator)
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.WarnContext(ctx, "opentelemetry error", "err", err)
		}))
	}
	shutdown := func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("shutting down tracer provider: %w", err)
		}
		return nil
	}
	return p, shutdown, nil
}

// endpoint returns the OTLP traces URL from the environment, or "" when spans must not be
// exported.
func endpoint(getenv func(string) string) string {
	if strings.EqualFold(strings.TrimSpace(getenv(EnvSDKDisabled)), "true") ||
		strings.EqualFold(strings.TrimSpace(getenv(EnvTracesExporter)), "none") {
		return ""
	}
	if u := strings.TrimSpace(getenv(EnvTracesEndpoint)); u != "" {
		return u
	}
	if u := strings.TrimSpace(getenv(EnvEndpoint)); u != "" {
		// The spec appends the signal path to the generic endpoint.
		return strings.TrimRight(u, "/") + "/v1/traces"
	}
	return ""
}
