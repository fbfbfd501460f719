package pipeline

import (
	"context"
	"fmt"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/dedupe/redisdedupe"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/thread/redisthread"
)

// IngressConfig configures the ingress service.
type IngressConfig struct {
	Common
	Ingest ingest.Config `env:"INGEST"`
	SMTP   smtpd.Config  `env:"SMTP"`
	HTTP   httpd.Config  `env:"HTTP"`
	// HTTPAddr serves POST /v1/messages; empty disables HTTP intake.
	HTTPAddr string `env:"HTTP_ADDR" default:":8080" usage:"HTTP intake listen address (POST /v1/messages); empty disables"`
}

// Ingress builds the ingress actors: the SMTP server, the HTTP intake, and the producer they
// share (closed last, after both front-ends stopped).
func Ingress(ctx context.Context, cfg IngressConfig, d *Deps) ([]app.Actor, error) {
	prod, err := kafka.NewProducer(cfg.Kafka, d.Log)
	if err != nil {
		return nil, fmt.Errorf("building the producer: %w", err)
	}
	opts := ingest.Options{Producer: prod, Codec: d.Codec, Logger: d.Log}
	if d.Blobs != nil {
		opts.Blobs = d.Blobs
	}
	if d.Redis != nil {
		idx, err := redisthread.New(d.Redis)
		if err != nil {
			prod.Close()
			return nil, fmt.Errorf("building the thread index: %w", err)
		}
		opts.ThreadIndex = idx
		opts.Dedupe = redisdedupe.New(d.Redis, redisdedupe.WithPrefix("mailpipe:ingress:"))
	}
	in, err := ingest.New(cfg.Ingest, opts)
	if err != nil {
		prod.Close()
		return nil, app.ConfigError(fmt.Errorf("ingest: %w", err))
	}
	smtpSrv, err := smtpd.New(cfg.SMTP, in, d.Log)
	if err != nil {
		prod.Close()
		return nil, app.ConfigError(fmt.Errorf("smtp: %w", err))
	}
	actors := []app.Actor{app.Hold("producer", func(ctx context.Context) error {
		defer prod.Close()
		return prod.Flush(ctx)
	}), smtpSrv.Actor()}
	if cfg.HTTPAddr != "" {
		h, err := httpd.New(cfg.HTTP, in, d.Log)
		if err != nil {
			prod.Close()
			return nil, app.ConfigError(fmt.Errorf("http: %w", err))
		}
		a, _, err := httpActor(ctx, "http-intake", cfg.HTTPAddr, h, d.Log)
		if err != nil {
			prod.Close()
			return nil, err
		}
		actors = append(actors, a)
	}
	return actors, nil
}
