package envconf_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/envconf"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

type kafkaConfig struct {
	Brokers  []string      `env:"BROKERS" default:"127.0.0.1:9092" usage:"seed brokers, comma-separated"`
	ClientID string        `env:"CLIENT_ID" default:"mailpipe"`
	Timeout  time.Duration `env:"TIMEOUT" default:"10s"`
}

func (k kafkaConfig) Validate() error {
	var errs []error
	if len(k.Brokers) == 0 {
		errs = append(errs, errors.New("brokers is required"))
	}
	if k.Timeout <= 0 {
		errs = append(errs, errors.New("timeout must be positive"))
	}
	return errors.Join(errs...)
}

type redisConfig struct {
	URL string `env:"URL" usage:"redis:// URL"`
}

type testConfig struct {
	AdminAddr string      `env:"ADMIN_ADDR" default:":9090"`
	Workers   int         `env:"WORKERS" default:"4"`
	Debug     bool        `env:"DEBUG"`
	MaxBytes  uint64      `env:"MAX_BYTES" default:"26214400"`
	SpamRatio float64     `env:"SPAM_RATIO" default:"0.5"`
	LogLevel  slog.Level  `env:"LOG_LEVEL" default:"info"`
	Kafka     kafkaConfig `env:"KAFKA"`
	Redis     redisConfig `env:"REDIS"`
	Internal  string      // no tag: never loaded
}

func (c testConfig) Validate() error {
	var errs []error
	if c.Workers < 1 {
		errs = append(errs, errors.New("workers must be at least 1"))
	}
	errs = append(errs, envconf.Prefix("kafka", c.Kafka.Validate()))
	return errors.Join(errs...)
}

func envOf(m map[string]string) app.Env {
	return app.Env{Getenv: func(k string) string { return m[k] }}
}

// readEnvFile parses KEY=VALUE lines, skipping blanks and # comments.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		m[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLoadComplete(t *testing.T) {
	env := readEnvFile(t, filepath.Join("testdata", "complete.env"))
	cfg, err := envconf.Load[testConfig](envOf(env), "MAILPIPE")
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "complete.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("config differs from %s (run with -update and review the diff)\ngot:\n%s", golden, got)
	}

	// complete.env must name every variable, so the golden file covers the whole struct.
	vars, err := envconf.Vars[testConfig]("MAILPIPE")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vars {
		if _, ok := env[v.Name]; !ok {
			t.Errorf("testdata/complete.env lacks %s", v.Name)
		}
	}
}

func TestLoad(t *testing.T) {
	defaults := testConfig{
		AdminAddr: ":9090", Workers: 4, MaxBytes: 26214400, SpamRatio: 0.5, LogLevel: slog.LevelInfo,
		Kafka: kafkaConfig{Brokers: []string{"127.0.0.1:9092"}, ClientID: "mailpipe", Timeout: 10 * time.Second},
	}
	for _, tt := range []struct {
		name    string
		env     map[string]string
		args    []string // nil: no flags
		want    func(c *testConfig)
		wantErr []string // substrings; each error line must appear
	}{
		{name: "defaults", want: func(*testConfig) {}},
		{
			name: "empty variable keeps the default",
			env:  map[string]string{"MAILPIPE_WORKERS": "", "MAILPIPE_KAFKA_CLIENT_ID": ""},
			want: func(*testConfig) {},
		},
		{
			name: "list trims and drops blanks",
			env:  map[string]string{"MAILPIPE_KAFKA_BROKERS": " a:1 ,, b:2 ,"},
			want: func(c *testConfig) { c.Kafka.Brokers = []string{"a:1", "b:2"} },
		},
		{
			name: "text unmarshaler",
			env:  map[string]string{"MAILPIPE_LOG_LEVEL": "warn+1"},
			want: func(c *testConfig) { c.LogLevel = slog.LevelWarn + 1 },
		},
		{
			name: "flags win over env",
			env:  map[string]string{"MAILPIPE_WORKERS": "8", "MAILPIPE_KAFKA_TIMEOUT": "3s"},
			args: []string{"-workers=16", "-debug", "-kafka-brokers", "x:1,y:2", "-redis-url", "redis://r:6379/1"},
			want: func(c *testConfig) {
				c.Workers, c.Debug, c.Kafka.Timeout = 16, true, 3*time.Second
				c.Kafka.Brokers = []string{"x:1", "y:2"}
				c.Redis.URL = "redis://r:6379/1"
			},
		},
		{
			name: "every parse error is reported with its variable",
			env: map[string]string{
				"MAILPIPE_WORKERS": "many", "MAILPIPE_DEBUG": "yes please", "MAILPIPE_KAFKA_TIMEOUT": "10",
				"MAILPIPE_MAX_BYTES": "-1",
			},
			wantErr: []string{"MAILPIPE_WORKERS (environment)", "MAILPIPE_DEBUG", "MAILPIPE_KAFKA_TIMEOUT", "MAILPIPE_MAX_BYTES"},
		},
		{
			name:    "validate errors carry section prefixes",
			env:     map[string]string{"MAILPIPE_WORKERS": "0", "MAILPIPE_KAFKA_BROKERS": ",", "MAILPIPE_KAFKA_TIMEOUT": "-1s"},
			wantErr: []string{"workers must be at least 1", "kafka: brokers is required", "kafka: timeout must be positive"},
		},
		{
			name:    "unknown flag",
			args:    []string{"-nope"},
			wantErr: []string{"parsing flags"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var opts []envconf.Option
			if tt.args != nil {
				fs := flag.NewFlagSet("test", flag.ContinueOnError)
				fs.SetOutput(io.Discard)
				opts = append(opts, envconf.WithFlags(fs, tt.args))
			}
			got, err := envconf.Load[testConfig](envOf(tt.env), "MAILPIPE", opts...)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Load = %+v, want error", got)
				}
				if !errors.Is(err, app.ErrConfig) {
					t.Errorf("error %v does not wrap app.ErrConfig", err)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error lacks %q:\n%v", s, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := defaults
			want.Kafka.Brokers = append([]string(nil), defaults.Kafka.Brokers...)
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestVars(t *testing.T) {
	vars, err := envconf.Vars[testConfig]("MAILPIPE")
	if err != nil {
		t.Fatal(err)
	}
	want := []envconf.Var{
		{Name: "MAILPIPE_ADMIN_ADDR", Flag: "admin-addr", Default: ":9090"},
		{Name: "MAILPIPE_WORKERS", Flag: "workers", Default: "4"},
		{Name: "MAILPIPE_DEBUG", Flag: "debug"},
		{Name: "MAILPIPE_MAX_BYTES", Flag: "max-bytes", Default: "26214400"},
		{Name: "MAILPIPE_SPAM_RATIO", Flag: "spam-ratio", Default: "0.5"},
		{Name: "MAILPIPE_LOG_LEVEL", Flag: "log-level", Default: "info"},
		{Name: "MAILPIPE_KAFKA_BROKERS", Flag: "kafka-brokers", Default: "127.0.0.1:9092", Usage: "seed brokers, comma-separated"},
		{Name: "MAILPIPE_KAFKA_CLIENT_ID", Flag: "kafka-client-id", Default: "mailpipe"},
		{Name: "MAILPIPE_KAFKA_TIMEOUT", Flag: "kafka-timeout", Default: "10s"},
		{Name: "MAILPIPE_REDIS_URL", Flag: "redis-url", Usage: "redis:// URL"},
	}
	if !reflect.DeepEqual(vars, want) {
		t.Errorf("Vars =\n%+v\nwant\n%+v", vars, want)
	}
}

func TestLoadRejectsUnsupportedTypes(t *testing.T) {
	type bad struct {
		M map[string]string `env:"M"`
	}
	if _, err := envconf.Load[bad](envOf(nil), "MAILPIPE"); err == nil || !strings.Contains(err.Error(), "unsupported type") {
		t.Fatalf("Load = %v, want unsupported type error", err)
	}
	if _, err := envconf.Load[int](envOf(nil), "MAILPIPE"); err == nil {
		t.Fatal("Load[int] succeeded, want an error")
	}
}

func TestPrefix(t *testing.T) {
	base := errors.New("url is required")
	err := envconf.Prefix("redis", errors.Join(base, envconf.Prefix("tls", errors.New("cert missing"))))
	if got, want := err.Error(), "redis: url is required\nredis: tls: cert missing"; got != want {
		t.Errorf("Prefix = %q, want %q", got, want)
	}
	if !errors.Is(err, base) {
		t.Error("Prefix broke errors.Is")
	}
	if envconf.Prefix("x", nil) != nil {
		t.Error("Prefix(nil) != nil")
	}
}
