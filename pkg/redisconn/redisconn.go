// Package redisconn builds the go-redis client every mailpipe component shares (dedupe keys,
// thread index, enrichment cache, rate limits) from one Config, so a deployment can move from a
// single node to Sentinel or Cluster by configuration alone. It returns redis.UniversalClient;
// callers should use only commands that work on all three (single-key commands, or multi-key
// commands within one hash slot).
package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.opentelemetry.io/otel/trace"
)

// Config selects and authenticates the Redis deployment. Embed it in a service config with
// `env:"REDIS"` to read MAILPIPE_REDIS_URL and so on. Set exactly one of URL and Addrs.
type Config struct {
	// URL of a single node: redis://[user:password@]host:port/db, rediss:// for TLS, or
	// unix:///path/to.sock (see redis.ParseURL for query options such as dial_timeout).
	URL string `env:"URL" usage:"redis://, rediss:// or unix:// URL of a single Redis node (excludes ADDRS)"`
	// Addrs are host:port seeds. With MasterName they are Sentinel addresses; with two or more
	// entries, or Cluster set, they are Redis Cluster seeds; otherwise one node.
	Addrs []string `env:"ADDRS" usage:"host:port list for Sentinel (with MASTER_NAME) or Cluster (excludes URL)"`
	// MasterName is the Sentinel master set name.
	MasterName string `env:"MASTER_NAME" usage:"Sentinel master name"`
	// Cluster forces Cluster mode even with a single seed address.
	Cluster bool `env:"CLUSTER" usage:"use Redis Cluster even with one seed address"`
	// Username and Password authenticate with ADDRS, and override the URL's user info when set,
	// so the password can come from a secret while the URL sits in a ConfigMap.
	Username string `env:"USERNAME" usage:"ACL user name"`
	Password string `env:"PASSWORD" usage:"password (overrides the URL's)"`
	// DB selects the database with ADDRS (single node or Sentinel only; Cluster has only 0).
	DB int `env:"DB" usage:"database number with ADDRS (not with Cluster)"`
	// TLS enables TLS with ADDRS; a rediss:// URL enables it for URL.
	TLS bool `env:"TLS" usage:"use TLS with ADDRS"`
}

// Validate reports every problem with c, joined.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.URL == "" && len(c.Addrs) == 0:
		errs = append(errs, errors.New("url or addrs is required"))
	case c.URL != "" && len(c.Addrs) > 0:
		errs = append(errs, errors.New("url and addrs are mutually exclusive"))
	case c.URL != "":
		if _, err := redis.ParseURL(c.URL); err != nil {
			errs = append(errs, fmt.Errorf("parsing url %q: %w", redactURL(c.URL), err))
		}
		if c.MasterName != "" || c.Cluster || c.DB != 0 || c.TLS {
			errs = append(errs, errors.New("master_name, cluster, db and tls apply only to addrs; put db and the scheme in the url"))
		}
	}
	if c.DB < 0 {
		errs = append(errs, fmt.Errorf("db must not be negative, got %d", c.DB))
	}
	if c.DB != 0 && c.MasterName == "" && (c.Cluster || len(c.Addrs) > 1) {
		errs = append(errs, errors.New("db must be 0 with Redis Cluster"))
	}
	return errors.Join(errs...)
}

// Option configures New.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	tracerProvider trace.TracerProvider
}

// WithTracerProvider records one client span per command (and per pipeline) with tp.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(o *options) { o.tracerProvider = tp })
}

// New returns a client for cfg after validating it. It does not connect: go-redis dials lazily,
// so a Redis outage at startup shows up in Ping (the readiness check), not as a crash loop. The
// caller owns the client and must Close it.
func New(cfg Config, opts ...Option) (redis.UniversalClient, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	var client redis.UniversalClient
	if cfg.URL != "" {
		simple, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("parsing redis url %q: %w", redactURL(cfg.URL), err)
		}
		if cfg.Username != "" {
			simple.Username = cfg.Username
		}
		if cfg.Password != "" {
			simple.Password = cfg.Password
		}
		// Maintenance notifications are a Redis Enterprise/Cloud feature; probing for them logs
		// through go-redis's global logger on every other server.
		simple.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
		client = redis.NewClient(simple)
	} else {
		uo := &redis.UniversalOptions{
			Addrs:                    cfg.Addrs,
			MasterName:               cfg.MasterName,
			IsClusterMode:            cfg.Cluster,
			Username:                 cfg.Username,
			Password:                 cfg.Password,
			DB:                       cfg.DB,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		}
		if cfg.TLS {
			uo.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		client = redis.NewUniversalClient(uo)
	}
	if o.tracerProvider != nil {
		client.AddHook(tracingHook{tracer: o.tracerProvider.Tracer("github.com/mailpipe/mailpipe/pkg/redisconn")})
	}
	return client, nil
}

// Ping returns a readiness check (admin.Check) that pings the client.
func Ping(client redis.UniversalClient) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if err := client.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("pinging redis: %w", err)
		}
		return nil
	}
}

// redactURL hides the password of a URL for error messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable url>"
	}
	return u.Redacted()
}
