package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

// runTopics implements `mailpipe topics apply`: it creates the topics of ARCHITECTURE.md with
// kadm and sets their configs (mail.routes.v1 compacted); running it twice changes nothing.
func runTopics(ctx context.Context, env app.Env) error {
	if len(env.Args) == 0 || env.Args[0] != "apply" {
		return app.ConfigError(errors.New("usage: mailpipe topics apply [flags]"))
	}
	tc := kafka.DefaultTopicsConfig()
	fs := flag.NewFlagSet("topics apply", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	brokers := fs.String("brokers", "", "seed brokers (default $MAILPIPE_KAFKA_BROKERS)")
	partitions := fs.Int("partitions", int(tc.Partitions), "partitions of each topic when it is created")
	rf := fs.Int("replication-factor", int(tc.ReplicationFactor), "replication factor (0: broker default)")
	fs.DurationVar(&tc.Retention, "retention", tc.Retention, "retention of the data topics")
	fs.DurationVar(&tc.DLQRetention, "dlq-retention", tc.DLQRetention, "retention of the dead-letter topics")
	dry := fs.Bool("dry-run", false, "print the changes without applying them")
	if err := fs.Parse(env.Args[1:]); err != nil {
		return app.ConfigError(err)
	}
	tc.Partitions, tc.ReplicationFactor = int32(*partitions), int16(*rf) //nolint:gosec // flag ranges are small
	kcfg, err := kafkaConfig(env, *brokers)
	if err != nil {
		return err
	}
	adm, err := kafka.NewAdmin(kcfg, env.Logger)
	if err != nil {
		return err
	}
	defer adm.Close()
	specs := kafka.TopicSpecs(tc)
	changes, err := kafka.PlanTopics(ctx, adm, specs)
	if err != nil {
		return fmt.Errorf("planning topics: %w", err)
	}
	for _, c := range changes {
		fmt.Fprintf(env.Stdout, "%-8s %-20s %s\n", c.Kind, c.Topic, c.Detail)
	}
	if len(changes) == 0 {
		fmt.Fprintln(env.Stdout, "topics are up to date")
	}
	if *dry {
		return nil
	}
	if err := kafka.ApplyTopics(ctx, adm, specs); err != nil {
		return fmt.Errorf("applying topics: %w", err)
	}
	return nil
}

// kafkaConfig loads MAILPIPE_KAFKA_* and lets a --brokers flag override the seed list.
func kafkaConfig(env app.Env, brokers string) (kafka.Config, error) {
	cfg, err := kafka.LoadEnv(env.Getenv)
	if err != nil {
		return cfg, app.ConfigError(err)
	}
	if brokers != "" {
		cfg.Brokers = splitList(brokers)
	}
	return cfg, nil
}
