package parse_test

import (
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mailpipe/mailpipe/pkg/parse"
)

func TestParseStatusMetric(t *testing.T) {
	codec := newCodec(t)
	reader := sdkmetric.NewManualReader()
	p := parse.New(codec, nil, discard(), parse.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	for range 2 {
		must(p.Handle(t.Context(), record(t, codec, rawEvent(message))))
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == parse.MetricRecords {
				for _, dp := range sum.DataPoints {
					status, _ := dp.Attributes.Value("status")
					got[status.AsString()] += dp.Value
				}
			}
		}
	}
	if got["ok"] != 2 || len(got) != 1 {
		t.Errorf("%s = %v, want ok: 2", parse.MetricRecords, got)
	}
}
