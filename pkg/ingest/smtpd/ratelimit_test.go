package smtpd_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
)

func TestConnectionRateLimit(t *testing.T) {
	// given two connections a minute per client IP
	h := start(t, smtpd.Config{RateConnections: ratelimit.PerMinute(2)}, &fakeProducer{},
		smtpd.WithRateLimiter(ratelimit.MemoryFactory()))
	first := dialRaw(t, h.addr)
	second := dialRaw(t, h.addr)

	// when a third connects
	over := dialRawNoGreeting(t, h.addr)
	// then it gets 421 4.7.0 instead of the greeting, with the wait, and is disconnected
	got := over.rest()
	if !regexp.MustCompile(`^421 4\.7\.0 mx\.test Too many connections from 127\.0\.0\.1, try again in 30s\r\n$`).MatchString(got) {
		t.Errorf("over the rate: %q, want 421 4.7.0 … try again in 30s and a close", got)
	}
	// and the admitted connections are unaffected
	for _, rc := range []*rawClient{first, second} {
		rc.expect("EHLO client.example.org", 250)
		rc.expect("QUIT", 221)
	}
}

func TestMessageRateLimit(t *testing.T) {
	// given two messages a minute per client IP
	h := start(t, smtpd.Config{RateMessages: ratelimit.PerMinute(2)}, &fakeProducer{},
		smtpd.WithRateLimiter(ratelimit.MemoryFactory()))
	rc := dialRaw(t, h.addr)
	rc.expect("EHLO client.example.org", 250)
	for range 2 {
		rc.expect("MAIL FROM:<ann@example.org>", 250)
		rc.expect("RCPT TO:<support@in.example.com>", 250)
		rc.expect("DATA", 354)
		rc.write(dotStuff(msg) + ".\r\n")
		if code, text := rc.reply(); code != 250 {
			t.Fatalf("message within the rate: %d %s", code, text)
		}
	}
	// when a third transaction starts
	code, text := rc.cmd("MAIL FROM:<ann@example.org>")
	// then it is deferred with 450 4.7.1, and the connection stays open
	if code != 450 || text != "4.7.1 Too much mail from 127.0.0.1, try again in 30s" {
		t.Errorf("MAIL over the rate: %d %s, want 450 4.7.1 Too much mail from 127.0.0.1, try again in 30s", code, text)
	}
	if code, _ := rc.cmd("RCPT TO:<support@in.example.com>"); code/100 != 5 {
		t.Errorf("RCPT after the deferred MAIL: %d, want 5xx (no transaction)", code)
	}
	rc.expect("NOOP", 250)
	rc.expect("QUIT", 221)
	if n := len(h.prod.produced()); n != 2 {
		t.Errorf("produced %d records, want 2", n)
	}
}

func TestRateLimitExempt(t *testing.T) {
	h := start(t, smtpd.Config{
		RateConnections: ratelimit.PerMinute(1), RateMessages: ratelimit.PerMinute(1), RateExempt: []string{"127.0.0.0/8"},
	}, &fakeProducer{}, smtpd.WithRateLimiter(ratelimit.MemoryFactory()))
	for range 3 {
		rc := dialRaw(t, h.addr)
		rc.expect("EHLO client.example.org", 250)
		for range 2 {
			rc.expect("MAIL FROM:<ann@example.org>", 250)
			rc.expect("RSET", 250)
		}
		rc.expect("QUIT", 221)
	}
}

// failingLimiter fails every call, as redisratelimit does while Redis is down; with block it
// first waits for the caller's deadline, as a call to an unreachable Redis does.
type failingLimiter struct {
	block bool
	mu    sync.Mutex
	calls int
}

func (l *failingLimiter) Allow(ctx context.Context, _ string) (bool, time.Duration, error) {
	l.mu.Lock()
	l.calls++
	l.mu.Unlock()
	if l.block {
		<-ctx.Done()
		return true, 0, ctx.Err()
	}
	return true, 0, errors.New("dial tcp 10.0.0.9:6379: connect: connection refused")
}

// syncBuffer is a bytes.Buffer safe for a logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRateLimiterFailsOpen(t *testing.T) {
	for _, tt := range []struct {
		name  string
		block bool
	}{
		{name: "limiter error"},
		{name: "limiter past its deadline", block: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// given a limiter backend that is down
			lim := &failingLimiter{block: tt.block}
			var logs syncBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			srv, err := smtpd.New(smtpd.Config{
				Hostname:        "mx.test",
				RateConnections: ratelimit.PerMinute(1), RateMessages: ratelimit.PerMinute(1),
			}, &multiRouteAccepter{}, log, smtpd.WithRateLimiter(func(string, ratelimit.Limit) (ratelimit.Limiter, error) {
				return lim, nil
			}))
			if err != nil {
				t.Fatal(err)
			}
			addr := serve(t, srv)
			// when clients connect and send, more than the limits would allow
			for range 2 {
				rc := dialRaw(t, addr)
				rc.expect("EHLO client.example.org", 250)
				for range 2 {
					rc.expect("MAIL FROM:<ann@example.org>", 250)
					rc.expect("RCPT TO:<x@a.example.com>", 250)
					rc.expect("DATA", 354)
					rc.write(dotStuff(msg) + ".\r\n")
					// then every message is accepted
					if code, text := rc.reply(); code != 250 {
						t.Fatalf("message with the limiter down: %d %s", code, text)
					}
				}
				rc.expect("QUIT", 221)
			}
			lim.mu.Lock()
			calls := lim.calls
			lim.mu.Unlock()
			if calls != 6 {
				t.Errorf("limiter asked %d times, want 6 (2 connections + 4 messages)", calls)
			}
			// and the failure is logged, once for the burst rather than once per call
			if n := strings.Count(logs.String(), "smtp rate limiter failed"); n != 1 {
				t.Errorf("logged the limiter failure %d times, want 1:\n%s", n, logs.String())
			}
		})
	}
}
