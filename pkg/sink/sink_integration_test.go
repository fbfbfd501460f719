package sink_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/dedupe/redisdedupe"
	"github.com/mailpipe/mailpipe/pkg/redisconn/redistest"
	"github.com/mailpipe/mailpipe/pkg/sink"
)

// A message handled twice against a real Redis reaches the receiver as one object; with a store
// that can read, the second handling does not even call the connector.
func TestHandledTwiceIsDeliveredOnceRealRedis(t *testing.T) {
	for _, tt := range []struct {
		name         string
		store        func(client redis.UniversalClient, prefix string) dedupe.Store
		wantRequests int
		wantSecond   string
	}{
		{
			"redisdedupe without its Seen (MarkSeen only)",
			func(c redis.UniversalClient, p string) dedupe.Store {
				return markOnly{redisdedupe.New(c, redisdedupe.WithPrefix(p))}
			},
			2, "local=unchanged,webhook=created",
		},
		{
			"redisdedupe (Seen via EXISTS)",
			func(c redis.UniversalClient, p string) dedupe.Store {
				return redisdedupe.New(c, redisdedupe.WithPrefix(p))
			},
			1, "local=deduped,webhook=deduped",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, prefix := redistest.Client(t)
			e := newEnv(t)
			s, err := sink.New(e.codec, toConnectors(e), tt.store(client, prefix), discard(),
				sink.WithLakeSalt(salt), sink.WithDedupeTTL(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			msg := crmtest.Message("redis-twice")

			first := e.handle(t, s, msg)

			// The delivery is recorded in Redis only after the connector confirmed it.
			for _, target := range []string{"local", "webhook"} {
				key := prefix + sink.DedupeKey(target, msg.Message.ExternalID)
				ttl, err := client.TTL(t.Context(), key).Result()
				if err != nil || ttl <= 0 || ttl > time.Minute {
					t.Errorf("TTL(%s) = %v, %v; want a live key with the configured ttl", key, ttl, err)
				}
			}

			second := e.handle(t, s, msg)

			if got := outcomeNames(first.outcomes); got != "local=created,webhook=created" {
				t.Errorf("first outcomes = %s", got)
			}
			if got := outcomeNames(second.outcomes); got != tt.wantSecond {
				t.Errorf("second outcomes = %s, want %s", got, tt.wantSecond)
			}
			if got := e.srv.Requests(); got != tt.wantRequests {
				t.Errorf("webhook requests = %d, want %d", got, tt.wantRequests)
			}
			if e.srv.Objects(msg.Message.ExternalID) != 1 || e.local.Count() != 1 {
				t.Errorf("effects: webhook objects %d, local entries %d; want 1 and 1",
					e.srv.Objects(msg.Message.ExternalID), e.local.Count())
			}
		})
	}
}

func toConnectors(e *env) []crm.Connector { return []crm.Connector{e.local, e.hook} }
