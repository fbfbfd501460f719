package stage

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// Handler turns one input record into zero or more output records. Outputs must have Topic set
// and may set Key, Value and Headers; Partition, Offset and Timestamp are chosen by the producer.
// Returning no outputs and a nil error filters the record. The outputs of all records of a batch
// are produced in one transaction together with the input offsets, so a handler never produces
// itself.
//
// A handler must honour ctx (its deadline is the attempt timeout), must treat rec.Key and
// rec.Value as read-only (the dead letter reuses those bytes), and may be called again for the
// same record: after a failed attempt, and after a crash or rebalance for a whole batch. With
// Config.Concurrency > 1 it is called concurrently for records of different partitions.
type Handler func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error)

// Middleware wraps a Handler. See [WithMiddleware] for where custom middleware sit.
type Middleware func(Handler) Handler

// chain builds the handler the loop calls for each record, outermost first:
//
//	dead letter → recover → retry → attempt timeout → metrics → output check → custom → h
//
// Dead-lettering is outermost so that every failure, a panic included, ends as a dead letter
// (unless the stage is stopping); recover sits outside retry because a panic is a bug and
// retrying it only delays the dead letter; metrics are innermost so they see every attempt.
func (s *Stage) chain(h Handler) Handler {
	mws := []Middleware{
		s.deadLetter,
		s.recoverPanics,
		s.retry,
		s.attemptTimeout,
		s.measure,
		checkOutputs,
	}
	mws = append(mws, s.opts.middleware...)
	for _, mw := range slices.Backward(mws) {
		h = mw(h)
	}
	return h
}

// recordState is shared by the dead-letter, recover and retry middleware of one record.
type recordState struct {
	mu       sync.Mutex
	attempts int       // handler invocations started, the first included
	first    time.Time // first failed attempt
	last     time.Time // last failed attempt
}

func (st *recordState) failed(now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.first.IsZero() {
		st.first = now
	}
	st.last = now
}

func (st *recordState) started() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.attempts++
	return st.attempts
}

func (st *recordState) snapshot() (attempts int, first, last time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.attempts, st.first, st.last
}

type (
	stateKey    struct{}
	stoppingKey struct{}
)

func stateFrom(ctx context.Context) *recordState {
	st, _ := ctx.Value(stateKey{}).(*recordState)
	return st
}

// withStopping marks ctx with a channel that is closed when the batch will not be committed
// (shutdown requested, partitions revoked, a sibling partition failed). Retries stop waiting and
// dead-lettering is skipped once it is closed, so the record is redelivered instead.
func withStopping(ctx context.Context, stop <-chan struct{}) context.Context {
	return context.WithValue(ctx, stoppingKey{}, stop)
}

func stoppingFrom(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(stoppingKey{}).(<-chan struct{})
	return ch // nil blocks forever in a select: "never stopping"
}

func isStopping(ctx context.Context) bool {
	select {
	case <-stoppingFrom(ctx):
		return true
	default:
		return false
	}
}

// deadLetter turns a failed record into a dead letter, produced in the same transaction as the
// batch's other outputs, so the partition moves on. It is skipped while the batch is being
// abandoned: the error then aborts the transaction and the record is redelivered.
func (s *Stage) deadLetter(next Handler) Handler {
	return func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		st := &recordState{}
		ctx = context.WithValue(ctx, stateKey{}, st)
		out, err := next(ctx, rec)
		if err == nil {
			return out, nil
		}
		if isStopping(ctx) {
			return nil, err
		}
		attempts, first, last := st.snapshot()
		if last.IsZero() {
			last = time.Now()
			first = last
		}
		class := failure.Classify(err)
		var traceID string
		if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
			traceID = sc.TraceID().String()
		}
		d := dlq.Build(rec, dlq.Info{
			Stage:        s.cfg.Name,
			Class:        class,
			Message:      err.Error(),
			Attempts:     max(attempts, 1),
			FirstFailure: first,
			LastFailure:  last,
			TraceID:      traceID,
		})
		d.Topic = s.cfg.DLQTopic
		s.log.WarnContext(ctx, "dead-lettering record",
			"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset,
			"error_class", class, "attempts", max(attempts, 1), "error", err)
		s.inst.deadLettered.Add(ctx, 1, s.inst.attrs(attrClass(class)))
		return []*kgo.Record{d}, nil
	}
}

// recoverPanics turns a handler panic into a non-retryable error of class internal.
func (s *Stage) recoverPanics(next Handler) Handler {
	return func(ctx context.Context, rec *kgo.Record) (out []*kgo.Record, err error) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			s.log.ErrorContext(ctx, "handler panicked",
				"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset,
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if st := stateFrom(ctx); st != nil {
				st.failed(time.Now())
			}
			if e, ok := r.(error); ok {
				err = failure.Wrap(failure.Internal, fmt.Errorf("handler panicked: %w", e))
			} else {
				err = failure.Wrap(failure.Internal, fmt.Errorf("handler panicked: %v", r))
			}
			out = nil
		}()
		return next(ctx, rec)
	}
}

// retry calls next until it succeeds, fails with a non-retryable error, or has been called
// Config.MaxAttempts times in total (the first call included). Between attempts it sleeps a
// full-jitter exponential backoff, at least the error's Retry-After but never more than
// MaxBackoff, and gives up at once when the batch is being abandoned.
func (s *Stage) retry(next Handler) Handler {
	return func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		st := stateFrom(ctx)
		if st == nil {
			st = &recordState{}
		}
		stop := stoppingFrom(ctx)
		for {
			attempt := st.started()
			// Each attempt gets the context the record arrived with and its own copy of the
			// record, so nothing an earlier attempt attached (context values, deadlines, header
			// edits) leaks into the next one (watermill #467).
			out, err := next(ctx, copyRecord(rec))
			if err == nil {
				return out, nil
			}
			st.failed(time.Now())
			if !failure.Retryable(err) || s.backoff.Exhausted(attempt) || isStopping(ctx) {
				return nil, err
			}
			wait := s.backoff.Delay(attempt)
			if after, ok := failure.RetryAfter(err); ok && after > wait {
				wait = min(after, s.cfg.MaxBackoff)
			}
			s.log.DebugContext(ctx, "retrying record",
				"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset,
				"attempt", attempt, "wait", wait, "error_class", failure.Classify(err), "error", err)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-stop:
				t.Stop()
				return nil, err
			case <-ctx.Done():
				t.Stop()
				return nil, errors.Join(err, context.Cause(ctx))
			}
		}
	}
}

func copyRecord(rec *kgo.Record) *kgo.Record {
	c := *rec
	c.Headers = slices.Clone(rec.Headers)
	return &c
}

// attemptTimeout gives each attempt its own deadline. An unclassified error returned after that
// deadline passed is classified as a timeout: the handler ran out of time, whatever it reported.
func (s *Stage) attemptTimeout(next Handler) Handler {
	return func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
		defer cancel()
		out, err := next(actx, rec)
		if err != nil && ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) &&
			failure.Classify(err) == failure.Unknown {
			err = failure.Wrap(failure.Timeout, err)
		}
		return out, err
	}
}

// measure records, per attempt: records in, records out, duration and errors by class.
func (s *Stage) measure(next Handler) Handler {
	return func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		start := time.Now()
		s.inst.handlerIn.Add(ctx, 1, s.inst.attrs(attrTopic(rec.Topic)))
		out, err := next(ctx, rec)
		elapsed := time.Since(start).Seconds()
		if err != nil {
			class := failure.Classify(err)
			s.inst.handlerErrors.Add(ctx, 1, s.inst.attrs(attrClass(class)))
			s.inst.handlerDuration.Record(ctx, elapsed, s.inst.attrs(attrOutcome("error"), attrClass(class)))
			return nil, err
		}
		s.inst.handlerOut.Add(ctx, int64(len(out)), s.inst.attrs())
		s.inst.handlerDuration.Record(ctx, elapsed, s.inst.attrs(attrOutcome("ok")))
		return out, nil
	}
}

// checkOutputs rejects outputs the producer could not route: nil records or an empty topic.
// That is a bug in the handler, so the error is internal (not retried).
func checkOutputs(next Handler) Handler {
	return func(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		out, err := next(ctx, rec)
		if err != nil {
			return nil, err
		}
		for i, o := range out {
			if o == nil {
				return nil, failure.Wrap(failure.Internal, fmt.Errorf("handler output %d is nil", i))
			}
			if o.Topic == "" {
				return nil, failure.Wrap(failure.Internal, fmt.Errorf("handler output %d has no topic", i))
			}
		}
		return out, nil
	}
}
