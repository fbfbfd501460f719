package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Memory is an in-process Limiter: one bucket per key, held in a map. It limits one process
// only, so replicas behind a load balancer each allow the full rate; use redisratelimit to share
// buckets. It is safe for concurrent use.
//
// Buckets are kept as the GCRA "theoretical arrival time" (the time at which the bucket will be
// full again), the same arithmetic the Redis script does, so both behave alike. A bucket that
// is full again is the same as no bucket, so such entries are dropped by a sweep whenever the
// map has doubled since the last one, and memory stays proportional to the keys active within
// one Period.
type Memory struct {
	limit    Limit
	now      func() time.Time
	interval time.Duration
	window   time.Duration // interval * size: how far ahead of now a full bucket's tat may be

	mu        sync.Mutex
	tat       map[string]time.Time
	nextSweep int
}

// MemoryOption configures NewMemory and MemoryFactory.
type MemoryOption interface{ apply(*Memory) }

type memoryOptionFunc func(*Memory)

func (f memoryOptionFunc) apply(m *Memory) { f(m) }

// WithClock replaces time.Now, for tests that move time instead of sleeping.
func WithClock(now func() time.Time) MemoryOption {
	return memoryOptionFunc(func(m *Memory) { m.now = now })
}

// NewMemory returns an in-memory limiter for l, which must be enabled and valid.
func NewMemory(l Limit, opts ...MemoryOption) (*Memory, error) {
	if err := ValidateEnabled(l); err != nil {
		return nil, err
	}
	m := &Memory{
		limit:     l,
		now:       time.Now,
		interval:  l.Interval(),
		window:    l.Interval() * time.Duration(l.Size()),
		tat:       make(map[string]time.Time),
		nextSweep: 1024,
	}
	for _, o := range opts {
		o.apply(m)
	}
	return m, nil
}

// MemoryFactory returns a Factory of in-memory limiters (each with its own buckets, so the name
// only has to be non-empty).
func MemoryFactory(opts ...MemoryOption) Factory {
	return func(name string, l Limit) (Limiter, error) {
		if name == "" {
			return nil, fmt.Errorf("%w: limiter name is empty", ErrInvalid)
		}
		return NewMemory(l, opts...)
	}
}

// Limit returns the limit the limiter enforces.
func (m *Memory) Limit() Limit { return m.limit }

// Allow implements Limiter. It fails (open) only for an empty key or a done ctx.
func (m *Memory) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	if err := CheckKey(key); err != nil {
		return true, 0, err
	}
	if err := ctx.Err(); err != nil {
		return true, 0, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	tat, ok := m.tat[key]
	if !ok || tat.Before(now) {
		tat = now
	}
	next := tat.Add(m.interval)
	// The event fits when the bucket, after taking it, is not more than window ahead of now.
	if allowAt := next.Add(-m.window); now.Before(allowAt) {
		return false, allowAt.Sub(now), nil
	}
	m.tat[key] = next
	if len(m.tat) >= m.nextSweep {
		for k, t := range m.tat {
			if !t.After(now) {
				delete(m.tat, k)
			}
		}
		m.nextSweep = max(1024, 2*len(m.tat))
	}
	return true, 0, nil
}

// Len returns the number of buckets held, full or not yet swept; for tests and metrics.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tat)
}
