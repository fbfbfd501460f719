// Package redisthread is the Redis-backed thread.Index: one string key per message id holding
// its thread key, with an expiry so the index does not grow without bound.
package redisthread

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/thread"
)

// Defaults for New.
const (
	DefaultPrefix = "mailpipe:thread:"
	// DefaultTTL covers the replies of a typical support or sales conversation; a reply arriving
	// later, with only In-Reply-To, falls back to its parent's id.
	DefaultTTL = 90 * 24 * time.Hour
)

// Index implements thread.Index on Redis. It is safe for concurrent use; the caller owns the
// client.
type Index struct {
	client redis.UniversalClient
	prefix string
	ttl    time.Duration
}

var _ thread.Index = (*Index)(nil)

// Option configures New.
type Option interface{ apply(*Index) }

type optionFunc func(*Index)

func (f optionFunc) apply(x *Index) { f(x) }

// WithPrefix sets the key prefix, default DefaultPrefix.
func WithPrefix(prefix string) Option { return optionFunc(func(x *Index) { x.prefix = prefix }) }

// WithTTL sets how long a mapping lives, default DefaultTTL; it must be positive.
func WithTTL(ttl time.Duration) Option { return optionFunc(func(x *Index) { x.ttl = ttl }) }

// New returns an index writing through client.
func New(client redis.UniversalClient, opts ...Option) (*Index, error) {
	x := &Index{client: client, prefix: DefaultPrefix, ttl: DefaultTTL}
	for _, o := range opts {
		o.apply(x)
	}
	if client == nil {
		return nil, errors.New("redisthread: client is required")
	}
	if x.ttl <= 0 {
		return nil, fmt.Errorf("redisthread: ttl must be positive, got %v", x.ttl)
	}
	return x, nil
}

// Lookup implements thread.Index.
func (x *Index) Lookup(ctx context.Context, msgID string) (string, bool, error) {
	key, err := x.client.Get(ctx, x.prefix+msgID).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading thread index: %w", err)
	}
	return key, true, nil
}

// Remember implements thread.Index. The first mapping for a message id wins (SET NX): a
// redelivered or replayed message cannot move an existing conversation to another key.
func (x *Index) Remember(ctx context.Context, msgID, threadKey string) error {
	if msgID == "" || threadKey == "" {
		return errors.New("redisthread: message id and thread key must not be empty")
	}
	if err := x.client.SetNX(ctx, x.prefix+msgID, threadKey, x.ttl).Err(); err != nil {
		return fmt.Errorf("writing thread index: %w", err)
	}
	return nil
}
