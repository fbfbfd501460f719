package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/dedupe/redisdedupe"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/ratelimit/redisratelimit"
	"github.com/mailpipe/mailpipe/pkg/route/kafkaroute"
	"github.com/mailpipe/mailpipe/pkg/route/routeadmin"
	"github.com/mailpipe/mailpipe/pkg/route/routeingest"
	"github.com/mailpipe/mailpipe/pkg/thread/redisthread"
)

// IngressConfig configures the ingress service.
type IngressConfig struct {
	Common
	Ingest ingest.Config `env:"INGEST"`
	SMTP   smtpd.Config  `env:"SMTP"`
	HTTP   httpd.Config  `env:"HTTP"`
	// Routes: with MAILPIPE_ROUTES_ENABLED, recipients resolve against the route table on
	// mail.routes.v1 (read to its end before intake starts, then followed live) instead of the
	// MAILPIPE_INGEST_DOMAINS list; the two are exclusive.
	Routes kafkaroute.Config `env:"ROUTES"`
	// HTTPAddr serves POST /v1/messages; empty disables HTTP intake.
	HTTPAddr string `env:"HTTP_ADDR" default:":8080" usage:"HTTP intake listen address (POST /v1/messages); empty disables"`
}

// Ingress builds the ingress actors: the SMTP server, the HTTP intake, the producer they share
// (closed after both front-ends stopped) and, with routes enabled, the route follower (stopped
// last). With routes enabled it reads the route table before it returns, so intake never starts
// on a partial table.
func Ingress(ctx context.Context, cfg IngressConfig, d *Deps) ([]app.Actor, error) {
	prod, err := kafka.NewProducer(cfg.Kafka, d.Log)
	if err != nil {
		return nil, fmt.Errorf("building the producer: %w", err)
	}
	opts := ingest.Options{Producer: prod, Codec: d.Codec, Logger: d.Log, TracerProvider: d.Tracers, Propagator: d.Propagator}
	var routes *kafkaroute.Follower
	cleanup := func() {
		prod.Close()
		if routes != nil {
			_ = routes.Close(ctx) // Run never started: this only closes its client
		}
	}
	if cfg.Routes.Enabled {
		if len(cfg.Ingest.Domains) > 0 {
			prod.Close()
			return nil, app.ConfigError(errors.New("routes: MAILPIPE_ROUTES_ENABLED and MAILPIPE_INGEST_DOMAINS are exclusive; with routes, add a *@domain route for each domain instead"))
		}
		if routes, err = kafkaroute.Open(ctx, cfg.Routes, cfg.Kafka, d.Codec, d.Log); err != nil {
			prod.Close()
			return nil, err
		}
		opts.Router = routeingest.New(routes.Table())
		d.Admin.Register("routes", routes.Check)
		// The route admin API (/v1/routes) rides on the admin port, which is operator-only:
		// it has no authentication of its own.
		store, err := kafkaroute.NewStore(kafkaroute.StoreOptions{Producer: prod, Codec: d.Codec, Follower: routes, Logger: d.Log})
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("building the route store: %w", err)
		}
		api, err := routeadmin.New(store, d.Log)
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("building the route admin API: %w", err)
		}
		api.Register(d.Admin)
	}
	if d.Blobs != nil {
		opts.Blobs = d.Blobs
	}
	if d.Redis != nil {
		var topts []redisthread.Option
		if cfg.Ingest.ThreadTTL > 0 {
			topts = append(topts, redisthread.WithTTL(cfg.Ingest.ThreadTTL))
		}
		idx, err := redisthread.New(d.Redis, topts...)
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("building the thread index: %w", err)
		}
		opts.ThreadIndex = idx
		opts.Dedupe = redisdedupe.New(d.Redis, redisdedupe.WithPrefix("mailpipe:ingress:"))
	}
	in, err := ingest.New(cfg.Ingest, opts)
	if err != nil {
		cleanup()
		return nil, app.ConfigError(fmt.Errorf("ingest: %w", err))
	}
	smtpOpts := []smtpd.Option{smtpd.WithMeterProvider(d.Admin.MeterProvider())}
	if d.Redis != nil {
		// The SMTP per-client rate limits (off unless configured) share buckets across replicas.
		smtpOpts = append(smtpOpts, smtpd.WithRateLimiter(redisratelimit.Factory(d.Redis, redisratelimit.WithPrefix("mailpipe:ingress:ratelimit:"))))
	}
	smtpSrv, err := smtpd.New(cfg.SMTP, in, d.Log, smtpOpts...)
	if err != nil {
		cleanup()
		return nil, app.ConfigError(fmt.Errorf("smtp: %w", err))
	}
	var actors []app.Actor
	if routes != nil {
		actors = append(actors, routes.Actor())
	}
	actors = append(actors, app.Hold("producer", func(ctx context.Context) error {
		defer prod.Close()
		return prod.Flush(ctx)
	}), smtpSrv.Actor())
	if cfg.HTTPAddr != "" {
		var httpOpts []httpd.Option
		if d.Redis != nil {
			// Signed requests' replay ids are shared by every replica.
			httpOpts = append(httpOpts, httpd.WithReplayStore(redisdedupe.New(d.Redis, redisdedupe.WithPrefix("mailpipe:ingress:"))))
		}
		h, err := httpd.New(cfg.HTTP, in, d.Log, httpOpts...)
		if err != nil {
			cleanup()
			return nil, app.ConfigError(fmt.Errorf("http: %w", err))
		}
		a, _, err := httpActor(ctx, "http-intake", cfg.HTTPAddr, h, d.Log)
		if err != nil {
			cleanup()
			return nil, err
		}
		actors = append(actors, a)
	}
	return actors, nil
}
