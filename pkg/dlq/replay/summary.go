package replay

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/dlq"
)

// AgeBuckets are the buckets of [Summary.ByAge], youngest first.
var AgeBuckets = []struct {
	Name string
	Max  time.Duration // exclusive; 0 for the last bucket
}{
	{"<1h", time.Hour},
	{"<1d", 24 * time.Hour},
	{"<7d", 7 * 24 * time.Hour},
	{"older", 0},
}

// Summary counts the dead letters of a topic (`mailpipe dlq ls`).
type Summary struct {
	Topic string `json:"topic"`
	Total int    `json:"total"`
	// Invalid dead letters have dlq headers that do not parse; they are counted nowhere else.
	Invalid     int             `json:"invalid"`
	ByPartition map[int32]int   `json:"by_partition"`
	ByStage     map[string]int  `json:"by_stage"`
	ByClass     map[string]int  `json:"by_class"`
	ByAge       map[string]int  `json:"by_age"` // age of the last failure (record time if unset)
	NotReplayed int             `json:"not_replayed"`
	Looping     int             `json:"looping"` // replay count >= MaxReplays
	MaxReplays  int             `json:"max_replays"`
	Ends        map[int32]int64 `json:"ends"` // the end offsets the summary read up to
	audits      []Audit
}

// SummaryOptions configure [Summarize].
type SummaryOptions struct {
	Topic, AuditTopic string // defaults kafka.TopicDLQ and kafka.TopicDLQAudit
	MaxReplays        int    // default DefaultMaxReplays
	Decoder           Decoder
	Stall             time.Duration // see DefaultStall
	Now               func() time.Time
}

// Summarize reads the DLQ from its start to the end offsets listed when it begins and counts
// its dead letters. A dead letter counts as replayed when an audit record says a replay went
// over its offset and selected it; replays that wrote no audit record (killed) are not seen.
func Summarize(ctx context.Context, newClient NewClient, o SummaryOptions) (Summary, error) {
	opts := Options{Topic: o.Topic, AuditTopic: o.AuditTopic, MaxReplays: o.MaxReplays, Now: o.Now}
	opts.defaults()
	audits, err := ReadAudits(ctx, newClient, opts.AuditTopic, o.Stall)
	if err != nil {
		return Summary{}, err
	}
	cl, err := newClient()
	if err != nil {
		return Summary{}, fmt.Errorf("creating kafka client: %w", err)
	}
	spans, err := listSpans(ctx, kadm.NewClient(cl), opts.Topic)
	cl.Close()
	if err != nil {
		return Summary{}, err
	}
	s := Summary{
		Topic: opts.Topic, MaxReplays: opts.MaxReplays, audits: audits,
		ByPartition: map[int32]int{}, ByStage: map[string]int{}, ByClass: map[string]int{},
		ByAge: map[string]int{}, Ends: map[int32]int64{},
	}
	for _, sp := range spans {
		s.Ends[sp.Partition] = sp.To
	}
	now := opts.Now()
	err = scan(ctx, newClient, opts.Topic, spans, o.Stall, func(r *kgo.Record) error {
		s.add(ctx, r, o.Decoder, now)
		return nil
	})
	return s, err
}

func (s *Summary) add(ctx context.Context, r *kgo.Record, dec Decoder, now time.Time) {
	s.Total++
	s.ByPartition[r.Partition]++
	info, err := dlq.Parse(r)
	if err != nil {
		s.Invalid++
		return
	}
	s.ByStage[info.Stage]++
	s.ByClass[string(info.Class)]++
	at := info.LastFailure
	if at.IsZero() {
		at = r.Timestamp
	}
	age := now.Sub(at)
	for _, b := range AgeBuckets {
		if b.Max == 0 || age < b.Max {
			s.ByAge[b.Name]++
			break
		}
	}
	if info.ReplayCount >= s.MaxReplays {
		s.Looping++
	}
	l := &letter{rec: r, info: info, dec: dec}
	for _, a := range s.audits {
		if a.replayed(ctx, l) {
			return
		}
	}
	s.NotReplayed++
}

// Text renders s for a terminal.
func (s Summary) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d dead letters, %d not yet replayed, %d looping (replayed >= %d times)", s.Topic, s.Total, s.NotReplayed, s.Looping, s.MaxReplays)
	if s.Invalid > 0 {
		fmt.Fprintf(&b, ", %d with unparsable headers", s.Invalid)
	}
	b.WriteString("\n\nby partition:\n")
	for _, p := range sortedKeys(s.ByPartition) {
		fmt.Fprintf(&b, "  %-24d %d\n", p, s.ByPartition[p])
	}
	for _, sec := range []struct {
		title string
		m     map[string]int
	}{{"by stage", s.ByStage}, {"by error class", s.ByClass}} {
		fmt.Fprintf(&b, "%s:\n", sec.title)
		for _, k := range sortedKeys(sec.m) {
			fmt.Fprintf(&b, "  %-24s %d\n", k, sec.m[k])
		}
	}
	b.WriteString("by age of last failure:\n")
	for _, a := range AgeBuckets {
		fmt.Fprintf(&b, "  %-24s %d\n", a.Name, s.ByAge[a.Name])
	}
	return b.String()
}

// Letter is one dead letter as `mailpipe dlq show` prints it.
type Letter struct {
	Topic             string            `json:"topic"`
	Partition         int32             `json:"partition"`
	Offset            int64             `json:"offset"`
	Timestamp         time.Time         `json:"timestamp"`
	Key               string            `json:"key"`
	OriginalTopic     string            `json:"original_topic"`
	OriginalPartition int32             `json:"original_partition"`
	OriginalOffset    int64             `json:"original_offset"`
	OriginalTimestamp time.Time         `json:"original_timestamp,omitzero"`
	Stage             string            `json:"stage"`
	ErrorClass        string            `json:"error_class"`
	ErrorMessage      string            `json:"error_message"`
	Attempts          int               `json:"attempts"`
	FirstFailure      time.Time         `json:"first_failure,omitzero"`
	LastFailure       time.Time         `json:"last_failure,omitzero"`
	TraceID           string            `json:"trace_id,omitempty"`
	ReplayCount       int               `json:"replay_count"`
	Headers           map[string]string `json:"headers,omitempty"` // the non-dlq headers
	Value             any               `json:"value,omitempty"`
	// ValueHex and DecodeError replace Value when it cannot be decoded with the original
	// topic's schema.
	ValueHex    string `json:"value_hex,omitempty"`
	DecodeError string `json:"decode_error,omitempty"`
	// HeaderError is set when the dlq headers do not parse; the fields above are then partial.
	HeaderError string `json:"header_error,omitempty"`
}

// ErrNoRecord is returned by [Show] when no dead letter has the offset.
var ErrNoRecord = errors.New("no dead letter at that offset")

// Show reads the dead letter at partition and offset of topic and decodes its value with the
// schema of its original topic. stall is the scan's safety net (0: DefaultStall).
func Show(ctx context.Context, newClient NewClient, topic string, partition int32, offset int64, dec Decoder, stall time.Duration) (Letter, error) {
	cl, err := newClient()
	if err != nil {
		return Letter{}, fmt.Errorf("creating kafka client: %w", err)
	}
	spans, err := listSpans(ctx, kadm.NewClient(cl), topic)
	cl.Close()
	if err != nil {
		return Letter{}, err
	}
	f := Filter{Partitions: []int32{partition}, From: offset, To: offset + 1}
	sel, err := f.spans(spans)
	if err != nil {
		return Letter{}, err
	}
	var found *kgo.Record
	err = scan(ctx, newClient, topic, sel, stall, func(r *kgo.Record) error {
		found = r
		return errStop
	})
	if err != nil {
		return Letter{}, err
	}
	if found == nil || found.Offset != offset {
		var all Span
		for _, sp := range spans {
			if sp.Partition == partition {
				all = sp
			}
		}
		return Letter{}, fmt.Errorf("%s[%d]@%d: %w (the partition holds offsets %d to %d; transaction markers and aborted records are not dead letters)",
			topic, partition, offset, ErrNoRecord, all.From, all.To-1)
	}
	return describe(ctx, found, dec), nil
}

func describe(ctx context.Context, r *kgo.Record, dec Decoder) Letter {
	l := Letter{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC(), Key: string(r.Key)}
	for _, h := range r.Headers {
		if !strings.HasPrefix(h.Key, dlq.HeaderPrefix) {
			if l.Headers == nil {
				l.Headers = map[string]string{}
			}
			l.Headers[h.Key] = string(h.Value)
		}
	}
	info, err := dlq.Parse(r)
	if err != nil {
		l.HeaderError = err.Error()
	}
	l.OriginalTopic, l.OriginalPartition, l.OriginalOffset, l.OriginalTimestamp = info.OriginalTopic, info.OriginalPartition, info.OriginalOffset, info.OriginalTimestamp
	l.Stage, l.ErrorClass, l.ErrorMessage, l.Attempts = info.Stage, string(info.Class), info.Message, info.Attempts
	l.FirstFailure, l.LastFailure, l.TraceID, l.ReplayCount = info.FirstFailure, info.LastFailure, info.TraceID, info.ReplayCount
	var v any
	switch {
	case r.Value == nil:
		l.DecodeError = "no value"
	case dec == nil:
		l.ValueHex, l.DecodeError = hex.EncodeToString(r.Value), "no decoder"
	case info.OriginalTopic == "":
		l.ValueHex, l.DecodeError = hex.EncodeToString(r.Value), "original topic unknown"
	default:
		if err := dec.Decode(ctx, info.OriginalTopic, r.Value, &v); err != nil {
			l.ValueHex, l.DecodeError = hex.EncodeToString(r.Value), err.Error()
		} else {
			l.Value = v
		}
	}
	return l
}
