// Package redisratelimit is the Redis ratelimit.Limiter: one key per bucket, updated by one Lua
// script per decision, so every replica of a service draws from the same bucket and concurrent
// callers never take more tokens than it holds.
//
// The bucket is kept as GCRA's "theoretical arrival time" (one integer, microseconds since the
// epoch, at which the bucket will be full again); that is a token bucket in a single value, with
// no separate refill timestamp to keep consistent. The script reads the clock with Redis TIME, so
// replicas with skewed clocks still agree, and it sets the key to expire when the bucket is full
// again, so idle keys cost no memory. Only single-key commands are used: it works on a single
// node, Sentinel and Cluster alike (redis.UniversalClient), and on miniredis (mailpipe dev).
package redisratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/ratelimit"
)

// DefaultPrefix namespaces the keys when WithPrefix is not given.
const DefaultPrefix = "mailpipe:ratelimit:"

// allowScript takes one token from the bucket KEYS[1]. ARGV[1] is the time one token takes to
// come back, ARGV[2] the time a whole bucket takes (interval * size), both in microseconds. It
// returns {1, 0} when a token was taken and {0, µs until the next one} when none was left.
// Numbers stay below 2^53, so Lua's doubles hold them exactly; '%.0f' writes them without an
// exponent. Redis 5+ replicates script effects, which is what allows TIME before a write.
var allowScript = redis.NewScript(`
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local nxt = tat + interval
local allow_at = nxt - window
if now < allow_at then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000))
return {1, 0}
`)

// Limiter implements ratelimit.Limiter on Redis. It is safe for concurrent use; the caller owns
// the client and closes it.
type Limiter struct {
	client   redis.UniversalClient
	prefix   string
	limit    ratelimit.Limit
	interval int64 // µs
	window   int64 // µs
}

var _ ratelimit.Limiter = (*Limiter)(nil)

// Option configures New and Factory.
type Option interface{ apply(*Limiter) }

type optionFunc func(*Limiter)

func (f optionFunc) apply(l *Limiter) { f(l) }

// WithPrefix sets the key prefix (default DefaultPrefix); a bucket's key is prefix + key. Give
// each limit on one Redis its own prefix (Factory does that with the limit's name).
func WithPrefix(prefix string) Option { return optionFunc(func(l *Limiter) { l.prefix = prefix }) }

// New returns a limiter for l, which must be enabled and valid, drawing from buckets in client.
func New(client redis.UniversalClient, l ratelimit.Limit, opts ...Option) (*Limiter, error) {
	if client == nil {
		return nil, errors.New("redis client is required")
	}
	if err := ratelimit.ValidateEnabled(l); err != nil {
		return nil, err
	}
	lim := &Limiter{
		client:   client,
		prefix:   DefaultPrefix,
		limit:    l,
		interval: l.Interval().Microseconds(),
	}
	lim.window = lim.interval * int64(l.Size())
	for _, o := range opts {
		o.apply(lim)
	}
	return lim, nil
}

// Factory returns a ratelimit.Factory of Redis limiters on client. Each limit's keys live under
// the prefix (DefaultPrefix unless WithPrefix is given) followed by its name and ":".
func Factory(client redis.UniversalClient, opts ...Option) ratelimit.Factory {
	return func(name string, l ratelimit.Limit) (ratelimit.Limiter, error) {
		if name == "" {
			return nil, fmt.Errorf("%w: limiter name is empty", ratelimit.ErrInvalid)
		}
		lim, err := New(client, l, opts...)
		if err != nil {
			return nil, err
		}
		lim.prefix += name + ":"
		return lim, nil
	}
}

// Limit returns the limit the limiter enforces.
func (l *Limiter) Limit() ratelimit.Limit { return l.limit }

// Allow implements ratelimit.Limiter with one script call (EVALSHA, EVAL when the script is not
// cached yet). Any Redis error is returned with ok true: the caller lets the event through.
func (l *Limiter) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	if err := ratelimit.CheckKey(key); err != nil {
		return true, 0, err
	}
	res, err := allowScript.Run(ctx, l.client, []string{l.prefix + key}, l.interval, l.window).Int64Slice()
	if err != nil {
		return true, 0, fmt.Errorf("taking a rate limit token: %w", err)
	}
	if len(res) != 2 {
		return true, 0, fmt.Errorf("taking a rate limit token: script returned %d values, want 2", len(res))
	}
	if res[0] == 1 {
		return true, 0, nil
	}
	return false, time.Duration(res[1]) * time.Microsecond, nil
}
