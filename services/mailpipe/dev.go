package main

import (
	"context"
	"flag"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/devstack"
)

// runDev implements `mailpipe dev`: the whole pipeline in one process on embedded Kafka and
// Redis, until interrupted.
func runDev(ctx context.Context, env app.Env) error {
	cfg := devstack.DefaultConfig()
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.StringVar(&cfg.Dir, "dir", cfg.Dir, "directory for blobs and the local CRM file")
	fs.StringVar(&cfg.KafkaAddr, "kafka", cfg.KafkaAddr, "embedded Kafka listen address")
	fs.StringVar(&cfg.RedisAddr, "redis", cfg.RedisAddr, "embedded Redis listen address")
	fs.StringVar(&cfg.SMTPAddr, "smtp", cfg.SMTPAddr, "SMTP listen address")
	fs.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "HTTP intake listen address")
	fs.StringVar(&cfg.AdminAddr, "admin", cfg.AdminAddr, "admin listen address (/readyz, /metrics, the ops console under /console/)")
	fs.StringVar(&cfg.APIKey, "api-key", cfg.APIKey, "API key for POST /v1/messages")
	fs.StringVar(&cfg.WebhookURL, "webhook-url", "", "also deliver to this signed webhook")
	fs.StringVar(&cfg.WebhookSecret, "webhook-secret", "", "whsec_… secret for --webhook-url")
	domains := fs.String("domains", "in.example.com,localhost", "domains accepted by ingress")
	if err := fs.Parse(env.Args); err != nil {
		return app.ConfigError(err)
	}
	cfg.Domains = splitList(*domains)
	return devstack.Run(ctx, cfg, env.Stdout, env.Logger)
}
