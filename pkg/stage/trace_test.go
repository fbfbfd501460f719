package stage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

// The stage's span continues the input's trace, and outputs that forward the input's headers
// carry the stage's span instead, so the next stage is its child; a trace context the handler set
// itself is kept.
func TestStageSpanIsParentOfOutputs(t *testing.T) {
	// given an input record with a trace context, and a handler forwarding its headers to one
	// output and setting its own trace context on another
	const (
		traceID = "0102030405060708090a0b0c0d0e0f10"
		input   = "00-" + traceID + "-0102030405060708-01"
		own     = "00-" + traceID + "-aaaaaaaaaaaaaaaa-01"
	)
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 1)
	kafkatest.Produce(t, brokers, &kgo.Record{
		Topic: tp.in, Key: []byte("k"), Value: []byte("v"),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(input)}},
	})
	h := func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		return []*kgo.Record{
			{Topic: tp.out, Key: []byte("forwarded"), Value: rec.Value, Headers: rec.Headers},
			{Topic: tp.out, Key: []byte("own"), Value: rec.Value, Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(own)}}},
		}, nil
	}
	rec := tracetest.NewSpanRecorder()

	// when the stage handles it with a tracer provider
	r := start(t, brokers, baseConfig(t, tp), h, stage.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))))
	got := kafkatest.ConsumeAll(t, brokers, tp.out, 2, 30*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	// then its span is a child of the input's, and the forwarded output a child of its span
	var spans []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "test process" {
			spans = append(spans, s)
		}
	}
	if len(spans) != 1 {
		t.Fatalf("%d test process spans, want 1", len(spans))
	}
	s := spans[0]
	if s.SpanContext().TraceID().String() != traceID || s.Parent().SpanID().String() != "0102030405060708" {
		t.Errorf("span %s parent %s, want trace %s parent 0102030405060708", s.SpanContext().TraceID(), s.Parent().SpanID(), traceID)
	}
	for _, o := range got {
		tpOut := header(o, "traceparent")
		switch string(o.Key) {
		case "forwarded":
			if want := "00-" + traceID + "-" + s.SpanContext().SpanID().String() + "-"; !strings.HasPrefix(tpOut, want) {
				t.Errorf("forwarded output traceparent %q, want the stage span %s", tpOut, want)
			}
		case "own":
			if tpOut != own {
				t.Errorf("own output traceparent %q, want %q kept", tpOut, own)
			}
		}
	}
}
