// Package backoff computes retry delays: exponential growth with full jitter, an attempt budget,
// and parsing of the HTTP Retry-After header.
//
// Full jitter (delay drawn uniformly from [0, min(max, initial·multiplier^(n-1))) ) spreads the
// retries of many clients that failed at the same moment, which plain exponential backoff does
// not. See https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/.
package backoff

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Defaults used by [New] for options that are not given.
const (
	DefaultMultiplier  = 2.0
	DefaultMaxAttempts = 5
)

// Source is the random source for jitter; *math/rand/v2.Rand satisfies it. The default uses the
// math/rand/v2 top-level functions, which are safe for concurrent use. A Source passed with
// [WithRand] must be safe for concurrent use if the Backoff is shared between goroutines.
type Source interface {
	// Int64N returns a uniform random number in [0, n); n > 0.
	Int64N(n int64) int64
}

type globalSource struct{}

func (globalSource) Int64N(n int64) int64 { return rand.Int64N(n) }

// Backoff is an immutable retry policy. It is safe for concurrent use when its Source is.
type Backoff struct {
	initial     time.Duration
	max         time.Duration
	multiplier  float64
	maxAttempts int
	rnd         Source
}

// Option configures a [Backoff].
type Option interface{ apply(*Backoff) }

type optionFunc func(*Backoff)

func (f optionFunc) apply(b *Backoff) { f(b) }

// WithRand sets the jitter source, for deterministic tests.
func WithRand(s Source) Option { return optionFunc(func(b *Backoff) { b.rnd = s }) }

// WithMultiplier sets the growth factor per retry, overriding the default 2. It must be >= 1.
func WithMultiplier(m float64) Option { return optionFunc(func(b *Backoff) { b.multiplier = m }) }

// WithMaxAttempts sets the attempt budget, overriding the default 5. An attempt is one call of
// the operation, the first one included: 1 means "never retry", 5 means "the first call and up to
// four retries".
func WithMaxAttempts(n int) Option { return optionFunc(func(b *Backoff) { b.maxAttempts = n }) }

// New returns a policy whose n-th retry waits a random duration in
// [0, min(maxDelay, initial·multiplier^(n-1))). initial must be > 0 and maxDelay >= initial.
func New(initial, maxDelay time.Duration, opts ...Option) (*Backoff, error) {
	b := &Backoff{
		initial:     initial,
		max:         maxDelay,
		multiplier:  DefaultMultiplier,
		maxAttempts: DefaultMaxAttempts,
		rnd:         globalSource{},
	}
	for _, o := range opts {
		o.apply(b)
	}
	if err := b.validate(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Backoff) validate() error {
	var errs []error
	if b.initial <= 0 {
		errs = append(errs, errors.New("initial delay must be positive"))
	}
	if b.max < b.initial {
		errs = append(errs, errors.New("max delay must not be below the initial delay"))
	}
	if b.multiplier < 1 || math.IsNaN(b.multiplier) || math.IsInf(b.multiplier, 0) {
		errs = append(errs, errors.New("multiplier must be a finite number >= 1"))
	}
	if b.maxAttempts < 1 {
		errs = append(errs, errors.New("max attempts must be at least 1"))
	}
	if b.rnd == nil {
		errs = append(errs, errors.New("random source must not be nil"))
	}
	return errors.Join(errs...)
}

// MaxAttempts returns the attempt budget, first attempt included.
func (b *Backoff) MaxAttempts() int { return b.maxAttempts }

// Exhausted reports whether, after attempts calls of the operation, the budget is used up.
func (b *Backoff) Exhausted(attempts int) bool { return attempts >= b.maxAttempts }

// Ceiling returns the upper bound of the jittered delay before retry n (n >= 1: the wait after
// the n-th failed attempt): min(max, initial·multiplier^(n-1)).
func (b *Backoff) Ceiling(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	c := float64(b.initial) * math.Pow(b.multiplier, float64(n-1))
	if c >= float64(b.max) || math.IsInf(c, 0) || math.IsNaN(c) {
		return b.max
	}
	return time.Duration(c)
}

// Delay returns the jittered wait before retry n (n >= 1), uniform in [0, Ceiling(n)).
func (b *Backoff) Delay(n int) time.Duration {
	c := b.Ceiling(n)
	if c <= 0 {
		return 0
	}
	return time.Duration(b.rnd.Int64N(int64(c)))
}

// Sleep waits for d or until ctx is done, whichever comes first, and returns ctx's error in the
// latter case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ParseRetryAfter parses an HTTP Retry-After header value (RFC 9110 §10.2.3): either
// delta-seconds ("120") or an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT", also the obsolete RFC
// 850 and asctime forms). A date is turned into a duration relative to now; a date in the past
// gives 0. It reports false for an empty or malformed value.
func ParseRetryAfter(value string, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(value)
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > int64(math.MaxInt64/time.Second) {
			// Overflowing delta-seconds means "a very long time"; clamp rather than reject.
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
