package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/events/eventstest"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

func testEnv(args ...string) (app.Env, *bytes.Buffer, *bytes.Buffer) {
	var out, errs bytes.Buffer
	return app.Env{
		Getenv: func(string) string { return "" },
		Args:   args,
		Stdout: &out,
		Stderr: &errs,
		Logger: slog.New(slog.DiscardHandler),
	}, &out, &errs
}

func TestCommandLine(t *testing.T) {
	for _, tt := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"help", []string{"help"}, app.ExitOK, "commands:"},
		{"no command", nil, app.ExitConfigError, ""},
		{"unknown command", []string{"frobnicate"}, app.ExitConfigError, ""},
		{"topics without apply", []string{"topics"}, app.ExitConfigError, ""},
		{"send without files", []string{"send"}, app.ExitConfigError, ""},
		{"tail without topic", []string{"tail"}, app.ExitConfigError, ""},
		{"bad flag", []string{"tail", "--no-such-flag", "x"}, app.ExitConfigError, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env, out, _ := testEnv(tt.args...)
			code := app.ExitCode(run(t.Context(), env))
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Fatalf("stdout %q does not contain %q", out.String(), tt.wantOut)
			}
		})
	}
}

// tail shows Avro values decoded with their writer schema, and a value that is not Avro (a
// dead letter's original bytes, say) raw with the reason, instead of failing the whole tail.
func TestTailDecodesOrExplains(t *testing.T) {
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	v, err := codec.Encode("mail.routes.v1", eventstest.Samples()["mail.routes.v1"])
	if err != nil {
		t.Fatal(err)
	}
	good := decodeLine(t.Context(), codec, &kgo.Record{Topic: "mail.routes.v1", Key: []byte("r1"), Value: v, Timestamp: time.Unix(0, 0)})
	if good.Error != "" || good.Value.(map[string]any)["tenant"] != "acme" {
		t.Fatalf("decoded line = %+v", good)
	}
	bad := decodeLine(t.Context(), codec, &kgo.Record{
		Topic: "mail.dlq.v1", Value: []byte("not avro"),
		Headers: []kgo.RecordHeader{{Key: "mailpipe.dlq.stage", Value: []byte("parser")}},
	})
	if bad.Error == "" || bad.Headers["mailpipe.dlq.stage"] != "parser" {
		t.Fatalf("undecodable line = %+v", bad)
	}
	tomb := decodeLine(t.Context(), codec, &kgo.Record{Topic: "mail.routes.v1", Key: []byte("r1")})
	if tomb.Value != nil || tomb.Error != "" {
		t.Fatalf("tombstone line = %+v", tomb)
	}
}

func TestCRLF(t *testing.T) {
	if got := string(crlf([]byte("a\nb\r\nc\n"))); got != "a\r\nb\r\nc\r\n" {
		t.Fatalf("crlf = %q", got)
	}
}
