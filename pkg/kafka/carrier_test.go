package kafka_test

import (
	"context"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/mailpipe/mailpipe/pkg/kafka"
)

func TestHeaderCarrier(t *testing.T) {
	shared := []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}, {Key: "a", Value: []byte("3")}}
	rec := &kgo.Record{Headers: shared}
	c := kafka.HeaderCarrier{Record: rec}

	if got := c.Get("a"); got != "1" {
		t.Errorf("Get(a) = %q, want the first value", got)
	}
	if got := c.Get("missing"); got != "" {
		t.Errorf("Get(missing) = %q", got)
	}
	if got := c.Keys(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Keys = %v", got)
	}
	c.Set("a", "9")
	if got := c.Get("a"); got != "9" || len(rec.Headers) != 2 {
		t.Errorf("after Set: Get(a) = %q, headers %v", got, rec.Headers)
	}
	if string(shared[0].Value) != "1" || shared[0].Key != "a" {
		t.Errorf("Set modified the original header slice: %v", shared)
	}
}

func TestHeaderCarrierPropagatesTraceContext(t *testing.T) {
	prop := propagation.TraceContext{}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled,
	})
	out := &kgo.Record{}
	prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), kafka.HeaderCarrier{Record: out})
	if got := (kafka.HeaderCarrier{Record: out}).Get("traceparent"); got != "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01" {
		t.Fatalf("traceparent = %q", got)
	}
	got := trace.SpanContextFromContext(prop.Extract(context.Background(), kafka.HeaderCarrier{Record: out}))
	if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() {
		t.Fatalf("extracted %v, want %v", got, sc)
	}
}
