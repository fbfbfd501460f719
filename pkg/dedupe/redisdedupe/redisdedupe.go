// Package redisdedupe is the Redis dedupe.Store: one key per idempotency key, written with
// SET NX and an expiry (EX, or PX for sub-second ttls), so the first writer wins atomically
// across every replica of a stage.
package redisdedupe

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/dedupe"
)

// DefaultPrefix namespaces the keys when WithPrefix is not given.
const DefaultPrefix = "mailpipe:dedupe:"

// Store implements dedupe.Store and dedupe.Forgetter on Redis. It is safe for concurrent use;
// the caller owns the client and closes it.
type Store struct {
	client redis.UniversalClient
	prefix string
}

// Option configures New.
type Option interface{ apply(*Store) }

type optionFunc func(*Store)

func (f optionFunc) apply(s *Store) { f(s) }

// WithPrefix sets the key prefix (default DefaultPrefix). Give each environment or tenant
// sharing one Redis its own prefix.
func WithPrefix(prefix string) Option { return optionFunc(func(s *Store) { s.prefix = prefix }) }

// New returns a store writing through client.
func New(client redis.UniversalClient, opts ...Option) *Store {
	s := &Store{client: client, prefix: DefaultPrefix}
	for _, o := range opts {
		o.apply(s)
	}
	return s
}

var (
	_ dedupe.Store     = (*Store)(nil)
	_ dedupe.Forgetter = (*Store)(nil)
	_ dedupe.Seer      = (*Store)(nil)
)

// MarkSeen implements dedupe.Store. The stored value is the first-seen time in Unix
// milliseconds, for debugging with redis-cli.
func (s *Store) MarkSeen(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := dedupe.CheckArgs(key, ttl); err != nil {
		return false, err
	}
	first, err := s.client.SetNX(ctx, s.prefix+key, strconv.FormatInt(time.Now().UnixMilli(), 10), ttl).Result()
	if err != nil {
		return false, fmt.Errorf("marking dedupe key: %w", err)
	}
	return first, nil
}

// Forget implements dedupe.Forgetter.
func (s *Store) Forget(ctx context.Context, key string) error {
	if err := s.client.Del(ctx, s.prefix+key).Err(); err != nil {
		return fmt.Errorf("forgetting dedupe key: %w", err)
	}
	return nil
}

// Seen implements dedupe.Seer with EXISTS; Redis expires keys itself.
func (s *Store) Seen(ctx context.Context, key string) (bool, error) {
	n, err := s.client.Exists(ctx, s.prefix+key).Result()
	if err != nil {
		return false, fmt.Errorf("reading dedupe key: %w", err)
	}
	return n == 1, nil
}
