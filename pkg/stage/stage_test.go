package stage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

func TestTransformKeepsPerKeyOrder(t *testing.T) {
	// given 300 records over 20 keys in a 4-partition topic, one with a trace context
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 4)
	const traceparent = "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"
	var recs []*kgo.Record
	for i := range 300 {
		key := fmt.Sprintf("k%02d", i%20)
		r := &kgo.Record{Topic: tp.in, Key: []byte(key), Value: []byte(strconv.Itoa(i / 20))}
		if i == 0 {
			r.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte(traceparent)}}
		}
		recs = append(recs, r)
	}
	kafkatest.Produce(t, brokers, recs...)
	upper := func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		return []*kgo.Record{{Topic: tp.out, Key: rec.Key, Value: append([]byte("seq="), rec.Value...)}}, nil
	}

	// when a stage with four parallel partitions and small batches handles them
	cfg := baseConfig(t, tp)
	cfg.Concurrency, cfg.MaxPollRecords = 4, 17
	r := start(t, brokers, cfg, upper)
	got := kafkatest.ConsumeAll(t, brokers, tp.out, 300, 30*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run returned %v after a graceful stop", err)
	}

	// then every record is transformed once, per-key order holds, and the trace continues
	if len(got) != 300 {
		t.Fatalf("got %d outputs, want 300", len(got))
	}
	next := map[string]int{}
	for _, o := range got {
		seq, err := strconv.Atoi(strings.TrimPrefix(string(o.Value), "seq="))
		if err != nil {
			t.Fatalf("bad output %q", o.Value)
		}
		if seq != next[string(o.Key)] {
			t.Fatalf("key %s: got seq %d, want %d", o.Key, seq, next[string(o.Key)])
		}
		next[string(o.Key)]++
		if string(o.Key) == "k00" && seq == 0 {
			if tpOut := header(o, "traceparent"); !strings.HasPrefix(tpOut, "00-0102030405060708090a0b0c0d0e0f10-") {
				t.Errorf("output traceparent %q does not continue the input trace", tpOut)
			}
		}
	}
	var total int64
	for _, off := range committed(t, brokers, cfg.Group, tp.in) {
		total += off
	}
	if total != 300 {
		t.Fatalf("group committed %d offsets in total, want 300", total)
	}
}

func TestFilteredRecordsAreCommitted(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 1)
	produce(t, brokers, tp.in, "a", "drop", "b", "keep")
	h := func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		if string(rec.Value) == "drop" {
			return nil, nil
		}
		return forward(tp.out)(ctx, rec)
	}
	cfg := baseConfig(t, tp)
	r := start(t, brokers, cfg, h)
	got := kafkatest.ConsumeAll(t, brokers, tp.out, 1, 20*time.Second)
	eventually(t, 20*time.Second, "offsets committed", func() bool { return committed(t, brokers, cfg.Group, tp.in)[0] == 2 })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0].Value) != "keep" {
		t.Fatalf("outputs = %v", got)
	}
}

func TestPoisonGoesToDLQAndPartitionMovesOn(t *testing.T) {
	// given a partition holding ok-1, poison, ok-2, ok-3
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 1)
	produce(t, brokers, tp.in, "k", "ok-1")
	kafkatest.Produce(t, brokers, &kgo.Record{
		Topic: tp.in, Key: []byte("k"), Value: []byte{0xde, 0xad, 0xbe, 0xef},
		Headers: []kgo.RecordHeader{
			{Key: "tenant", Value: []byte("acme")},
			{Key: "traceparent", Value: []byte("00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01")},
		},
	})
	produce(t, brokers, tp.in, "k", "ok-2", "k", "ok-3")

	var poisonCalls atomic.Int32
	h := func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		if bytes.Equal(rec.Value, []byte{0xde, 0xad, 0xbe, 0xef}) {
			poisonCalls.Add(1)
			return nil, failure.Wrap(failure.CRM5xx, errors.New("crm answered 503"))
		}
		return forward(tp.out)(ctx, rec)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))

	// when the stage runs with 3 attempts
	cfg := baseConfig(t, tp)
	r := start(t, brokers, cfg, h, stage.WithMeterProvider(mp))
	out := kafkatest.ConsumeAll(t, brokers, tp.out, 3, 30*time.Second)
	dead := kafkatest.ConsumeAll(t, brokers, tp.dlq, 1, 30*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	// then the others flow on, in order, and the poison is a dead letter with all its context
	var vals []string
	for _, o := range out {
		vals = append(vals, string(o.Value))
	}
	if strings.Join(vals, ",") != "ok-1,ok-2,ok-3" {
		t.Fatalf("outputs = %v", vals)
	}
	if n := poisonCalls.Load(); n != 3 {
		t.Fatalf("poison handled %d times, want 3 (MaxAttempts counts the first attempt)", n)
	}
	d := dead[0]
	if string(d.Key) != "k" || !bytes.Equal(d.Value, []byte{0xde, 0xad, 0xbe, 0xef}) {
		t.Fatalf("dead letter key/value changed: %q %x", d.Key, d.Value)
	}
	if header(d, "tenant") != "acme" {
		t.Fatalf("original header lost: %v", d.Headers)
	}
	info, err := dlq.Parse(d)
	if err != nil {
		t.Fatal(err)
	}
	if info.OriginalTopic != tp.in || info.OriginalPartition != 0 || info.OriginalOffset != 1 ||
		info.Stage != "test" || info.Class != failure.CRM5xx || info.Attempts != 3 ||
		info.Message == "" || info.TraceID != "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" ||
		info.FirstFailure.IsZero() || info.LastFailure.Before(info.FirstFailure) {
		t.Fatalf("dead letter context = %+v", info)
	}
	if !strings.Contains(info.Message, "crm answered 503") {
		t.Fatalf("message %q", info.Message)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	if n := sumCounter(rm, stage.MetricDeadLetters, "crm_5xx"); n != 1 {
		t.Errorf("%s{error.class=crm_5xx} = %d, want 1", stage.MetricDeadLetters, n)
	}
	if n := sumCounter(rm, stage.MetricHandlerErrors, "crm_5xx"); n != 3 {
		t.Errorf("%s{error.class=crm_5xx} = %d, want 3", stage.MetricHandlerErrors, n)
	}
	if n := sumCounter(rm, stage.MetricRecordsConsumed, ""); n != 4 {
		t.Errorf("%s = %d, want 4", stage.MetricRecordsConsumed, n)
	}
	if n := sumCounter(rm, stage.MetricRecordsProduced, ""); n != 4 {
		t.Errorf("%s = %d, want 4 (3 outputs + 1 dead letter)", stage.MetricRecordsProduced, n)
	}
}

// sumCounter adds the int64 sum data points of metric name whose error.class attribute equals
// class ("" matches every point).
func sumCounter(rm metricdata.ResourceMetrics, name, class string) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				if v, _ := dp.Attributes.Value("error.class"); class == "" || v.AsString() == class {
					n += dp.Value
				}
			}
		}
	}
	return n
}

func TestAttempts(t *testing.T) {
	for _, tt := range []struct {
		name      string
		failures  int   // attempts that fail before success; -1 always fails
		err       error // what a failing attempt returns
		wantCalls int
		wantDLQ   bool
		wantClass failure.Class
	}{
		{"success first time", 0, nil, 1, false, ""},
		{"retryable then success", 2, failure.Wrap(failure.Timeout, errors.New("slow")), 3, false, ""},
		{"retryable exhausted", -1, errors.New("connection reset"), 3, true, failure.Unknown},
		{"non-retryable parse", -1, failure.New(failure.Parse, "no usable MIME part"), 1, true, failure.Parse},
		{"non-retryable schema", -1, failure.New(failure.Schema, "unknown schema id"), 1, true, failure.Schema},
		{"non-retryable crm 4xx", -1, failure.New(failure.CRM4xx, "422"), 1, true, failure.CRM4xx},
		{"rate limited exhausted", -1, failure.WithRetryAfter(errors.New("429"), time.Millisecond), 3, true, failure.RateLimited},
	} {
		t.Run(tt.name, func(t *testing.T) {
			brokers := kafkatest.NewCluster(t)
			tp := newTopics(t, brokers, 1)
			produce(t, brokers, tp.in, "k", "v", "k", "after")
			var calls atomic.Int32
			h := func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
				if string(rec.Value) == "after" {
					return forward(tp.out)(ctx, rec)
				}
				n := int(calls.Add(1))
				if tt.failures < 0 || n <= tt.failures {
					return nil, tt.err
				}
				return forward(tp.out)(ctx, rec)
			}
			r := start(t, brokers, baseConfig(t, tp), h)
			wantOut := 2
			if tt.wantDLQ {
				wantOut = 1
				d := kafkatest.ConsumeAll(t, brokers, tp.dlq, 1, 20*time.Second)
				info, err := dlq.Parse(d[0])
				if err != nil {
					t.Fatal(err)
				}
				if info.Attempts != tt.wantCalls || info.Class != tt.wantClass {
					t.Errorf("dead letter attempts=%d class=%s, want %d %s", info.Attempts, info.Class, tt.wantCalls, tt.wantClass)
				}
			}
			out := kafkatest.ConsumeAll(t, brokers, tp.out, wantOut, 20*time.Second)
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			if n := int(calls.Load()); n != tt.wantCalls {
				t.Errorf("handler called %d times, want %d", n, tt.wantCalls)
			}
			if string(out[len(out)-1].Value) != "after" {
				t.Errorf("last output %q, want the record after", out[len(out)-1].Value)
			}
			if !tt.wantDLQ {
				if n := endOffsets(t, brokers, tp.dlq); n != 0 {
					t.Errorf("dlq end offsets = %d, want 0", n)
				}
			}
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 1)
	produce(t, brokers, tp.in, "k", "v")
	var mu sync.Mutex
	var times []time.Time
	h := func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		mu.Lock()
		times = append(times, time.Now())
		n := len(times)
		mu.Unlock()
		if n == 1 {
			return nil, failure.WithRetryAfter(errors.New("429"), 300*time.Millisecond)
		}
		return forward(tp.out)(ctx, rec)
	}
	cfg := baseConfig(t, tp)
	cfg.MaxBackoff = 2 * time.Second
	r := start(t, brokers, cfg, h)
	kafkatest.ConsumeAll(t, brokers, tp.out, 1, 20*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if gap := times[1].Sub(times[0]); gap < 300*time.Millisecond {
		t.Fatalf("second attempt after %v, want at least the 300ms Retry-After", gap)
	}
}

func TestPanicIsDeadLetteredAsInternal(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 1)
	produce(t, brokers, tp.in, "k", "boom", "k", "fine")
	var calls atomic.Int32
	h := func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		if string(rec.Value) == "boom" {
			calls.Add(1)
			panic("nil map somewhere")
		}
		return forward(tp.out)(ctx, rec)
	}
	r := start(t, brokers, baseConfig(t, tp), h)
	d := kafkatest.ConsumeAll(t, brokers, tp.dlq, 1, 20*time.Second)
	kafkatest.ConsumeAll(t, brokers, tp.out, 1, 20*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	info, err := dlq.Parse(d[0])
	if err != nil {
		t.Fatal(err)
	}
	if info.Class != failure.Internal || info.Attempts != 1 || calls.Load() != 1 || !strings.Contains(info.Message, "nil map somewhere") {
		t.Fatalf("dead letter %+v after %d calls", info, calls.Load())
	}
}

func TestAttemptTimeout(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 1)
	produce(t, brokers, tp.in, "k", "hang")
	h := func(ctx context.Context, _ *kgo.Record) ([]*kgo.Record, error) {
		<-ctx.Done()
		return nil, errors.New("gave up waiting") // no %w: the stage must still see a timeout
	}
	cfg := baseConfig(t, tp)
	cfg.MaxAttempts, cfg.AttemptTimeout = 2, 100*time.Millisecond
	r := start(t, brokers, cfg, h)
	d := kafkatest.ConsumeAll(t, brokers, tp.dlq, 1, 20*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	info, err := dlq.Parse(d[0])
	if err != nil {
		t.Fatal(err)
	}
	if info.Class != failure.Timeout || info.Attempts != 2 {
		t.Fatalf("dead letter %+v, want class timeout after 2 attempts", info)
	}
}

func TestAttemptsStartFromTheOriginalRecord(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 1)
	kafkatest.Produce(t, brokers, &kgo.Record{Topic: tp.in, Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("1")}}})
	type ctxKey struct{}
	var mu sync.Mutex
	var seen []string
	// A custom middleware that decorates the context, and a handler that edits the record and
	// fails: the next attempt must not see either change.
	mw := func(next stage.Handler) stage.Handler {
		return func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
			if ctx.Value(ctxKey{}) != nil {
				return nil, failure.New(failure.Internal, "context leaked between attempts")
			}
			return next(context.WithValue(ctx, ctxKey{}, true), rec)
		}
	}
	h := func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprint(len(rec.Headers)))
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "added", Value: []byte("x")})
		rec.Topic = "mutated"
		return nil, errors.New("transient")
	}
	r := start(t, brokers, baseConfig(t, tp), h, stage.WithMiddleware(mw))
	d := kafkatest.ConsumeAll(t, brokers, tp.dlq, 1, 20*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "1,1,1" {
		t.Fatalf("headers seen per attempt = %v, want the original single header each time", seen)
	}
	info, err := dlq.Parse(d[0])
	if err != nil {
		t.Fatal(err)
	}
	if info.OriginalTopic != tp.in || info.Class != failure.Unknown || header(d[0], "added") != "" {
		t.Fatalf("dead letter shows an attempt's edits: %+v %v", info, d[0].Headers)
	}
}

func TestShutdownWhileFailingDoesNotDeadLetter(t *testing.T) {
	// given a record whose handler keeps failing with long waits between attempts
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 1)
	produce(t, brokers, tp.in, "k", "stuck")
	var calls atomic.Int32
	failing := func(context.Context, *kgo.Record) ([]*kgo.Record, error) {
		calls.Add(1)
		return nil, failure.Wrap(failure.CRM5xx, errors.New("crm down"))
	}
	cfg := baseConfig(t, tp)
	cfg.MaxAttempts, cfg.InitialBackoff, cfg.MaxBackoff = 100, time.Second, time.Second
	r := start(t, brokers, cfg, failing)
	eventually(t, 20*time.Second, "the first attempt", func() bool { return calls.Load() > 0 })

	// when the stage is stopped mid-retry
	began := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil after a graceful stop", err)
	}
	if took := time.Since(began); took > cfg.ShutdownTimeout {
		t.Fatalf("stop took %v, more than the shutdown timeout", took)
	}

	// then nothing was dead-lettered or committed, and a restart gets the record again
	if n := endOffsets(t, brokers, tp.dlq); n != 0 {
		t.Fatalf("dlq has %d offsets, want none", n)
	}
	if off := committed(t, brokers, cfg.Group, tp.in)[0]; off > 0 {
		t.Fatalf("group committed offset %d for a record that was not handled", off)
	}
	start(t, brokers, cfg, forward(tp.out))
	out := kafkatest.ConsumeAll(t, brokers, tp.out, 1, 30*time.Second)
	if string(out[0].Value) != "stuck" {
		t.Fatalf("redelivered %q", out[0].Value)
	}
}

func TestShutdownCommitsTheOpenBatch(t *testing.T) {
	// given a slow handler in the middle of a batch
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 1)
	produce(t, brokers, tp.in, "k", "1", "k", "2", "k", "3")
	entered := make(chan struct{}, 3)
	h := func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		entered <- struct{}{}
		time.Sleep(200 * time.Millisecond)
		return forward(tp.out)(ctx, rec)
	}
	cfg := baseConfig(t, tp)
	r := start(t, brokers, cfg, h)
	<-entered

	// when stopped, then the batch is finished and committed rather than thrown away
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	out := kafkatest.ConsumeAll(t, brokers, tp.out, 3, 10*time.Second)
	if len(out) != 3 {
		t.Fatalf("got %d outputs", len(out))
	}
	if off := committed(t, brokers, cfg.Group, tp.in)[0]; off != 3 {
		t.Fatalf("committed offset %d, want 3", off)
	}
}

func TestOutputsWithoutTopicAreInternalErrors(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 1)
	produce(t, brokers, tp.in, "k", "v")
	h := func(context.Context, *kgo.Record) ([]*kgo.Record, error) {
		return []*kgo.Record{{Value: []byte("where to?")}}, nil
	}
	r := start(t, brokers, baseConfig(t, tp), h)
	d := kafkatest.ConsumeAll(t, brokers, tp.dlq, 1, 20*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	info, err := dlq.Parse(d[0])
	if err != nil {
		t.Fatal(err)
	}
	if info.Class != failure.Internal || info.Attempts != 1 {
		t.Fatalf("dead letter %+v", info)
	}
}

func TestStopAndActor(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 1)
	st, err := stage.New(baseConfig(t, tp), kafka.Config{Brokers: brokers}, forward(tp.out), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	a := st.Actor()
	if a.Name != "stage test" || a.StopTimeout <= st.Config().ShutdownTimeout {
		t.Fatalf("actor %+v", a)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(t.Context()) }()
	produce(t, brokers, tp.in, "k", "v")
	kafkatest.ConsumeAll(t, brokers, tp.out, 1, 20*time.Second)
	if err := a.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run after Stop = %v", err)
	}
	if err := st.Run(t.Context()); err == nil {
		t.Fatal("a second Run was accepted")
	}
}

func TestNewValidates(t *testing.T) {
	ok := stage.Config{Name: "parser", InputTopics: []string{kafka.TopicRaw}}
	log := slog.New(slog.DiscardHandler)
	h := forward(kafka.TopicParsed)
	kcfg := kafka.DefaultConfig()
	for _, tt := range []struct {
		name string
		cfg  stage.Config
		kcfg kafka.Config
		h    stage.Handler
		log  *slog.Logger
		want string
	}{
		{"nil handler", ok, kcfg, nil, log, "handler is required"},
		{"nil logger", ok, kcfg, h, nil, "logger is required"},
		{"no name", stage.Config{InputTopics: []string{"x"}}, kcfg, h, log, "name"},
		{"bad name", stage.Config{Name: "Parser!", InputTopics: []string{"x"}}, kcfg, h, log, "name"},
		{"no inputs", stage.Config{Name: "parser"}, kcfg, h, log, "input topic"},
		{"dlq is input", stage.Config{Name: "parser", InputTopics: []string{kafka.TopicDLQ}}, kcfg, h, log, "must not be an input topic"},
		{"bad backoff", stage.Config{Name: "parser", InputTopics: []string{"x"}, InitialBackoff: time.Second, MaxBackoff: time.Millisecond}, kcfg, h, log, "max backoff"},
		{"negative attempts", stage.Config{Name: "parser", InputTopics: []string{"x"}, MaxAttempts: -1}, kcfg, h, log, "max attempts"},
		{"bad kafka config", ok, kafka.Config{}, h, log, "broker"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := stage.New(tt.cfg, tt.kcfg, tt.h, tt.log)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	st, err := stage.New(ok, kcfg, h, log)
	if err != nil {
		t.Fatal(err)
	}
	got := st.Config()
	if got.Group != "mailpipe-parser" || !strings.HasPrefix(got.TransactionalID, "mailpipe-parser-") ||
		got.MaxAttempts != stage.DefaultMaxAttempts || got.DLQTopic != kafka.TopicDLQ || got.Concurrency < 1 {
		t.Fatalf("defaults not applied: %+v", got)
	}
}

func TestRebalanceKeepsExactlyOnce(t *testing.T) {
	testRebalance(t, kafkatest.NewCluster(t))
}

// testRebalance moves partitions between two members while batches are in flight: a second
// member joins mid-stream, then the first leaves. Every input must come out exactly once, in
// per-key order.
func testRebalance(t *testing.T, brokers []string) {
	const keys, perKey = 20, 100
	tp := newTopics(t, brokers, 4)
	var recs []*kgo.Record
	for seq := range perKey {
		for k := range keys {
			key := fmt.Sprintf("k%02d", k)
			recs = append(recs, &kgo.Record{Topic: tp.in, Key: []byte(key), Value: fmt.Appendf(nil, "%s:%d", key, seq)})
		}
	}
	kafkatest.Produce(t, brokers, recs...)
	slow := func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		time.Sleep(time.Millisecond) // keep batches open long enough to be caught by a rebalance
		return forward(tp.out)(ctx, rec)
	}
	out := collect(t, brokers, tp.out)
	deadline := time.Now().Add(60 * time.Second)

	// given member a consuming alone
	cfg := baseConfig(t, tp)
	cfg.MaxPollRecords, cfg.SessionTimeout, cfg.RebalanceTimeout = 50, 6*time.Second, 10*time.Second
	cfgA, cfgB := cfg, cfg
	cfgA.TransactionalID, cfgB.TransactionalID = cfg.TransactionalID+"-a", cfg.TransactionalID+"-b"
	a := start(t, brokers, cfgA, slow)
	if !out.waitFor(300, deadline) {
		t.Fatalf("member a made no progress: %d outputs", out.count())
	}

	// when member b joins, and later a leaves
	b := start(t, brokers, cfgB, slow)
	if !out.waitFor(1200, deadline) {
		t.Fatalf("no progress after b joined: %d outputs", out.count())
	}
	if err := a.stop(t); err != nil {
		t.Fatalf("stopping a: %v", err)
	}
	if !out.waitFor(keys*perKey, deadline) {
		t.Fatalf("only %d of %d outputs after a left", out.count(), keys*perKey)
	}
	if err := b.stop(t); err != nil {
		t.Fatalf("stopping b: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // let a duplicate, if any, reach the collector

	// then every input came out exactly once, in per-key order
	got := out.snapshot()
	if len(got) != keys*perKey {
		t.Errorf("got %d outputs, want %d", len(got), keys*perKey)
	}
	next := map[string]int{}
	for _, r := range got {
		key, seqStr, _ := strings.Cut(string(r.Value), ":")
		seq, _ := strconv.Atoi(seqStr)
		if seq != next[key] {
			t.Fatalf("key %s: got seq %d, want %d", key, seq, next[key])
		}
		next[key]++
	}
}

func TestFencedInstanceStops(t *testing.T) {
	// given a member with a static instance id
	brokers := kafkatest.NewCluster(t)
	tp := newTopics(t, brokers, 1)
	cfg := baseConfig(t, tp)
	cfg.InstanceID = "pod-0"
	cfgB := cfg
	cfgB.TransactionalID += "-b"
	a := start(t, brokers, cfg, forward(tp.out))
	produce(t, brokers, tp.in, "k", "1")
	kafkatest.ConsumeAll(t, brokers, tp.out, 1, 20*time.Second)

	// when a second process starts with the same instance id (a misconfigured replica)
	start(t, brokers, cfgB, forward(tp.out))

	// then the fenced member stops with an error instead of idling forever
	select {
	case <-a.done:
		if a.err == nil || !strings.Contains(a.err.Error(), "FENCED_INSTANCE_ID") {
			t.Fatalf("Run = %v, want a fenced-instance error", a.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the fenced member kept running")
	}
}
