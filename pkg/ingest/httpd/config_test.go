package httpd_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/envconf"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
)

func TestConfigFromEnv(t *testing.T) {
	a, b := httpd.HashKey("a"), httpd.HashKey("b")
	for _, tt := range []struct {
		name string
		env  map[string]string
		want httpd.Config
	}{
		{name: "defaults match DefaultConfig", want: httpd.DefaultConfig()},
		{
			name: "every variable",
			env: map[string]string{
				"MAILPIPE_HTTP_API_KEY_SHA256":            a + "," + b,
				"MAILPIPE_HTTP_API_KEYS":                  "acme:" + a + ", globex:" + b,
				"MAILPIPE_HTTP_API_KEYS_FILE":             "/dev/null",
				"MAILPIPE_HTTP_HMAC_SECRETS":              "acme:whsec_YWNtZS1zZWNyZXQtMDEyMzQ1Njc4OWFiY2Rl",
				"MAILPIPE_HTTP_HMAC_SECRETS_FILE":         "/dev/null",
				"MAILPIPE_HTTP_HMAC_TOLERANCE":            "2m",
				"MAILPIPE_HTTP_SENDGRID_PUBLIC_KEYS":      "acme:MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==",
				"MAILPIPE_HTTP_SENDGRID_TOLERANCE":        "1h",
				"MAILPIPE_HTTP_MAILGUN_SIGNING_KEYS":      "acme:key-1,globex:key-1",
				"MAILPIPE_HTTP_MAILGUN_SIGNING_KEYS_FILE": "/dev/null",
				"MAILPIPE_HTTP_MAILGUN_TOLERANCE":         "10m",
				"MAILPIPE_HTTP_MAX_BODY_BYTES":            "1048576",
				"MAILPIPE_HTTP_MAX_RECIPIENTS":            "5",
				"MAILPIPE_HTTP_ACCEPT_TIMEOUT":            "10s",
				"MAILPIPE_HTTP_RETRY_AFTER":               "1m",
			},
			want: httpd.Config{
				APIKeySHA256: []string{a, b}, APIKeys: []string{"acme:" + a, "globex:" + b}, APIKeysFile: "/dev/null",
				HMACSecrets: []string{"acme:whsec_YWNtZS1zZWNyZXQtMDEyMzQ1Njc4OWFiY2Rl"}, HMACSecretsFile: "/dev/null", HMACTolerance: 2 * time.Minute,
				SendGridPublicKeys: []string{"acme:MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="},
				SendGridTolerance:  time.Hour,
				MailgunSigningKeys: []string{"acme:key-1", "globex:key-1"}, MailgunSigningKeysFile: "/dev/null", MailgunTolerance: 10 * time.Minute,
				MaxBodyBytes: 1 << 20, MaxRecipients: 5, AcceptTimeout: 10 * time.Second, RetryAfter: time.Minute,
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := app.Env{Getenv: func(k string) string { return tt.env[k] }}
			got, err := envconf.Load[httpd.Config](env, "MAILPIPE_HTTP")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("loaded %+v, want %+v", got, tt.want)
			}
		})
	}
}
