package redisconn_test

import (
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/redisconn/redistest"
)

func TestRealRedisClientIsolatesAndCleansUp(t *testing.T) {
	var key string
	t.Run("writes", func(t *testing.T) {
		c, prefix := redistest.Client(t)
		key = prefix + "k"
		if err := c.Set(t.Context(), key, "v", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		if got := c.Get(t.Context(), key).Val(); got != "v" {
			t.Fatalf("Get = %q, want v", got)
		}
		if _, other := redistest.Client(t); other == prefix {
			t.Fatalf("two clients share prefix %q", prefix)
		}
	})
	// The subtest's cleanup must have deleted its keys.
	c, _ := redistest.Client(t)
	if n := c.Exists(t.Context(), key).Val(); n != 0 {
		t.Fatalf("key %s survived the test cleanup", key)
	}
}
