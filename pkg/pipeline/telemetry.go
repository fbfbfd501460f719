package pipeline

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// childSpansOnly wraps tp so that its tracers start spans only inside an existing trace; outside
// one, Start returns the context unchanged with a non-recording span.
func childSpansOnly(tp trace.TracerProvider) trace.TracerProvider { return childProvider{tp: tp} }

type childProvider struct {
	embedded.TracerProvider
	tp trace.TracerProvider
}

func (p childProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return childTracer{t: p.tp.Tracer(name, opts...)}
}

type childTracer struct {
	embedded.Tracer
	t trace.Tracer
}

func (t childTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.t.Start(ctx, name, opts...)
}
