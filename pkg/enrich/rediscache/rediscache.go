// Package rediscache is the Redis enrich.Cache: one string key per lookup, written with an
// expiry, so every enricher replica shares the answers and Redis drops them when their TTL ends.
package rediscache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/enrich"
)

// DefaultPrefix namespaces the keys when WithPrefix is not given: a lookup of the contact
// ann@acme.com lives at "mailpipe:enrich:crm_contact:ann@acme.com".
const DefaultPrefix = "mailpipe:enrich:"

// Cache implements enrich.Cache on Redis. It is safe for concurrent use; the caller owns the
// client and closes it.
type Cache struct {
	client redis.UniversalClient
	prefix string
}

var _ enrich.Cache = (*Cache)(nil)

// Option configures New.
type Option interface{ apply(*Cache) }

type optionFunc func(*Cache)

func (f optionFunc) apply(c *Cache) { f(c) }

// WithPrefix sets the key prefix (default DefaultPrefix). Change it to drop every cached answer
// at once (after a CRM migration, say), or give each environment sharing one Redis its own.
func WithPrefix(prefix string) Option { return optionFunc(func(c *Cache) { c.prefix = prefix }) }

// New returns a cache on client.
func New(client redis.UniversalClient, opts ...Option) *Cache {
	c := &Cache{client: client, prefix: DefaultPrefix}
	for _, o := range opts {
		o.apply(c)
	}
	return c
}

// Get implements enrich.Cache with GET.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := c.client.Get(ctx, c.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the enrichment cache: %w", err)
	}
	return b, true, nil
}

// Set implements enrich.Cache with SET and an expiry (go-redis sends PX for sub-second TTLs).
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("writing the enrichment cache: ttl must be positive, got %s", ttl)
	}
	if err := c.client.Set(ctx, c.prefix+key, value, ttl).Err(); err != nil {
		return fmt.Errorf("writing the enrichment cache: %w", err)
	}
	return nil
}
