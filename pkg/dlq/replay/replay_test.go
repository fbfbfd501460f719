package replay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/events/eventstest"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

const (
	origTopic = kafka.TopicEnriched
	dlqTopic  = kafka.TopicDLQ
)

func clientFor(brokers []string) NewClient {
	return func(opts ...kgo.Opt) (*kgo.Client, error) {
		return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	}
}

// letterSpec describes one dead letter a test writes.
type letterSpec struct {
	key     string
	id      string // the value's message id, unique per letter
	tenant  string
	stage   string
	class   failure.Class
	last    time.Time
	replays int    // replay count already on the record
	target  string // crm-sink's target header, if any
}

// fixture is a kfake cluster with the DLQ (2 partitions) and the original topic.
type fixture struct {
	brokers []string
	codec   *serde.Codec
	newCl   NewClient
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	brokers := kafkatest.NewCluster(t)
	kafkatest.CreateTopic(t, brokers, dlqTopic, 2)
	kafkatest.CreateTopic(t, brokers, origTopic, 2)
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{brokers: brokers, codec: codec, newCl: clientFor(brokers)}
}

func (f *fixture) value(t *testing.T, s letterSpec) []byte {
	t.Helper()
	v := *eventstest.Samples()[origTopic].(*events.Enriched)
	v.Message.MessageID, v.Message.Tenant = s.id, s.tenant
	b, err := f.codec.Encode(origTopic, &v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deadLetter builds the dead letter of spec as the stages do, with dlq.Build.
func (f *fixture) deadLetter(t *testing.T, i int, s letterSpec) *kgo.Record {
	t.Helper()
	src := &kgo.Record{
		Topic: origTopic, Partition: int32(i % 2), Offset: int64(i), Key: []byte(s.key), Value: f.value(t, s),
		Timestamp: s.last, Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-abc")}},
	}
	if s.replays > 0 {
		src.Headers = append(src.Headers, kgo.RecordHeader{Key: dlq.HeaderReplayCount, Value: []byte(strconv.Itoa(s.replays))})
	}
	if s.target != "" {
		src.Headers = append(src.Headers,
			kgo.RecordHeader{Key: "mailpipe.sink.target", Value: []byte(s.target)},
			kgo.RecordHeader{Key: "mailpipe.sink.holder", Value: []byte(s.target)})
	}
	stage, class := s.stage, s.class
	if stage == "" {
		stage = "crm-sink"
	}
	if class == "" {
		class = failure.CRM5xx
	}
	return dlq.Build(src, dlq.Info{Stage: stage, Class: class, Message: "boom", Attempts: 4, FirstFailure: s.last, LastFailure: s.last})
}

func (f *fixture) produce(t *testing.T, specs []letterSpec) {
	t.Helper()
	recs := make([]*kgo.Record, len(specs))
	for i, s := range specs {
		recs[i] = f.deadLetter(t, i, s)
	}
	kafkatest.Produce(t, f.brokers, recs...)
}

func (f *fixture) replayed(t *testing.T, n int) []*kgo.Record {
	t.Helper()
	if n == 0 {
		return nil
	}
	return kafkatest.ConsumeAll(t, f.brokers, origTopic, n, 20*time.Second)
}

func (f *fixture) messageID(t *testing.T, r *kgo.Record) string {
	t.Helper()
	var v events.Enriched
	if err := f.codec.Decode(t.Context(), origTopic, r.Value, &v); err != nil {
		t.Fatal(err)
	}
	return v.Message.MessageID
}

// manyLetters returns n letters over 5 thread keys, in order within each key.
func manyLetters(n int) []letterSpec {
	out := make([]letterSpec, n)
	for i := range out {
		out[i] = letterSpec{key: fmt.Sprintf("thread-%d", i%5), id: fmt.Sprintf("m%03d", i), tenant: "acme", last: time.Now().Add(-time.Minute)}
	}
	return out
}

// assertExactlyOnceInOrder checks that got holds every id of want once, and that each thread's
// records are in the order they were dead-lettered.
func (f *fixture) assertExactlyOnceInOrder(t *testing.T, got []*kgo.Record, want []letterSpec) {
	t.Helper()
	pos := map[string]int{}
	for i, s := range want {
		pos[s.id] = i
	}
	seen := map[string]int{}
	lastByKey := map[string]string{}
	for _, r := range got {
		id := f.messageID(t, r)
		seen[id]++
		if prev, ok := lastByKey[string(r.Key)]; ok && pos[id] < pos[prev] {
			t.Errorf("thread %s: %s replayed after %s", r.Key, id, prev)
		}
		lastByKey[string(r.Key)] = id
	}
	for _, s := range want {
		if seen[s.id] != 1 {
			t.Errorf("%s replayed %d times, want once", s.id, seen[s.id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d records replayed, want %d", len(got), len(want))
	}
}

func header(r *kgo.Record, k string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value), true
		}
	}
	return "", false
}

func TestReplayKeepsSinkHeadersAndCountsReplays(t *testing.T) {
	f := newFixture(t)
	specs := []letterSpec{
		{key: "t1", id: "a", target: "hubspot", last: time.Now()},
		{key: "t1", id: "b", replays: 1, last: time.Now()},
	}
	f.produce(t, specs)
	a, err := Run(t.Context(), f.newCl, Options{Name: "headers", Operator: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Replayed != 2 || a.Looping != 0 {
		t.Fatalf("audit counts %+v, want 2 replayed", a.Counts)
	}
	got := f.replayed(t, 2)
	f.assertExactlyOnceInOrder(t, got, specs)
	for _, r := range got {
		id := f.messageID(t, r)
		count, _ := header(r, dlq.HeaderReplayCount)
		wantCount := map[string]string{"a": "1", "b": "2"}[id]
		if count != wantCount {
			t.Errorf("%s: replay count %q, want %q", id, count, wantCount)
		}
		if _, ok := header(r, dlq.HeaderStage); ok {
			t.Errorf("%s: dlq stage header kept on the replayed record", id)
		}
		if tp, _ := header(r, "traceparent"); tp != "00-abc" {
			t.Errorf("%s: traceparent %q lost", id, tp)
		}
		target, hasTarget := header(r, "mailpipe.sink.target")
		holder, _ := header(r, "mailpipe.sink.holder")
		if id == "a" && (target != "hubspot" || holder != "hubspot") {
			t.Errorf("a: sink headers target=%q holder=%q, want hubspot", target, holder)
		}
		if id == "b" && hasTarget {
			t.Errorf("b: has a sink target it never had")
		}
	}
	// The replayed record dead-lettered again keeps its history.
	again := dlq.Build(got[0], dlq.Info{Stage: "crm-sink", Class: failure.CRM5xx, Attempts: 1})
	info, err := dlq.Parse(again)
	if err != nil || info.ReplayCount < 1 {
		t.Fatalf("dead letter of a replayed record: count %d, err %v", info.ReplayCount, err)
	}
}

// An interrupted replay resumed under the same name sends every selected record exactly once.
func TestReplayResumesAfterInterrupt(t *testing.T) {
	for _, k := range []int{1, 37, 150} {
		t.Run(fmt.Sprintf("after %d", k), func(t *testing.T) {
			f := newFixture(t)
			specs := manyLetters(200)
			f.produce(t, specs)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			n := 0
			first, err := Run(ctx, f.newCl, Options{Name: "resume", Each: func(it Item) {
				if it.Action == ActionReplay {
					if n++; n == k {
						cancel()
					}
				}
			}})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted run: err %v, want context.Canceled", err)
			}
			if first.Replayed != k || first.Error == "" {
				t.Fatalf("interrupted run audit: replayed %d (want %d), error %q", first.Replayed, k, first.Error)
			}
			second, err := Run(t.Context(), f.newCl, Options{Name: "resume"})
			if err != nil {
				t.Fatal(err)
			}
			if first.Replayed+second.Replayed != len(specs) {
				t.Fatalf("replayed %d + %d, want %d in all", first.Replayed, second.Replayed, len(specs))
			}
			f.assertExactlyOnceInOrder(t, f.replayed(t, len(specs)), specs)
			third, err := Run(t.Context(), f.newCl, Options{Name: "resume"})
			if err != nil || third.Replayed != 0 {
				t.Fatalf("third run replayed %d (err %v), want 0", third.Replayed, err)
			}
			audits, err := ReadAudits(t.Context(), f.newCl, kafka.TopicDLQAudit, 0)
			if err != nil || len(audits) != 3 {
				t.Fatalf("%d audit records (err %v), want 3", len(audits), err)
			}
		})
	}
}

func TestLoopingSkippedUnlessForced(t *testing.T) {
	f := newFixture(t)
	specs := []letterSpec{
		{key: "t", id: "fresh", last: time.Now()},
		{key: "t", id: "twice", replays: 2, last: time.Now()},
		{key: "t", id: "thrice", replays: 3, last: time.Now()},
	}
	f.produce(t, specs)
	var looping []int64
	a, err := Run(t.Context(), f.newCl, Options{Name: "loop", Each: func(it Item) {
		if it.Action == ActionLooping {
			looping = append(looping, it.Offset)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Replayed != 2 || a.Looping != 1 || len(looping) != 1 {
		t.Fatalf("counts %+v, looping items %v; want 2 replayed, 1 looping", a.Counts, looping)
	}
	forced, err := Run(t.Context(), f.newCl, Options{Name: "loop-forced", Force: true, Filter: Filter{MessageID: "thrice"}, Decoder: f.codec})
	if err != nil || forced.Replayed != 1 {
		t.Fatalf("forced: replayed %d, err %v; want 1", forced.Replayed, err)
	}
	f.assertExactlyOnceInOrder(t, f.replayed(t, 3), specs)
}

func TestDryRunWritesNothing(t *testing.T) {
	f := newFixture(t)
	f.produce(t, manyLetters(20))
	var would int
	a, err := Run(t.Context(), f.newCl, Options{Name: "dry", DryRun: true, Each: func(it Item) {
		if it.Action == ActionReplay {
			would++
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Replayed != 20 || would != 20 {
		t.Fatalf("dry run counted %d (items %d), want 20", a.Replayed, would)
	}
	adm := kadm.NewClient(kafkatest.Client(t, f.brokers))
	ends, err := adm.ListEndOffsets(t.Context(), origTopic)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset != 0 {
			t.Errorf("%s[%d] has %d records after a dry run", o.Topic, o.Partition, o.Offset)
		}
	})
	committed, err := adm.FetchOffsets(t.Context(), Group("dry"))
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		t.Fatal(err)
	}
	if len(committed.Offsets()) != 0 {
		t.Errorf("dry run committed checkpoints %v", committed.Offsets())
	}
	topics, err := adm.ListTopics(t.Context(), kafka.TopicDLQAudit)
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has(kafka.TopicDLQAudit) {
		t.Errorf("dry run created the audit topic")
	}
}

func TestReplaySelection(t *testing.T) {
	now := time.Now().UTC()
	specs := []letterSpec{
		{key: "a", id: "p1", tenant: "acme", stage: "parser", class: failure.Parse, last: now.Add(-3 * time.Hour)},
		{key: "a", id: "c1", tenant: "acme", stage: "crm-sink", class: failure.CRM5xx, last: now.Add(-2 * time.Hour)},
		{key: "b", id: "c2", tenant: "globex", stage: "crm-sink", class: failure.CRM4xx, last: now.Add(-time.Hour)},
		{key: "b", id: "c3", tenant: "globex", stage: "crm-sink", class: failure.CRM5xx, last: now},
	}
	for _, tt := range []struct {
		name   string
		filter Filter
		want   []string
	}{
		{"all", Filter{}, []string{"p1", "c1", "c2", "c3"}},
		{"stage", Filter{Stages: []string{"crm-sink"}}, []string{"c1", "c2", "c3"}},
		{"class", Filter{Classes: []failure.Class{failure.CRM5xx}}, []string{"c1", "c3"}},
		{"since", Filter{Since: now.Add(-90 * time.Minute)}, []string{"c2", "c3"}},
		{"until exclusive", Filter{Until: now.Add(-time.Hour)}, []string{"p1", "c1"}},
		{"tenant", Filter{Tenant: "globex"}, []string{"c2", "c3"}},
		{"message id", Filter{MessageID: "c1"}, []string{"c1"}},
		{"tenant and class", Filter{Tenant: "globex", Classes: []failure.Class{failure.CRM5xx}}, []string{"c3"}},
		{"nothing", Filter{Tenant: "initech"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.produce(t, specs)
			a, err := Run(t.Context(), f.newCl, Options{Name: "sel", Filter: tt.filter, Decoder: f.codec})
			if err != nil {
				t.Fatal(err)
			}
			if a.Replayed != len(tt.want) || a.Filtered != len(specs)-len(tt.want) {
				t.Fatalf("counts %+v, want %d replayed", a.Counts, len(tt.want))
			}
			var want []letterSpec
			for _, id := range tt.want {
				want = append(want, letterSpec{id: id})
			}
			f.assertExactlyOnceInOrder(t, f.replayed(t, len(tt.want)), want)
		})
	}
}

// --partition with --from/--to replays exactly that offset range of that partition.
func TestReplayOffsetRange(t *testing.T) {
	f := newFixture(t)
	specs := manyLetters(40)
	f.produce(t, specs)
	var offsets []int64
	a, err := Run(t.Context(), f.newCl, Options{Name: "range", Filter: Filter{Partitions: []int32{1}, From: 2, To: 5}, Each: func(it Item) {
		if it.Partition != 1 {
			t.Errorf("looked at partition %d", it.Partition)
		}
		offsets = append(offsets, it.Offset)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(offsets) != "[2 3 4]" || a.Replayed != 3 {
		t.Fatalf("offsets %v, replayed %d; want [2 3 4], 3", offsets, a.Replayed)
	}
	if len(a.Partitions) != 1 || a.Partitions[0].Span != (Span{Partition: 1, From: 2, To: 5}) {
		t.Fatalf("audit partitions %+v", a.Partitions)
	}
	if _, err := Run(t.Context(), f.newCl, Options{Name: "range", Filter: Filter{Partitions: []int32{7}}}); err == nil {
		t.Fatal("a missing partition was accepted")
	}
}

func TestReplayRateLimited(t *testing.T) {
	f := newFixture(t)
	f.produce(t, manyLetters(12))
	lim, err := ratelimit.NewMemory(ratelimit.Limit{Rate: 40, Period: time.Second, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	var reports []Progress
	start := time.Now()
	a, err := Run(t.Context(), f.newCl, Options{Name: "rate", Limiter: lim, ProgressEvery: time.Millisecond, Progress: func(p Progress) {
		reports = append(reports, p)
	}})
	if err != nil || a.Replayed != 12 {
		t.Fatalf("replayed %d, err %v", a.Replayed, err)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("12 records at 40/s took %v, want >= 275ms", took)
	}
	last := reports[len(reports)-1]
	if len(reports) < 2 || last.Done != last.Total || last.Counts.Replayed != 12 {
		t.Fatalf("progress reports %+v", reports)
	}
}

func TestSummarizeAndShow(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	specs := []letterSpec{
		{key: "a", id: "x1", stage: "parser", class: failure.Parse, last: now.Add(-10 * time.Minute)},
		{key: "a", id: "x2", last: now.Add(-5 * time.Hour)},
		{key: "b", id: "x3", last: now.Add(-3 * 24 * time.Hour), replays: 3},
		{key: "b", id: "x4", last: now.Add(-30 * 24 * time.Hour)},
	}
	f.produce(t, specs)
	kafkatest.Produce(t, f.brokers, &kgo.Record{Topic: dlqTopic, Key: []byte("junk"), Value: []byte("no headers")})
	if _, err := Run(t.Context(), f.newCl, Options{Name: "some", Filter: Filter{MessageID: "x2"}, Decoder: f.codec}); err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(t.Context(), f.newCl, SummaryOptions{Decoder: f.codec})
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 5 || s.Invalid != 1 || s.Looping != 1 {
		t.Fatalf("summary %+v", s)
	}
	// x2 was replayed; x1, x4 and the looping x3 were not; the invalid one is counted apart.
	if s.NotReplayed != 3 {
		t.Errorf("not replayed %d, want 3", s.NotReplayed)
	}
	wantAge := map[string]int{"<1h": 1, "<1d": 1, "<7d": 1, "older": 1}
	for k, v := range wantAge {
		if s.ByAge[k] != v {
			t.Errorf("age %s: %d, want %d (%v)", k, s.ByAge[k], v, s.ByAge)
		}
	}
	if s.ByStage["parser"] != 1 || s.ByStage["crm-sink"] != 3 || s.ByClass[string(failure.CRM5xx)] != 3 {
		t.Errorf("by stage %v, by class %v", s.ByStage, s.ByClass)
	}

	// Find x1 and show it.
	var p int32
	var off int64 = -1
	for _, r := range kafkatest.ConsumeAll(t, f.brokers, dlqTopic, 5, 10*time.Second) {
		if info, err := dlq.Parse(r); err == nil && info.Stage == "parser" {
			p, off = r.Partition, r.Offset
		}
	}
	l, err := Show(t.Context(), f.newCl, dlqTopic, p, off, f.codec, 0)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := l.Value.(map[string]any)["message"].(map[string]any)
	if l.Stage != "parser" || l.ErrorClass != "parse" || msg["message_id"] != "x1" || l.DecodeError != "" {
		t.Fatalf("shown letter %+v", l)
	}
	if _, err := Show(t.Context(), f.newCl, dlqTopic, p, 1000, f.codec, 0); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("offset 1000: err %v, want ErrNoRecord", err)
	}
}

func TestDescribeUndecodable(t *testing.T) {
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	src := &kgo.Record{Topic: origTopic, Value: []byte("not avro"), Headers: []kgo.RecordHeader{{Key: "mailpipe.sink.target", Value: []byte("hubspot")}}}
	l := describe(t.Context(), dlq.Build(src, dlq.Info{Stage: "crm-sink", Class: failure.Schema, Attempts: 1}), codec)
	if l.ValueHex != "6e6f74206176726f" || l.DecodeError == "" || l.Value != nil {
		t.Fatalf("undecodable letter: hex %q, error %q, value %v", l.ValueHex, l.DecodeError, l.Value)
	}
	if l.Headers["mailpipe.sink.target"] != "hubspot" || len(l.Headers) != 1 {
		t.Fatalf("headers %v, want only the sink target", l.Headers)
	}
}

func TestFilterValidate(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		name string
		f    Filter
		ok   bool
	}{
		{"empty", Filter{}, true},
		{"range", Filter{From: 3, To: 4}, true},
		{"from only", Filter{From: 3}, true},
		{"empty range", Filter{From: 3, To: 3}, false},
		{"negative from", Filter{From: -1}, false},
		{"until before since", Filter{Since: now, Until: now.Add(-time.Second)}, false},
		{"negative partition", Filter{Partitions: []int32{-1}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.f.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestValueFields(t *testing.T) {
	for _, tt := range []struct {
		name          string
		v             any
		tenant, msgID string
	}{
		{"top level", map[string]any{"tenant": "a", "message_id": "m"}, "a", "m"},
		{"nested", map[string]any{"message": map[string]any{"tenant": "b", "message_id": "n"}}, "b", "n"},
		{"not a record", "x", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tenant, id := valueFields(tt.v)
			if tenant != tt.tenant || id != tt.msgID {
				t.Fatalf("got %q %q, want %q %q", tenant, id, tt.tenant, tt.msgID)
			}
		})
	}
}

// The stages write dead letters in transactions, so partitions end in commit markers that a
// read_committed scan never sees; an aborted transaction's dead letters must not be replayed.
func TestReplayTransactionalDeadLetters(t *testing.T) {
	f := newFixture(t)
	specs := manyLetters(10)
	cl := kafkatest.Client(t, f.brokers, kgo.TransactionalID("test-stage"))
	write := func(commit kgo.TransactionEndTry, from, to int) {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			if err := cl.ProduceSync(t.Context(), f.deadLetter(t, i, specs[i])).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(t.Context(), commit); err != nil {
			t.Fatal(err)
		}
	}
	write(kgo.TryCommit, 0, 6)
	write(kgo.TryAbort, 6, 10)
	// No stall timeout can end these scans early: they must stop at the end offsets.
	o := Options{Name: "tx", Stall: time.Hour}
	a, err := Run(t.Context(), f.newCl, o)
	if err != nil || a.Replayed != 6 {
		t.Fatalf("replayed %d, err %v; want the 6 committed", a.Replayed, err)
	}
	f.assertExactlyOnceInOrder(t, f.replayed(t, 6), specs[:6])
	again, err := Run(t.Context(), f.newCl, o)
	if err != nil || again.Replayed != 0 {
		t.Fatalf("second run replayed %d, err %v; want 0", again.Replayed, err)
	}
}

// txWriter writes dead letters to DLQ partition 0 in transactions of one transactional id.
type txWriter struct {
	t  *testing.T
	f  *fixture
	cl *kgo.Client
}

func (f *fixture) txWriter(t *testing.T, id string) *txWriter {
	t.Helper()
	return &txWriter{t: t, f: f, cl: kafkatest.Client(t, f.brokers, kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()))}
}

func (w *txWriter) begin() {
	w.t.Helper()
	if err := w.cl.BeginTransaction(); err != nil {
		w.t.Fatal(err)
	}
}

func (w *txWriter) write(specs []letterSpec, from, to int) {
	w.t.Helper()
	for i := from; i < to; i++ {
		r := w.f.deadLetter(w.t, i, specs[i])
		r.Partition = 0
		if err := w.cl.ProduceSync(w.t.Context(), r).FirstErr(); err != nil {
			w.t.Fatal(err)
		}
	}
}

func (w *txWriter) end(commit kgo.TransactionEndTry) {
	w.t.Helper()
	if err := w.cl.EndTransaction(w.t.Context(), commit); err != nil {
		w.t.Fatal(err)
	}
}

// Scans stop at the listed end offsets, read through commit and abort markers: no idle wait
// decides that a partition is finished. With a stall timeout of an hour, a scan that could not
// tell where the partition ends would hang until the test's deadline.
func TestScansEndAtTransactionMarkers(t *testing.T) {
	f := newFixture(t)
	specs := manyLetters(12)
	w := f.txWriter(t, "test-stage")
	tx := func(commit kgo.TransactionEndTry, from, to int) {
		w.begin()
		w.write(specs, from, to)
		w.end(commit)
	}
	// Partition 0: committed 0-3 (offsets 0-3, marker 4), aborted 4-5 (5-6, marker 7),
	// committed 6-8 (8-10, marker 11), aborted 9-11 (12-14, marker 15): it ends in an abort
	// marker. Partition 1 stays empty.
	tx(kgo.TryCommit, 0, 4)
	tx(kgo.TryAbort, 4, 6)
	tx(kgo.TryCommit, 6, 9)
	tx(kgo.TryAbort, 9, 12)
	committed := append(append([]letterSpec{}, specs[:4]...), specs[6:9]...)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	began := time.Now()
	s, err := Summarize(ctx, f.newCl, SummaryOptions{Stall: time.Hour})
	if err != nil {
		t.Fatalf("Summarize: %v", err)
	}
	if s.Total != len(committed) || s.NotReplayed != len(committed) || s.Ends[0] != 16 {
		t.Fatalf("summary total %d, not replayed %d, ends %v; want %d, %d and partition 0 ending at 16",
			s.Total, s.NotReplayed, s.Ends, len(committed), len(committed))
	}
	if l, err := Show(ctx, f.newCl, dlqTopic, 0, 10, f.codec, time.Hour); err != nil || l.Offset != 10 {
		t.Fatalf("Show of the last committed dead letter: %+v, %v", l, err)
	}
	for _, off := range []int64{4, 5, 13, 15} { // markers and aborted records
		if _, err := Show(ctx, f.newCl, dlqTopic, 0, off, f.codec, time.Hour); !errors.Is(err, ErrNoRecord) {
			t.Errorf("Show at offset %d: %v, want ErrNoRecord", off, err)
		}
	}
	a, err := Run(ctx, f.newCl, Options{Name: "markers", Stall: time.Hour})
	if err != nil || a.Replayed != len(committed) {
		t.Fatalf("replayed %d, err %v; want the %d committed", a.Replayed, err, len(committed))
	}
	if got := a.Partitions; len(got) == 0 || got[0].To != 16 {
		t.Errorf("audit partitions %+v, want partition 0 read to 16", got)
	}
	audits, err := ReadAudits(ctx, f.newCl, kafka.TopicDLQAudit, time.Hour)
	if err != nil || len(audits) != 1 {
		t.Fatalf("audits %v, err %v; want the one replay", audits, err)
	}
	t.Logf("summary, 5 shows, a replay and the history in %s", time.Since(began).Round(time.Millisecond))
	f.assertExactlyOnceInOrder(t, f.replayed(t, len(committed)), committed)
}

// The one tail a scan cannot see through: aborted dead letters right below the listed end, whose
// abort marker was written after another producer's transaction began, so it lies past the last
// stable offset. The scan waits for that transaction, and gives up with ErrStalled after the
// stall timeout without checkpointing past what it read.
func TestScanStallsBehindOpenTransaction(t *testing.T) {
	f := newFixture(t)
	specs := manyLetters(4)
	a, b := f.txWriter(t, "stage-a"), f.txWriter(t, "stage-b")
	a.begin()
	a.write(specs, 0, 2) // offsets 0-1
	b.begin()
	b.write(specs, 2, 3) // offset 2: the last stable offset while b is open
	a.end(kgo.TryAbort)  // marker at 3

	_, err := Summarize(t.Context(), f.newCl, SummaryOptions{Stall: 300 * time.Millisecond})
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("Summarize behind an open transaction: %v, want ErrStalled", err)
	}
	t.Logf("stall error: %v", err)
	audit, err := Run(t.Context(), f.newCl, Options{Name: "stall", Stall: 300 * time.Millisecond})
	if !errors.Is(err, ErrStalled) || audit.Error == "" || audit.Replayed != 0 {
		t.Fatalf("Run behind an open transaction: audit %+v, err %v; want ErrStalled in the audit", audit, err)
	}

	b.end(kgo.TryCommit) // b's dead letter at 2, its marker at 4
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	audit, err = Run(ctx, f.newCl, Options{Name: "stall", Stall: time.Hour})
	if err != nil || audit.Replayed != 1 {
		t.Fatalf("Run after the transaction ended: replayed %d, err %v; want b's one dead letter", audit.Replayed, err)
	}
	if got := audit.Partitions; len(got) == 0 || got[0].From != 0 || got[0].To != 5 {
		t.Errorf("audit partitions %+v, want partition 0 from 0 (the stalled run checkpointed nothing) to 5", got)
	}
	f.assertExactlyOnceInOrder(t, f.replayed(t, 1), specs[2:3])
}
