package ingest_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/envconf"
	"github.com/mailpipe/mailpipe/pkg/ingest"
)

func TestConfigFromEnv(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		want ingest.Config
	}{
		{name: "defaults match DefaultConfig", want: ingest.DefaultConfig()},
		{
			name: "every variable",
			env: map[string]string{
				"MAILPIPE_INGEST_DOMAINS":           "in.example.com, mail.example.org",
				"MAILPIPE_INGEST_INLINE_LIMIT":      "1024",
				"MAILPIPE_INGEST_MAX_INLINE_BYTES":  "2048",
				"MAILPIPE_INGEST_DEDUPE_TTL":        "5m",
				"MAILPIPE_INGEST_ACCEPT_TIMEOUT":    "45s",
				"MAILPIPE_INGEST_TOPIC":             "staging.mail.raw.v1",
				"MAILPIPE_INGEST_MAX_MESSAGE_BYTES": "4096",
				"MAILPIPE_INGEST_THREAD_TTL":        "720h",
			},
			want: ingest.Config{
				Domains: []string{"in.example.com", "mail.example.org"}, InlineLimit: 1024, MaxInlineBytes: 2048,
				DedupeTTL: 5 * time.Minute, AcceptTimeout: 45 * time.Second, Topic: "staging.mail.raw.v1",
				MaxMessageBytes: 4096, ThreadTTL: 30 * 24 * time.Hour,
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := app.Env{Getenv: func(k string) string { return tt.env[k] }}
			got, err := envconf.Load[ingest.Config](env, "MAILPIPE_INGEST")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("loaded %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	env := app.Env{Getenv: func(k string) string {
		return map[string]string{"MAILPIPE_INGEST_INLINE_LIMIT": "4096", "MAILPIPE_INGEST_MAX_INLINE_BYTES": "1024"}[k]
	}}
	if _, err := envconf.Load[ingest.Config](env, "MAILPIPE_INGEST"); err == nil {
		t.Error("inline limit above the hard max was accepted")
	}
}
