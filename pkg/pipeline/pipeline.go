// Package pipeline assembles mailpipe's services from their configuration: one function per
// service turns a config struct into the app.Actors the process runs. The service mains and
// `mailpipe dev` (package devstack) call the same functions with the same structs, so the
// embedded dev pipeline cannot drift from production.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/mailpipe/mailpipe/pkg/admin"
	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/blob"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/redisconn"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/telemetry"
)

// Common is the configuration every service reads (MAILPIPE_ prefix).
type Common struct {
	// Kafka is the broker connection (MAILPIPE_KAFKA_*).
	Kafka kafka.Config `env:"KAFKA"`
	// AdminAddr serves /healthz, /readyz and /metrics.
	AdminAddr string `env:"ADMIN_ADDR" default:":9090" usage:"admin HTTP listen address (/healthz, /readyz, /metrics)"`
	// AdminPprof serves the Go runtime profiles on the admin port (/debug/pprof/), for profiling
	// a running service; keep the admin port private when it is on.
	AdminPprof bool `env:"ADMIN_PPROF" usage:"serve Go runtime profiles on the admin port under /debug/pprof/ (keep the port private)"`
	// Redis holds dedupe keys and the thread index (MAILPIPE_REDIS_URL, …); unset disables
	// both (every effect downstream is idempotent anyway, so Redis only saves work).
	Redis redisconn.Config `env:"REDIS"`
	// Blob is the blob store for large raw messages and attachments (MAILPIPE_BLOB_URL,
	// MAILPIPE_BLOB_KEYS for encryption at rest); an empty URL disables it.
	Blob blob.Config `env:"BLOB"`
	// SchemaRegistryURL, when set, registers the schemas there and uses its ids.
	SchemaRegistryURL string `env:"SCHEMA_REGISTRY_URL" usage:"Confluent-compatible schema registry (optional)"`
}

// Deps are the shared components built from Common. Build them with Open; Close releases them.
type Deps struct {
	// Log is the service logger, wrapped with telemetry.LogHandler so that lines logged with a
	// traced context carry trace_id and span_id.
	Log   *slog.Logger
	Codec *serde.Codec
	Admin *admin.Server
	// Redis is nil when no RedisURL is configured.
	Redis redis.UniversalClient
	// Blobs is nil when no BlobURL is configured.
	Blobs blob.Store
	// Tracers records the spans of the service (telemetry.Setup: exported over OTLP when the
	// OTEL_EXPORTER_OTLP_* variables say so); Propagator carries their context in Kafka headers.
	Tracers    trace.TracerProvider
	Propagator propagation.TextMapPropagator

	kafka             *kgo.Client // readiness pings
	telemetryShutdown func(context.Context) error
}

// OpenOption configures Open.
type OpenOption interface{ apply(*openOptions) }

type openOptionFunc func(*openOptions)

func (f openOptionFunc) apply(o *openOptions) { f(o) }

type openOptions struct {
	service   string
	telemetry []telemetry.Option
}

// DefaultServiceName is the service.name of a process that gives none (`mailpipe dev`).
const DefaultServiceName = "mailpipe"

// WithServiceName sets the service.name of the process's spans and metrics (OTEL_SERVICE_NAME
// still overrides it). Default: DefaultServiceName.
func WithServiceName(name string) OpenOption {
	return openOptionFunc(func(o *openOptions) {
		if name != "" {
			o.service = name
		}
	})
}

// WithTelemetry passes options to telemetry.Setup: the environment to read (Service passes the
// process's), or an exporter or span recorder in tests.
func WithTelemetry(opts ...telemetry.Option) OpenOption {
	return openOptionFunc(func(o *openOptions) { o.telemetry = append(o.telemetry, opts...) })
}

// Open builds the shared components and registers the readiness checks of what they reach.
// Tracing is set up first (telemetry.Setup), so every component built here can be handed the
// providers; its shutdown is the last actor to stop (see Actors).
func Open(ctx context.Context, c Common, log *slog.Logger, opts ...OpenOption) (_ *Deps, err error) {
	o := openOptions{service: DefaultServiceName}
	for _, opt := range opts {
		opt.apply(&o)
	}
	providers, shutdown, err := telemetry.Setup(ctx, o.service, log, o.telemetry...)
	if err != nil {
		return nil, fmt.Errorf("setting up tracing: %w", err)
	}
	defer func() {
		if err != nil {
			_ = shutdown(ctx)
		}
	}()
	log = slog.New(telemetry.LogHandler(log.Handler()))
	d := &Deps{Log: log, Tracers: providers.TracerProvider, Propagator: providers.Propagator, telemetryShutdown: shutdown}
	getenv := func(string) string { return "" }
	if c.SchemaRegistryURL != "" {
		url := c.SchemaRegistryURL
		getenv = func(k string) string {
			if k == serde.EnvRegistryURL {
				return url
			}
			return ""
		}
	}
	if d.Codec, err = serde.NewFromEnv(ctx, getenv); err != nil {
		return nil, fmt.Errorf("building the codec: %w", err)
	}
	if d.Admin, err = admin.New(ctx, c.AdminAddr, log, admin.WithResource(providers.Resource), admin.WithPprof(c.AdminPprof)); err != nil {
		return nil, fmt.Errorf("building the admin server: %w", err)
	}
	kcl, err := kafka.NewClient(c.Kafka, log)
	if err != nil {
		return nil, fmt.Errorf("building the readiness kafka client: %w", err)
	}
	d.kafka = kcl
	d.Admin.Register("kafka", kcl.Ping)
	if c.Redis.URL != "" || len(c.Redis.Addrs) > 0 {
		// Commands are traced inside a message's trace only: readiness pings and other
		// background commands would otherwise each start a trace of their own.
		if d.Redis, err = redisconn.New(c.Redis, redisconn.WithTracerProvider(childSpansOnly(d.Tracers))); err != nil {
			return nil, fmt.Errorf("building the redis client: %w", err)
		}
		d.Admin.Register("redis", redisconn.Ping(d.Redis))
	}
	if c.Blob.URL != "" {
		if d.Blobs, err = c.Blob.Open(ctx); err != nil {
			return nil, fmt.Errorf("opening the blob store: %w", err)
		}
	}
	return d, nil
}

// httpActor serves h on addr until stopped, then shuts the server down gracefully.
func httpActor(ctx context.Context, name, addr string, h http.Handler, log *slog.Logger) (app.Actor, net.Addr, error) {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return app.Actor{}, nil, fmt.Errorf("listening on %s for %s: %w", addr, name, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	return app.Actor{
		Name: name,
		Run: func(context.Context) error {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serving %s: %w", name, err)
			}
			return nil
		},
		Stop: srv.Shutdown,
	}, l.Addr(), nil
}

// Actors returns the actors that hold the shared components: the admin server and the
// clients, released after every service actor stopped, and the tracer provider, flushed and
// shut down last of all.
func (d *Deps) Actors() []app.Actor {
	tracing := app.Hold("telemetry", d.telemetryShutdown)
	release := app.Hold("clients", func(context.Context) error {
		d.kafka.Close()
		var errs []error
		if c, ok := d.Blobs.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
		if d.Redis != nil {
			errs = append(errs, d.Redis.Close())
		}
		return errors.Join(errs...)
	})
	return []app.Actor{tracing, release, d.Admin.Actor()}
}
