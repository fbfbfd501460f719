package stage_test

// Integration tests against the real broker ($MAILPIPE_TEST_KAFKA_BROKERS, scripts/kafka-up.sh).
// Under -short they skip; without the variable they fail.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

// Environment of the child process of TestKill9ExactlyOnce. When envChild is set, the test binary
// runs one forwarding stage instead of the tests.
const (
	envChild         = "MAILPIPE_STAGE_TEST_CHILD"
	envChildBrokers  = "MAILPIPE_STAGE_TEST_CHILD_BROKERS"
	envChildIn       = "MAILPIPE_STAGE_TEST_CHILD_IN"
	envChildOut      = "MAILPIPE_STAGE_TEST_CHILD_OUT"
	envChildDLQ      = "MAILPIPE_STAGE_TEST_CHILD_DLQ"
	envChildGroup    = "MAILPIPE_STAGE_TEST_CHILD_GROUP"
	envChildTxnID    = "MAILPIPE_STAGE_TEST_CHILD_TXN_ID"
	envChildInstance = "MAILPIPE_STAGE_TEST_CHILD_INSTANCE"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		// The re-executed test binary is the stage process of TestKill9ExactlyOnce; its exit
		// status is the child's result.
		os.Exit(runChild()) //nolint:forbidigo // a child process must report its own exit status.
	}
	m.Run()
}

// runChild runs a stage that forwards every input record to the output topic, until SIGTERM.
func runChild() int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	out := os.Getenv(envChildOut)
	cfg := stage.Config{
		Name:            "killtest",
		Group:           os.Getenv(envChildGroup),
		TransactionalID: os.Getenv(envChildTxnID),
		InstanceID:      os.Getenv(envChildInstance),
		InputTopics:     []string{os.Getenv(envChildIn)},
		DLQTopic:        os.Getenv(envChildDLQ),
		ShutdownTimeout: 10 * time.Second,
		SessionTimeout:  10 * time.Second,
		// Bounds how long a transaction left open by a killed child can block, should fencing
		// by the restarted child ever not happen.
		TransactionTimeout: 15 * time.Second,
	}
	h := func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		return []*kgo.Record{{Topic: out, Key: rec.Key, Value: rec.Value}}, nil
	}
	st, err := stage.New(cfg, kafka.Config{Brokers: strings.Split(os.Getenv(envChildBrokers), ",")}, h, log)
	if err != nil {
		log.Error("building stage", "error", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := st.Run(ctx); err != nil {
		log.Error("running stage", "error", err)
		return 1
	}
	return 0
}

// outputCollector reads a topic read_committed in the background and keeps every record.
type outputCollector struct {
	mu      sync.Mutex
	recs    []*kgo.Record
	changed chan struct{}
}

func collect(t *testing.T, brokers []string, topic string) *outputCollector {
	t.Helper()
	c := &outputCollector{changed: make(chan struct{}, 1)}
	cl := kafkatest.Client(t, brokers,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			if recs := fs.Records(); len(recs) > 0 {
				c.mu.Lock()
				c.recs = append(c.recs, recs...)
				c.mu.Unlock()
				select {
				case c.changed <- struct{}{}:
				default:
				}
			}
		}
	}()
	return c
}

func (c *outputCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recs)
}

func (c *outputCollector) snapshot() []*kgo.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*kgo.Record(nil), c.recs...)
}

// waitFor blocks until at least n records arrived or the deadline passes.
func (c *outputCollector) waitFor(n int, deadline time.Time) bool {
	for c.count() < n {
		select {
		case <-c.changed:
		case <-time.After(time.Until(deadline)):
			return c.count() >= n
		}
	}
	return true
}

type child struct {
	cmd *exec.Cmd
	log string
}

func startChild(t *testing.T, env []string, n int) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), fmt.Sprintf("child-%d.log", n))
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = f.Close() // the child holds its own descriptor
	c := &child{cmd: cmd, log: logPath}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("child %d log:\n%s", n, tail(b, 60))
		}
	})
	return c
}

func tail(b []byte, lines int) []byte {
	parts := bytes.Split(b, []byte("\n"))
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return bytes.Join(parts, []byte("\n"))
}

// TestKill9ExactlyOnce pushes 10,000 records (400 keys, 25 sequence numbers each) through a stage
// running as a separate OS process, SIGKILLs it three times at random points of the stream and
// restarts it each time, then checks that the output holds exactly the input (no loss, no
// duplicate) with per-key order kept.
func TestKill9ExactlyOnce(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	const (
		keys    = 400
		perKey  = 25
		total   = keys * perKey
		kills   = 3
		timeout = 150 * time.Second
	)
	deadline := time.Now().Add(timeout)
	tp := topics{
		in:  kafkatest.TopicName(t, "kill9.in"),
		out: kafkatest.TopicName(t, "kill9.out"),
		dlq: kafkatest.TopicName(t, "kill9.dlq"),
	}
	kafkatest.CreateTopic(t, brokers, tp.in, 6)
	kafkatest.CreateTopic(t, brokers, tp.out, 6)
	kafkatest.CreateTopic(t, brokers, tp.dlq, 1)

	// given 10,000 input records, per-key sequence numbers in the values
	recs := make([]*kgo.Record, 0, total)
	for seq := range perKey {
		for k := range keys {
			key := fmt.Sprintf("key-%03d", k)
			recs = append(recs, &kgo.Record{Topic: tp.in, Key: []byte(key), Value: fmt.Appendf(nil, "%s:%d", key, seq)})
		}
	}
	kafkatest.Produce(t, brokers, recs...)
	out := collect(t, brokers, tp.out)

	env := []string{
		envChild + "=1",
		envChildBrokers + "=" + strings.Join(brokers, ","),
		envChildIn + "=" + tp.in,
		envChildOut + "=" + tp.out,
		envChildDLQ + "=" + tp.dlq,
		envChildGroup + "=" + kafkatest.TopicName(t, "kill9.group"),
		envChildTxnID + "=" + kafkatest.TopicName(t, "kill9.txn"),
		envChildInstance + "=kill9-child",
	}

	// when the stage process is killed with SIGKILL three times at random points of the stream
	began := time.Now()
	var downtime time.Duration
	c := startChild(t, env, 0)
	for i := 1; i <= kills; i++ {
		// Kill somewhere in the i-th quarter of the stream, plus a random sub-batch delay, so
		// the kill lands while a transaction is open.
		target := i*total/(kills+1) + rand.IntN(total/(kills+1)/2) - total/(kills+1)/4
		if !out.waitFor(target, deadline) {
			t.Fatalf("kill %d: only %d of %d outputs before the deadline", i, out.count(), target)
		}
		time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = c.cmd.Wait()
		killedAt, seen := time.Now(), out.count()
		t.Logf("kill %d: SIGKILL after %d committed outputs", i, seen)
		c = startChild(t, env, i)
		if !out.waitFor(seen+1, deadline) && seen < total {
			t.Fatalf("restart %d made no progress", i)
		}
		downtime += time.Since(killedAt)
	}
	if !out.waitFor(total, deadline) {
		t.Fatalf("only %d of %d outputs before the deadline", out.count(), total)
	}
	elapsed := time.Since(began)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child did not stop cleanly on SIGTERM: %v", err)
	}
	// Anything committed before the graceful stop is readable now; give the collector a moment
	// to see a duplicate, if there were one.
	time.Sleep(2 * time.Second)

	// then the output is exactly the input, per-key in order
	got := out.snapshot()
	if len(got) != total {
		t.Errorf("got %d outputs, want exactly %d", len(got), total)
	}
	next := make(map[string]int, keys)
	for _, r := range got {
		key, seqStr, ok := strings.Cut(string(r.Value), ":")
		seq, err := strconv.Atoi(seqStr)
		if !ok || err != nil || key != string(r.Key) {
			t.Fatalf("unexpected output %q (key %q)", r.Value, r.Key)
		}
		if seq != next[key] {
			t.Fatalf("key %s: got seq %d, want %d (loss, duplicate or reordering)", key, seq, next[key])
		}
		next[key]++
	}
	for k := range keys {
		if key := fmt.Sprintf("key-%03d", k); next[key] != perKey {
			t.Fatalf("key %s: %d records, want %d", key, next[key], perKey)
		}
	}
	if n := endOffsets(t, brokers, tp.dlq); n != 0 {
		t.Errorf("dlq has %d offsets, want none", n)
	}
	// Records written by transactions that the kills left open were aborted: they are in the
	// log but invisible to read_committed. Seeing some shows the kills hit open transactions.
	t.Logf("%d output records from aborted transactions were hidden from read_committed", dataRecords(t, brokers, tp.out)-total)
	t.Logf("throughput: %d records in %v with %d SIGKILLs = %.0f records/s overall; %.0f records/s excluding %v of restart downtime",
		total, elapsed.Round(time.Millisecond), kills, float64(total)/elapsed.Seconds(),
		float64(total)/(elapsed-downtime).Seconds(), downtime.Round(time.Millisecond))
}

// TestPoisonRealBroker checks on the real broker that a record that always fails ends in the DLQ
// with its whole error context while the records after it on the same partition are delivered.
func TestPoisonRealBroker(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	tp := topics{
		in:  kafkatest.TopicName(t, "poison.in"),
		out: kafkatest.TopicName(t, "poison.out"),
		dlq: kafkatest.TopicName(t, "mail.dlq"),
	}
	kafkatest.CreateTopic(t, brokers, tp.in, 3)
	kafkatest.CreateTopic(t, brokers, tp.out, 3)
	kafkatest.CreateTopic(t, brokers, tp.dlq, 1)

	// given one key's records, the second of which is poison
	poison := []byte("\x00\x00\x00\x00\x07not avro at all")
	kafkatest.Produce(t, brokers,
		&kgo.Record{Topic: tp.in, Key: []byte("thread-1"), Value: []byte("m1")},
		&kgo.Record{Topic: tp.in, Key: []byte("thread-1"), Value: poison, Headers: []kgo.RecordHeader{
			{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
			{Key: "mailpipe.tenant", Value: []byte("acme")},
		}},
		&kgo.Record{Topic: tp.in, Key: []byte("thread-1"), Value: []byte("m2")},
		&kgo.Record{Topic: tp.in, Key: []byte("thread-1"), Value: []byte("m3")},
	)
	var calls sync.Map
	h := func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		n, _ := calls.LoadOrStore(rec.Offset, new(int))
		*n.(*int)++
		if bytes.Equal(rec.Value, poison) {
			return nil, errors.New("decoding record: schema id 7 not found")
		}
		return []*kgo.Record{{Topic: tp.out, Key: rec.Key, Value: rec.Value}}, nil
	}
	cfg := stage.Config{
		Name:            "parser",
		Group:           kafkatest.TopicName(t, "poison.group"),
		TransactionalID: kafkatest.TopicName(t, "poison.txn"),
		InputTopics:     []string{tp.in},
		DLQTopic:        tp.dlq,
		MaxAttempts:     4,
		InitialBackoff:  10 * time.Millisecond,
		MaxBackoff:      50 * time.Millisecond,
	}

	// when the stage runs
	r := start(t, brokers, cfg, h)
	outs := kafkatest.ConsumeAll(t, brokers, tp.out, 3, 60*time.Second)
	dead := kafkatest.ConsumeAll(t, brokers, tp.dlq, 1, 60*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	// then m1..m3 flow in order and the poison is in the DLQ with its context and headers
	var vals []string
	for _, o := range outs {
		vals = append(vals, string(o.Value))
	}
	if strings.Join(vals, ",") != "m1,m2,m3" {
		t.Fatalf("outputs %v, want m1,m2,m3", vals)
	}
	d := dead[0]
	if string(d.Key) != "thread-1" || !bytes.Equal(d.Value, poison) {
		t.Fatalf("dead letter key %q value %q, want the original bytes", d.Key, d.Value)
	}
	info, err := dlq.Parse(d)
	if err != nil {
		t.Fatal(err)
	}
	if info.OriginalTopic != tp.in || info.OriginalOffset != 1 || info.Stage != "parser" ||
		info.Class != failure.Unknown || info.Attempts != 4 || info.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		!strings.Contains(info.Message, "schema id 7 not found") || info.LastFailure.Before(info.FirstFailure) {
		t.Fatalf("dead letter context %+v", info)
	}
	for _, k := range []string{
		dlq.HeaderOriginalTopic, dlq.HeaderOriginalPartition, dlq.HeaderOriginalOffset, dlq.HeaderStage,
		dlq.HeaderErrorClass, dlq.HeaderErrorMessage, dlq.HeaderAttempts, dlq.HeaderFirstFailure,
		dlq.HeaderLastFailure, dlq.HeaderTraceID, "traceparent", "mailpipe.tenant",
	} {
		if header(d, k) == "" {
			t.Errorf("dead letter lacks header %s", k)
		}
	}
	if n, _ := calls.Load(int64(1)); *n.(*int) != 4 {
		t.Errorf("poison handled %d times, want 4", *n.(*int))
	}
}

// dataRecords reads topic read_uncommitted up to its high watermarks and counts the data records
// (aborted ones included, transaction markers excluded).
func dataRecords(t *testing.T, brokers []string, topic string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cl := kafkatest.Client(t, brokers,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.KeepControlRecords(),
	)
	hwm := map[int32]int64{}
	next := map[int32]int64{}
	n := 0
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s to its end: %v", topic, ctx.Err())
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			hwm[p.Partition] = p.HighWatermark
			for _, r := range p.Records {
				next[p.Partition] = r.Offset + 1
				if r.Attrs.IsControl() {
					continue
				}
				n++
			}
		})
		done := len(hwm) > 0
		for p, h := range hwm {
			if next[p] < h {
				done = false
			}
		}
		if done {
			return n
		}
	}
}

// TestRebalanceRealBroker runs the two-member rebalance scenario against the real broker.
func TestRebalanceRealBroker(t *testing.T) {
	testRebalance(t, kafkatest.Brokers(t))
}
