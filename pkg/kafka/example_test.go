package kafka_test

import (
	"context"
	"log/slog"
	"os"

	"github.com/mailpipe/mailpipe/pkg/kafka"
)

// Creating or updating every mailpipe topic, as `mailpipe topics apply` does.
func ExampleApplyTopics() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := kafka.LoadEnv(os.Getenv)
	if err != nil {
		log.Error("loading kafka config", "error", err)
		return
	}
	adm, err := kafka.NewAdmin(cfg, log)
	if err != nil {
		log.Error("connecting", "error", err)
		return
	}
	defer adm.Close()
	specs := kafka.TopicSpecs(kafka.TopicsConfig{Partitions: 24})
	if err := kafka.ApplyTopics(context.Background(), adm, specs); err != nil {
		log.Error("applying topics", "error", err)
	}
}
