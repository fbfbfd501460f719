package httpd_test

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/dedupe/redisdedupe"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
	"github.com/mailpipe/mailpipe/pkg/redisconn/redistest"
)

// TestIntegrationSignedReplayAcrossReplicas runs two handlers (two ingress replicas) on one real
// Redis replay store ($MAILPIPE_TEST_REDIS_URL): a signed request recorded by one is answered
// as a duplicate by the other, as the pipeline wires it.
func TestIntegrationSignedReplayAcrossReplicas(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	store := redisdedupe.New(rdb, redisdedupe.WithPrefix(prefix))
	clk := newClock()
	acc := &fakeAccepter{res: okResult}
	var replicas []*httptest.ResponseRecorder
	s := signedRequest{id: "msg_cluster", ts: clk.Now(), rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}}
	for range 2 {
		h, err := httpd.New(testConfig(hmacConfig()), acc, slog.New(slog.DiscardHandler), httpd.WithClock(clk.Now), httpd.WithReplayStore(store))
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, s.build(t))
		replicas = append(replicas, rec)
	}
	if replicas[0].Code != 202 || strings.Contains(replicas[0].Body.String(), "duplicate") {
		t.Errorf("first replica: %d %s, want 202 recorded", replicas[0].Code, replicas[0].Body)
	}
	if replicas[1].Code != 202 || !strings.Contains(replicas[1].Body.String(), `"duplicate":true`) {
		t.Errorf("second replica: %d %s, want 202 duplicate", replicas[1].Code, replicas[1].Body)
	}
	if acc.callCount() != 1 {
		t.Errorf("Accept called %d times, want 1", acc.callCount())
	}
}
