package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// NewClient builds a Kafka client with extra options on top of the connection settings. The CLI
// passes a closure over kafka.NewClient and its config; tests pass one over kfake's addresses.
// Every operation makes its own clients because a direct consumer must be told its partitions
// when it is built.
type NewClient func(opts ...kgo.Opt) (*kgo.Client, error)

// ErrNoTopic is returned when the topic to read does not exist.
var ErrNoTopic = errors.New("topic does not exist")

// DefaultIdle is how long a scan waits for more records before it takes a partition whose
// remaining offsets it has not seen as finished. Dead letters are written in transactions, so
// the last offsets below the end are often commit markers that a read_committed consumer never
// sees, and franz-go does not expose how far it has read past them.
const DefaultIdle = 2 * time.Second

// Span is the offsets [From, To) of one partition.
type Span struct {
	Partition int32 `json:"partition"`
	From      int64 `json:"from"`
	To        int64 `json:"to"`
}

// listSpans returns, per partition of topic in partition order, the log start offset and the
// last stable offset (the end a read_committed consumer can reach) as listed now. Records
// written after the call are outside every span, so a scan has a fixed end.
func listSpans(ctx context.Context, adm *kadm.Client, topic string) ([]Span, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	if err := starts.Error(); err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("%s: %w", topic, ErrNoTopic)
		}
		return nil, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	var spans []Span
	for p, s := range starts[topic] {
		e, ok := ends.Lookup(topic, p)
		if !ok {
			return nil, fmt.Errorf("no end offset listed for %s[%d]", topic, p)
		}
		spans = append(spans, Span{Partition: p, From: s.Offset, To: e.Offset})
	}
	if len(spans) == 0 {
		return nil, fmt.Errorf("%s: %w", topic, ErrNoTopic)
	}
	slices.SortFunc(spans, func(a, b Span) int { return int(a.Partition - b.Partition) })
	return spans, nil
}

// errStop ends a scan early without an error.
var errStop = errors.New("stop scan")

// scan reads spans of topic read_committed and calls fn for each record, in offset order within
// a partition (partitions interleave). It returns when every span is read, when fn returns an
// error (errStop ends it cleanly), or when ctx is done (ctx.Err()). See [DefaultIdle] for how
// spans that end in transaction markers finish: the partitions in the returned set were seen
// up to their end; the others ended in idleness, which could also be a stalled broker, so a
// replay must not checkpoint past their last record.
func scan(ctx context.Context, newClient NewClient, topic string, spans []Span, idle time.Duration, fn func(*kgo.Record) error) (map[int32]bool, error) {
	if idle <= 0 {
		idle = DefaultIdle
	}
	remaining := map[int32]int64{}
	ended := map[int32]bool{}
	start := map[int32]kgo.Offset{}
	for _, s := range spans {
		if s.From < s.To {
			remaining[s.Partition] = s.To
			start[s.Partition] = kgo.NewOffset().At(s.From)
		} else {
			ended[s.Partition] = true
		}
	}
	if len(remaining) == 0 {
		return ended, nil
	}
	cl, err := newClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if err != nil {
		return nil, fmt.Errorf("creating consumer for %s: %w", topic, err)
	}
	defer cl.Close()
	done := func(p int32) {
		delete(remaining, p)
		ended[p] = true
		cl.PauseFetchPartitions(map[string][]int32{topic: {p}})
	}
	lastRecord := time.Now()
	for len(remaining) > 0 {
		pollCtx, cancel := context.WithTimeout(ctx, idle)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if err := ctx.Err(); err != nil {
			return ended, err
		}
		var fetchErr error
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				fetchErr = errors.Join(fetchErr, fmt.Errorf("fetching %s[%d]: %w", t, p, err))
			}
		})
		if fetchErr != nil {
			return ended, fetchErr
		}
		seen := false
		var fnErr error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			for _, r := range fp.Records {
				if fnErr != nil {
					return
				}
				to, ok := remaining[r.Partition]
				if !ok {
					continue
				}
				if r.Offset >= to {
					done(r.Partition)
					continue
				}
				seen = true
				if fnErr = fn(r); fnErr != nil {
					return
				}
				if r.Offset >= to-1 {
					done(r.Partition)
				}
			}
		})
		if errors.Is(fnErr, errStop) {
			return ended, nil
		}
		if fnErr != nil {
			return ended, fnErr
		}
		if seen {
			lastRecord = time.Now()
		} else if time.Since(lastRecord) >= idle {
			return ended, nil // likely only transaction markers or aborted records are left
		}
	}
	return ended, nil
}
