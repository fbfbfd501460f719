package bench_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

const rawTopic = "mail.raw.v1"

// endOffsets returns the end offset of every partition of topic, where a later read starts.
func endOffsets(t *testing.T, brokers string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		t.Fatalf("building a kafka client: %v", err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(t.Context(), rawTopic)
	if err != nil {
		t.Fatalf("listing end offsets of %s: %v", rawTopic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	if len(out) == 0 {
		t.Fatalf("topic %s has no partitions", rawTopic)
	}
	return out
}

// brokerSetting returns a broker configuration value as the broker reports it ("?" when it
// does not), for the notes beside the figures.
func brokerSetting(t *testing.T, brokers, name string) string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		t.Fatalf("building a kafka client: %v", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// Without a broker id the broker answers only the cluster-wide dynamic settings.
	ids, err := adm.ListBrokers(t.Context())
	if err != nil || len(ids) == 0 {
		t.Fatalf("listing brokers: %v", err)
	}
	rcs, err := adm.DescribeBrokerConfigs(t.Context(), ids.NodeIDs()[0])
	if err != nil {
		t.Fatalf("describing the broker configuration: %v", err)
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key == name {
				return c.MaybeValue()
			}
		}
	}
	return "?"
}

// onTopic is what a read_committed consumer finds on mail.raw.v1 for one run.
type onTopic struct {
	// records with the run's envelope sender, and how many distinct ingress ids they carry
	// (fewer ids than records would be a duplicate produce).
	records, ids int
	// last is one of them, to check the claim check of the large message.
	last events.Raw
}

// readRun reads mail.raw.v1 from start with read_committed and counts the records whose
// envelope sender is from (each run has its own). It reads until it found want of them and
// then two seconds more, so duplicates would be counted too; it gives up after timeout.
func readRun(t *testing.T, brokers string, start map[int32]int64, from string, want int, timeout time.Duration) onTopic {
	t.Helper()
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatalf("building the codec: %v", err)
	}
	offsets := map[int32]kgo.Offset{}
	for p, o := range start {
		offsets[p] = kgo.NewOffset().At(o)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{rawTopic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxBytes(64<<20))
	if err != nil {
		t.Fatalf("building a kafka client: %v", err)
	}
	defer cl.Close()
	var got onTopic
	ids := map[string]bool{}
	deadline := time.Now().Add(timeout)
	var extraUntil time.Time
	for time.Now().Before(deadline) && (extraUntil.IsZero() || time.Now().Before(extraUntil)) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		if t.Context().Err() != nil {
			t.Fatalf("reading %s: %v", rawTopic, t.Context().Err())
		}
		var decodeErr error
		fs.EachRecord(func(r *kgo.Record) {
			var raw events.Raw
			if err := codec.Decode(t.Context(), rawTopic, r.Value, &raw); err != nil {
				decodeErr = fmt.Errorf("decoding %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
				return
			}
			if !strings.EqualFold(raw.Envelope.MailFrom, from) {
				return
			}
			got.records++
			ids[raw.ID] = true
			got.last = raw
		})
		if decodeErr != nil {
			t.Fatal(decodeErr)
		}
		if got.records >= want && extraUntil.IsZero() {
			extraUntil = time.Now().Add(2 * time.Second)
		}
	}
	got.ids = len(ids)
	return got
}
