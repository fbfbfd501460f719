package kafka_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/envconf"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

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
			t.Fatalf("bad line in %s: %q", path, line)
		}
		m[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLoadEnvComplete(t *testing.T) {
	got, err := kafka.LoadEnv(envMap(readEnvFile(t, filepath.Join("testdata", "complete.env"))))
	if err != nil {
		t.Fatalf("LoadEnv: %v", err)
	}
	want := kafka.Config{
		Brokers:       []string{"kafka-0.kafka:9093", "kafka-1.kafka:9093", "kafka-2.kafka:9093"},
		TLS:           true,
		TLSCAFile:     "/etc/mailpipe/kafka-ca.pem",
		SASLMechanism: kafka.SASLScramSHA512,
		SASLUser:      "mailpipe",
		SASLPassword:  "s3cret",
		ClientID:      "mailpipe-parser",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadEnv(complete.env)\n got  %+v\n want %+v", got, want)
	}
}

func TestLoadEnv(t *testing.T) {
	for _, tt := range []struct {
		name    string
		env     map[string]string
		want    kafka.Config
		wantErr []string // substrings; empty means no error
	}{
		{
			name: "defaults",
			env:  nil,
			want: kafka.DefaultConfig(),
		},
		{
			name: "plain sasl without tls",
			env: map[string]string{
				kafka.EnvBrokers: "a:1", kafka.EnvSASLMechanism: "plain",
				kafka.EnvSASLUser: "u", kafka.EnvSASLPassword: "p",
			},
			want: kafka.Config{Brokers: []string{"a:1"}, SASLMechanism: "plain", SASLUser: "u", SASLPassword: "p", ClientID: kafka.DefaultClientID},
		},
		{
			name:    "bad bool",
			env:     map[string]string{kafka.EnvTLS: "yes please"},
			wantErr: []string{"MAILPIPE_KAFKA_TLS: \"yes please\" is not a boolean"},
		},
		{
			name:    "broker without port",
			env:     map[string]string{kafka.EnvBrokers: "kafka"},
			wantErr: []string{"MAILPIPE_KAFKA_BROKERS: \"kafka\" is not host:port"},
		},
		{
			name:    "empty broker list",
			env:     map[string]string{kafka.EnvBrokers: " , "},
			wantErr: []string{"at least one broker"},
		},
		{
			name: "tls options without tls",
			env:  map[string]string{kafka.EnvTLSCA: "/ca.pem", kafka.EnvTLSInsecure: "true"},
			wantErr: []string{
				"MAILPIPE_KAFKA_TLS_CA: set, but MAILPIPE_KAFKA_TLS is false",
				"MAILPIPE_KAFKA_TLS_INSECURE: set, but MAILPIPE_KAFKA_TLS is false",
			},
		},
		{
			name:    "unknown mechanism",
			env:     map[string]string{kafka.EnvSASLMechanism: "gssapi", kafka.EnvSASLUser: "u", kafka.EnvSASLPassword: "p"},
			wantErr: []string{"\"gssapi\" is not one of"},
		},
		{
			name:    "mechanism without credentials",
			env:     map[string]string{kafka.EnvSASLMechanism: "scram-sha-256"},
			wantErr: []string{"MAILPIPE_KAFKA_SASL_USER: required", "MAILPIPE_KAFKA_SASL_PASSWORD: required"},
		},
		{
			name:    "credentials without mechanism",
			env:     map[string]string{kafka.EnvSASLUser: "u"},
			wantErr: []string{"MAILPIPE_KAFKA_SASL_MECHANISM: required"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kafka.LoadEnv(envMap(tt.env))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("LoadEnv: %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %+v, want %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatal("LoadEnv accepted an invalid environment")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mailpipe test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpts(t *testing.T) {
	ca := writeCA(t)
	notPEM := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(notPEM, []byte("nothing here"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := kafka.DefaultConfig()
	for _, tt := range []struct {
		name    string
		mod     func(*kafka.Config)
		wantErr string
	}{
		{"plaintext", func(*kafka.Config) {}, ""},
		{"tls system pool", func(c *kafka.Config) { c.TLS = true }, ""},
		{"tls with ca", func(c *kafka.Config) { c.TLS = true; c.TLSCAFile = ca }, ""},
		{"tls insecure", func(c *kafka.Config) { c.TLS = true; c.TLSInsecure = true }, ""},
		{"scram", func(c *kafka.Config) { c.SASLMechanism = kafka.SASLScramSHA256; c.SASLUser = "u"; c.SASLPassword = "p" }, ""},
		{"missing ca file", func(c *kafka.Config) { c.TLS = true; c.TLSCAFile = "/does/not/exist.pem" }, "reading MAILPIPE_KAFKA_TLS_CA"},
		{"ca file without pem", func(c *kafka.Config) { c.TLS = true; c.TLSCAFile = notPEM }, "holds no PEM certificate"},
		{"invalid", func(c *kafka.Config) { c.Brokers = nil }, "at least one broker"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.mod(&cfg)
			opts, err := cfg.Opts()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Opts error = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Opts: %v", err)
			}
			if len(opts) < 2 {
				t.Fatalf("Opts returned %d options, want at least seed brokers and client id", len(opts))
			}
		})
	}
}

func TestLogValueRedactsPassword(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	cfg := kafka.Config{Brokers: []string{"a:1"}, SASLMechanism: "plain", SASLUser: "u", SASLPassword: "hunter2"}
	log.Info("kafka", "config", cfg)
	if strings.Contains(buf.String(), "hunter2") {
		t.Fatalf("password leaked into the log: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "[redacted]") {
		t.Fatalf("log does not show the password was set: %s", buf.String())
	}
}

// TestEnvconfMatchesLoadEnv checks that the env tags on Config give the same result through
// package envconf (nested under MAILPIPE_KAFKA) as LoadEnv.
func TestEnvconfMatchesLoadEnv(t *testing.T) {
	env := readEnvFile(t, filepath.Join("testdata", "complete.env"))
	want, err := kafka.LoadEnv(envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	got, err := envconf.Load[kafka.Config](app.Env{Getenv: envMap(env)}, "MAILPIPE_KAFKA")
	if err != nil {
		t.Fatalf("envconf.Load: %v", err)
	}
	got.SASLMechanism = strings.ToLower(got.SASLMechanism)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("envconf\n got  %+v\n want %+v", got, want)
	}
	defaults, err := envconf.Load[kafka.Config](app.Env{Getenv: envMap(nil)}, "MAILPIPE_KAFKA")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(defaults, kafka.DefaultConfig()) {
		t.Fatalf("envconf defaults %+v, want %+v", defaults, kafka.DefaultConfig())
	}
}
