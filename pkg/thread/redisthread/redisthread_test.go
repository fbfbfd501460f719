package redisthread_test

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/redisconn/redistest"
	"github.com/mailpipe/mailpipe/pkg/thread"
	"github.com/mailpipe/mailpipe/pkg/thread/redisthread"
)

// contract checks the Index behaviour both backends must show.
func contract(t *testing.T, client redis.UniversalClient, prefix string) {
	x, err := redisthread.New(client, redisthread.WithPrefix(prefix), redisthread.WithTTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	steps := []struct {
		name      string
		remember  [2]string // msgID, threadKey; empty: no write
		lookup    string
		wantKey   string
		wantFound bool
	}{
		{name: "unknown", lookup: "p@x"},
		{name: "remembered", remember: [2]string{"p@x", "root@x"}, lookup: "p@x", wantKey: "root@x", wantFound: true},
		{name: "first mapping wins", remember: [2]string{"p@x", "elsewhere@x"}, lookup: "p@x", wantKey: "root@x", wantFound: true},
		{name: "ids are case-sensitive", lookup: "P@x"},
	}
	for _, s := range steps {
		if s.remember[0] != "" {
			if err := x.Remember(ctx, s.remember[0], s.remember[1]); err != nil {
				t.Fatalf("%s: Remember: %v", s.name, err)
			}
		}
		key, found, err := x.Lookup(ctx, s.lookup)
		if err != nil || key != s.wantKey || found != s.wantFound {
			t.Errorf("%s: Lookup(%q) = %q, %v, %v; want %q, %v, nil", s.name, s.lookup, key, found, err, s.wantKey, s.wantFound)
		}
	}
	if err := x.Remember(ctx, "", "k"); err == nil {
		t.Error("Remember with empty id succeeded")
	}

	// Through thread.Key: a conversation whose replies carry only In-Reply-To.
	for i, h := range []thread.Headers{
		{MessageID: "<c-root@x>"},
		{MessageID: "<c-r1@x>", InReplyTo: "<c-root@x>"},
		{MessageID: "<c-r2@x>", InReplyTo: "<c-r1@x>"},
	} {
		res, err := thread.Key(ctx, h, x)
		if err != nil || res.Key != "c-root@x" {
			t.Errorf("message %d: Key = %+v, %v; want c-root@x", i, res, err)
		}
	}
}

func TestMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = client.Close() }()
	contract(t, client, "t:")
	if ttl := mr.TTL("t:p@x"); ttl != time.Hour {
		t.Errorf("TTL = %v, want 1h", ttl)
	}
	mr.FastForward(time.Hour)
	x, _ := redisthread.New(client, redisthread.WithPrefix("t:"))
	if _, found, _ := x.Lookup(t.Context(), "p@x"); found {
		t.Error("mapping survived its ttl")
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := redisthread.New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer func() { _ = client.Close() }()
	if _, err := redisthread.New(client, redisthread.WithTTL(0)); err == nil {
		t.Error("New with zero ttl succeeded")
	}
}

func TestRealRedis(t *testing.T) {
	client, prefix := redistest.Client(t)
	contract(t, client, prefix)
}
