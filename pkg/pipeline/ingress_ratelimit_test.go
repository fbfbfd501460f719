package pipeline_test

import (
	"bufio"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
	"github.com/mailpipe/mailpipe/pkg/redisconn"
)

// TestIngressSMTPRateLimits checks the wiring of MAILPIPE_SMTP_RATE_*: with Redis the SMTP
// server counts in Redis under the ingress prefix; without Redis a configured limit is a
// configuration error rather than silently no limit. The limits themselves are tested in
// package smtpd.
func TestIngressSMTPRateLimits(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	log := slog.New(slog.DiscardHandler)
	build := func(t *testing.T, redisURL string) (*pipeline.Deps, []app.Actor, string, error) {
		t.Helper()
		common := pipeline.Common{Kafka: kafka.Config{Brokers: brokers}, AdminAddr: "127.0.0.1:0", Redis: redisconn.Config{URL: redisURL}}
		d, err := pipeline.Open(t.Context(), common, log)
		if err != nil {
			t.Fatal(err)
		}
		cfg := pipeline.IngressConfig{Common: common, Ingest: ingest.Config{Domains: []string{"in.example.com"}}}
		cfg.SMTP.Addr = rateTestAddr(t)
		cfg.SMTP.RateConnections = ratelimit.PerMinute(1)
		actors, err := pipeline.Ingress(t.Context(), cfg, d)
		return d, actors, cfg.SMTP.Addr, err
	}

	t.Run("without redis", func(t *testing.T) {
		d, _, _, err := build(t, "")
		stopAll(t, d.Actors())
		if !errors.Is(err, app.ErrConfig) || !strings.Contains(err.Error(), "MAILPIPE_REDIS_URL") {
			t.Fatalf("Ingress error = %v, want a config error naming MAILPIPE_REDIS_URL", err)
		}
	})
	t.Run("with redis", func(t *testing.T) {
		mr := miniredis.RunT(t)
		d, actors, addr, err := build(t, "redis://"+mr.Addr()+"/0")
		if err != nil {
			t.Fatal(err)
		}
		all := append(d.Actors(), actors...)
		for _, a := range all {
			if a.Run != nil {
				go func() { _ = a.Run(t.Context()) }()
			}
		}
		defer stopAll(t, all)
		greetings := make([]string, 0, 2)
		for range 2 {
			greetings = append(greetings, rateTestGreeting(t, addr))
		}
		if !strings.HasPrefix(greetings[0], "220 ") || !strings.HasPrefix(greetings[1], "421 4.7.0 ") {
			t.Errorf("greetings = %q, want 220 then 421 4.7.0", greetings)
		}
		if key := "mailpipe:ingress:ratelimit:smtp-connections:127.0.0.1"; !mr.Exists(key) {
			t.Errorf("no bucket %s in Redis; keys = %v", key, mr.Keys())
		}
	})
}

// rateTestGreeting connects to addr (retrying until the listener is up) and returns the first line.
func rateTestGreeting(t *testing.T, addr string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(t.Context(), "tcp", addr)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			_ = c.Close()
			if err != nil {
				t.Fatalf("reading the greeting: %v", err)
			}
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp listener not up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rateTestAddr(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}
