package pipedrive

import (
	"context"
	"sync"
	"time"
)

// keyLocks serializes work per key (one message, one sender, one company) so that two
// concurrent upserts cannot both search, both miss and both create. Waiting honours ctx.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{}
	refs int
}

// lock blocks until key is free or ctx ends, and returns the unlock function.
func (k *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
		return func() {
			<-l.ch
			k.release(key, l)
		}, nil
	case <-ctx.Done():
		k.release(key, l)
		return nil, ctx.Err()
	}
}

func (k *keyLocks) release(key string, l *keyLock) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(k.m, key)
	}
}

// The memory of recent creations: Pipedrive's search index lags behind writes by seconds, so a
// person created a moment ago may not be found yet by the next message from the same sender.
const (
	recentTTL = 10 * time.Minute
	recentMax = 10000
)

// memo remembers the ids of persons and organizations this connector created recently. It is
// consulted only when a search finds nothing, so the search stays the source of truth.
type memo struct {
	mu  sync.Mutex
	ttl time.Duration
	max int
	now func() time.Time
	m   map[string]memoEntry
}

type memoEntry struct {
	id      int64
	expires time.Time
}

func newMemo(ttl time.Duration, maxEntries int, now func() time.Time) *memo {
	return &memo{ttl: ttl, max: maxEntries, now: now, m: map[string]memoEntry{}}
}

func (m *memo) get(key string) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[key]
	if !ok || !m.now().Before(e.expires) {
		return 0, false
	}
	return e.id, true
}

func (m *memo) put(key string, id int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if len(m.m) >= m.max {
		for k, e := range m.m {
			if !now.Before(e.expires) {
				delete(m.m, k)
			}
		}
		// Still full: forget arbitrary entries. The memory only bridges the index lag, so
		// losing an entry costs at most a duplicate within those seconds.
		for k := range m.m {
			if len(m.m) < m.max {
				break
			}
			delete(m.m, k)
		}
	}
	m.m[key] = memoEntry{id: id, expires: now.Add(m.ttl)}
}
