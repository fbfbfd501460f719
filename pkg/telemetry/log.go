package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added by the handler from LogHandler.
const (
	LogKeyTraceID = "trace_id"
	LogKeySpanID  = "span_id"
	LogKeyTenant  = "tenant"
)

// LogHandler wraps h so that records logged with a context carrying a valid span get trace_id
// and span_id attributes (lower-case hex, as in W3C traceparent), and records logged with a
// context whose baggage names a tenant ([WithTenant]) get a tenant attribute unless they have
// one. Other records pass through unchanged. Note that after WithGroup the added attributes land
// inside the group, as any attribute added at Handle time does; add groups sparingly on loggers
// that need correlation.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h: h} }

type logHandler struct{ h slog.Handler }

func (l logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l logHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	tenant := Tenant(ctx)
	if tenant != "" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == LogKeyTenant {
				tenant = "" // the caller said it already
				return false
			}
			return true
		})
	}
	if sc.IsValid() || tenant != "" {
		r = r.Clone() // the record may share attribute storage with the caller's copy
	}
	if sc.IsValid() {
		r.AddAttrs(slog.String(LogKeyTraceID, sc.TraceID().String()), slog.String(LogKeySpanID, sc.SpanID().String()))
	}
	if tenant != "" {
		r.AddAttrs(slog.String(LogKeyTenant, tenant))
	}
	return l.h.Handle(ctx, r)
}

// BaggageTenant is the W3C Baggage member that carries a message's tenant from ingress through
// the Kafka headers to every stage, so their log lines name it without decoding the record.
const BaggageTenant = "mailpipe.tenant"

// WithTenant returns ctx with the tenant in its baggage (propagated with the trace context).
// An empty tenant, or one baggage cannot hold, leaves ctx as it is.
func WithTenant(ctx context.Context, tenant string) context.Context {
	if tenant == "" {
		return ctx
	}
	m, err := baggage.NewMemberRaw(BaggageTenant, tenant)
	if err != nil {
		return ctx
	}
	b, err := baggage.FromContext(ctx).SetMember(m)
	if err != nil {
		return ctx
	}
	return baggage.ContextWithBaggage(ctx, b)
}

// Tenant returns the tenant carried in ctx's baggage, or "".
func Tenant(ctx context.Context) string {
	return baggage.FromContext(ctx).Member(BaggageTenant).Value()
}

func (l logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h: l.h.WithAttrs(attrs)}
}

func (l logHandler) WithGroup(name string) slog.Handler {
	return logHandler{h: l.h.WithGroup(name)}
}
