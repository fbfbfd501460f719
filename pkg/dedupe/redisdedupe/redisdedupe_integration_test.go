package redisdedupe_test

import (
	"testing"

	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/dedupe/dedupetest"
	"github.com/mailpipe/mailpipe/pkg/dedupe/redisdedupe"
	"github.com/mailpipe/mailpipe/pkg/redisconn/redistest"
)

func TestConformanceRealRedis(t *testing.T) {
	dedupetest.Run(t, func(t *testing.T) dedupe.Store {
		client, prefix := redistest.Client(t)
		return redisdedupe.New(client, redisdedupe.WithPrefix(prefix))
	})
}
