package redisratelimit_test

import (
	"testing"

	"github.com/mailpipe/mailpipe/pkg/ratelimit"
	"github.com/mailpipe/mailpipe/pkg/ratelimit/ratelimittest"
	"github.com/mailpipe/mailpipe/pkg/ratelimit/redisratelimit"
	"github.com/mailpipe/mailpipe/pkg/redisconn/redistest"
)

func TestConformanceRealRedis(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T, l ratelimit.Limit) ratelimit.Limiter {
		client, prefix := redistest.Client(t)
		lim, err := redisratelimit.New(client, l, redisratelimit.WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		return lim
	})
}
