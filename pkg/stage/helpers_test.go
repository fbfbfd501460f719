package stage_test

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

// testLogger logs to the test output at warn level (MAILPIPE_TEST_LOG=debug|info for more).
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	switch os.Getenv("MAILPIPE_TEST_LOG") {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(&syncWriter{w: t.Output()}, &slog.HandlerOptions{Level: level}))
}

type syncWriter struct {
	mu sync.Mutex
	w  interface{ Write([]byte) (int, error) }
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// topics creates unique input, output and DLQ topics.
type topics struct{ in, out, dlq string }

func newTopics(t testing.TB, brokers []string, partitions int32) topics {
	t.Helper()
	tp := topics{
		in:  kafkatest.TopicName(t, "in"),
		out: kafkatest.TopicName(t, "out"),
		dlq: kafkatest.TopicName(t, "dlq"),
	}
	for _, n := range []string{tp.in, tp.out, tp.dlq} {
		kafkatest.CreateTopic(t, brokers, n, partitions)
	}
	return tp
}

// baseConfig is a fast-retrying stage config for tests.
func baseConfig(t testing.TB, tp topics) stage.Config {
	return stage.Config{
		Name:            "test",
		Group:           kafkatest.TopicName(t, "group"),
		TransactionalID: kafkatest.TopicName(t, "txn"),
		InputTopics:     []string{tp.in},
		DLQTopic:        tp.dlq,
		MaxAttempts:     3,
		InitialBackoff:  5 * time.Millisecond,
		MaxBackoff:      20 * time.Millisecond,
		AttemptTimeout:  5 * time.Second,
		ShutdownTimeout: 10 * time.Second,
	}
}

// running is a stage started by start.
type running struct {
	st     *stage.Stage
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, valid after done
}

// stop cancels Run's context and returns Run's result.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatal("stage did not stop within 30s")
		return nil
	}
}

func start(t testing.TB, brokers []string, cfg stage.Config, h stage.Handler, opts ...stage.Option) *running {
	t.Helper()
	st, err := stage.New(cfg, kafka.Config{Brokers: brokers}, h, testLogger(t), opts...)
	if err != nil {
		t.Fatalf("stage.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	r := &running{st: st, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = st.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
		}
	})
	return r
}

// forward copies every record to the output topic unchanged.
func forward(out string) stage.Handler {
	return func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		return []*kgo.Record{{Topic: out, Key: rec.Key, Value: rec.Value, Headers: rec.Headers}}, nil
	}
}

func produce(t testing.TB, brokers []string, topic string, kvs ...string) {
	t.Helper()
	var recs []*kgo.Record
	for i := 0; i+1 < len(kvs); i += 2 {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(kvs[i]), Value: []byte(kvs[i+1])})
	}
	kafkatest.Produce(t, brokers, recs...)
}

// endOffsets returns the sum of the end offsets of topic. For a topic only written in
// transactions, zero means "nothing was ever produced, not even in an aborted transaction".
func endOffsets(t testing.TB, brokers []string, topic string) int64 {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ends, err := adm.ListEndOffsets(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// committed returns the group's committed offsets for topic, by partition.
func committed(t testing.TB, brokers []string, group, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	offs, err := adm.FetchOffsets(t.Context(), group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			out[o.Partition] = o.At
		}
	})
	return out
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func header(rec *kgo.Record, key string) string {
	return kafka.HeaderCarrier{Record: rec}.Get(key)
}
