package rediscache_test

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/enrich/rediscache"
	"github.com/mailpipe/mailpipe/pkg/redisconn/redistest"
)

func run(t *testing.T, client redis.UniversalClient, prefix string, expire func(time.Duration)) {
	ctx := t.Context()
	c := rediscache.New(client, rediscache.WithPrefix(prefix))
	if _, ok, err := c.Get(ctx, "crm_contact:ann@acme.com"); ok || err != nil {
		t.Fatalf("Get of a missing key = %v, %v", ok, err)
	}
	if err := c.Set(ctx, "crm_contact:ann@acme.com", []byte(`{"found":false}`), 250*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	b, ok, err := c.Get(ctx, "crm_contact:ann@acme.com")
	if !ok || err != nil || string(b) != `{"found":false}` {
		t.Fatalf("Get = %q, %v, %v", b, ok, err)
	}
	if ttl := client.PTTL(ctx, prefix+"crm_contact:ann@acme.com").Val(); ttl <= 100*time.Millisecond || ttl > 250*time.Millisecond {
		t.Errorf("PTTL = %s; want the sub-second precision of 250ms kept", ttl)
	}
	expire(400 * time.Millisecond)
	if _, ok, err := c.Get(ctx, "crm_contact:ann@acme.com"); ok || err != nil {
		t.Errorf("Get after the TTL = %v, %v", ok, err)
	}
	if err := c.Set(ctx, "k", nil, 0); err == nil {
		t.Error("Set with no TTL succeeded")
	}
}

func TestCache(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = client.Close() }()
	run(t, client, rediscache.DefaultPrefix, mr.FastForward)
	if len(mr.Keys()) != 0 {
		t.Errorf("keys left: %v", mr.Keys())
	}
}

func TestCacheRealRedis(t *testing.T) {
	client, prefix := redistest.Client(t)
	run(t, client, prefix, time.Sleep)
}
