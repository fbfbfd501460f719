package stage_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

// A parser-like stage: each raw record becomes one parsed record; a record that cannot be parsed
// is dead-lettered at once (class parse is not retryable), anything else is retried.
func ExampleNew() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	kcfg, err := kafka.LoadEnv(os.Getenv)
	if err != nil {
		log.Error("loading kafka config", "error", err)
		return
	}
	parse := func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		if len(rec.Value) == 0 {
			return nil, failure.Wrap(failure.Parse, errors.New("empty message"))
		}
		return []*kgo.Record{{Topic: kafka.TopicParsed, Key: rec.Key, Value: rec.Value}}, nil
	}
	st, err := stage.New(stage.Config{Name: "parser", InputTopics: []string{kafka.TopicRaw}}, kcfg, parse, log)
	if err != nil {
		log.Error("building stage", "error", err)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := st.Run(ctx); err != nil { // returns nil after SIGTERM and a graceful stop
		log.Error("running stage", "error", err)
	}
}
