package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// tailLine is one record as `mailpipe tail` prints it.
type tailLine struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp time.Time         `json:"timestamp"`
	Key       string            `json:"key"`
	Headers   map[string]string `json:"headers,omitempty"`
	Value     any               `json:"value"`
	// Error is set, and Value holds the raw bytes, when the value could not be decoded (a
	// dead-lettered record whose bytes are not Avro, for instance).
	Error string `json:"error,omitempty"`
}

// runTail implements `mailpipe tail TOPIC`: it reads committed records and prints each as one
// JSON line, decoding Avro values with their writer schema.
func runTail(ctx context.Context, env app.Env) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	brokers := fs.String("brokers", "", "seed brokers (default $MAILPIPE_KAFKA_BROKERS)")
	fromStart := fs.Bool("from-beginning", false, "start at the oldest record instead of new ones")
	limit := fs.Int("n", 0, "stop after this many records (0: follow until interrupted)")
	idle := fs.Duration("idle", 0, "stop when no record arrived for this long (0: never)")
	if err := fs.Parse(env.Args); err != nil {
		return app.ConfigError(err)
	}
	if fs.NArg() != 1 {
		return app.ConfigError(errors.New("usage: mailpipe tail [flags] TOPIC"))
	}
	topic := fs.Arg(0)
	kcfg, err := kafkaConfig(env, *brokers)
	if err != nil {
		return err
	}
	codec, err := serde.NewFromEnv(ctx, env.Getenv)
	if err != nil {
		return err
	}
	start := kgo.NewOffset().AtEnd()
	if *fromStart {
		start = kgo.NewOffset().AtStart()
	}
	cl, err := kafka.NewClient(kcfg, env.Logger, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	enc := json.NewEncoder(env.Stdout)
	n := 0
	for {
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if *idle > 0 {
			pollCtx, cancel = context.WithTimeout(ctx, *idle)
		}
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if fetches.Empty() && *idle > 0 && pollCtx.Err() != nil {
			return nil
		}
		if err := fetches.Err0(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("fetching %s: %w", topic, err)
		}
		for _, r := range fetches.Records() {
			if err := enc.Encode(decodeLine(ctx, codec, r)); err != nil {
				return fmt.Errorf("writing output: %w", err)
			}
			n++
			if *limit > 0 && n >= *limit {
				return nil
			}
		}
	}
}

func decodeLine(ctx context.Context, codec *serde.Codec, r *kgo.Record) tailLine {
	line := tailLine{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, Key: string(r.Key)}
	if len(r.Headers) > 0 {
		line.Headers = map[string]string{}
		for _, h := range r.Headers {
			line.Headers[h.Key] = string(h.Value)
		}
	}
	if r.Value == nil {
		return line // a tombstone on a compacted topic
	}
	v, err := codec.DecodeGeneric(ctx, r.Value)
	if err != nil {
		line.Value, line.Error = r.Value, err.Error()
		return line
	}
	line.Value = v
	return line
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
