package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/events/eventstest"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

func dlqEnv(brokers []string, args ...string) (app.Env, *bytes.Buffer, *bytes.Buffer) {
	var out, errs bytes.Buffer
	vars := map[string]string{kafka.EnvBrokers: strings.Join(brokers, ","), "USER": "tester"}
	return app.Env{
		Getenv: func(k string) string { return vars[k] },
		Args:   append([]string{"dlq"}, args...),
		Stdout: &out,
		Stderr: &errs,
		Logger: slog.New(slog.DiscardHandler),
	}, &out, &errs
}

// Argument errors are configuration errors that name the problem, found before Kafka is asked.
func TestDLQArgumentErrors(t *testing.T) {
	brokers := []string{"127.0.0.1:1"} // never dialled
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", nil, "no subcommand"},
		{"unknown subcommand", []string{"purge"}, "unknown subcommand"},
		{"show without offset", []string{"show", "--partition", "0"}, "--partition P --offset O"},
		{"replay without name", []string{"replay"}, "--name is required"},
		{"from without partition", []string{"replay", "--name", "x", "--from", "3"}, "give --partition"},
		{"to before from", []string{"replay", "--name", "x", "--partition", "0", "--from", "5", "--to", "5"}, "must be after"},
		{"bad rate", []string{"replay", "--name", "x", "--rate", "fast"}, "--rate"},
		{"bad since", []string{"replay", "--name", "x", "--since", "yesterday"}, "--since"},
		{"until before since", []string{"replay", "--name", "x", "--since", "1h", "--until", "2h"}, "must be after"},
		{"no looping allowed", []string{"replay", "--name", "x", "--max-replays", "0"}, "--max-replays"},
		{"stray argument", []string{"ls", "extra"}, "unexpected arguments"},
		{"bad flag", []string{"history", "--no-such-flag"}, "no-such-flag"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env, _, _ := dlqEnv(brokers, tt.args...)
			err := run(t.Context(), env)
			if code := app.ExitCode(err); code != app.ExitConfigError {
				t.Fatalf("exit code %d (err %v), want %d", code, err, app.ExitConfigError)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestDLQCommands(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	kafkatest.CreateTopic(t, brokers, kafka.TopicDLQ, 1)
	kafkatest.CreateTopic(t, brokers, kafka.TopicEnriched, 1)
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	value, err := codec.Encode(kafka.TopicEnriched, eventstest.Samples()[kafka.TopicEnriched])
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, class := range []failure.Class{failure.CRM5xx, failure.CRM5xx, failure.Auth} {
		src := &kgo.Record{
			Topic: kafka.TopicEnriched, Offset: int64(i), Key: []byte("thread"), Value: value,
			Headers: []kgo.RecordHeader{{Key: "mailpipe.sink.target", Value: []byte("hubspot")}},
		}
		kafkatest.Produce(t, brokers, dlq.Build(src, dlq.Info{Stage: "crm-sink", Class: class, Attempts: 4, FirstFailure: now, LastFailure: now}))
	}
	exec := func(t *testing.T, args ...string) (string, string) {
		t.Helper()
		env, out, errs := dlqEnv(brokers, args...)
		if err := run(t.Context(), env); err != nil {
			t.Fatalf("dlq %v: %v (stderr %s)", args, err, errs)
		}
		return out.String(), errs.String()
	}

	out, _ := exec(t, "ls", "--json")
	var s struct {
		Total       int            `json:"total"`
		NotReplayed int            `json:"not_replayed"`
		ByClass     map[string]int `json:"by_class"`
		ByAge       map[string]int `json:"by_age"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("ls --json: %v in %s", err, out)
	}
	if s.Total != 3 || s.NotReplayed != 3 || s.ByClass["crm_5xx"] != 2 || s.ByAge["<1h"] != 3 {
		t.Fatalf("ls --json = %+v", s)
	}

	out, _ = exec(t, "show", "--partition", "0", "--offset", "2")
	var l struct {
		Stage      string            `json:"stage"`
		ErrorClass string            `json:"error_class"`
		Headers    map[string]string `json:"headers"`
		Value      map[string]any    `json:"value"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("show: %v in %s", err, out)
	}
	if l.ErrorClass != "auth" || l.Headers["mailpipe.sink.target"] != "hubspot" || l.Value["message"] == nil {
		t.Fatalf("show = %s", out)
	}

	out, _ = exec(t, "replay", "--dry-run", "--class", "crm_5xx")
	if strings.Count(out, "would replay mail.dlq.v1[0]@") != 2 || !strings.Contains(out, "would replay 2, skipped 0 looping, 1 not selected") {
		t.Fatalf("dry run output:\n%s", out)
	}

	out, errs := exec(t, "replay", "--name", "fix-1", "--class", "crm_5xx", "--rate", "100/s")
	if !strings.Contains(out, "replayed 2, skipped 0 looping, 1 not selected, 0 invalid; p0 [0,3)") {
		t.Fatalf("replay output: %s", out)
	}
	if !strings.Contains(errs, "progress: 3/3 offsets, 2 replayed") {
		t.Fatalf("progress on stderr: %s", errs)
	}

	out, _ = exec(t, "ls")
	if !strings.Contains(out, "3 dead letters, 1 not yet replayed, 0 looping") || !strings.Contains(out, "crm_5xx") {
		t.Fatalf("ls:\n%s", out)
	}

	out, _ = exec(t, "history")
	if !strings.Contains(out, "fix-1") || !strings.Contains(out, "by tester") || !strings.Contains(out, "replayed 2") || !strings.Contains(out, "p0[0,3)") {
		t.Fatalf("history:\n%s", out)
	}
}
