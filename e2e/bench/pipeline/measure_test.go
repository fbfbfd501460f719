package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// ledger pairs each accepted message (its SMTP 250) with its mail.crm.v1 record, whichever is
// seen first.
type ledger struct {
	mu   sync.Mutex
	msgs map[string]*entry
	// failed counts real-mode outcomes whose outcome is "failed"; extra counts records for an
	// id already seen (a duplicate outcome); fetchErrs counts fetch errors of the reader, which
	// retries them.
	failed, extra, fetchErrs int
	lastFetchErr             string
}

type entry struct {
	step     int
	accepted time.Time // the client read the 250
	written  time.Time // the mail.crm.v1 record's timestamp (set by the producing crm-sink)
	bytes    int
	sent     bool
}

func newLedger() *ledger { return &ledger{msgs: map[string]*entry{}} }

func (l *ledger) get(id string) *entry {
	e := l.msgs[id]
	if e == nil {
		e = &entry{step: -1}
		l.msgs[id] = e
	}
	return e
}

func (l *ledger) accept(step int, a accepted) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.get(a.id)
	e.step, e.accepted, e.bytes, e.sent = step, a.at, a.bytes, true
}

func (l *ledger) written(id string, at time.Time, failed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.get(id)
	if !e.written.IsZero() {
		l.extra++
		return
	}
	e.written = at
	if failed {
		l.failed++
	}
}

// pending counts the messages of step accepted but not yet written.
func (l *ledger) pending(step int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.msgs {
		if e.sent && e.step == step && e.written.IsZero() {
			n++
		}
	}
	return n
}

// latencies returns the SMTP 250 → CRM record latencies of step, sorted, and how many of its
// accepted messages have no CRM record.
func (l *ledger) latencies(step int) (lat []time.Duration, missing int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.msgs {
		if !e.sent || e.step != step {
			continue
		}
		if e.written.IsZero() {
			missing++
			continue
		}
		lat = append(lat, max(0, e.written.Sub(e.accepted)))
	}
	slices.Sort(lat)
	return lat, missing
}

// quantile of sorted durations (nearest rank).
func quantile(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// firstID reads the id out of a framed Avro value whose first field is the string id: both
// events.Raw (what a no-op crm-sink copies to mail.crm.v1) and events.CRMOutcome start so. It
// spares decoding a raw message of up to 512 KiB only to learn its id.
func firstID(v []byte) (string, error) {
	_, body, err := serde.Frame(v)
	if err != nil {
		return "", err
	}
	n, k := binary.Varint(body) // Avro longs are zig-zag varints, as encoding/binary's Varint
	if k <= 0 || n < 0 || int64(len(body)-k) < n {
		return "", errors.New("value does not start with an Avro string")
	}
	return string(body[k : k+int(n)]), nil
}

// follow reads mail.crm.v1 from start with read_committed until ctx ends, recording each
// record's id and timestamp in l. With decode (the real mode) it also decodes each outcome to
// count failures. Fetch errors are counted and retried: on a loaded broker a transient one
// must not end the reading.
func follow(ctx context.Context, brokers string, start map[int32]int64, codec *serde.Codec, decode bool, l *ledger) error {
	offsets := map[string]map[int32]kgo.Offset{kafka.TopicCRM: {}}
	for p, o := range start {
		offsets[kafka.TopicCRM][p] = kgo.NewOffset().At(o)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ConsumePartitions(offsets), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(_ string, _ int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			l.mu.Lock()
			l.fetchErrs++
			l.lastFetchErr = err.Error()
			l.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		})
		fs.EachRecord(func(r *kgo.Record) {
			id, err := firstID(r.Value)
			if err != nil {
				return
			}
			failed := false
			if decode {
				var o events.CRMOutcome
				if codec.Decode(ctx, kafka.TopicCRM, r.Value, &o) == nil {
					failed = o.Outcome == "failed"
				}
			}
			l.written(id, r.Timestamp, failed)
		})
	}
	return nil
}

// endOffsets lists the end offsets of topic.
func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	if len(out) == 0 {
		return nil, errors.New("topic " + topic + " has no partitions")
	}
	return out, nil
}

// lagSample is the consumer lag of every stage's group at one moment.
type lagSample struct {
	at    time.Time
	total int64
	by    map[string]int64
}

// sampleLag reads the lag of the stages' groups.
func sampleLag(ctx context.Context, adm *kadm.Client) (lagSample, error) {
	groups := make([]string, len(stages))
	for i, s := range stages {
		groups[i] = "mailpipe-" + s
	}
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		return lagSample{}, err
	}
	s := lagSample{at: time.Now(), by: map[string]int64{}}
	for _, g := range lags.Sorted() {
		if err := g.Error(); err != nil {
			return lagSample{}, err
		}
		n := g.Lag.Total()
		s.by[strings.TrimPrefix(g.Group, "mailpipe-")] = n
		s.total += n
	}
	return s, nil
}

// slope is the least-squares growth of the total lag, in records per second.
func slope(s []lagSample) float64 {
	if len(s) < 3 {
		return 0
	}
	t0 := s[0].at
	var n, sx, sy, sxx, sxy float64
	for _, x := range s {
		xs, y := x.at.Sub(t0).Seconds(), float64(x.total)
		n++
		sx += xs
		sy += y
		sxx += xs * xs
		sxy += xs * y
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}
