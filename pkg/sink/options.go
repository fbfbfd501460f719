package sink

import (
	"errors"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
)

// Option configures a [Sink].
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	ttl            time.Duration
	holdTTL        time.Duration
	now            func() time.Time
	lakeSalt       string
	routes         Routes
	maxAttempts    int
	initialBackoff time.Duration
	maxBackoff     time.Duration
	defaultConc    int
	conc           map[string]int
	rates          map[string]ratelimit.Limit
	limiters       ratelimit.Factory
	dlqTopic       string
	meters         metric.MeterProvider
	tracers        trace.TracerProvider
}

func defaultOptions() options {
	return options{
		ttl: DefaultDedupeTTL, holdTTL: DefaultHoldTTL, now: time.Now,
		maxAttempts: DefaultMaxAttempts, initialBackoff: DefaultInitialBackoff, maxBackoff: DefaultMaxBackoff,
		defaultConc: DefaultConcurrency, limiters: ratelimit.MemoryFactory(), dlqTopic: kafka.TopicDLQ,
	}
}

func (o *options) concurrency(target string) int {
	if n, ok := o.conc[target]; ok && n > 0 {
		return n
	}
	return max(o.defaultConc, 1)
}

func (o *options) validate() []error {
	var errs []error
	if o.ttl <= 0 {
		errs = append(errs, errors.New("dedupe ttl must be positive"))
	}
	if o.holdTTL <= 0 {
		errs = append(errs, errors.New("hold ttl must be positive"))
	}
	if o.maxAttempts < 1 {
		errs = append(errs, errors.New("max attempts must be at least 1"))
	}
	if o.defaultConc < 1 {
		errs = append(errs, errors.New("concurrency must be at least 1"))
	}
	for name, n := range o.conc {
		if n < 1 {
			errs = append(errs, errors.New("concurrency of "+name+" must be at least 1"))
		}
	}
	if o.dlqTopic == "" {
		errs = append(errs, errors.New("dlq topic is required"))
	}
	if o.limiters == nil {
		errs = append(errs, errors.New("rate limiter factory is nil"))
	}
	return errs
}

// WithLakeSalt sets the per-deployment secret the lake rows' address hashes are keyed with (see
// lake.NewMapper: at least 16 bytes). Required.
func WithLakeSalt(salt string) Option { return optionFunc(func(o *options) { o.lakeSalt = salt }) }

// WithDedupeTTL sets how long a confirmed delivery is remembered, overriding the default 24h.
// It must be positive.
func WithDedupeTTL(d time.Duration) Option { return optionFunc(func(o *options) { o.ttl = d }) }

// WithHoldTTL sets how long a thread stays held behind a dead letter (default 7 days).
func WithHoldTTL(d time.Duration) Option { return optionFunc(func(o *options) { o.holdTTL = d }) }

// WithClock sets the clock for written_at and failure times, for tests.
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }

// WithRoutes makes the message's route choose its targets and shadow mode (see the package
// doc). Without it every message goes to every connector.
func WithRoutes(r Routes) Option { return optionFunc(func(o *options) { o.routes = r }) }

// WithRetry sets the per-target retry budget: at most maxAttempts connector calls per record,
// with a full-jitter exponential backoff between initial and maxDelay (at least the server's
// Retry-After, at most maxDelay).
func WithRetry(maxAttempts int, initial, maxDelay time.Duration) Option {
	return optionFunc(func(o *options) {
		o.maxAttempts, o.initialBackoff, o.maxBackoff = maxAttempts, initial, maxDelay
	})
}

// WithConcurrency bounds the connector calls in flight per target in this process: def for
// every target, perTarget overriding it by target name.
func WithConcurrency(def int, perTarget map[string]int) Option {
	return optionFunc(func(o *options) { o.defaultConc, o.conc = def, perTarget })
}

// WithRateLimits limits the connector calls per target (a token bucket per target name) with
// limiters from factory (ratelimit.MemoryFactory per process, redisratelimit to share the budget
// across replicas); a nil factory keeps the in-memory one.
func WithRateLimits(perTarget map[string]ratelimit.Limit, factory ratelimit.Factory) Option {
	return optionFunc(func(o *options) {
		o.rates = perTarget
		if factory != nil {
			o.limiters = factory
		}
	})
}

// WithDLQTopic sets where the sink's per-target dead letters go (default mail.dlq.v1); pass the
// stage's DLQ topic.
func WithDLQTopic(topic string) Option { return optionFunc(func(o *options) { o.dlqTopic = topic }) }
