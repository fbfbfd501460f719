package redisratelimit_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/ratelimit"
	"github.com/mailpipe/mailpipe/pkg/ratelimit/ratelimittest"
	"github.com/mailpipe/mailpipe/pkg/ratelimit/redisratelimit"
)

func miniClient(t *testing.T) (*miniredis.Miniredis, redis.UniversalClient) {
	t.Helper()
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	return mr, client
}

// The suite runs against real Redis in redisratelimit_integration_test.go; on miniredis it runs
// in unit tests too, because `mailpipe dev` runs the script on miniredis.
func TestConformanceMiniredis(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T, l ratelimit.Limit) ratelimit.Limiter {
		_, client := miniClient(t)
		lim, err := redisratelimit.New(client, l)
		if err != nil {
			t.Fatal(err)
		}
		return lim
	})
}

func TestKeysAndExpiry(t *testing.T) {
	// given a factory with a prefix and two limits on one Redis
	mr, client := miniClient(t)
	f := redisratelimit.Factory(client, redisratelimit.WithPrefix("staging:rl:"))
	conns, err := f("smtp-connections", ratelimit.PerMinute(2))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := f("smtp-messages", ratelimit.PerMinute(1))
	if err != nil {
		t.Fatal(err)
	}
	// when each takes a token for the same IP
	for _, lim := range []ratelimit.Limiter{conns, msgs} {
		if ok, _, err := lim.Allow(t.Context(), "192.0.2.7"); err != nil || !ok {
			t.Fatalf("Allow = %v, %v", ok, err)
		}
	}
	// then each limit has its own key, expiring when its bucket is full again
	for key, want := range map[string]time.Duration{
		"staging:rl:smtp-connections:192.0.2.7": 30 * time.Second, // 1 of 2 tokens gone, 30s each
		"staging:rl:smtp-messages:192.0.2.7":    time.Minute,
	} {
		if !mr.Exists(key) {
			t.Fatalf("key %q not written; keys = %v", key, mr.Keys())
		}
		if got := mr.TTL(key); got <= want-time.Second || got > want {
			t.Errorf("TTL(%s) = %v, want about %v", key, got, want)
		}
		v, err := mr.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		// The value is a plain integer (µs since the epoch), readable with redis-cli.
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			t.Errorf("value %q is not an integer: %v", v, err)
		}
	}
	if ok, _, _ := msgs.Allow(t.Context(), "192.0.2.7"); ok {
		t.Error("second message within the minute allowed")
	}
	if ok, _, _ := conns.Allow(t.Context(), "192.0.2.7"); !ok {
		t.Error("second connection refused; the limits must not share a bucket")
	}
}

func TestRedisDownFailsOpen(t *testing.T) {
	// given a limiter whose Redis is gone
	mr, client := miniClient(t)
	lim, err := redisratelimit.New(client, ratelimit.PerMinute(1))
	if err != nil {
		t.Fatal(err)
	}
	mr.Close()
	// when a token is taken
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	ok, retry, err := lim.Allow(ctx, "192.0.2.1")
	// then the event is let through, with the error to log
	if err == nil {
		t.Fatal("Allow on a closed Redis returned no error")
	}
	if !ok || retry != 0 {
		t.Errorf("Allow = %v, %v with error %v; want true, 0 (fail open)", ok, retry, err)
	}
}

func TestNewValidates(t *testing.T) {
	_, client := miniClient(t)
	if _, err := redisratelimit.New(client, ratelimit.Limit{}); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("New(zero limit) error = %v, want ErrInvalid", err)
	}
	if _, err := redisratelimit.New(nil, ratelimit.PerSecond(1)); err == nil {
		t.Error("New(nil client) = nil error")
	}
	if _, err := redisratelimit.Factory(client)("", ratelimit.PerSecond(1)); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("factory with an empty name: error = %v, want ErrInvalid", err)
	}
}
