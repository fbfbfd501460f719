package hubspot

import (
	"context"
	"sync"
	"time"
)

// keyedMutex serializes work per key (an external id, a domain) within the process, so
// concurrent upserts of one message, or of two messages from one new company, do not both
// search, miss and create.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

// lock waits for key's lock or ctx; the returned func releases it.
func (k *keyedMutex) lock(ctx context.Context, key string) (func(), error) {
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

func (k *keyedMutex) release(key string, l *keyLock) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(k.m, key)
	}
}

// idCacheSize bounds each id cache; the oldest entries go first.
const idCacheSize = 16384

// idCache remembers object ids for a while: company ids by domain, email ids by external id,
// associated contact/company pairs. It bridges HubSpot's search-index lag (a record created a
// second ago is not found by search yet) and saves searches for repeat senders. A zero ttl
// turns it off. It is safe for concurrent use.
type idCache struct {
	ttl time.Duration
	now func() time.Time

	mu   sync.Mutex
	m    map[string]idEntry
	fifo []string // insertion order of the keys in m
}

type idEntry struct {
	id string
	at time.Time // zero: forgotten
}

func newIDCache(ttl time.Duration, now func() time.Time) *idCache {
	return &idCache{ttl: ttl, now: now, m: map[string]idEntry{}}
}

// get returns the id remembered for key, if it is younger than the ttl.
func (c *idCache) get(key string) (string, bool) {
	if c.ttl == 0 {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || e.at.IsZero() || c.now().Sub(e.at) > c.ttl {
		return "", false
	}
	return e.id, true
}

// put remembers id for key from now on.
func (c *idCache) put(key, id string) {
	if c.ttl == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok {
		c.fifo = append(c.fifo, key)
	}
	c.m[key] = idEntry{id: id, at: c.now()}
	for len(c.fifo) > idCacheSize {
		delete(c.m, c.fifo[0])
		c.fifo = c.fifo[1:]
	}
}

// forget drops key (its object turned out to be gone). The entry keeps its place in the
// eviction order, so forgetting and remembering again never grows the cache.
func (c *idCache) forget(key string) {
	if c.ttl == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; ok {
		c.m[key] = idEntry{}
	}
}
