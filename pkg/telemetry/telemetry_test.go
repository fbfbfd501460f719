package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mailpipe/mailpipe/pkg/telemetry"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// collector is a fake OTLP/HTTP receiver recording the paths it was posted to.
type collector struct {
	mu    sync.Mutex
	paths []string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	c.mu.Lock()
	c.paths = append(c.paths, r.URL.Path)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.paths...)
}

func TestSetupExportsOnlyWithEndpoint(t *testing.T) {
	for _, tt := range []struct {
		name     string
		env      func(url string) map[string]string
		wantPath string // "" means nothing must be exported
	}{
		{"no endpoint", func(string) map[string]string { return nil }, ""},
		{"generic endpoint gets the signal path", func(u string) map[string]string {
			return map[string]string{telemetry.EnvEndpoint: u + "/"}
		}, "/v1/traces"},
		{"traces endpoint is used as is", func(u string) map[string]string {
			return map[string]string{telemetry.EnvTracesEndpoint: u + "/collector/traces"}
		}, "/collector/traces"},
		{"traces endpoint wins", func(u string) map[string]string {
			return map[string]string{telemetry.EnvEndpoint: u + "/generic", telemetry.EnvTracesEndpoint: u + "/specific"}
		}, "/specific"},
		{"sdk disabled", func(u string) map[string]string {
			return map[string]string{telemetry.EnvEndpoint: u, telemetry.EnvSDKDisabled: "TRUE"}
		}, ""},
		{"exporter none", func(u string) map[string]string {
			return map[string]string{telemetry.EnvEndpoint: u, telemetry.EnvTracesExporter: "none"}
		}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// given a fake collector and the environment under test
			col := &collector{}
			srv := httptest.NewServer(col)
			defer srv.Close()
			env := tt.env(srv.URL)
			p, shutdown, err := telemetry.Setup(t.Context(), "parser", discard(),
				telemetry.WithGetenv(func(k string) string { return env[k] }))
			if err != nil {
				t.Fatal(err)
			}
			// when a span is recorded and the provider shut down (which flushes)
			_, span := p.TracerProvider.Tracer("test").Start(t.Context(), "parse")
			if !span.SpanContext().IsValid() {
				t.Error("span has no valid ids")
			}
			span.End()
			if err := shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			// then it reached the collector only when an endpoint was configured
			got := col.got()
			switch {
			case tt.wantPath == "" && (len(got) != 0 || p.Endpoint != ""):
				t.Errorf("exported to %v (endpoint %q), want nothing", got, p.Endpoint)
			case tt.wantPath != "" && (len(got) != 1 || got[0] != tt.wantPath):
				t.Errorf("exported to %v, want [%s]", got, tt.wantPath)
			case tt.wantPath != "" && p.Endpoint != srv.URL+tt.wantPath:
				t.Errorf("Endpoint = %q, want %q", p.Endpoint, srv.URL+tt.wantPath)
			}
		})
	}
}

func TestSetupResourceAndExporter(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	p, shutdown, err := telemetry.Setup(t.Context(), "classifier", discard(), telemetry.WithSpanExporter(keepSpans{exp}))
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider.Tracer("test").Start(t.Context(), "classify")
	span.End()
	if err := shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := shutdown(t.Context()); err != nil {
		t.Errorf("second shutdown = %v", err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "classify" {
		t.Fatalf("spans = %v, want one named classify", spans)
	}
	var name string
	for _, kv := range spans[0].Resource.Attributes() {
		if kv.Key == "service.name" {
			name = kv.Value.AsString()
		}
	}
	if name != "classifier" {
		t.Errorf("service.name = %q, want classifier", name)
	}
}

func TestSetupSpanProcessor(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	p, shutdown, err := telemetry.Setup(t.Context(), "enricher", discard(),
		telemetry.WithGetenv(func(string) string { return "" }), telemetry.WithSpanProcessor(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(context.Background()) }()
	_, span := p.TracerProvider.Tracer("test").Start(t.Context(), "enrich")
	span.End()
	// The recorder sees the span as it ends, without a flush.
	if ended := rec.Ended(); len(ended) != 1 || ended[0].Name() != "enrich" {
		t.Fatalf("ended = %v, want one span named enrich", ended)
	}
}

func TestSetupRequiresNameAndLogger(t *testing.T) {
	if _, _, err := telemetry.Setup(t.Context(), "", discard()); err == nil {
		t.Error("Setup with empty service name succeeded")
	}
	if _, _, err := telemetry.Setup(t.Context(), "x", nil); err == nil {
		t.Error("Setup with nil logger succeeded")
	}
}

func TestPropagatorRoundTrip(t *testing.T) {
	p, shutdown, err := telemetry.Setup(t.Context(), "ingress", discard(), telemetry.WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(context.Background()) }()

	member, _ := baggage.NewMember("tenant", "acme")
	bag, _ := baggage.New(member)
	ctx, span := p.TracerProvider.Tracer("test").Start(baggage.ContextWithBaggage(t.Context(), bag), "accept")
	defer span.End()

	carrier := propagation.MapCarrier{}
	p.Propagator.Inject(ctx, carrier)
	if carrier.Get("traceparent") == "" || carrier.Get("baggage") == "" {
		t.Fatalf("carrier = %v, want traceparent and baggage", carrier)
	}
	out := p.Propagator.Extract(context.Background(), carrier)
	if got := trace.SpanContextFromContext(out).TraceID(); got != span.SpanContext().TraceID() {
		t.Errorf("extracted trace id %s, want %s", got, span.SpanContext().TraceID())
	}
	if got := baggage.FromContext(out).Member("tenant").Value(); got != "acme" {
		t.Errorf("baggage tenant = %q, want acme", got)
	}
}

func TestLogHandler(t *testing.T) {
	p, shutdown, err := telemetry.Setup(t.Context(), "ingress", discard(), telemetry.WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(context.Background()) }()
	traced, span := p.TracerProvider.Tracer("test").Start(t.Context(), "accept")
	defer span.End()

	for _, tt := range []struct {
		name      string
		traced    bool
		wantTrace string
		wantSpan  string
	}{
		{"traced context", true, span.SpanContext().TraceID().String(), span.SpanContext().SpanID().String()},
		{"plain context", false, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil))).With("stage", "ingress")
			ctx := traced
			if !tt.traced {
				ctx = trace.ContextWithSpanContext(traced, trace.SpanContext{}) // no valid span
			}
			log.InfoContext(ctx, "accepted")
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("%q: %v", buf.String(), err)
			}
			if got, _ := line[telemetry.LogKeyTraceID].(string); got != tt.wantTrace {
				t.Errorf("trace_id = %q, want %q", got, tt.wantTrace)
			}
			if got, _ := line[telemetry.LogKeySpanID].(string); got != tt.wantSpan {
				t.Errorf("span_id = %q, want %q", got, tt.wantSpan)
			}
			if line["stage"] != "ingress" {
				t.Errorf("WithAttrs lost: %v", line)
			}
		})
	}
}

// keepSpans keeps the recorded spans past Shutdown, which the in-memory exporter would clear.
type keepSpans struct{ *tracetest.InMemoryExporter }

func (keepSpans) Shutdown(context.Context) error { return nil }
