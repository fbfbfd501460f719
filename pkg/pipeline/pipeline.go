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

	"github.com/mailpipe/mailpipe/pkg/admin"
	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/blob"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/redisconn"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// Common is the configuration every service reads (MAILPIPE_ prefix).
type Common struct {
	// Kafka is the broker connection (MAILPIPE_KAFKA_*).
	Kafka kafka.Config `env:"KAFKA"`
	// AdminAddr serves /healthz, /readyz and /metrics.
	AdminAddr string `env:"ADMIN_ADDR" default:":9090" usage:"admin HTTP listen address (/healthz, /readyz, /metrics)"`
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
	Log   *slog.Logger
	Codec *serde.Codec
	Admin *admin.Server
	// Redis is nil when no RedisURL is configured.
	Redis redis.UniversalClient
	// Blobs is nil when no BlobURL is configured.
	Blobs blob.Store

	kafka *kgo.Client // readiness pings
}

// Open builds the shared components and registers the readiness checks of what they reach.
func Open(ctx context.Context, c Common, log *slog.Logger) (*Deps, error) {
	d := &Deps{Log: log}
	var err error
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
	if d.Admin, err = admin.New(ctx, c.AdminAddr, log); err != nil {
		return nil, fmt.Errorf("building the admin server: %w", err)
	}
	kcl, err := kafka.NewClient(c.Kafka, log)
	if err != nil {
		return nil, fmt.Errorf("building the readiness kafka client: %w", err)
	}
	d.kafka = kcl
	d.Admin.Register("kafka", kcl.Ping)
	if c.Redis.URL != "" || len(c.Redis.Addrs) > 0 {
		if d.Redis, err = redisconn.New(c.Redis); err != nil {
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
// clients, released after every service actor stopped.
func (d *Deps) Actors() []app.Actor {
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
	return []app.Actor{release, d.Admin.Actor()}
}
