package smtpd_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
)

// counts sums the counter name's points by the value of attribute key.
func counts(t *testing.T, reader *sdkmetric.ManualReader, name string, keys ...attribute.Key) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || m.Name != name {
				continue
			}
			for _, dp := range sum.DataPoints {
				label := ""
				for _, k := range keys {
					v, _ := dp.Attributes.Value(k)
					label += v.String() + " "
				}
				out[label] += dp.Value
			}
		}
	}
	return out
}

func TestSessionAndRefusalMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	h := start(t, smtpd.Config{}, &fakeProducer{err: errors.New("NOT_ENOUGH_REPLICAS")},
		smtpd.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))

	// one session refused a recipient, another refused at DATA (the produce failed)
	if _, err := send(h.dial(t), "ann@example.org", []string{"x@elsewhere.example"}, msg); smtpCode(err) != 550 {
		t.Fatalf("unknown recipient: %v", err)
	}
	if _, err := send(h.dial(t), "ann@example.org", []string{"support@in.example.com"}, msg); smtpCode(err) != 451 {
		t.Fatalf("produce failure: %v", err)
	}

	if got := counts(t, reader, smtpd.MetricSessions); got[""] != 2 {
		t.Errorf("sessions = %v, want 2", got)
	}
	got := counts(t, reader, smtpd.MetricRefusals, "smtp.command", "smtp.code", "smtp.enhanced_code")
	if got["RCPT 550 5.1.1 "] != 1 || got["DATA 451 4.3.0 "] != 1 || len(got) != 2 {
		t.Errorf("refusals = %v, want one RCPT 550 5.1.1 and one DATA 451 4.3.0", got)
	}
}
