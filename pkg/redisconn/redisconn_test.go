package redisconn_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mailpipe/mailpipe/pkg/redisconn"
)

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cfg     redisconn.Config
		wantErr []string
	}{
		{name: "url", cfg: redisconn.Config{URL: "redis://127.0.0.1:6379/2"}},
		{name: "tls url", cfg: redisconn.Config{URL: "rediss://user:pw@redis:6380/0"}},
		{name: "sentinel", cfg: redisconn.Config{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster", DB: 3}},
		{name: "cluster", cfg: redisconn.Config{Addrs: []string{"c1:6379", "c2:6379"}}},
		{name: "nothing", wantErr: []string{"url or addrs is required"}},
		{
			name:    "both",
			cfg:     redisconn.Config{URL: "redis://a:1", Addrs: []string{"b:1"}},
			wantErr: []string{"mutually exclusive"},
		},
		{name: "bad scheme", cfg: redisconn.Config{URL: "http://a:1"}, wantErr: []string{"parsing url"}},
		{
			name:    "password is redacted",
			cfg:     redisconn.Config{URL: "ftp://u:hunter2@a:1"},
			wantErr: []string{"parsing url"},
		},
		{name: "addr options with url", cfg: redisconn.Config{URL: "redis://a:1", DB: 2}, wantErr: []string{"apply only to addrs"}},
		{
			name:    "db with cluster",
			cfg:     redisconn.Config{Addrs: []string{"c1:6379", "c2:6379"}, DB: 1},
			wantErr: []string{"db must be 0 with Redis Cluster"},
		},
		{name: "negative db", cfg: redisconn.Config{Addrs: []string{"a:1"}, DB: -1}, wantErr: []string{"must not be negative"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate = nil, want error")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestNewPicksTopology(t *testing.T) {
	for _, tt := range []struct {
		name     string
		cfg      redisconn.Config
		check    func(t *testing.T, c redis.UniversalClient)
		isClustr bool
	}{
		{
			name: "url with password override",
			cfg:  redisconn.Config{URL: "redis://:fromurl@host:6379/4", Password: "fromsecret"},
			check: func(t *testing.T, c redis.UniversalClient) {
				o := c.(*redis.Client).Options()
				if o.Addr != "host:6379" || o.DB != 4 || o.Password != "fromsecret" {
					t.Errorf("options = addr %s db %d password %q", o.Addr, o.DB, o.Password)
				}
			},
		},
		{
			name: "single addr",
			cfg:  redisconn.Config{Addrs: []string{"host:6379"}, DB: 1},
			check: func(t *testing.T, c redis.UniversalClient) {
				if o := c.(*redis.Client).Options(); o.Addr != "host:6379" || o.DB != 1 {
					t.Errorf("options = addr %s db %d", o.Addr, o.DB)
				}
			},
		},
		{
			name:     "two addrs are a cluster",
			cfg:      redisconn.Config{Addrs: []string{"c1:6379", "c2:6379"}},
			isClustr: true,
		},
		{
			name:     "cluster flag with one seed",
			cfg:      redisconn.Config{Addrs: []string{"c1:6379"}, Cluster: true},
			isClustr: true,
		},
		{
			name: "sentinel",
			cfg:  redisconn.Config{Addrs: []string{"s1:26379"}, MasterName: "mymaster"},
			check: func(t *testing.T, c redis.UniversalClient) {
				if _, ok := c.(*redis.Client); !ok {
					t.Errorf("client is %T, want the failover *redis.Client", c)
				}
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := redisconn.New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			if _, ok := c.(*redis.ClusterClient); ok != tt.isClustr {
				t.Errorf("client is %T, cluster = %v", c, tt.isClustr)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	if _, err := redisconn.New(redisconn.Config{}); err == nil {
		t.Fatal("New with empty config succeeded")
	}
}

func TestPingAndTracing(t *testing.T) {
	// given a fake Redis and a client tracing into memory
	mr := miniredis.RunT(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	c, err := redisconn.New(redisconn.Config{URL: "redis://" + mr.Addr() + "/0"}, redisconn.WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	// when the readiness check runs and a missing key is read
	if err := redisconn.Ping(c)(t.Context()); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	if err := c.Get(t.Context(), "missing").Err(); err != redis.Nil { //nolint:errorlint // sentinel from go-redis
		t.Fatalf("Get = %v, want redis.Nil", err)
	}

	// then both commands have spans, and a miss is not an error span
	spans := exp.GetSpans()
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
		if s.Name == "redis get" && s.Status.Code != 0 {
			t.Errorf("redis get span status = %v, want unset", s.Status)
		}
	}
	if !strings.Contains(strings.Join(names, ","), "redis ping") || !strings.Contains(strings.Join(names, ","), "redis get") {
		t.Errorf("spans = %v, want redis ping and redis get", names)
	}

	// and the check fails once the server is gone
	mr.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond) // skip go-redis's retries
	defer cancel()
	if err := redisconn.Ping(c)(ctx); err == nil {
		t.Error("Ping after server stop = nil, want error")
	}
}
