package console

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

// Decoder decodes a Confluent-framed Avro value of a topic; *serde.Codec is one.
type Decoder interface {
	Decode(ctx context.Context, topic string, b []byte, v any) error
}

// Defaults of the tracker.
const (
	// DefaultCapacity is how many messages the lookup index keeps, the oldest arrival evicted first.
	DefaultCapacity = 100_000
	// maxIDsPerKey bounds the messages one lookup key (a busy sender) keeps; the newest win.
	maxIDsPerKey = 50
	// maxEvents bounds the events of one journey (a message replayed over and over).
	maxEvents = 64
	// latencyWindow is how many recent CRM outcomes the latency percentiles are taken over.
	latencyWindow = 2048
)

// Stage names of journey events, in pipeline order.
const (
	EventAccepted   = "accepted"    // mail.raw.v1: ingress took the message
	EventParsed     = "parsed"      // mail.parsed.v1
	EventClassified = "classified"  // mail.classified.v1
	EventEnriched   = "enriched"    // mail.enriched.v1
	EventCRM        = "crm"         // mail.crm.v1: one outcome per CRM target
	EventDeadLetter = "dead-letter" // mail.dlq.v1
)

// TrackedTopics are the topics the tracker follows.
var TrackedTopics = []string{kafka.TopicRaw, kafka.TopicParsed, kafka.TopicClassified, kafka.TopicEnriched, kafka.TopicCRM, kafka.TopicDLQ}

// Event is one step of a message through the pipeline: a record about it on one of the
// tracked topics. It never holds a body.
type Event struct {
	Kind      string    // one of the Event* constants
	At        time.Time // the record's timestamp (ingress receipt for accepted)
	Topic     string
	Partition int32
	Offset    int64
	TraceID   string // from the record's traceparent header (or the dead letter's trace header)
	Status    string // parse status, classification kind, CRM outcome, dead-letter error class
	Detail    string // a short human summary
	Failed    bool

	// CRM outcomes.
	Target    string
	ObjectIDs map[string]string
	Attempts  int
	LatencyMs int64

	// CRM failures and dead letters.
	ErrorClass string
	Error      string
	DLQStage   string // the stage that dead-lettered it
}

// Journey is what the pipeline did with one message, keyed by its ingress id.
type Journey struct {
	ID         string
	ExternalID string
	MessageID  string
	Sender     string // envelope MAIL FROM, or the From address when only the parsed record was seen
	From       string // the From header address
	Tenant     string
	RouteID    string
	Subject    string
	TraceID    string
	ReceivedAt time.Time
	Events     []Event // in arrival order
}

// Reached reports whether the journey has an event of the kind.
func (j Journey) Reached(kind string) bool {
	return slices.ContainsFunc(j.Events, func(e Event) bool { return e.Kind == kind })
}

// Outcomes are the CRM outcomes, in arrival order.
func (j Journey) Outcomes() []Event { return j.kind(EventCRM) }

// DeadLetters are the dead letters, in arrival order.
func (j Journey) DeadLetters() []Event { return j.kind(EventDeadLetter) }

func (j Journey) kind(k string) []Event {
	var out []Event
	for _, e := range j.Events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// Status summarises where the message is: the last CRM outcome per target, or the last stage
// it reached, or why it was dead-lettered.
func (j Journey) Status() string {
	last := map[string]Event{}
	for _, e := range j.Outcomes() {
		last[e.Target] = e
	}
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(last)) {
		e := last[t]
		parts = append(parts, fmt.Sprintf("%s: %s", t, e.Status))
	}
	if len(parts) > 0 {
		s := "CRM " + strings.Join(parts, ", ")
		if n := len(j.DeadLetters()); n > 0 {
			s += fmt.Sprintf("; %d dead letter(s)", n)
		}
		return s
	}
	if dl := j.DeadLetters(); len(dl) > 0 {
		e := dl[len(dl)-1]
		return fmt.Sprintf("dead-lettered by %s (%s): %s", e.DLQStage, e.ErrorClass, e.Error)
	}
	for _, k := range []string{EventEnriched, EventClassified, EventParsed, EventAccepted} {
		if j.Reached(k) {
			return k
		}
	}
	return "unknown"
}

type entry struct {
	j    Journey
	keys []string
	elem *list.Element
}

// Tracker follows the pipeline topics and keeps a bounded in-memory index from message id,
// external id, Message-ID and sender address to each message's [Journey]. Its methods are
// safe for concurrent use.
type Tracker struct {
	dec      Decoder
	log      *slog.Logger
	capacity int

	mu        sync.RWMutex
	byID      map[string]*entry
	order     *list.List // of *entry, oldest arrival first
	keys      map[string][]string
	latencies []int64 // ring of recent delivered CRM outcomes' latency_ms
	latNext   int
	records   map[string]int64 // records indexed per topic
	errors    int64            // records that could not be decoded
}

// NewTracker returns an empty tracker keeping at most capacity messages (DefaultCapacity if
// capacity <= 0). A nil log discards.
func NewTracker(dec Decoder, capacity int, log *slog.Logger) *Tracker {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tracker{
		dec: dec, log: log, capacity: capacity,
		byID: map[string]*entry{}, order: list.New(), keys: map[string][]string{},
		records: map[string]int64{},
	}
}

// Run consumes the tracked topics from their start, read_committed, without a consumer group,
// and indexes every record until ctx ends. newClient gets the consumer options.
func (t *Tracker) Run(ctx context.Context, newClient func(...kgo.Opt) (*kgo.Client, error)) error {
	cl, err := newClient(
		kgo.ConsumeTopics(TrackedTopics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.MetadataMaxAge(15*time.Second), // topics created after the start are picked up soon
	)
	if err != nil {
		return fmt.Errorf("creating the tracker's consumer: %w", err)
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				t.log.WarnContext(ctx, "console tracker fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) { t.Add(ctx, r) })
	}
}

// Len is the number of messages indexed.
func (t *Tracker) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byID)
}

// Records is the number of records indexed per topic, and of records that could not be decoded.
func (t *Tracker) Records() (perTopic map[string]int64, undecodable int64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return maps.Clone(t.records), t.errors
}

// Add indexes one record of a tracked topic; records of other topics are ignored.
func (t *Tracker) Add(ctx context.Context, r *kgo.Record) {
	ev, keys, id, fill, err := t.event(ctx, r)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.records[r.Topic]++
	if err != nil {
		t.errors++
		t.log.DebugContext(ctx, "console tracker skipped a record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	if id == "" {
		return
	}
	e := t.byID[id]
	if e == nil {
		e = &entry{j: Journey{ID: id}}
		e.elem = t.order.PushBack(e)
		t.byID[id] = e
		t.addKey(e, id)
		for t.order.Len() > t.capacity {
			t.evict(t.order.Front().Value.(*entry)) //nolint:forcetypeassert // the list holds only *entry
		}
	}
	fill(&e.j)
	if e.j.TraceID == "" {
		e.j.TraceID = ev.TraceID
	}
	if len(e.j.Events) >= maxEvents {
		e.j.Events = slices.Delete(e.j.Events, 1, 2) // keep the first (acceptance) event
	}
	e.j.Events = append(e.j.Events, ev)
	for _, k := range keys {
		t.addKey(e, k)
	}
	if ev.Kind == EventCRM && !ev.Failed && ev.LatencyMs > 0 {
		switch ev.Status {
		case "created", "updated", "unchanged":
			if len(t.latencies) < latencyWindow {
				t.latencies = append(t.latencies, ev.LatencyMs)
			} else {
				t.latencies[t.latNext] = ev.LatencyMs
				t.latNext = (t.latNext + 1) % latencyWindow
			}
		}
	}
}

func normKey(k string) string {
	return strings.ToLower(strings.Trim(strings.TrimSpace(k), "<>"))
}

// addKey maps k to e's message; it must hold t.mu.
func (t *Tracker) addKey(e *entry, k string) {
	k = normKey(k)
	if k == "" || slices.Contains(e.keys, k) {
		return
	}
	e.keys = append(e.keys, k)
	ids := t.keys[k]
	if len(ids) >= maxIDsPerKey {
		ids = slices.Delete(ids, 0, 1)
	}
	t.keys[k] = append(ids, e.j.ID)
}

// evict drops e and its keys; it must hold t.mu.
func (t *Tracker) evict(e *entry) {
	t.order.Remove(e.elem)
	delete(t.byID, e.j.ID)
	for _, k := range e.keys {
		ids := slices.DeleteFunc(t.keys[k], func(id string) bool { return id == e.j.ID })
		if len(ids) == 0 {
			delete(t.keys, k)
		} else {
			t.keys[k] = ids
		}
	}
}

// Lookup returns the journeys of the messages whose id, external id, Message-ID (with or
// without angle brackets) or sender address (case-insensitive) is q, the latest arrival first.
func (t *Tracker) Lookup(q string) []Journey {
	k := normKey(q)
	if k == "" {
		return nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	ids := t.keys[k]
	out := make([]Journey, 0, len(ids))
	for i := len(ids) - 1; i >= 0; i-- {
		if e := t.byID[ids[i]]; e != nil {
			j := e.j
			j.Events = slices.Clone(j.Events)
			out = append(out, j)
		}
	}
	return out
}

// LatencyStats are percentiles of ingress-to-CRM latency over recent delivered outcomes.
type LatencyStats struct {
	N             int
	P50, P95, P99 time.Duration
}

// Latency returns the percentiles over the last outcomes written, updated or found unchanged.
func (t *Tracker) Latency() LatencyStats {
	t.mu.RLock()
	v := slices.Clone(t.latencies)
	t.mu.RUnlock()
	if len(v) == 0 {
		return LatencyStats{}
	}
	sort.Slice(v, func(a, b int) bool { return v[a] < v[b] })
	pick := func(p float64) time.Duration {
		i := int(p*float64(len(v))+0.999999) - 1 // nearest rank
		i = min(max(i, 0), len(v)-1)
		return time.Duration(v[i]) * time.Millisecond
	}
	return LatencyStats{N: len(v), P50: pick(0.50), P95: pick(0.95), P99: pick(0.99)}
}

// traceID returns the trace id of a W3C traceparent header ("00-<trace id>-<span id>-<flags>").
func traceID(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == "traceparent" {
			parts := strings.Split(string(h.Value), "-")
			if len(parts) >= 4 && len(parts[1]) == 32 && parts[1] != strings.Repeat("0", 32) {
				return parts[1]
			}
		}
	}
	return ""
}

// event decodes r into the event it adds, the lookup keys it teaches, the message id, and a
// function filling the journey's identity fields (run under the lock).
func (t *Tracker) event(ctx context.Context, r *kgo.Record) (Event, []string, string, func(*Journey), error) {
	ev := Event{At: r.Timestamp.UTC(), Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, TraceID: traceID(r)}
	noop := func(*Journey) {}
	if t.dec == nil {
		return ev, nil, "", noop, errors.New("no decoder")
	}
	switch r.Topic {
	case kafka.TopicRaw:
		var v events.Raw
		if err := t.dec.Decode(ctx, r.Topic, r.Value, &v); err != nil {
			return ev, nil, "", noop, err
		}
		ev.Kind, ev.At = EventAccepted, v.ReceivedAt.UTC()
		ev.Status = v.Envelope.Source
		ev.Detail = fmt.Sprintf("accepted via %s from %s, %d bytes", orDash(v.Envelope.Source), orDash(v.Envelope.MailFrom), v.Size)
		return ev, []string{v.MessageID, v.Envelope.MailFrom}, v.ID, func(j *Journey) {
			j.ReceivedAt = v.ReceivedAt.UTC()
			setIf(&j.MessageID, v.MessageID)
			setIf(&j.Sender, v.Envelope.MailFrom)
			setIf(&j.Tenant, v.Tenant)
			setIf(&j.RouteID, v.RouteID)
		}, nil
	case kafka.TopicParsed:
		var v events.Parsed
		if err := t.dec.Decode(ctx, r.Topic, r.Value, &v); err != nil {
			return ev, nil, "", noop, err
		}
		ev.Kind, ev.Status = EventParsed, v.ParseStatus
		ev.Detail = fmt.Sprintf("parse status %s, %d attachments, %d warnings", orDash(v.ParseStatus), len(v.Attachments), len(v.Warnings))
		keys, fill := parsedKeys(&v)
		return ev, keys, v.ID, fill, nil
	case kafka.TopicClassified:
		var v events.Classified
		if err := t.dec.Decode(ctx, r.Topic, r.Value, &v); err != nil {
			return ev, nil, "", noop, err
		}
		c := v.Classification
		ev.Kind, ev.Status = EventClassified, c.Kind
		ev.Detail = fmt.Sprintf("kind %s, queue %s, spam score %.1f, lead score %.1f", orDash(c.Kind), orDash(c.Queue), c.SpamScore, c.LeadScore)
		keys, fill := parsedKeys(&v.Message)
		return ev, keys, v.Message.ID, fill, nil
	case kafka.TopicEnriched:
		var v events.Enriched
		if err := t.dec.Decode(ctx, r.Topic, r.Value, &v); err != nil {
			return ev, nil, "", noop, err
		}
		en := v.Enrichment
		ev.Kind, ev.Status = EventEnriched, "enriched"
		if en.Degraded {
			ev.Status = "degraded"
		}
		known := "unknown contact"
		if en.Contact != nil && en.Contact.Known {
			known = "known contact"
		}
		company := "-"
		if en.Company != nil {
			company = orDash(en.Company.Domain)
		}
		ev.Detail = fmt.Sprintf("%s, company %s, owner %s", known, company, orDash(en.Owner))
		keys, fill := parsedKeys(&v.Message)
		return ev, keys, v.Message.ID, fill, nil
	case kafka.TopicCRM:
		var v events.CRMOutcome
		if err := t.dec.Decode(ctx, r.Topic, r.Value, &v); err != nil {
			return ev, nil, "", noop, err
		}
		ev.Kind, ev.Status, ev.Target = EventCRM, v.Outcome, v.Target
		ev.ObjectIDs, ev.Attempts, ev.LatencyMs = maps.Clone(v.ObjectIds), v.Attempts, v.LatencyMs
		ev.ErrorClass, ev.Error, ev.Failed = v.ErrorClass, v.Error, v.Outcome == "failed"
		ev.Detail = fmt.Sprintf("%s: %s after %d attempts, %d ms from receipt", v.Target, v.Outcome, v.Attempts, v.LatencyMs)
		return ev, []string{v.ExternalID}, v.ID, func(j *Journey) {
			setIf(&j.ExternalID, v.ExternalID)
			setIf(&j.Tenant, v.Tenant)
			setIf(&j.RouteID, v.RouteID)
		}, nil
	case kafka.TopicDLQ:
		info, err := dlq.Parse(r)
		if err != nil {
			return ev, nil, "", noop, err
		}
		ev.Kind, ev.Failed = EventDeadLetter, true
		ev.DLQStage, ev.ErrorClass, ev.Error, ev.Status = info.Stage, string(info.Class), info.Message, string(info.Class)
		if info.TraceID != "" {
			ev.TraceID = info.TraceID
		}
		if !info.LastFailure.IsZero() {
			ev.At = info.LastFailure
		}
		ev.Detail = fmt.Sprintf("dead-lettered by %s after %d attempts (%s[%d]@%d)", info.Stage, info.Attempts, info.OriginalTopic, info.OriginalPartition, info.OriginalOffset)
		var v any
		if err := t.dec.Decode(ctx, info.OriginalTopic, r.Value, &v); err != nil {
			return ev, nil, "", noop, fmt.Errorf("decoding the dead letter's value: %w", err)
		}
		f := genericFields(v)
		return ev, []string{f.externalID, f.messageID, f.sender, f.from}, f.id, func(j *Journey) {
			setIf(&j.ExternalID, f.externalID)
			setIf(&j.MessageID, f.messageID)
			setIf(&j.Sender, f.sender)
			setIf(&j.From, f.from)
			setIf(&j.Tenant, f.tenant)
		}, nil
	}
	return ev, nil, "", noop, nil
}

func parsedKeys(v *events.Parsed) ([]string, func(*Journey)) {
	from := ""
	if v.From != nil {
		from = v.From.Address
	}
	keys := []string{v.ExternalID, v.MessageID, v.Envelope.MailFrom, from}
	return keys, func(j *Journey) {
		if j.ReceivedAt.IsZero() {
			j.ReceivedAt = v.ReceivedAt.UTC()
		}
		setIf(&j.ExternalID, v.ExternalID)
		setIf(&j.MessageID, v.MessageID)
		setIf(&j.Sender, v.Envelope.MailFrom)
		setIf(&j.From, from)
		setIf(&j.Tenant, v.Tenant)
		setIf(&j.RouteID, v.RouteID)
		setIf(&j.Subject, v.Subject)
	}
}

type fields struct{ id, externalID, messageID, sender, from, tenant string }

// genericFields reads the identity of a message from a generically decoded value of any
// pipeline topic: a raw or parsed record at the top level, or one nested under "message".
func genericFields(v any) fields {
	m, _ := v.(map[string]any)
	if inner, ok := m["message"].(map[string]any); ok {
		m = inner
	}
	get := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	f := fields{id: get(m, "id"), externalID: get(m, "external_id"), messageID: get(m, "message_id"), tenant: get(m, "tenant")}
	if env, ok := m["envelope"].(map[string]any); ok {
		f.sender = get(env, "mail_from")
	}
	if from, ok := m["from"].(map[string]any); ok {
		f.from = get(unwrapUnion(from), "address")
	}
	return f
}

// unwrapUnion returns the value of a union decoded generically as {"<type name>": value}.
func unwrapUnion(m map[string]any) map[string]any {
	if len(m) == 1 {
		for _, v := range m {
			if inner, ok := v.(map[string]any); ok {
				return inner
			}
		}
	}
	return m
}

func setIf(dst *string, v string) {
	if *dst == "" && v != "" {
		*dst = v
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
