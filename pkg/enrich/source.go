package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// source is one remote lookup (a CRM or the operator's lookup table) run with a deadline, behind
// the cache and a breaker.
type source[T any] struct {
	name string
	// call asks the source; found false is a negative answer.
	call    func(ctx context.Context, key string) (T, bool, error)
	breaker breaker
}

// cacheEntry is the cached form of an answer: a negative answer has no value.
type cacheEntry[T any] struct {
	Found bool `json:"found"`
	Value *T   `json:"value,omitempty"`
}

// maxReason bounds the reason written to a record, so a verbose error cannot bloat every event.
const maxReason = 240

// lookup answers key from the cache or the source and reports how it went. It returns an error
// only when ctx is done: the record is then retried, never written degraded because the stage
// is shutting down or the attempt ran out of time.
func lookup[T any](ctx context.Context, e *Enricher, s *source[T], key string) (T, bool, events.EnrichmentSource, error) {
	var zero T
	start := e.now()
	rep := events.EnrichmentSource{Name: s.name}
	var reasons []string
	done := func(status string) events.EnrichmentSource {
		rep.Status = status
		rep.DurationMs = e.now().Sub(start).Milliseconds()
		rep.Reason = truncate(strings.Join(reasons, "; "), maxReason)
		e.metrics.lookup(ctx, rep, e.now().Sub(start))
		return rep
	}

	cacheKey := s.name + ":" + key
	cacheOK := e.cache != nil
	if cacheOK {
		rep.Cache = CacheMiss
		got, err := within(ctx, e.cacheTimeout, func(ctx context.Context) (cached, error) {
			b, ok, err := e.cache.Get(ctx, cacheKey)
			return cached{b, ok}, err
		})
		b, ok := got.b, got.ok
		var entry cacheEntry[T]
		switch {
		case ctx.Err() != nil:
			return zero, false, rep, ctx.Err()
		case err != nil:
			cacheOK = false
			rep.Cache = CacheUnavailable
			reasons = append(reasons, e.cacheReason(err))
		case !ok:
		case json.Unmarshal(b, &entry) != nil || (entry.Found && entry.Value == nil):
			// An entry this version cannot read is a miss; the answer below replaces it.
		default:
			rep.Cache = CacheHit
			if !entry.Found {
				return zero, false, done(StatusMiss), nil
			}
			return *entry.Value, true, done(StatusOK), nil
		}
	}

	if ok, retryIn := s.breaker.allow(e.now()); !ok {
		reasons = append(reasons, fmt.Sprintf("skipped: the source failed %d times in a row; next try in %s",
			s.breaker.threshold, retryIn.Round(time.Millisecond)))
		return zero, false, done(StatusError), nil
	}
	got, err := within(ctx, e.lookupTimeout, func(ctx context.Context) (answer[T], error) {
		v, found, err := s.call(ctx, key)
		return answer[T]{v, found}, err
	})
	v, found := got.v, got.found
	switch {
	case ctx.Err() != nil:
		s.breaker.cancel()
		return zero, false, rep, ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		e.breakerRecord(ctx, s.name, &s.breaker, false)
		reasons = append(reasons, fmt.Sprintf("no answer within %s", e.lookupTimeout))
		return zero, false, done(StatusTimeout), nil
	case err != nil:
		e.breakerRecord(ctx, s.name, &s.breaker, false)
		reasons = append(reasons, err.Error())
		return zero, false, done(StatusError), nil
	}
	e.breakerRecord(ctx, s.name, &s.breaker, true)

	if cacheOK {
		entry := cacheEntry[T]{Found: found}
		ttl := e.negativeTTL
		if found {
			entry.Value, ttl = &v, e.ttl
		}
		b, err := json.Marshal(entry)
		if err == nil {
			_, err = within(ctx, e.cacheTimeout, func(ctx context.Context) (struct{}, error) {
				return struct{}{}, e.cache.Set(ctx, cacheKey, b, ttl)
			})
		}
		if err != nil {
			rep.Cache = CacheUnavailable
			reasons = append(reasons, e.cacheReason(err))
		}
	}
	if !found {
		return zero, false, done(StatusMiss), nil
	}
	return v, true, done(StatusOK), nil
}

// cached is a cache read.
type cached struct {
	b  []byte
	ok bool
}

// answer is a source's answer.
type answer[T any] struct {
	v     T
	found bool
}

// within calls f with a deadline of timeout and returns when f does or when the deadline passes,
// whichever is first, so a source or cache client that does not honour its context cannot hold
// the record (go-redis, for one, waits out its dial timeout on a server that accepts connections
// and never answers). f's goroutine is then left to finish on its own and its late result is
// dropped. A missed deadline is reported as context.DeadlineExceeded, whatever f's error says.
func within[T any](ctx context.Context, timeout time.Duration, f func(context.Context) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ch := make(chan result, 1) // buffered: a late result must not block the abandoned goroutine
	go func() {
		v, err := f(lctx)
		ch <- result{v, err}
	}()
	var zero T
	select {
	case r := <-ch:
		if r.err != nil && lctx.Err() != nil {
			return zero, fmt.Errorf("%w: %w", context.DeadlineExceeded, r.err)
		}
		return r.v, r.err
	case <-lctx.Done():
		return zero, context.DeadlineExceeded
	}
}

// cacheReason explains a cache failure; a missed deadline reads as such, not as the client's
// error, which varies with where the client was when the deadline passed.
func (e *Enricher) cacheReason(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("cache: no answer within %s", e.cacheTimeout)
	}
	return "cache: " + err.Error()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// breaker stops calling a source that keeps failing: after threshold timeouts or errors in a row
// it is open for cooldown, and lookups are answered "error, skipped" at once instead of each
// waiting for the deadline, so a dead CRM costs the stream nothing. After the cooldown one
// lookup is let through as a probe; its success closes the breaker, its failure opens it again.
// A threshold of 0 disables it. It is safe for concurrent use.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu        sync.Mutex
	failures  int
	openUntil time.Time
	probing   bool
}

// allow reports whether a call may go ahead, or how long until the next probe.
func (b *breaker) allow(now time.Time) (bool, time.Duration) {
	if b.threshold <= 0 {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return true, 0
	}
	if now.Before(b.openUntil) || b.probing {
		return false, max(b.openUntil.Sub(now), 0)
	}
	b.probing = true
	return true, 0
}

// record notes a call's outcome and reports whether it opened the breaker.
func (b *breaker) record(ok bool, now time.Time) (opened bool) {
	if b.threshold <= 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if ok {
		b.failures = 0
		return false
	}
	b.failures++
	if b.failures >= b.threshold {
		b.openUntil = now.Add(b.cooldown)
		return true
	}
	return false
}

// cancel releases a probe whose call was abandoned because the record's context ended.
func (b *breaker) cancel() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}
