package stage

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// lagTimeout bounds the broker round trips of one lag collection: a scrape must not hang on a
// slow broker.
const lagTimeout = 3 * time.Second

// partitionLag is the lag of one input partition.
type partitionLag struct {
	topic     string
	partition int32
	lag       int64
}

// consumerLag reads the group's committed offsets and the input partitions' last stable
// offsets. A partition the group never committed counts from the partition's start.
func consumerLag(ctx context.Context, adm *kadm.Client, group string, topics []string) ([]partitionLag, error) {
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("listing end offsets: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("listing start offsets: %w", err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("fetching offsets of group %s: %w", group, err)
	}
	var out []partitionLag
	ends.Each(func(end kadm.ListedOffset) {
		if end.Err != nil {
			return
		}
		from := int64(0)
		if s, ok := starts.Lookup(end.Topic, end.Partition); ok && s.Err == nil {
			from = s.Offset
		}
		if c, ok := committed.Lookup(end.Topic, end.Partition); ok && c.Err == nil && c.At >= 0 {
			from = max(from, c.At)
		}
		out = append(out, partitionLag{topic: end.Topic, partition: end.Partition, lag: max(end.Offset-from, 0)})
	})
	return out, nil
}

// observeLag registers the lag gauge's callback for this run; the caller unregisters it.
func (s *Stage) observeLag(adm *kadm.Client) (metric.Registration, error) {
	return s.inst.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, lagTimeout)
		defer cancel()
		lags, err := consumerLag(ctx, adm, s.cfg.Group, s.cfg.InputTopics)
		if err != nil {
			// The gauge is missing from this scrape; failing the whole collection would hide
			// every other metric too.
			s.log.DebugContext(ctx, "reading consumer lag", "error", err)
			return nil
		}
		for _, l := range lags {
			o.ObserveInt64(s.inst.lag, l.lag, s.inst.attrs(attrTopic(l.topic),
				attribute.String("partition", strconv.Itoa(int(l.partition)))))
		}
		return nil
	}, s.inst.lag)
}
