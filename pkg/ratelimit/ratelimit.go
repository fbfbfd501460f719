// Package ratelimit limits how often something keyed may happen: SMTP connections and messages per
// client IP at ingress, requests per CRM target at the sink. A [Limiter] is a token bucket per key
// with one [Limit]; the keys are whatever the caller counts (an IP address, a target name).
//
// Limiters fail open. When the backend cannot answer (Redis down, a timeout, a cancelled context)
// Allow returns ok == true together with the error, and callers let the event through and log the
// error. A rate limit protects the pipeline from abuse; it is not what keeps mail from being lost
// or duplicated. Refusing every client while Redis is unavailable would turn a cache outage into
// an intake outage, and a sender refused with a 4xx retries anyway, so "deny on error" would buy
// nothing but a self-inflicted backlog. This mirrors dedupe, where an error means "not known",
// never "duplicate".
//
// Implementations: [Memory] here (tests, a single process) and ratelimit/redisratelimit, one Lua
// script per decision so that every replica shares one bucket per key. Both pass the
// ratelimit/ratelimittest conformance suite.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limiter decides whether one more event for a key fits its limit.
type Limiter interface {
	// Allow takes one token from key's bucket. ok reports whether one was available; when it
	// was not, retryAfter is how long until the next one will be (always positive then), and
	// retryAfter is zero whenever ok is true.
	//
	// An error means the limiter could not tell. ok is then true (fail open, see the package
	// doc): the caller lets the event through and logs err. An empty key is an error wrapping
	// ErrInvalid, with ok true as well. Implementations are safe for concurrent use, and
	// concurrent calls for one key never hand out more tokens than the bucket holds.
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// Factory builds a Limiter for one named limit. The name separates the buckets of different
// limits on one backend ("smtp-connections" and "smtp-messages" count the same IP apart); it
// must be non-empty and stable across restarts and replicas. Front-ends that have several limits
// in their configuration take a Factory rather than ready Limiters, so that the wiring only has
// to pick the backend.
type Factory func(name string, l Limit) (Limiter, error)

// ErrInvalid is wrapped by errors for an unusable Limit or an empty key.
var ErrInvalid = errors.New("invalid rate limit request")

// Limit is a token bucket: Burst events may happen at once, and the bucket refills at Rate
// events per Period. The zero Limit means "no limit" (see Enabled).
//
// Its text form, used in configuration, is "RATE/PERIOD" with Burst equal to Rate: "60/m" is
// sixty events at once and then one a second, "10/s", "500/h", "30/90s". PERIOD is s, m, h or
// a Go duration.
type Limit struct {
	// Rate events are allowed per Period on average.
	Rate int
	// Period over which Rate applies.
	Period time.Duration
	// Burst is the bucket size: how many events may happen back to back. 0 means Rate.
	Burst int
}

// PerMinute returns a limit of n events a minute, n at once.
func PerMinute(n int) Limit { return Limit{Rate: n, Period: time.Minute} }

// PerSecond returns a limit of n events a second, n at once.
func PerSecond(n int) Limit { return Limit{Rate: n, Period: time.Second} }

// Enabled reports whether l limits anything: the zero Limit does not.
func (l Limit) Enabled() bool { return l != Limit{} }

// Validate reports why l cannot be used; the zero Limit is valid (and disabled).
func (l Limit) Validate() error {
	if !l.Enabled() {
		return nil
	}
	var errs []error
	if l.Rate <= 0 {
		errs = append(errs, fmt.Errorf("rate must be positive, got %d", l.Rate))
	}
	if l.Period <= 0 {
		errs = append(errs, fmt.Errorf("period must be positive, got %s", l.Period))
	}
	if l.Burst < 0 {
		errs = append(errs, fmt.Errorf("burst must not be negative, got %d", l.Burst))
	}
	if len(errs) == 0 && l.Interval() < time.Microsecond {
		errs = append(errs, fmt.Errorf("%d per %s is more than one event a microsecond", l.Rate, l.Period))
	}
	if err := errors.Join(errs...); err != nil {
		return errors.Join(ErrInvalid, err)
	}
	return nil
}

// Interval is the time the bucket takes to refill one token: Period / Rate. It is zero for a
// disabled or invalid Limit.
func (l Limit) Interval() time.Duration {
	if l.Rate <= 0 || l.Period <= 0 {
		return 0
	}
	return l.Period / time.Duration(l.Rate)
}

// Size is the bucket size: Burst, or Rate when Burst is 0.
func (l Limit) Size() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return l.Rate
}

// String returns the text form; a Burst other than Rate is appended as " burst N".
func (l Limit) String() string {
	if !l.Enabled() {
		return ""
	}
	s := strconv.Itoa(l.Rate) + "/" + periodString(l.Period)
	if l.Burst != 0 && l.Burst != l.Rate {
		s += " burst " + strconv.Itoa(l.Burst)
	}
	return s
}

// MarshalText implements encoding.TextMarshaler with the form of String.
func (l Limit) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses "RATE/PERIOD" (see Limit). Empty text is the zero (disabled) Limit.
func (l *Limit) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "" {
		*l = Limit{}
		return nil
	}
	rate, period, ok := strings.Cut(s, "/")
	if !ok {
		return fmt.Errorf("%w: %q is not RATE/PERIOD, e.g. 60/m", ErrInvalid, s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(rate))
	if err != nil {
		return fmt.Errorf("%w: rate of %q: %w", ErrInvalid, s, err)
	}
	p, err := parsePeriod(strings.TrimSpace(period))
	if err != nil {
		return fmt.Errorf("%w: period of %q: %w", ErrInvalid, s, err)
	}
	parsed := Limit{Rate: n, Period: p}
	if !parsed.Enabled() {
		return fmt.Errorf("%w: %q limits nothing; leave it empty to disable the limit", ErrInvalid, s)
	}
	if err := parsed.Validate(); err != nil {
		return fmt.Errorf("limit %q: %w", s, err)
	}
	*l = parsed
	return nil
}

func parsePeriod(s string) (time.Duration, error) {
	switch s {
	case "s":
		return time.Second, nil
	case "m":
		return time.Minute, nil
	case "h":
		return time.Hour, nil
	}
	return time.ParseDuration(s)
}

func periodString(d time.Duration) string {
	switch d {
	case time.Second:
		return "s"
	case time.Minute:
		return "m"
	case time.Hour:
		return "h"
	}
	return d.String()
}

// ValidateEnabled returns an error wrapping ErrInvalid unless l is enabled and valid;
// implementations call it at construction. The zero Limit has no bucket size or refill rate:
// callers skip limiting for it instead of building a limiter.
func ValidateEnabled(l Limit) error {
	if !l.Enabled() {
		return fmt.Errorf("%w: the zero limit limits nothing; do not build a limiter for it", ErrInvalid)
	}
	return l.Validate()
}

// CheckKey returns an error wrapping ErrInvalid for an empty key; implementations call it first
// so they all reject the same input.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: key is empty", ErrInvalid)
	}
	return nil
}
