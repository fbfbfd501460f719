package lab

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// Topics the oracle drains (pkg/kafka's names; that package is not imported to keep the
// dependency surface of the e2e module small).
const (
	TopicRaw        = "mail.raw.v1"
	TopicParsed     = "mail.parsed.v1"
	TopicClassified = "mail.classified.v1"
	TopicEnriched   = "mail.enriched.v1"
	TopicCRM        = "mail.crm.v1"
	TopicDLQ        = "mail.dlq.v1"
)

// PoisonPrefix starts the Message-ID of every record the lab writes to a topic directly as a
// poison pill; those are not in the ledger and not expected in the CRM.
const PoisonPrefix = "lab-poison-"

// Groups are the consumer groups of the four consuming stages, in pipeline order.
var Groups = []string{"mailpipe-parser", "mailpipe-classifier", "mailpipe-enricher", "mailpipe-crm-sink"}

// Report is what the oracle found after a run. Every count is defined in docs/reliability.md.
type Report struct {
	Sent        int // distinct messages in the ledger
	Acked       int // distinct messages answered 250 at least once
	Attempts    int // SMTP transactions, duplicates and retries included
	Transient   int // 4xx answers and cut connections (retried by the client)
	Permanent   int // 5xx answers
	GaveUp      int // messages never acknowledged within the client's give-up time
	Delivered   int // acknowledged messages with an effective CRM write
	Lost        int // acknowledged, never written to the CRM
	DupEffects  int // effective CRM changes beyond one per external id
	RawCalls    int64
	Redelivered int // accepted CRM calls beyond the first per message (absorbed by webhook-id dedupe)
	// RawExtra counts mail.raw.v1 records beyond one per acknowledged message (client retries of
	// an ambiguous failure, or an exact duplicate whose ingress dedupe state was lost).
	RawExtra int
	// DupInTopic counts records in parsed/classified/enriched beyond the number of mail.raw.v1
	// records of the same Message-ID: what exactly-once between Kafka stages forbids. Records a
	// DLQ replay wrote (header mailpipe.dlq.replay.count) are not counted.
	DupInTopic map[string]int
	// Orphans are records in read_committed topics with a Message-ID the ledger does not hold
	// (aborted-transaction leaks), poison pills excluded.
	Orphans    int
	Inversions int // per thread: CRM writes of a message after a later message of its thread
	DLQ        map[string]int
	DLQStages  map[string]int
	Undecoded  map[string]int // records per topic that do not decode (the lab's own poison)
	Replayed   map[string]int // records per topic written by a DLQ replay (not counted above)
	LatencyP50 time.Duration  // SMTP 250 → first CRM write
	LatencyP99 time.Duration
	LostIDs    []string // up to 20 examples
}

// Oracle drains every topic of the lab's broker read_committed and compares them and the CRM's
// state with the ledger.
func Oracle(ctx context.Context, brokers string, l *Ledger, crm *CRM) (*Report, error) {
	codec, err := serde.New(ctx)
	if err != nil {
		return nil, err
	}
	r := &Report{DupInTopic: map[string]int{}, DLQ: map[string]int{}, DLQStages: map[string]int{}, Undecoded: map[string]int{}, Replayed: map[string]int{}}
	l.mu.Lock()
	r.Sent = len(l.Entries)
	for _, e := range l.Entries {
		if e.Acked > 0 {
			r.Acked++
		} else {
			r.GaveUp++
		}
		r.Attempts += e.Attempts
		r.Permanent += e.Permanent
		for _, c := range e.Codes {
			if c != 250 && c < 500 {
				r.Transient++
			}
		}
	}
	l.mu.Unlock()

	counts := map[string]map[string]int{} // topic → message id → records
	err = drain(ctx, brokers, []string{TopicRaw, TopicParsed, TopicClassified, TopicEnriched, TopicDLQ}, func(rec *kgo.Record) {
		if rec.Topic == TopicDLQ {
			var class, stage string
			for _, h := range rec.Headers {
				switch h.Key {
				case dlq.HeaderErrorClass:
					class = string(h.Value)
				case dlq.HeaderStage:
					stage = string(h.Value)
				}
			}
			r.DLQ[class]++
			r.DLQStages[stage]++
			return
		}
		for _, h := range rec.Headers {
			if h.Key == dlq.HeaderReplayCount {
				// Written by `mailpipe dlq replay`, not by a stage: counted apart.
				r.Replayed[rec.Topic]++
				return
			}
		}
		id, ok := messageID(ctx, codec, rec)
		if !ok {
			r.Undecoded[rec.Topic]++
			return
		}
		if counts[rec.Topic] == nil {
			counts[rec.Topic] = map[string]int{}
		}
		counts[rec.Topic][strings.ToLower(id)]++
	})
	if err != nil {
		return nil, err
	}
	for id, n := range counts[TopicRaw] {
		if n > 1 {
			r.RawExtra += n - 1
		}
		_ = id
	}
	for _, topic := range []string{TopicParsed, TopicClassified, TopicEnriched} {
		r.DupInTopic[topic] = 0
		for id, n := range counts[topic] {
			if extra := n - counts[TopicRaw][id]; extra > 0 {
				r.DupInTopic[topic] += extra
			}
		}
	}
	for _, topic := range []string{TopicRaw, TopicParsed, TopicClassified, TopicEnriched} {
		for id := range counts[topic] {
			if l.ByMessageID(id) == nil && !strings.HasPrefix(id, PoisonPrefix) {
				r.Orphans++
			}
		}
	}

	// The CRM: effective objects per external id, first writes per message.
	r.RawCalls = crm.Calls()
	perExt := map[string]int{}
	for _, d := range crm.Server.Deliveries() {
		perExt[d.ExternalID]++
		r.Redelivered += d.Count - 1
	}
	for _, n := range perExt {
		if n > 1 {
			r.DupEffects += n - 1
		}
	}
	written := map[string]time.Time{}
	lastSeq := map[int]int{}
	var lat []time.Duration
	for _, w := range crm.Writes() {
		id := strings.ToLower(strings.Trim(w.MessageID, "<>"))
		written[id] = w.At
		e := l.ByMessageID(id)
		if e == nil {
			continue
		}
		if prev, ok := lastSeq[e.Thread]; ok && e.Seq < prev {
			r.Inversions++
		} else {
			lastSeq[e.Thread] = e.Seq
		}
		if !e.AckedAt.IsZero() {
			lat = append(lat, w.At.Sub(e.AckedAt))
		}
	}
	l.mu.Lock()
	for _, e := range l.Entries {
		if e.Acked == 0 {
			continue
		}
		if _, ok := written[strings.ToLower(e.MessageID)]; ok {
			r.Delivered++
			continue
		}
		r.Lost++
		if len(r.LostIDs) < 20 {
			r.LostIDs = append(r.LostIDs, e.MessageID)
		}
	}
	l.mu.Unlock()
	if len(lat) > 0 {
		slices.Sort(lat)
		r.LatencyP50 = lat[len(lat)/2]
		r.LatencyP99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return r, nil
}

// messageID decodes the Message-ID of a pipeline record.
func messageID(ctx context.Context, codec *serde.Codec, rec *kgo.Record) (string, bool) {
	switch rec.Topic {
	case TopicRaw:
		var v events.Raw
		if codec.Decode(ctx, rec.Topic, rec.Value, &v) != nil {
			return "", false
		}
		return v.MessageID, true
	case TopicParsed:
		var v events.Parsed
		if codec.Decode(ctx, rec.Topic, rec.Value, &v) != nil {
			return "", false
		}
		return v.MessageID, true
	case TopicClassified:
		var v events.Classified
		if codec.Decode(ctx, rec.Topic, rec.Value, &v) != nil {
			return "", false
		}
		return v.Message.MessageID, true
	case TopicEnriched:
		var v events.Enriched
		if codec.Decode(ctx, rec.Topic, rec.Value, &v) != nil {
			return "", false
		}
		return v.Message.MessageID, true
	}
	return "", false
}

// drain reads every partition of topics read_committed from the start up to the last stable
// offsets listed when it starts, calling fn for each record.
func drain(ctx context.Context, brokers string, topics []string, fn func(*kgo.Record)) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("listing end offsets: %w", err)
	}
	want := map[string]map[int32]int64{}
	offsets := map[string]map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset == 0 {
			return
		}
		if want[o.Topic] == nil {
			want[o.Topic] = map[int32]int64{}
			offsets[o.Topic] = map[int32]kgo.Offset{}
		}
		want[o.Topic][o.Partition] = o.Offset
		offsets[o.Topic][o.Partition] = kgo.NewOffset().AtStart()
	})
	if len(offsets) == 0 {
		return nil
	}
	cl.AddConsumePartitions(offsets)
	// A read_committed fetch skips transaction markers and aborted records, so the position is
	// not always visible from the records: a partition counts as done once a fetch of it reports
	// a last stable offset at or below the next offset to read, or nothing arrives for a while.
	pos := map[string]map[int32]int64{}
	idleSince := time.Now()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		got := 0
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, rec := range p.Records {
				fn(rec)
				got++
				if pos[rec.Topic] == nil {
					pos[rec.Topic] = map[int32]int64{}
				}
				pos[rec.Topic][rec.Partition] = rec.Offset + 1
			}
		})
		if got > 0 {
			idleSince = time.Now()
		}
		done := true
		for t, ps := range want {
			for p, end := range ps {
				if pos[t][p] < end-1 { // the last offset may be a commit marker
					done = false
				}
			}
		}
		if done && time.Since(idleSince) > 500*time.Millisecond {
			return nil
		}
		if time.Since(idleSince) > 5*time.Second {
			return nil
		}
	}
	return fmt.Errorf("draining %v did not finish in 3 minutes", topics)
}

// GroupLag returns the total lag of the groups and the lag per group, in records a
// read_committed consumer would still get. kadm's lag (end offset minus committed offset) counts
// the commit marker a transactional producer leaves at the end of a partition: a consumer that
// read everything commits the marker's offset, one short of the end. So a partition whose lag
// is exactly 1 is checked by fetching from the committed offset read_committed: if nothing
// arrives, the remaining offset is a marker and the lag is 0.
func GroupLag(ctx context.Context, brokers string, groups []string) (int64, map[string]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return 0, nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		return 0, nil, err
	}
	per := map[string]int64{}
	type tp struct {
		topic string
		part  int32
	}
	ones := map[string]map[tp]int64{} // group → partition with lag 1 → committed offset
	for _, g := range groups {
		gl, ok := lags[g]
		if !ok {
			continue
		}
		if gl.Error() != nil {
			return 0, nil, gl.Error()
		}
		for _, ps := range gl.Lag {
			for _, ml := range ps {
				if ml.Err != nil {
					return 0, nil, ml.Err
				}
				if ml.Lag == 1 && ml.Commit.At >= 0 {
					if ones[g] == nil {
						ones[g] = map[tp]int64{}
					}
					ones[g][tp{ml.Topic, ml.Partition}] = ml.Commit.At
					continue
				}
				per[g] += ml.Lag
			}
		}
	}
	// Only check the markers when nothing else lags: the caller waits for 0 anyway.
	var total int64
	for _, n := range per {
		total += n
	}
	if total > 0 {
		for g, ps := range ones {
			per[g] += int64(len(ps))
			total += int64(len(ps))
		}
		return total, per, nil
	}
	// Every group reads its own input topic, so one client fetches for all of them.
	offsets := map[string]map[int32]kgo.Offset{}
	groupOf := map[string]string{}
	for g, ps := range ones {
		for p, at := range ps {
			if offsets[p.topic] == nil {
				offsets[p.topic] = map[int32]kgo.Offset{}
			}
			offsets[p.topic][p.part] = kgo.NewOffset().At(at)
			groupOf[p.topic] = g
		}
	}
	if len(offsets) == 0 {
		return total, per, nil
	}
	fc, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumePartitions(offsets))
	if err != nil {
		return 0, nil, err
	}
	defer fc.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	fc.PollFetches(pctx).EachRecord(func(rec *kgo.Record) {
		per[groupOf[rec.Topic]]++
		total++
	})
	return total, per, nil
}

// SortedKeys returns m's keys in order (for stable reports).
func SortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
