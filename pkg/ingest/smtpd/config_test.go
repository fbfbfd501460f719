package smtpd_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/envconf"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
)

func TestConfigFromEnv(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		want smtpd.Config
	}{
		{name: "defaults match DefaultConfig", want: smtpd.DefaultConfig()},
		{
			name: "every variable",
			env: map[string]string{
				"MAILPIPE_SMTP_ADDR":              "127.0.0.1:25",
				"MAILPIPE_SMTP_HOSTNAME":          "mx1.in.example.com",
				"MAILPIPE_SMTP_MAX_MESSAGE_BYTES": "1048576",
				"MAILPIPE_SMTP_MAX_RECIPIENTS":    "10",
				"MAILPIPE_SMTP_MAX_LINE_LENGTH":   "1000",
				"MAILPIPE_SMTP_READ_TIMEOUT":      "2m",
				"MAILPIPE_SMTP_WRITE_TIMEOUT":     "30s",
				"MAILPIPE_SMTP_ACCEPT_TIMEOUT":    "20s",
				"MAILPIPE_SMTP_MAX_CONNECTIONS":   "64",
				"MAILPIPE_SMTP_TLS_CERT_FILE":     "/tls/tls.crt",
				"MAILPIPE_SMTP_TLS_KEY_FILE":      "/tls/tls.key",
				"MAILPIPE_SMTP_TLS_MIN_VERSION":   "1.1",
				"MAILPIPE_SMTP_TLS_CIPHER_SUITES": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
				"MAILPIPE_SMTP_REQUIRE_TLS":       "true",
				"MAILPIPE_SMTP_STRICT_8BITMIME":   "true",
				"MAILPIPE_SMTP_RATE_CONNECTIONS":  "60/m",
				"MAILPIPE_SMTP_RATE_MESSAGES":     "500/1h",
				"MAILPIPE_SMTP_RATE_EXEMPT":       "10.0.0.0/8,2001:db8::/32",
			},
			want: smtpd.Config{
				Addr: "127.0.0.1:25", Hostname: "mx1.in.example.com", MaxMessageBytes: 1 << 20, MaxRecipients: 10,
				MaxLineLength: 1000, ReadTimeout: 2 * time.Minute, WriteTimeout: 30 * time.Second,
				AcceptTimeout: 20 * time.Second, MaxConnections: 64, TLSCertFile: "/tls/tls.crt", TLSKeyFile: "/tls/tls.key",
				TLSMinVersion:   "1.1",
				TLSCipherSuites: []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
				RequireTLS:      true, Strict8BitMIME: true,
				RateConnections: ratelimit.PerMinute(60), RateMessages: ratelimit.Limit{Rate: 500, Period: time.Hour},
				RateExempt: []string{"10.0.0.0/8", "2001:db8::/32"},
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := app.Env{Getenv: func(k string) string { return tt.env[k] }}
			got, err := envconf.Load[smtpd.Config](env, "MAILPIPE_SMTP")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("loaded %+v, want %+v", got, tt.want)
			}
		})
	}
}
