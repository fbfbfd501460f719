package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/admin"
	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/console"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// DefaultConsoleAddr is where `mailpipe console` listens unless told otherwise: loopback, as
// the console is for operators only (docs/console.md).
const DefaultConsoleAddr = "127.0.0.1:8089"

// runConsole implements `mailpipe console`: the ops console (package console) on an admin
// server of its own, against the brokers of $MAILPIPE_KAFKA_*.
func runConsole(ctx context.Context, env app.Env) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	addr := fs.String("listen", DefaultConsoleAddr, "listen address of the console (with /healthz, /readyz, /metrics)")
	brokers := fs.String("brokers", "", "seed brokers (default $MAILPIPE_KAFKA_BROKERS)")
	dlqTopic := fs.String("dlq-topic", kafka.TopicDLQ, "dead-letter topic")
	auditTopic := fs.String("audit-topic", kafka.TopicDLQAudit, "topic of the replay audit records")
	capacity := fs.Int("capacity", console.DefaultCapacity, "messages the lookup index keeps")
	operatorHeader := fs.String("operator-header", console.DefaultOperatorHeader, "request header naming the operator of a replay (set by the access proxy)")
	if err := fs.Parse(env.Args); err != nil {
		return app.ConfigError(err)
	}
	if fs.NArg() > 0 {
		return app.ConfigError(fmt.Errorf("console: unexpected arguments %q", fs.Args()))
	}
	cfg, err := kafkaConfig(env, *brokers)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return app.ConfigError(err)
	}
	codec, err := serde.NewFromEnv(ctx, env.Getenv)
	if err != nil {
		return err
	}
	c, err := console.New(console.Config{
		NewClient:  func(opts ...kgo.Opt) (*kgo.Client, error) { return kafka.NewClient(cfg, env.Logger, opts...) },
		Decoder:    codec,
		DLQTopic:   *dlqTopic,
		AuditTopic: *auditTopic,
		Capacity:   *capacity, OperatorHeader: *operatorHeader, Log: env.Logger,
	})
	if err != nil {
		return err
	}
	srv, err := admin.New(ctx, *addr, env.Logger)
	if err != nil {
		return err
	}
	c.Mount(srv)
	fmt.Fprintf(env.Stdout, "mailpipe console on http://%s%s (brokers %v)\n", srv.Addr(), console.Path, cfg.Brokers)
	return app.Run(ctx, env.Logger, c.Actor(), srv.Actor())
}
