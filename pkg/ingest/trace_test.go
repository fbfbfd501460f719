package ingest_test

import (
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// Each accepted message starts its own trace with an accept span, whose context the record
// carries to the parser.
func TestAcceptStartsTrace(t *testing.T) {
	// given an ingester tracing into a recorder, called inside a caller's span
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prod := &fakeProducer{}
	in := newIngester(t, ingest.Config{}, ingest.Options{
		Producer: prod, TracerProvider: tp,
		Router: fixedRouter{"in.example.com": {Tenant: "acme", ID: "r-support"}},
	})
	ctx, caller := tp.Tracer("test").Start(t.Context(), "session")
	defer caller.End()

	// when a message is accepted
	res, err := in.Accept(ctx, smtpEnv("support@in.example.com"), plain)
	if err != nil {
		t.Fatal(err)
	}

	// then one server span records it, in a trace of its own linked to the caller's
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("ended spans = %d, want 1", len(ended))
	}
	s := ended[0]
	if s.Name() != "smtp accept" || s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span = %q kind %v, want smtp accept, server", s.Name(), s.SpanKind())
	}
	if s.Parent().IsValid() || s.SpanContext().TraceID() == caller.SpanContext().TraceID() {
		t.Error("accept span is not the root of a new trace")
	}
	if l := s.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != caller.SpanContext().SpanID() {
		t.Errorf("links = %v, want the caller's span", l)
	}
	a := attrs(s)
	if a[ingest.AttrTenant] != "acme" || a[ingest.AttrRouteID] != "r-support" || a[ingest.AttrMessageID] != res.ID {
		t.Errorf("attributes = %v", a)
	}
	for k, v := range a {
		if strings.Contains(v, "@") || strings.Contains(v, "Hello") {
			t.Errorf("attribute %s = %q leaks an address or the subject", k, v)
		}
	}
	// and the record carries the accept span's context
	got := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(t.Context(), kafka.HeaderCarrier{Record: prod.produced()[0]}))
	if got.TraceID() != s.SpanContext().TraceID() || got.SpanID() != s.SpanContext().SpanID() {
		t.Errorf("record trace context = %s/%s, want the accept span %s/%s",
			got.TraceID(), got.SpanID(), s.SpanContext().TraceID(), s.SpanContext().SpanID())
	}
}

// A refused message ends its span with an error of the refusal's kind, not the error text (which
// names the recipient).
func TestAcceptSpanRecordsRefusal(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	in := newIngester(t, ingest.Config{}, ingest.Options{
		Producer: &fakeProducer{}, TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)),
	})
	env := smtpEnv("nobody@elsewhere.example")
	env.Source = "http"
	if _, err := in.Accept(t.Context(), env, plain); !errors.Is(err, ingest.ErrNoRoute) {
		t.Fatalf("Accept = %v, want ErrNoRoute", err)
	}
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("ended spans = %d, want 1", len(ended))
	}
	s := ended[0]
	if s.Name() != "http accept" || s.Status().Code != codes.Error || s.Status().Description != "no_route" {
		t.Errorf("span %q status %+v, want http accept, error no_route", s.Name(), s.Status())
	}
	if a := attrs(s); a["error.type"] != "no_route" || len(s.Events()) != 0 {
		t.Errorf("attributes %v events %v", a, s.Events())
	}
}
