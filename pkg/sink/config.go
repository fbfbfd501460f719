package sink

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/lake"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
)

// Config is the crm-sink's own configuration, loaded with envconf (MAILPIPE_SINK_* when nested
// under `env:"SINK"`). The connectors' configs live in their packages.
type Config struct {
	// DedupeTTL is how long a confirmed delivery is remembered; default 24h.
	DedupeTTL time.Duration `env:"DEDUPE_TTL" default:"24h" usage:"how long a confirmed CRM delivery is remembered in the dedupe store"`
	// HoldTTL is how long a thread stays held behind a dead letter for a target; default 7 days.
	HoldTTL time.Duration `env:"HOLD_TTL" default:"168h" usage:"how long later messages of a thread wait behind a dead-lettered one (per target)"`
	// LakeSalt keys the HMAC of the lake rows' address hashes; a per-deployment secret of at
	// least 16 bytes. Required. Changing it breaks the continuity of from_hash.
	LakeSalt string `env:"LAKE_SALT" usage:"per-deployment secret keying the lake rows' address hashes (HMAC-SHA256, at least 16 bytes)"`
	// MaxAttempts, InitialBackoff and MaxBackoff are the per-target retry budget.
	MaxAttempts    int           `env:"MAX_ATTEMPTS" default:"4" usage:"connector calls per target and record before it is dead-lettered"`
	InitialBackoff time.Duration `env:"INITIAL_BACKOFF" default:"200ms" usage:"first retry backoff ceiling per target"`
	MaxBackoff     time.Duration `env:"MAX_BACKOFF" default:"10s" usage:"maximum retry backoff per target (a longer Retry-After is cut to it)"`
	// Concurrency bounds the calls in flight per target; TargetConcurrency overrides it by
	// target ("hubspot=2").
	Concurrency       int      `env:"CONCURRENCY" default:"8" usage:"connector calls in flight per target"`
	TargetConcurrency []string `env:"TARGET_CONCURRENCY" usage:"per-target calls in flight, target=N, comma-separated"`
	// TargetRates limits calls per target, "hubspot=10/s,pipedrive=80/2s" (see ratelimit.Limit).
	TargetRates []string `env:"TARGET_RATES" usage:"per-target request rate, target=RATE/PERIOD, comma-separated (e.g. hubspot=10/s)"`
}

// Validate reports every problem of c, one per line.
func (c Config) Validate() error {
	var errs []error
	if c.DedupeTTL < 0 {
		errs = append(errs, errors.New("dedupe_ttl must not be negative"))
	}
	if c.HoldTTL < 0 {
		errs = append(errs, errors.New("hold_ttl must not be negative"))
	}
	if len(c.LakeSalt) < lake.MinSaltLen {
		errs = append(errs, errors.New("lake_salt is required and must be at least 16 bytes"))
	}
	if c.MaxAttempts < 0 || c.Concurrency < 0 || c.InitialBackoff < 0 || c.MaxBackoff < 0 {
		errs = append(errs, errors.New("max_attempts, concurrency and backoffs must not be negative"))
	}
	if c.MaxBackoff > 0 && c.InitialBackoff > c.MaxBackoff {
		errs = append(errs, errors.New("initial_backoff must not exceed max_backoff"))
	}
	if _, err := c.targetConcurrency(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.targetRates(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Options returns the options that apply c; zero fields keep the defaults. rates is the
// backend of the per-target rate limits (nil: in-memory, per process).
func (c Config) Options(rates ratelimit.Factory) []Option {
	opts := []Option{WithLakeSalt(c.LakeSalt)}
	if c.DedupeTTL > 0 {
		opts = append(opts, WithDedupeTTL(c.DedupeTTL))
	}
	if c.HoldTTL > 0 {
		opts = append(opts, WithHoldTTL(c.HoldTTL))
	}
	attempts, initial, maxDelay := DefaultMaxAttempts, DefaultInitialBackoff, DefaultMaxBackoff
	if c.MaxAttempts > 0 {
		attempts = c.MaxAttempts
	}
	if c.InitialBackoff > 0 {
		initial = c.InitialBackoff
	}
	if c.MaxBackoff > 0 {
		maxDelay = c.MaxBackoff
	}
	opts = append(opts, WithRetry(attempts, initial, max(initial, maxDelay)))
	conc, _ := c.targetConcurrency() // validated
	def := DefaultConcurrency
	if c.Concurrency > 0 {
		def = c.Concurrency
	}
	opts = append(opts, WithConcurrency(def, conc))
	if limits, _ := c.targetRates(); len(limits) > 0 {
		opts = append(opts, WithRateLimits(limits, rates))
	}
	return opts
}

func (c Config) targetConcurrency() (map[string]int, error) {
	out := map[string]int{}
	err := eachPair("target_concurrency", c.TargetConcurrency, func(name, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive number", v)
		}
		out[name] = n
		return nil
	})
	return out, err
}

func (c Config) targetRates() (map[string]ratelimit.Limit, error) {
	out := map[string]ratelimit.Limit{}
	err := eachPair("target_rates", c.TargetRates, func(name, v string) error {
		var l ratelimit.Limit
		if err := l.UnmarshalText([]byte(v)); err != nil {
			return err
		}
		out[name] = l
		return nil
	})
	return out, err
}

// eachPair calls f for every "name=value" entry, reporting every bad one.
func eachPair(field string, entries []string, f func(name, value string) error) error {
	var errs []error
	seen := map[string]bool{}
	for _, e := range entries {
		name, value, ok := strings.Cut(strings.TrimSpace(e), "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch {
		case !ok || name == "" || value == "":
			errs = append(errs, fmt.Errorf("%s: %q is not target=value", field, e))
		case seen[name]:
			errs = append(errs, fmt.Errorf("%s: target %q is given twice", field, name))
		default:
			seen[name] = true
			if err := f(name, value); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", field, name, err))
			}
		}
	}
	return errors.Join(errs...)
}
