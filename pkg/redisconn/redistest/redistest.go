// Package redistest gives tests a real Redis: the URL from MAILPIPE_TEST_REDIS_URL and a client
// whose keys live under a prefix unique to the test, so packages can share one server in
// parallel. Start the server with scripts/redis-up.sh.
//
// Under `go test -short` (make unit) the helpers skip the test; otherwise a missing variable or
// an unreachable server fails it: a missing service is a failure, never a silent skip.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/redisconn"
)

// EnvURL names the variable holding the test server's URL, e.g. redis://127.0.0.1:16379/0.
const EnvURL = "MAILPIPE_TEST_REDIS_URL"

// URL returns the test Redis URL, skipping under -short and failing when it is not set.
func URL(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs Redis (%s); skipped under -short", EnvURL)
	}
	u := getenv(EnvURL)
	if u == "" {
		t.Fatalf("%s is not set: start scripts/redis-up.sh and set MAILPIPE_TEST_REDIS_URL to the URL it prints", EnvURL)
	}
	return u
}

// Client returns a client for the test Redis and a key prefix unique to this test (ending in
// ":"). Use the prefix for every key; the keys under it are deleted and the client closed when
// the test ends. The server is pinged first, so an unreachable server fails here.
func Client(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	client, err := redisconn.New(redisconn.Config{URL: URL(t)})
	if err != nil {
		t.Fatalf("connecting to %s: %v", EnvURL, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		t.Fatalf("pinging Redis at %s (is scripts/redis-up.sh running?): %v", EnvURL, err)
	}
	prefix := Prefix(t)
	t.Cleanup(func() {
		// t.Context is already cancelled in Cleanup.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := DeletePrefix(ctx, client, prefix); err != nil {
			t.Errorf("deleting test keys under %q: %v", prefix, err)
		}
		_ = client.Close()
	})
	return client, prefix
}

// Prefix returns a fresh key prefix "test:<test name>:<random>:" safe to use in a SCAN MATCH
// pattern (glob characters in the test name are replaced).
func Prefix(t testing.TB) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '/':
			return r
		default:
			return '_'
		}
	}, t.Name())
	return "test:" + name + ":" + hex.EncodeToString(b[:]) + ":"
}

// DeletePrefix deletes every key starting with prefix, which must not contain glob characters.
func DeletePrefix(ctx context.Context, client redis.UniversalClient, prefix string) error {
	iter := client.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := client.Del(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return client.Del(ctx, batch...).Err()
	}
	return nil
}
