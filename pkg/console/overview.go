package console

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	dlqreplay "github.com/mailpipe/mailpipe/pkg/dlq/replay"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

// Stage is a pipeline stage the overview shows the consumer lag of.
type Stage struct {
	Name  string // parser, classifier, …
	Group string // its consumer group
	Input string // the topic it consumes
}

// DefaultStages are the four consuming stages with their default groups ("mailpipe-" + name,
// see stage.Config.Group).
func DefaultStages() []Stage {
	return []Stage{
		{Name: "parser", Group: "mailpipe-parser", Input: kafka.TopicRaw},
		{Name: "classifier", Group: "mailpipe-classifier", Input: kafka.TopicParsed},
		{Name: "enricher", Group: "mailpipe-enricher", Input: kafka.TopicClassified},
		{Name: "crm-sink", Group: "mailpipe-crm-sink", Input: kafka.TopicEnriched},
	}
}

// ThroughputWindow is the window the overview counts records in.
const ThroughputWindow = 5 * time.Minute

// PartitionLag is one partition of a stage's input.
type PartitionLag struct {
	Partition int32
	Committed int64 // -1: nothing committed yet
	End       int64
	Lag       int64
}

// StageLag is the consumer lag of one stage.
type StageLag struct {
	Stage
	State      string // the group's state (Stable, Empty, …)
	Members    int
	Partitions []PartitionLag
	Total      int64
	Err        string
}

// TopicRate is the traffic of one topic.
type TopicRate struct {
	Topic  string
	End    int64   // sum of the partitions' end offsets
	Recent int64   // offsets added within ThroughputWindow (transaction markers included)
	PerSec float64 // Recent over the window
}

// Overview is what the console's front page shows.
type Overview struct {
	At         time.Time
	Stages     []StageLag
	Topics     []TopicRate
	TopicsErr  string
	DLQ        dlqreplay.Summary
	DLQErr     string
	Latency    LatencyStats
	Tracked    int              // messages in the lookup index
	Indexed    map[string]int64 // records indexed per topic
	Undecoded  int64
	WindowDesc string
}

// overview gathers lag, throughput and dead-letter counts from Kafka, and latency from the
// tracker. Parts that fail carry their error; the rest is still shown.
func (c *Console) overview(ctx context.Context) Overview {
	now := c.cfg.Now()
	o := Overview{At: now.UTC(), Latency: c.tracker.Latency(), Tracked: c.tracker.Len(), WindowDesc: ThroughputWindow.String()}
	o.Indexed, o.Undecoded = c.tracker.Records()
	cl, err := c.cfg.NewClient()
	if err != nil {
		o.TopicsErr = err.Error()
		return o
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	o.Stages = c.lags(ctx, adm)
	o.Topics, err = throughput(ctx, adm, now, append(slices.Clone(TrackedTopics), kafka.TopicLake))
	if err != nil {
		o.TopicsErr = err.Error()
	}
	o.DLQ, err = dlqreplay.Summarize(ctx, c.cfg.NewClient, dlqreplay.SummaryOptions{
		Topic: c.cfg.DLQTopic, AuditTopic: c.cfg.AuditTopic, Decoder: c.cfg.Decoder, Now: c.cfg.Now,
	})
	if err != nil {
		o.DLQErr = err.Error()
	}
	return o
}

func (c *Console) lags(ctx context.Context, adm *kadm.Client) []StageLag {
	groups := make([]string, 0, len(c.cfg.Stages))
	for _, s := range c.cfg.Stages {
		groups = append(groups, s.Group)
	}
	lags, err := adm.Lag(ctx, groups...)
	out := make([]StageLag, 0, len(c.cfg.Stages))
	for _, s := range c.cfg.Stages {
		sl := StageLag{Stage: s}
		l, ok := lags[s.Group]
		switch {
		case !ok && err != nil:
			sl.Err = err.Error()
		case !ok:
			sl.Err = "group not found"
		default:
			sl.State, sl.Members = l.State, len(l.Members)
			if e := errors.Join(l.DescribeErr, l.FetchErr); e != nil {
				sl.Err = e.Error()
			}
			for p, m := range l.Lag[s.Input] {
				pl := PartitionLag{Partition: p, Committed: m.Commit.At, End: m.End.Offset, Lag: m.Lag}
				if m.Lag > 0 {
					sl.Total += m.Lag
				}
				sl.Partitions = append(sl.Partitions, pl)
			}
			slices.SortFunc(sl.Partitions, func(a, b PartitionLag) int { return int(a.Partition - b.Partition) })
			c.discountMarkers(ctx, s.Input, &sl)
			if len(sl.Partitions) == 0 && sl.Err == "" {
				sl.Err = "no offsets committed on " + s.Input + " yet"
			}
		}
		out = append(out, sl)
	}
	return out
}

// throughput counts the offsets each topic gained within ThroughputWindow: end offsets minus the
// first offsets at or after now-window (kadm returns the end for partitions with nothing newer).
func throughput(ctx context.Context, adm *kadm.Client, now time.Time, topics []string) ([]TopicRate, error) {
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("listing end offsets: %w", err)
	}
	after, err := adm.ListOffsetsAfterMilli(ctx, now.Add(-ThroughputWindow).UnixMilli(), topics...)
	if err != nil {
		return nil, fmt.Errorf("listing offsets after %s: %w", now.Add(-ThroughputWindow).Format(time.RFC3339), err)
	}
	var out []TopicRate
	for _, t := range topics {
		tr := TopicRate{Topic: t}
		ps := ends[t]
		for _, p := range slices.Sorted(maps.Keys(ps)) {
			e := ps[p]
			if e.Err != nil || p < 0 {
				continue
			}
			tr.End += e.Offset
			if a, ok := after.Lookup(t, p); ok && a.Err == nil && a.Offset >= 0 && a.Offset <= e.Offset {
				tr.Recent += e.Offset - a.Offset
			}
		}
		tr.PerSec = float64(tr.Recent) / ThroughputWindow.Seconds()
		out = append(out, tr)
	}
	return out, nil
}

// markerLag is the largest lag discountMarkers looks into.
const markerLag = 8

// discountMarkers corrects small lags for transaction markers. Stages write transactionally, so
// the offset after a consumed record is often a commit marker: a stage that is caught up has
// committed the offset of the marker and shows a lag of 1 per partition by offsets. For
// partitions lagging by at most markerLag offsets, it reads the rest of the partition, markers
// included, and counts only data records. A read that does not finish in time keeps the
// offset-based lag.
func (c *Console) discountMarkers(ctx context.Context, topic string, sl *StageLag) {
	start := map[int32]kgo.Offset{}
	want := map[int32]int64{}
	for _, p := range sl.Partitions {
		if p.Lag > 0 && p.Lag <= markerLag && p.Committed >= 0 {
			start[p.Partition] = kgo.NewOffset().At(p.Committed)
			want[p.Partition] = p.End
		}
	}
	if len(start) == 0 {
		return
	}
	cl, err := c.cfg.NewClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return
	}
	defer cl.Close()
	data := map[int32]int64{}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for len(want) > 0 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok {
				return
			}
			if r.Offset < end && !r.Attrs.IsControl() {
				data[r.Partition]++
			}
			if r.Offset >= end-1 {
				delete(want, r.Partition)
				for i := range sl.Partitions {
					pl := &sl.Partitions[i]
					if pl.Partition == r.Partition {
						sl.Total -= pl.Lag - data[r.Partition]
						pl.Lag = data[r.Partition]
					}
				}
			}
		})
	}
}
