package dedupe

import (
	"context"
	"sync"
	"time"
)

// Memory is an in-process Store and Forgetter. Expired keys are dropped lazily and by a sweep
// whenever the map has doubled since the last one, so memory stays proportional to the live keys.
// It is safe for concurrent use. The zero value is not usable; call NewMemory.
type Memory struct {
	now func() time.Time

	mu        sync.Mutex
	expires   map[string]time.Time
	nextSweep int
}

// MemoryOption configures NewMemory.
type MemoryOption interface{ apply(*Memory) }

type memoryOptionFunc func(*Memory)

func (f memoryOptionFunc) apply(m *Memory) { f(m) }

// WithClock replaces time.Now, for tests that move time instead of sleeping.
func WithClock(now func() time.Time) MemoryOption {
	return memoryOptionFunc(func(m *Memory) { m.now = now })
}

// NewMemory returns an empty in-memory store.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{now: time.Now, expires: make(map[string]time.Time), nextSweep: 1024}
	for _, o := range opts {
		o.apply(m)
	}
	return m
}

// MarkSeen implements Store.
func (m *Memory) MarkSeen(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := CheckArgs(key, ttl); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if exp, ok := m.expires[key]; ok && now.Before(exp) {
		return false, nil
	}
	m.expires[key] = now.Add(ttl)
	if len(m.expires) >= m.nextSweep {
		for k, exp := range m.expires {
			if !now.Before(exp) {
				delete(m.expires, k)
			}
		}
		m.nextSweep = max(1024, 2*len(m.expires))
	}
	return true, nil
}

// Forget implements Forgetter.
func (m *Memory) Forget(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.expires, key)
	return nil
}

// Seen implements Seer.
func (m *Memory) Seen(ctx context.Context, key string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, ok := m.expires[key]
	return ok && now.Before(exp), nil
}

// Len returns the number of keys held, live or not yet swept; for tests and metrics.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.expires)
}
