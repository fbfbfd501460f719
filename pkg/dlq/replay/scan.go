package replay

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
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

// DefaultStall is how long a scan may go without reading a record or transaction marker of a
// partition it has not read to its end before it gives up with [ErrStalled]. It is a safety net
// against a stalled broker, not how a scan ends: a scan ends when it reached the end offsets
// listed at its start. It is longer than the default transaction timeout because the one tail
// a scan cannot see through (aborted records whose abort marker sits past the listed end, behind
// another producer's open transaction) becomes readable when that transaction ends.
const DefaultStall = 2 * time.Minute

// ErrStalled is returned when a scan read nothing for the stall timeout before reaching the
// end offsets.
var ErrStalled = errors.New("scan stalled")

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
// a partition (partitions interleave). It returns nil when every span was read to its end (or fn
// returned errStop), fn's error, ctx.Err(), a fetch error, or [ErrStalled] when nothing was read
// for stall (default [DefaultStall]).
//
// Dead letters are written in transactions, so a partition usually ends in a commit or abort
// marker, a control record a read_committed consumer does not return by default, and franz-go
// does not say how far it has read. The consumer therefore keeps control records: they are not
// passed to fn, but their offsets tell the scan it reached the last offset below the end (or went
// past it). Aborted records are still dropped by the read_committed fetch.
func scan(ctx context.Context, newClient NewClient, topic string, spans []Span, stall time.Duration, fn func(*kgo.Record) error) error {
	if stall <= 0 {
		stall = DefaultStall
	}
	remaining := map[int32]int64{}
	start := map[int32]kgo.Offset{}
	for _, s := range spans {
		if s.From < s.To {
			remaining[s.Partition] = s.To
			start[s.Partition] = kgo.NewOffset().At(s.From)
		}
	}
	if len(remaining) == 0 {
		return nil
	}
	cl, err := newClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return fmt.Errorf("creating consumer for %s: %w", topic, err)
	}
	defer cl.Close()
	reached := map[int32]int64{} // next offset per partition, for the stall error
	done := func(p int32) {
		delete(remaining, p)
		cl.PauseFetchPartitions(map[string][]int32{topic: {p}})
	}
	lastRead := time.Now()
	for len(remaining) > 0 {
		wait := stall - time.Since(lastRead)
		if wait <= 0 {
			return stalled(topic, stall, remaining, reached, start)
		}
		pollCtx, cancel := context.WithTimeout(ctx, wait)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		var fetchErr error
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				fetchErr = errors.Join(fetchErr, fmt.Errorf("fetching %s[%d]: %w", t, p, err))
			}
		})
		if fetchErr != nil {
			return fetchErr
		}
		var fnErr error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			for _, r := range fp.Records {
				if fnErr != nil {
					return
				}
				to, ok := remaining[r.Partition]
				if !ok {
					continue // finished, or records fetched after the pause
				}
				lastRead = time.Now()
				reached[r.Partition] = r.Offset + 1
				if r.Offset >= to {
					done(r.Partition) // what lay between was aborted: nothing left to see
					continue
				}
				if !r.Attrs.IsControl() {
					if fnErr = fn(r); fnErr != nil {
						return
					}
				}
				if r.Offset >= to-1 {
					done(r.Partition)
				}
			}
		})
		if errors.Is(fnErr, errStop) {
			return nil
		}
		if fnErr != nil {
			return fnErr
		}
	}
	return nil
}

func stalled(topic string, stall time.Duration, remaining, reached map[int32]int64, start map[int32]kgo.Offset) error {
	parts := slices.Sorted(maps.Keys(remaining))
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteString(", ")
		}
		at, ok := reached[p]
		if !ok {
			at = start[p].EpochOffset().Offset
		}
		fmt.Fprintf(&b, "%s[%d] at %d of %d", topic, p, at, remaining[p])
	}
	return fmt.Errorf("%w: nothing read for %s before the end offsets listed at the start: %s (a stalled broker, or a transaction left open)",
		ErrStalled, stall, b.String())
}
