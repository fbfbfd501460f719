package redisdedupe_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/dedupe/redisdedupe"
)

// The conformance suite runs against real Redis (redisdedupe_integration_test.go); this unit test
// pins what lands in Redis, on miniredis.
func TestKeysAndExpiry(t *testing.T) {
	for _, tt := range []struct {
		name    string
		opts    []redisdedupe.Option
		ttl     time.Duration
		wantKey string
	}{
		{"default prefix, seconds", nil, 90 * time.Second, redisdedupe.DefaultPrefix + "abc"},
		{"custom prefix, sub-second", []redisdedupe.Option{redisdedupe.WithPrefix("staging:d:")}, 1500 * time.Millisecond, "staging:d:abc"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mr := miniredis.RunT(t)
			client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			defer func() { _ = client.Close() }()
			s := redisdedupe.New(client, tt.opts...)

			first, err := s.MarkSeen(t.Context(), "abc", tt.ttl)
			if err != nil || !first {
				t.Fatalf("MarkSeen = %v, %v", first, err)
			}
			if !mr.Exists(tt.wantKey) {
				t.Fatalf("key %q not written; keys = %v", tt.wantKey, mr.Keys())
			}
			if got := mr.TTL(tt.wantKey); got != tt.ttl {
				t.Errorf("TTL = %v, want %v", got, tt.ttl)
			}
			mr.FastForward(tt.ttl)
			if first, err := s.MarkSeen(t.Context(), "abc", tt.ttl); err != nil || !first {
				t.Errorf("MarkSeen after expiry = %v, %v; want true", first, err)
			}
		})
	}
}

func TestRedisDownIsNotKnown(t *testing.T) {
	// given a store whose Redis is gone
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	defer func() { _ = client.Close() }()
	s := redisdedupe.New(client)
	mr.Close()
	// when a key is marked
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	first, err := s.MarkSeen(ctx, "abc", time.Minute)
	// then the answer is "not known": an error and never a duplicate verdict to act on
	if err == nil {
		t.Fatalf("MarkSeen = %v, nil; want an error", first)
	}
	if first {
		t.Error("first = true alongside an error")
	}
}
