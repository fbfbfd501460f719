// Package stage runs a Kafka→Kafka pipeline stage: consume records in a group, hand each to a
// [Handler], and produce its outputs and the input offsets in one Kafka transaction
// (franz-go GroupTransactSession, read_committed), so each input's effect on the output topics
// happens exactly once across crashes and rebalances.
//
// # Processing model
//
// The loop polls up to Config.MaxPollRecords records, begins a transaction, hands every record
// to the handler chain (the records of one partition one after another, in offset order;
// different partitions in parallel up to Config.Concurrency), then produces all outputs and
// commits the offsets of the whole batch in the transaction. Producing only after every record
// of the batch was handled keeps slow handlers and retry waits out of the transaction timeout,
// and means nothing is written for a batch that is abandoned. If anything prevents the commit
// (a rebalance, a produce error, a shutdown that could not finish the batch), the transaction is
// aborted and the whole batch is delivered again, to this member or the partition's new owner.
// Per-key order holds as long as a key maps to one input partition.
//
// # Failures
//
// The handler runs inside a fixed middleware chain, outermost first: dead letter → recover →
// retry → attempt timeout → metrics → custom middleware ([WithMiddleware]). An attempt is one
// handler invocation; Config.MaxAttempts counts all of them, the first included. A failed
// attempt is retried after a full-jitter exponential backoff (at least the error's Retry-After,
// at most Config.MaxBackoff) while failure.Retryable says so and attempts remain. A panic
// becomes a non-retryable error of class internal. When the record finally fails, it is written
// to Config.DLQTopic in the same transaction, with its original key and value bytes, its headers,
// and the error context of package dlq; the partition then moves on.
//
// While the batch is being abandoned (shutdown, revoked partitions) retries stop and no dead
// letter is written: the error aborts the transaction and the record is redelivered, because a
// failure caused by stopping says nothing about the record.
//
// # Shutdown
//
// Cancelling Run's context stops polling. Records of the open batch are still handled, for up to
// half of Config.ShutdownTimeout; the transaction is then committed (or aborted if the batch did
// not finish), the member leaves the group and the client closes, all within ShutdownTimeout.
package stage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/backoff"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

// maxProduceFailures is how many batches in a row may fail to produce before Run gives up. A
// produce error aborts the batch, which is then redelivered and handled again; an error that
// persists (an output larger than the broker accepts) would otherwise loop forever.
const maxProduceFailures = 5

var (
	errRevoked  = errors.New("partitions revoked")
	errFailed   = errors.New("a record of the batch failed while stopping")
	errShutdown = errors.New("shutdown timeout exceeded")
	// errSessionLost marks failures after which the session's state is unknown but a new
	// session can go on: ending a transaction failed (the broker went away mid-commit).
	errSessionLost = errors.New("transactional session lost")
)

// sessionResetAfter is how long a session must have run for its restart backoff to start over.
const sessionResetAfter = time.Minute

// Stage is one consume-transform-produce loop. Build it with [New] and call [Stage.Run] once.
type Stage struct {
	cfg     Config
	kopts   []kgo.Opt
	opts    options
	log     *slog.Logger
	handler Handler
	tracer  trace.Tracer
	inst    *instruments
	backoff *backoff.Backoff

	started  atomic.Bool
	stopOnce sync.Once
	stopCh   chan struct{}

	mu      sync.Mutex
	abandon context.CancelCauseFunc // cancels the open batch; nil between batches
}

// New validates cfg (after [Config.WithDefaults]) and the Kafka connection settings, and returns
// a stage that will run h. It does not connect; [Stage.Run] does.
func New(cfg Config, kcfg kafka.Config, h Handler, log *slog.Logger, opts ...Option) (*Stage, error) {
	if h == nil {
		return nil, errors.New("handler is required")
	}
	if log == nil {
		return nil, errors.New("logger is required")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating stage config: %w", err)
	}
	kopts, err := kcfg.Opts()
	if err != nil {
		return nil, fmt.Errorf("building kafka options: %w", err)
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	bo, err := backoff.New(cfg.InitialBackoff, cfg.MaxBackoff, backoff.WithMaxAttempts(cfg.MaxAttempts))
	if err != nil {
		return nil, fmt.Errorf("building backoff: %w", err)
	}
	inst, err := newInstruments(o.meters, cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("creating metric instruments: %w", err)
	}
	s := &Stage{
		cfg:     cfg,
		kopts:   kopts,
		opts:    o,
		log:     log.With("stage", cfg.Name),
		tracer:  o.tracers.Tracer("github.com/mailpipe/mailpipe/pkg/stage"),
		inst:    inst,
		backoff: bo,
		stopCh:  make(chan struct{}),
	}
	s.handler = s.chain(h)
	return s, nil
}

// Config returns the effective configuration, defaults applied.
func (s *Stage) Config() Config { return s.cfg }

// Stop asks Run to shut down gracefully, as if its context were cancelled. It returns at once;
// it is safe to call more than once, and before or after Run.
func (s *Stage) Stop() {
	s.stopOnce.Do(func() { close(s.stopCh) })
}

// Actor describes the stage for app.Run: Run runs it, Stop requests the graceful stop, and the
// stop timeout leaves room for Config.ShutdownTimeout.
func (s *Stage) Actor() app.Actor {
	return app.Actor{
		Name: "stage " + s.cfg.Name,
		Run:  s.Run,
		Stop: func(context.Context) error {
			s.Stop()
			return nil
		},
		StopTimeout: s.cfg.ShutdownTimeout + 5*time.Second,
	}
}

// Run joins the group and processes records until ctx is cancelled (or [Stage.Stop] is called),
// then shuts down gracefully and returns nil. When a transaction cannot be ended (the broker went
// away mid-commit; franz-go reports no retryable error there) it closes the session and starts a
// new one after a backoff, which fences the old producer and aborts its open transaction. It
// returns an error if the client cannot be built, the transactional producer cannot be
// initialised, produces keep failing, or the shutdown exceeds Config.ShutdownTimeout. Run may be
// called only once.
func (s *Stage) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("stage already ran: Run may be called only once")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()

	// Work that must finish cleanly after a stop request does not use ctx: in-flight records use
	// drainCtx (cancelled half-way through the shutdown budget), ending the transaction and
	// leaving the group use hardCtx (cancelled at the end of it).
	base := context.WithoutCancel(ctx)
	drainCtx, cancelDrain := context.WithCancel(base)
	defer cancelDrain()
	hardCtx, cancelHard := context.WithCancel(base)
	defer cancelHard()
	stopTimers := context.AfterFunc(ctx, func() {
		s.log.InfoContext(base, "stopping: no more polls, finishing the open batch")
		time.AfterFunc(s.cfg.ShutdownTimeout/2, cancelDrain)
		time.AfterFunc(s.cfg.ShutdownTimeout, cancelHard)
	})
	defer stopTimers()

	restarts := 0
	for {
		began := time.Now()
		err := s.session(ctx, base, drainCtx, hardCtx)
		if err == nil || ctx.Err() != nil || !errors.Is(err, errSessionLost) {
			return err
		}
		// A new session with the same transactional id fences the old producer and aborts
		// whatever it left open, so starting over keeps exactly-once; exiting would only hand
		// the same restart to the process supervisor, slower.
		if time.Since(began) > sessionResetAfter {
			restarts = 0
		}
		restarts++
		wait := s.backoff.Delay(restarts)
		s.log.WarnContext(base, "stage session lost; starting a new one", "error", err, "restart", restarts, "wait", wait)
		if backoff.Sleep(ctx, wait) != nil {
			return nil
		}
	}
}

// session runs one transactional session: it joins the group, processes batches until ctx ends
// or a batch cannot be finished, and leaves the group.
func (s *Stage) session(ctx, base, drainCtx, hardCtx context.Context) error {
	sess, err := kgo.NewGroupTransactSession(s.clientOpts()...)
	if err != nil {
		return fmt.Errorf("creating transactional session: %w", err)
	}
	s.log.InfoContext(ctx, "stage starting", "group", s.cfg.Group, "inputs", s.cfg.InputTopics,
		"transactional_id", s.cfg.TransactionalID, "dlq", s.cfg.DLQTopic)

	if reg, err := s.observeLag(kadm.NewClient(sess.Client())); err != nil {
		s.log.WarnContext(ctx, "consumer lag metric unavailable", "error", err)
	} else {
		defer func() { _ = reg.Unregister() }()
	}
	runErr := s.initProducerID(ctx, sess.Client())
	produceFailures := 0
	for runErr == nil && ctx.Err() == nil {
		fetches := sess.PollRecords(ctx, s.cfg.MaxPollRecords)
		if fetches.IsClientClosed() {
			runErr = errors.New("kafka client closed while polling")
			break
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			switch {
			case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			case isFatalGroupErr(err):
				// franz-go stops consuming after these and would leave Run polling forever.
				runErr = fmt.Errorf("consuming in group %s: %w", s.cfg.Group, err)
			default:
				s.log.WarnContext(ctx, "fetch error", "topic", topic, "partition", partition, "error", err)
			}
		})
		if runErr != nil {
			break
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		produced, err := s.runBatch(ctx, drainCtx, hardCtx, sess, fetches)
		switch {
		case err != nil:
			runErr = err
		case produced:
			produceFailures = 0
		default:
			produceFailures++
			if produceFailures >= maxProduceFailures {
				runErr = fmt.Errorf("producing outputs failed in %d batches in a row", produceFailures)
				continue
			}
			_ = backoff.Sleep(ctx, s.backoff.Delay(produceFailures))
		}
	}

	closeCtx, cancelClose := context.WithTimeout(hardCtx, s.cfg.ShutdownTimeout)
	defer cancelClose()
	closeErr := s.close(closeCtx, sess)
	if runErr != nil {
		s.log.ErrorContext(base, "stage failed", "error", runErr)
	} else {
		s.log.InfoContext(base, "stage stopped")
	}
	return errors.Join(runErr, closeErr)
}

func (s *Stage) clientOpts() []kgo.Opt {
	opts := slices.Clone(s.kopts)
	opts = append(opts,
		kgo.WithLogger(quietLogger{kslog.New(s.log)}),
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(s.cfg.InputTopics...),
		// A new group starts at the earliest offset: nothing already in the topic is skipped.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.TransactionalID(s.cfg.TransactionalID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// KIP-447 require_stable offset fetches are always on in franz-go (RequireStableFetchOffsets
		// is a deprecated no-op): a new owner of a partition waits for our open transaction.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.OnPartitionsAssigned(s.onAssigned),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
	)
	if s.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(s.cfg.InstanceID))
	}
	if s.cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(s.cfg.SessionTimeout))
	}
	if s.cfg.RebalanceTimeout > 0 {
		opts = append(opts, kgo.RebalanceTimeout(s.cfg.RebalanceTimeout))
	}
	if s.cfg.TransactionTimeout > 0 {
		opts = append(opts, kgo.TransactionTimeout(s.cfg.TransactionTimeout))
	}
	return append(opts, s.opts.kgoOpts...)
}

// isFatalGroupErr reports fetch errors after which the member cannot go on: another instance
// with our InstanceID took over, or the credentials lack a permission.
func isFatalGroupErr(err error) bool {
	return errors.Is(err, kerr.FencedInstanceID) ||
		errors.Is(err, kerr.GroupAuthorizationFailed) ||
		errors.Is(err, kerr.TopicAuthorizationFailed) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}

// initProducerID initialises the transactional producer before the first poll. franz-go does it
// lazily at the first produce, but with KIP-447 the group's offset fetch blocks while a
// transaction of our transactional id is still open, so a restart after a crash would wait for
// the old transaction to time out. InitProducerID fences the crashed incarnation and aborts its
// transaction at once. On a fresh broker the transaction coordinator may still be loading, so
// retriable errors are retried until ctx ends.
func (s *Stage) initProducerID(ctx context.Context, cl *kgo.Client) error {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, _, err := cl.ProducerID(actx)
		cancel()
		if err == nil {
			return nil
		}
		var ke *kerr.Error
		if errors.As(err, &ke) && !ke.Retriable {
			return fmt.Errorf("initializing transactional producer %s: %w", s.cfg.TransactionalID, err)
		}
		if ctx.Err() == nil {
			s.log.WarnContext(ctx, "initializing transactional producer; retrying", "attempt", attempt, "error", err)
			_ = backoff.Sleep(ctx, min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second))
		}
	}
	return nil // stopped before the producer was ready: still a graceful stop
}

// runBatch handles one polled batch in one transaction. It reports whether the outputs could be
// produced (false only for produce errors), and returns an error only if the transaction could
// not be begun or ended, which is fatal for the session.
func (s *Stage) runBatch(ctx, drainCtx, hardCtx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches) (produced bool, err error) {
	start := time.Now()
	bctx, abandon := context.WithCancelCause(drainCtx)
	defer abandon(nil)
	stop := make(chan struct{})
	var stopOnce sync.Once
	closeStop := func() { stopOnce.Do(func() { close(stop) }) }
	defer context.AfterFunc(ctx, closeStop)()
	defer context.AfterFunc(bctx, closeStop)()
	s.setAbandon(abandon)
	defer s.setAbandon(nil)

	if err := sess.Begin(); err != nil {
		return false, fmt.Errorf("beginning transaction: %w", err)
	}

	var parts []kgo.FetchTopicPartition
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 {
			parts = append(parts, p)
			s.inst.consumed.Add(ctx, int64(len(p.Records)), s.inst.attrs(attrTopic(p.Topic)))
		}
	})
	outs := make([][]*kgo.Record, len(parts))
	hctx := withStopping(bctx, stop)
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			o, err := s.handlePartition(hctx, p.Records)
			if err != nil {
				abandon(fmt.Errorf("%w: %w", errFailed, err))
				return
			}
			outs[i] = o
		})
	}
	wg.Wait()

	commit := context.Cause(bctx) == nil
	produced = true
	var counts map[string]int64
	if commit {
		counts, err = s.produce(hardCtx, sess, outs)
		if err != nil {
			s.log.WarnContext(ctx, "producing outputs failed; aborting the batch", "error", err)
			commit, produced = false, false
		}
	} else {
		s.log.InfoContext(ctx, "abandoning batch", "reason", context.Cause(bctx), "records", fetches.NumRecords())
	}
	committed, err := sess.End(hardCtx, kgo.TransactionEndTry(commit))
	if err != nil {
		return false, fmt.Errorf("ending transaction: %w: %w", errSessionLost, err)
	}
	outcome := "aborted"
	if committed {
		outcome = "committed"
		for topic, n := range counts {
			s.inst.produced.Add(ctx, n, s.inst.attrs(attrTopic(topic)))
		}
	} else if commit {
		s.log.InfoContext(ctx, "transaction aborted by the session (rebalance); the batch will be redelivered", "records", fetches.NumRecords())
	}
	s.inst.transactions.Add(ctx, 1, s.inst.attrs(attribute.String("outcome", outcome)))
	s.inst.batchDuration.Record(ctx, time.Since(start).Seconds(), s.inst.attrs(attribute.String("outcome", outcome)))
	return produced, nil
}

// handlePartition runs the chain for one partition's records in offset order.
func (s *Stage) handlePartition(ctx context.Context, recs []*kgo.Record) ([]*kgo.Record, error) {
	var out []*kgo.Record
	for _, rec := range recs {
		if err := context.Cause(ctx); err != nil {
			return nil, err
		}
		o, err := s.handleRecord(ctx, rec)
		if err != nil {
			return nil, fmt.Errorf("handling %s[%d]@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
		}
		out = append(out, o...)
	}
	return out, nil
}

// handleRecord continues the record's trace (from its headers) in a consumer span around the
// chain, and propagates the span's context to the outputs: to those that carry none, and to
// those that carry the input's (handlers forward the input's headers), so that the next stage's
// span is a child of this one. A context a handler set itself is kept.
func (s *Stage) handleRecord(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	prop := s.opts.propagator
	ctx = prop.Extract(ctx, kafka.HeaderCarrier{Record: rec})
	parent := trace.SpanContextFromContext(ctx)
	ctx, span := s.tracer.Start(ctx, s.cfg.Name+" process",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", rec.Topic),
			attribute.String("messaging.destination.partition.id", strconv.Itoa(int(rec.Partition))),
			attribute.Int64("messaging.kafka.offset", rec.Offset),
			attribute.String("messaging.consumer.group.name", s.cfg.Group),
		))
	defer span.End()
	out, err := s.handler(ctx, rec)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "record failed")
		return nil, err
	}
	for _, o := range out {
		c := kafka.HeaderCarrier{Record: o}
		if !slices.ContainsFunc(prop.Fields(), func(f string) bool { return c.Get(f) != "" }) {
			prop.Inject(ctx, c)
			continue
		}
		if sc := trace.SpanContextFromContext(prop.Extract(ctx, c)); parent.IsValid() &&
			sc.TraceID() == parent.TraceID() && sc.SpanID() == parent.SpanID() {
			prop.Inject(ctx, c)
		}
	}
	return out, nil
}

// produce writes every output in the open transaction and waits for all of them.
func (s *Stage) produce(ctx context.Context, sess *kgo.GroupTransactSession, outs [][]*kgo.Record) (map[string]int64, error) {
	var mu sync.Mutex
	var firstErr error
	counts := map[string]int64{}
	for _, o := range outs {
		for _, r := range o {
			counts[r.Topic]++
			sess.Produce(ctx, r, func(r *kgo.Record, err error) {
				if err == nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if firstErr == nil {
					firstErr = fmt.Errorf("producing to %s: %w", r.Topic, err)
				}
			})
		}
	}
	if err := sess.Client().Flush(ctx); err != nil {
		return nil, fmt.Errorf("flushing outputs: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return counts, firstErr
}

// close leaves the group and closes the client within ctx.
func (s *Stage) close(ctx context.Context, sess *kgo.GroupTransactSession) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := sess.Client().LeaveGroupContext(ctx); err != nil {
			s.log.WarnContext(ctx, "leaving group", "error", err)
		}
		sess.Close()
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("closing kafka client: %w", errShutdown)
	}
}

func (s *Stage) setAbandon(f context.CancelCauseFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abandon = f
}

func (s *Stage) abandonBatch(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.abandon != nil {
		s.abandon(cause)
	}
}

func (s *Stage) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	if len(assigned) == 0 {
		return
	}
	s.log.InfoContext(ctx, "partitions assigned", "partitions", assigned)
}

// onRevoked abandons the open batch: the session aborts its transaction anyway, and handling the
// rest of the batch would only produce work that is thrown away (or side effects for partitions
// another member now owns). It must not block: it runs inside the rebalance.
func (s *Stage) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if len(revoked) == 0 {
		return
	}
	s.log.InfoContext(ctx, "partitions revoked", "partitions", revoked)
	s.abandonBatch(errRevoked)
}

func (s *Stage) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	if len(lost) == 0 {
		return
	}
	s.log.WarnContext(ctx, "partitions lost", "partitions", lost)
	s.abandonBatch(errRevoked)
}

// quietLogger moves franz-go's info logs to debug: a transactional session logs several info
// lines per transaction, which at hundreds of batches a second would drown everything else.
type quietLogger struct{ l *kslog.Logger }

func (q quietLogger) Level() kgo.LogLevel { return q.l.Level() }

func (q quietLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if level == kgo.LogLevelInfo {
		level = kgo.LogLevelDebug
	}
	q.l.Log(level, msg, keyvals...)
}
