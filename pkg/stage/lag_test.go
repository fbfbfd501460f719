package stage_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

// lagByPartition collects the consumer lag gauge: partition → lag.
func lagByPartition(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == stage.MetricConsumerLag {
				for _, dp := range g.DataPoints {
					p, _ := dp.Attributes.Value("partition")
					out[p.AsString()] = dp.Value
				}
			}
		}
	}
	return out
}

func TestConsumerLagGauge(t *testing.T) {
	// given 5 records with one key (so one partition) of a 2-partition topic and a handler
	// that waits
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 2)
	var recs []*kgo.Record
	for range 5 {
		recs = append(recs, &kgo.Record{Topic: tp.in, Key: []byte("k"), Value: []byte("v")})
	}
	kafkatest.Produce(t, brokers, recs...)
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	h := func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return forward(tp.out)(ctx, rec)
	}
	reader := sdkmetric.NewManualReader()
	r := start(t, brokers, baseConfig(t, tp), h, stage.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))

	// when the stage holds the batch, the whole partition is lag
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("handler never called")
	}
	if got := lagByPartition(t, reader); len(got) != 2 || got["0"]+got["1"] != 5 || got["0"]*got["1"] != 0 {
		t.Errorf("lag while handling = %v, want 5 on one partition and 0 on the other", got)
	}

	// and once the batch is committed it is gone
	close(release)
	kafkatest.ConsumeAll(t, brokers, tp.out, 5, 30*time.Second)
	eventually(t, 10*time.Second, "lag back to 0", func() bool {
		got := lagByPartition(t, reader)
		return len(got) == 2 && got["0"] == 0 && got["1"] == 0
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := lagByPartition(t, reader); len(got) != 0 {
		t.Errorf("lag observed after the stage stopped: %v", got)
	}
}
