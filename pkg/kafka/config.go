// Package kafka builds franz-go clients the way every mailpipe process needs them: connection
// config from MAILPIPE_KAFKA_* (brokers, TLS, SASL), producers with acks=all and idempotence,
// slog logging through kslog, the topic names and their specs (with an idempotent apply for
// `mailpipe topics apply`), and a header carrier for OpenTelemetry propagation.
//
// The package never wraps *kgo.Client in an interface (franz-go's docs/testing.md explains why);
// tests use kfake or a real broker through package kafkatest.
package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Environment variable names read by [LoadEnv].
const (
	EnvBrokers       = "MAILPIPE_KAFKA_BROKERS"        // comma-separated host:port list
	EnvTLS           = "MAILPIPE_KAFKA_TLS"            // bool: dial brokers over TLS
	EnvTLSCA         = "MAILPIPE_KAFKA_TLS_CA"         // PEM file with CA certificates; system pool if empty
	EnvTLSInsecure   = "MAILPIPE_KAFKA_TLS_INSECURE"   // bool: skip broker certificate verification
	EnvSASLMechanism = "MAILPIPE_KAFKA_SASL_MECHANISM" // plain | scram-sha-256 | scram-sha-512
	EnvSASLUser      = "MAILPIPE_KAFKA_SASL_USER"
	EnvSASLPassword  = "MAILPIPE_KAFKA_SASL_PASSWORD"
	EnvClientID      = "MAILPIPE_KAFKA_CLIENT_ID"
)

// SASL mechanisms accepted in [Config].SASLMechanism.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// Defaults applied by [DefaultConfig] and [LoadEnv].
const (
	DefaultBroker   = "127.0.0.1:9092"
	DefaultClientID = "mailpipe"
)

// Config is how a process reaches the Kafka cluster. It holds connection settings only; what a
// client does (group, transactions, topics) is configured by the package that builds it.
//
// Config is a plain value: copy it freely. Its LogValue redacts the password, so it is safe to log.
// The env tags let a service nest it for package envconf under `env:"KAFKA"`, which yields the
// same MAILPIPE_KAFKA_* names as [LoadEnv].
type Config struct {
	// Brokers are the seed brokers, host:port. Default [DefaultBroker].
	Brokers []string `env:"BROKERS" default:"127.0.0.1:9092" usage:"Kafka seed brokers, host:port, comma-separated"`
	// TLS dials brokers over TLS (minimum TLS 1.2).
	TLS bool `env:"TLS" usage:"dial Kafka brokers over TLS"`
	// TLSCAFile is a PEM bundle of CAs to trust instead of the system pool. Requires TLS.
	TLSCAFile string `env:"TLS_CA" usage:"PEM file of CAs to trust for Kafka TLS"`
	// TLSInsecure skips broker certificate verification (test clusters only). Requires TLS.
	TLSInsecure bool `env:"TLS_INSECURE" usage:"skip Kafka broker certificate verification (test clusters)"`
	// SASLMechanism is empty (no SASL) or one of [SASLPlain], [SASLScramSHA256],
	// [SASLScramSHA512], case-insensitive. It requires SASLUser and SASLPassword.
	SASLMechanism string `env:"SASL_MECHANISM" usage:"plain, scram-sha-256 or scram-sha-512"`
	SASLUser      string `env:"SASL_USER" usage:"Kafka SASL user"`
	SASLPassword  string `env:"SASL_PASSWORD" usage:"Kafka SASL password"`
	// ClientID is sent to brokers for their logs and quotas. Default [DefaultClientID].
	ClientID string `env:"CLIENT_ID" default:"mailpipe" usage:"client id sent to Kafka brokers"`
}

// DefaultConfig returns the configuration used when no environment variable is set: a local
// plaintext broker on 127.0.0.1:9092.
func DefaultConfig() Config {
	return Config{Brokers: []string{DefaultBroker}, ClientID: DefaultClientID}
}

// LoadEnv reads the MAILPIPE_KAFKA_* variables through getenv (os.Getenv in production, a map
// lookup in tests) on top of [DefaultConfig], and validates the result. Empty variables keep the
// default. The error joins every problem found, each prefixed with the variable name.
func LoadEnv(getenv func(string) string) (Config, error) {
	cfg := DefaultConfig()
	var errs []error
	if v := strings.TrimSpace(getenv(EnvBrokers)); v != "" {
		cfg.Brokers = splitList(v)
	}
	parseBool := func(name string, dst *bool) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a boolean", name, v))
			return
		}
		*dst = b
	}
	parseBool(EnvTLS, &cfg.TLS)
	parseBool(EnvTLSInsecure, &cfg.TLSInsecure)
	cfg.TLSCAFile = strings.TrimSpace(getenv(EnvTLSCA))
	cfg.SASLMechanism = strings.ToLower(strings.TrimSpace(getenv(EnvSASLMechanism)))
	cfg.SASLUser = getenv(EnvSASLUser)
	cfg.SASLPassword = getenv(EnvSASLPassword)
	if v := strings.TrimSpace(getenv(EnvClientID)); v != "" {
		cfg.ClientID = v
	}
	if len(errs) == 0 {
		errs = append(errs, cfg.Validate())
	}
	return cfg, errors.Join(errs...)
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Validate checks the configuration without touching the network or the file system. The error
// joins every problem, each prefixed with the environment variable it comes from.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, fmt.Errorf("%s: at least one broker is required", EnvBrokers))
	}
	for _, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port", EnvBrokers, b))
		}
	}
	if c.TLSCAFile != "" && !c.TLS {
		errs = append(errs, fmt.Errorf("%s: set, but %s is false", EnvTLSCA, EnvTLS))
	}
	if c.TLSInsecure && !c.TLS {
		errs = append(errs, fmt.Errorf("%s: set, but %s is false", EnvTLSInsecure, EnvTLS))
	}
	switch strings.ToLower(c.SASLMechanism) {
	case "":
		if c.SASLUser != "" || c.SASLPassword != "" {
			errs = append(errs, fmt.Errorf("%s: required when %s or %s is set", EnvSASLMechanism, EnvSASLUser, EnvSASLPassword))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASLUser == "" {
			errs = append(errs, fmt.Errorf("%s: required with SASL mechanism %s", EnvSASLUser, c.SASLMechanism))
		}
		if c.SASLPassword == "" {
			errs = append(errs, fmt.Errorf("%s: required with SASL mechanism %s", EnvSASLPassword, c.SASLMechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("%s: %q is not one of %s, %s, %s", EnvSASLMechanism, c.SASLMechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512))
	}
	return errors.Join(errs...)
}

// Opts returns the kgo options for these connection settings: seed brokers, client id, TLS and
// SASL. It reads TLSCAFile, so it fails if that file is unreadable or holds no certificate.
// Callers append their own options (group, transactional id, …) after these.
func (c Config) Opts() ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	clientID := c.ClientID
	if clientID == "" {
		clientID = DefaultClientID
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(clientID)}
	if c.TLS {
		tc, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch strings.ToLower(c.SASLMechanism) {
	case SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsMechanism()))
	case SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha256Mechanism()))
	case SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha512Mechanism()))
	}
	return opts, nil
}

func (c Config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSInsecure {
		// Explicitly requested with MAILPIPE_KAFKA_TLS_INSECURE, for test clusters only.
		tc.InsecureSkipVerify = true
	}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", EnvTLSCA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: %s holds no PEM certificate", EnvTLSCA, c.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// LogValue implements slog.LogValuer and leaves the password out.
func (c Config) LogValue() slog.Value {
	pw := ""
	if c.SASLPassword != "" {
		pw = "[redacted]"
	}
	return slog.GroupValue(
		slog.Any("brokers", c.Brokers),
		slog.Bool("tls", c.TLS),
		slog.String("tls_ca", c.TLSCAFile),
		slog.Bool("tls_insecure", c.TLSInsecure),
		slog.String("sasl_mechanism", c.SASLMechanism),
		slog.String("sasl_user", c.SASLUser),
		slog.String("sasl_password", pw),
		slog.String("client_id", c.ClientID),
	)
}
