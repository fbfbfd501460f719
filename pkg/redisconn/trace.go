package redisconn

import (
	"context"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracingHook records a client span per command. It is a small stand-in for go-redis's
// redisotel module, which is not a dependency: only the command name is recorded, never
// arguments, since keys and values can carry addresses.
type tracingHook struct{ tracer trace.Tracer }

func (h tracingHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h tracingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := strings.ToLower(cmd.Name())
		ctx, span := h.tracer.Start(ctx, "redis "+name, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system.name", "redis"), attribute.String("db.operation.name", name)))
		defer span.End()
		err := next(ctx, cmd)
		record(span, err)
		return err
	}
}

func (h tracingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		ctx, span := h.tracer.Start(ctx, "redis pipeline", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system.name", "redis"), attribute.Int("db.operation.batch.size", len(cmds))))
		defer span.End()
		err := next(ctx, cmds)
		record(span, err)
		return err
	}
}

func record(span trace.Span, err error) {
	// redis.Nil is "key not found", an answer rather than a failure.
	if err != nil && err != redis.Nil { //nolint:errorlint // go-redis returns redis.Nil unwrapped
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
}
