package ingest_test

import (
	"testing"

	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/redisconn/redistest"
	"github.com/mailpipe/mailpipe/pkg/thread/redisthread"
)

// TestIntegrationThreadAccuracyRedis measures thread association accuracy with the real Redis
// thread index ($MAILPIPE_TEST_REDIS_URL) and a fake producer: the generated conversations of
// TestThreadAccuracy, ingested in arrival order. It asserts 100% for replies whose parent was
// seen (root key with intact ancestry; parent's key always) and logs every figure.
func TestIntegrationThreadAccuracyRedis(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	idx, err := redisthread.New(rdb, redisthread.WithPrefix(prefix+"thread:"), redisthread.WithTTL(ingest.DefaultThreadTTL))
	if err != nil {
		t.Fatal(err)
	}
	in := newIngester(t, ingest.Config{}, ingest.Options{Producer: &fakeProducer{}, ThreadIndex: idx})

	r := measureThreads(t, in, generateConversations(3, 400))

	r.log(t, "Redis thread index")
	checkTargets(t, r)
}
