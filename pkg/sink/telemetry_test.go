package sink_test

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/sink"
)

// points returns "name{k=v,…}=value" for every counter point and "name{…}#count" for every
// histogram point, sorted.
func points(t *testing.T, reader *sdkmetric.ManualReader) []string {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	label := func(set attribute.Set) string {
		var kv []string
		for _, a := range set.ToSlice() {
			kv = append(kv, string(a.Key)+"="+a.Value.String())
		}
		return "{" + strings.Join(kv, ",") + "}"
	}
	var out []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out = append(out, m.Name+label(p.Attributes)+"="+strconv.FormatInt(p.Value, 10))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out = append(out, m.Name+label(p.Attributes)+"#"+strconv.FormatUint(p.Count, 10))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestMetricsAndSpans(t *testing.T) {
	e := newEnv(t)
	reader := sdkmetric.NewManualReader()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	s := e.sinkWith(t, newReadableMemory(), []crm.Connector{e.local, e.hook},
		sink.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))), sink.WithTracerProvider(tp))
	msg := crmtest.Message("metrics")

	// given the webhook fails once, then the message is delivered and handled again
	e.srv.FailNext(1, 503, "")
	ctx, parent := tp.Tracer("test").Start(t.Context(), "crm-sink process")
	if _, err := s.Handle(ctx, e.record(t, msg)); err != nil {
		t.Fatal(err)
	}
	parent.End()
	e.handle(t, s, msg)
	e.srv.FailNext(1, 422, "")
	e.handle(t, s, crmtest.Message("refused"))

	got := strings.Join(points(t, reader), "\n")
	for _, want := range []string{
		"mailpipe.crm.calls{status=crm_5xx,target=webhook}=1",
		"mailpipe.crm.calls{status=ok,target=webhook}=1",
		"mailpipe.crm.calls{status=ok,target=local}=2",
		"mailpipe.crm.retries{target=webhook}=1",
		"mailpipe.crm.outcomes{outcome=created,target=webhook}=1",
		"mailpipe.crm.outcomes{outcome=deduped,target=webhook}=1",
		"mailpipe.crm.dedupe.hits{target=local}=1",
		"mailpipe.ingestion.duration{target=webhook,tenant=acme}#1",
		"mailpipe.ingestion.duration{target=local,tenant=acme}#2",
		"mailpipe.crm.dead_letters{error.class=crm_4xx,target=webhook}=1",
		"mailpipe.crm.outcomes{outcome=failed,target=webhook}=1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %s; have\n%s", want, got)
		}
	}

	var calls int
	for _, sp := range spans.Ended() {
		if sp.Name() != "crm upsert webhook" || sp.SpanContext().TraceID() != parent.SpanContext().TraceID() {
			continue
		}
		calls++
		if sp.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("connector span %s is not a child of the record's span", sp.Name())
		}
	}
	if calls != 2 {
		t.Errorf("%d webhook call spans in the record's trace, want 2 (failure and retry)", calls)
	}
}
