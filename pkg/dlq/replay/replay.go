// Package replay is the operator side of the dead-letter topic mail.dlq.v1: it summarizes the
// dead letters ([Summarize], `mailpipe dlq ls`), shows one ([Show]), sends a selection back to
// the topics they came from ([Run]), and keeps an audit trail of every replay on
// mail.dlq.audit.v1 ([ReadAudits], `mailpipe dlq history`).
//
// A replay reads each DLQ partition in offset order, because records are keyed by thread key
// and a thread's messages must be handled in order. It writes each selected dead letter to its
// original topic with the original key, value and non-"mailpipe.dlq.*" headers (crm-sink's
// mailpipe.sink.target and mailpipe.sink.holder among them) and the replay count plus one, with
// an idempotent acks=all producer. Progress is checkpointed per partition as consumer-group
// offsets of group "mailpipe-dlq-replay.<name>", committed only after the records below them
// were acknowledged, so a replay interrupted and started again with the same name continues
// where it stopped.
package replay

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

// DefaultMaxReplays is how often a record may have been replayed before a replay skips it as
// looping: a record that failed again after three replays needs a fix, not a fourth try.
const DefaultMaxReplays = 3

// GroupPrefix starts the consumer group that holds a named replay's checkpoints.
const GroupPrefix = "mailpipe-dlq-replay."

// Group returns the consumer group holding the checkpoints of the replay called name.
func Group(name string) string { return GroupPrefix + name }

// Action is what a replay did, or would do, with one dead letter.
type Action string

// The actions of [Item].
const (
	ActionReplay   Action = "replay"   // written (or, in a dry run, would be) to its original topic
	ActionFiltered Action = "filtered" // not selected by the filter
	ActionLooping  Action = "looping"  // skipped: replayed MaxReplays times already
	ActionInvalid  Action = "invalid"  // skipped: its dlq headers cannot be parsed
)

// Item is one dead letter a replay looked at.
type Item struct {
	Partition int32
	Offset    int64
	Key       []byte
	Info      dlq.Info // zero for ActionInvalid
	Action    Action
	Err       error // why an invalid dead letter is invalid
}

// Progress is reported while a replay runs.
type Progress struct {
	Done, Total int64 // DLQ offsets passed and offsets in the selection (markers included)
	Counts      Counts
	Elapsed     time.Duration
	ETA         time.Duration // 0 until there is a rate to extrapolate
}

// Counts tallies the actions of a replay.
type Counts struct {
	Replayed int `json:"replayed"`
	Looping  int `json:"looping"`
	Filtered int `json:"filtered"`
	Invalid  int `json:"invalid"`
}

func (c *Counts) add(a Action) {
	switch a {
	case ActionReplay:
		c.Replayed++
	case ActionLooping:
		c.Looping++
	case ActionFiltered:
		c.Filtered++
	case ActionInvalid:
		c.Invalid++
	}
}

// Limiter paces the replayed records; ratelimit.Memory is one.
type Limiter interface {
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// Options configure [Run].
type Options struct {
	Topic      string // DLQ topic, default kafka.TopicDLQ
	AuditTopic string // default kafka.TopicDLQAudit
	// Name identifies the replay: its checkpoints and audit records. Required unless DryRun.
	Name     string
	Operator string // who runs it, for the audit record
	Filter   Filter
	// MaxReplays skips dead letters whose replay count is at least this; 0 means
	// DefaultMaxReplays. Force replays them anyway.
	MaxReplays int
	Force      bool
	// DryRun reads and reports without writing records, checkpoints or an audit record. It
	// starts at the named replay's checkpoints, as the real run would.
	DryRun  bool
	Limiter Limiter // nil: as fast as the broker takes them
	Decoder Decoder // needed by the Tenant and MessageID filters
	// Each, if set, is called for every dead letter looked at, in offset order per partition.
	Each func(Item)
	// Progress, if set, is called at most every ProgressEvery (default 250ms) and at the end.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// CheckpointEvery bounds how long acknowledged records wait for their checkpoint (default
	// 1s): what a crash can make a resumed replay send twice.
	CheckpointEvery time.Duration
	// Stall is the scan's safety net (default DefaultStall): how long it may read nothing
	// before it stops with ErrStalled.
	Stall time.Duration
	Now   func() time.Time
}

func (o *Options) defaults() {
	if o.Topic == "" {
		o.Topic = kafka.TopicDLQ
	}
	if o.AuditTopic == "" {
		o.AuditTopic = kafka.TopicDLQAudit
	}
	if o.MaxReplays <= 0 {
		o.MaxReplays = DefaultMaxReplays
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 250 * time.Millisecond
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// checkpointBatch is how many unacknowledged records a replay lets pile up before it waits for
// them and commits: it bounds memory and what an error can make a resume send twice.
const checkpointBatch = 500

// Run replays the dead letters selected by o (see the package doc) and returns its audit
// record, which it has also written to o.AuditTopic unless DryRun. When ctx is cancelled it
// stops taking records, waits for the ones sent, checkpoints them, writes the audit record and
// returns it with ctx's error: the same Name resumes after the last replayed record.
func Run(ctx context.Context, newClient NewClient, o Options) (Audit, error) {
	o.defaults()
	if err := o.Filter.Validate(); err != nil {
		return Audit{}, fmt.Errorf("invalid selection: %w", err)
	}
	if o.Name == "" && !o.DryRun {
		return Audit{}, errors.New("a replay needs a name: it keys the checkpoints that let it resume")
	}
	cl, err := newClient(kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return Audit{}, fmt.Errorf("creating kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	all, err := listSpans(ctx, adm, o.Topic)
	if err != nil {
		return Audit{}, err
	}
	spans, err := o.Filter.spans(all)
	if err != nil {
		return Audit{}, fmt.Errorf("invalid selection: %w", err)
	}
	if o.Name != "" {
		if spans, err = resume(ctx, adm, o.Topic, Group(o.Name), spans); err != nil {
			return Audit{}, err
		}
	}
	if !o.DryRun {
		if err := EnsureAuditTopic(ctx, adm, o.AuditTopic); err != nil {
			return Audit{}, err
		}
	}
	r := &run{o: o, cl: cl, adm: adm, started: o.Now(), done: map[int32]int64{}, byPart: map[int32]*Counts{}, failed: map[int32]int64{}}
	for _, s := range spans {
		r.total += s.To - s.From
		r.done[s.Partition] = s.From
		r.byPart[s.Partition] = &Counts{}
	}
	scanErr := scan(ctx, newClient, o.Topic, spans, o.Stall, func(rec *kgo.Record) error { return r.handle(ctx, rec) })
	if scanErr == nil {
		// Every span was read to its end: offsets left below it are transaction markers or
		// aborted records.
		for _, s := range spans {
			r.done[s.Partition] = s.To
		}
	}
	// Cancellation only stops new work: what was sent is waited for, checkpointed and audited,
	// or a resume would send it twice.
	finishCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	flushErr := r.checkpoint(finishCtx)
	audit := r.audit(spans, o.Now())
	if scanErr != nil || flushErr != nil {
		audit.Error = errors.Join(scanErr, flushErr).Error()
	}
	r.report(true)
	if !o.DryRun {
		if err := WriteAudit(finishCtx, cl, o.AuditTopic, audit); err != nil {
			return audit, errors.Join(scanErr, flushErr, err)
		}
	}
	return audit, errors.Join(scanErr, flushErr)
}

// resume moves each span's start to the named replay's checkpoint, if that is later.
func resume(ctx context.Context, adm *kadm.Client, topic, group string, spans []Span) ([]Span, error) {
	committed, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return spans, nil // a first run (Kafka answers with no offsets, kfake with this error)
	}
	if err != nil {
		return nil, fmt.Errorf("reading checkpoints of %s: %w", group, err)
	}
	out := slices.Clone(spans)
	for i, s := range out {
		if c, ok := committed.Lookup(topic, s.Partition); ok && c.At > s.From {
			out[i].From = min(c.At, s.To)
		}
	}
	return out, nil
}

// run is the state of one Run. handle runs on the caller's goroutine; the produce promises
// run on the client's, hence mu.
type run struct {
	o       Options
	cl      *kgo.Client
	adm     *kadm.Client
	started time.Time

	total, passed int64
	counts        Counts // Replayed counts records sent (acknowledged ones are in byPart)
	done          map[int32]int64
	pending       int
	lastCommit    time.Time
	lastReport    time.Time

	mu     sync.Mutex
	byPart map[int32]*Counts
	failed map[int32]int64 // lowest DLQ offset per partition whose replay failed
	errs   []error
}

func (r *run) handle(ctx context.Context, rec *kgo.Record) error {
	if err := ctx.Err(); err != nil {
		return err // the rest of a fetch must not pass the checkpoint once interrupted
	}
	r.mu.Lock()
	sendErr := errors.Join(r.errs...)
	r.mu.Unlock()
	if sendErr != nil {
		return sendErr // stop at the first failed write; the checkpoint stays before it
	}
	item := Item{Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key}
	info, err := dlq.Parse(rec)
	switch {
	case err != nil:
		item.Action, item.Err = ActionInvalid, err
	case !r.o.Filter.match(ctx, &letter{rec: rec, info: info, dec: r.o.Decoder}):
		item.Action = ActionFiltered
	case info.ReplayCount >= r.o.MaxReplays && !r.o.Force:
		item.Action = ActionLooping
	default:
		item.Action = ActionReplay
	}
	item.Info = info
	if item.Action == ActionReplay && !r.o.DryRun {
		if err := wait(ctx, r.o.Limiter); err != nil {
			return err // not sent: the checkpoint stays before this record
		}
		r.send(ctx, rec, info)
	}
	r.counts.add(item.Action)
	if item.Action != ActionReplay || r.o.DryRun {
		r.mu.Lock()
		r.byPart[rec.Partition].add(item.Action)
		r.mu.Unlock()
	}
	r.passed += rec.Offset + 1 - r.done[rec.Partition]
	r.done[rec.Partition] = rec.Offset + 1
	if r.o.Each != nil {
		r.o.Each(item)
	}
	if !r.o.DryRun && (r.pending >= checkpointBatch || time.Since(r.lastCommit) >= r.o.CheckpointEvery) {
		if err := r.checkpoint(context.WithoutCancel(ctx)); err != nil {
			return err
		}
	}
	r.report(false)
	return nil
}

func (r *run) send(ctx context.Context, rec *kgo.Record, info dlq.Info) {
	r.pending++
	p, off := rec.Partition, rec.Offset
	// WithoutCancel: a record handed to the client must be finished even when the replay is
	// interrupted, so that the checkpoint can say for sure that it was written.
	r.cl.Produce(context.WithoutCancel(ctx), Replayed(rec, info), func(_ *kgo.Record, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			if f, ok := r.failed[p]; !ok || off < f {
				r.failed[p] = off
			}
			r.errs = append(r.errs, fmt.Errorf("replaying %s[%d]@%d to %s: %w", r.o.Topic, p, off, info.OriginalTopic, err))
			return
		}
		r.byPart[p].Replayed++
	})
}

// checkpoint waits for every record sent and commits, per partition, the offset after the last
// dead letter dealt with, or the first one whose replay failed.
func (r *run) checkpoint(ctx context.Context) error {
	if r.o.DryRun || r.o.Name == "" {
		return nil
	}
	if err := r.cl.Flush(ctx); err != nil {
		return fmt.Errorf("waiting for replayed records: %w", err)
	}
	r.pending = 0
	r.lastCommit = time.Now()
	r.mu.Lock()
	for p, f := range r.failed {
		r.done[p] = min(r.done[p], f)
	}
	sendErr := errors.Join(r.errs...)
	r.mu.Unlock()
	offsets := kadm.Offsets{}
	for p, at := range r.done {
		offsets.Add(kadm.Offset{Topic: r.o.Topic, Partition: p, At: at, LeaderEpoch: -1})
	}
	resp, err := r.adm.CommitOffsets(ctx, Group(r.o.Name), offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return errors.Join(sendErr, fmt.Errorf("committing checkpoints of %s: %w", Group(r.o.Name), err))
	}
	return sendErr
}

func (r *run) report(final bool) {
	if r.o.Progress == nil || (!final && time.Since(r.lastReport) < r.o.ProgressEvery) {
		return
	}
	r.lastReport = time.Now()
	p := Progress{Done: r.passed, Total: r.total, Counts: r.counts, Elapsed: time.Since(r.started)}
	if final {
		p.Done = p.Total
		p.Counts = r.totals()
	}
	if p.Done > 0 && p.Done < p.Total {
		p.ETA = time.Duration(float64(p.Elapsed) / float64(p.Done) * float64(p.Total-p.Done)).Round(time.Second)
	}
	r.o.Progress(p)
}

func (r *run) totals() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	var c Counts
	for _, pc := range r.byPart {
		c.Replayed += pc.Replayed
		c.Looping += pc.Looping
		c.Filtered += pc.Filtered
		c.Invalid += pc.Invalid
	}
	return c
}

func (r *run) audit(spans []Span, finished time.Time) Audit {
	a := Audit{
		Name: r.o.Name, Operator: r.o.Operator, Topic: r.o.Topic, Filter: r.o.Filter,
		MaxReplays: r.o.MaxReplays, Force: r.o.Force, DryRun: r.o.DryRun,
		Started: r.started.UTC(), Finished: finished.UTC(), Counts: r.totals(),
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range spans {
		if to := r.done[s.Partition]; to > s.From {
			a.Partitions = append(a.Partitions, PartitionRange{Span: Span{Partition: s.Partition, From: s.From, To: to}, Counts: *r.byPart[s.Partition]})
		}
	}
	return a
}

// Replayed returns the record that replays the dead letter rec: to info.OriginalTopic, with
// rec's key and value, its headers except "mailpipe.dlq.*", and the replay count plus one. The
// other headers stay because later stages read them (crm-sink writes a record carrying
// mailpipe.sink.target to that target only).
func Replayed(rec *kgo.Record, info dlq.Info) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(rec.Headers))
	for _, h := range rec.Headers {
		if !strings.HasPrefix(h.Key, dlq.HeaderPrefix) {
			headers = append(headers, h)
		}
	}
	headers = append(headers, kgo.RecordHeader{Key: dlq.HeaderReplayCount, Value: []byte(strconv.Itoa(info.ReplayCount + 1))})
	return &kgo.Record{Topic: info.OriginalTopic, Key: rec.Key, Value: rec.Value, Headers: headers}
}

// wait blocks until lim hands out a token. A limiter error lets the record through (limiters
// fail open), except when it comes from ctx.
func wait(ctx context.Context, lim Limiter) error {
	if lim == nil {
		return ctx.Err()
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ok, after, _ := lim.Allow(ctx, "dlq-replay")
		if err := ctx.Err(); err != nil {
			return err
		}
		if ok {
			return nil
		}
		t := time.NewTimer(after)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// sortedKeys returns m's keys in order, for stable output.
func sortedKeys[K interface{ ~string | ~int32 }, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}
