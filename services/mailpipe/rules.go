package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/classify"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/rules"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

const rulesUsage = `usage:
  mailpipe rules check FILE
  mailpipe rules simulate --rules NEW.yaml [--current FILE] [--topic mail.parsed.v1] [--since 24h] [--brokers …]`

// runRules implements `mailpipe rules check|simulate`.
func runRules(ctx context.Context, env app.Env) error {
	if len(env.Args) == 0 {
		return app.ConfigError(errors.New(rulesUsage))
	}
	sub := env.Args[0]
	env.Args = env.Args[1:]
	switch sub {
	case "check":
		if len(env.Args) != 1 {
			return app.ConfigError(errors.New(rulesUsage))
		}
		set, err := rules.LoadFile(env.Args[0])
		if err != nil {
			return app.ConfigError(err)
		}
		score, routes := set.RuleNames()
		fmt.Fprintf(env.Stdout, "%s: version %s, %d score rules, %d routes: ok\n", env.Args[0], set.Version(), len(score), len(routes))
		return nil
	case "simulate":
		return simulateRules(ctx, env)
	default:
		return app.ConfigError(fmt.Errorf("unknown rules command %q\n%s", sub, rulesUsage))
	}
}

// simulateRules replays the records a topic received in the last --since through the current
// and the new rules and prints what would change; it produces nothing and commits no offsets.
// Kind and spam score do not depend on the rules file: they are taken from the record on
// mail.classified.v1, and decided by the classifier's built-in checks on mail.parsed.v1.
func simulateRules(ctx context.Context, env app.Env) error {
	fs := flag.NewFlagSet("rules simulate", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	newFile := fs.String("rules", "", "the new rules file (required)")
	curFile := fs.String("current", env.Getenv("MAILPIPE_RULES_FILE"), "the rules in use (default $MAILPIPE_RULES_FILE, else the embedded default)")
	topic := fs.String("topic", kafka.TopicParsed, "topic to replay: "+kafka.TopicParsed+" or "+kafka.TopicClassified+" (or a copy whose name starts the same)")
	since := fs.Duration("since", 24*time.Hour, "replay the records of this last period")
	brokers := fs.String("brokers", "", "seed brokers (default $MAILPIPE_KAFKA_BROKERS)")
	idle := fs.Duration("idle", 3*time.Second, "stop when no record arrived for this long")
	showAll := fs.Bool("all", false, "print every message, not only the changed ones")
	if err := fs.Parse(env.Args); err != nil {
		return app.ConfigError(err)
	}
	schema := kafka.TopicParsed
	if strings.HasPrefix(*topic, "mail.classified") {
		schema = kafka.TopicClassified
	}
	if *newFile == "" || fs.NArg() != 0 || !strings.HasPrefix(*topic, strings.TrimSuffix(schema, ".v1")) {
		return app.ConfigError(errors.New(rulesUsage))
	}
	newSet, err := rules.LoadFile(*newFile)
	if err != nil {
		return app.ConfigError(fmt.Errorf("new rules: %w", err))
	}
	curSet, err := rules.Default()
	if *curFile != "" {
		curSet, err = rules.LoadFile(*curFile)
	}
	if err != nil {
		return app.ConfigError(fmt.Errorf("current rules: %w", err))
	}
	kcfg, err := kafkaConfig(env, *brokers)
	if err != nil {
		return err
	}
	codec, err := serde.NewFromEnv(ctx, env.Getenv)
	if err != nil {
		return err
	}
	classifier, err := classify.New(codec, env.Logger)
	if err != nil {
		return err
	}
	starts, ends, err := replayRange(ctx, kcfg, env, *topic, time.Now().Add(-*since))
	if err != nil {
		return err
	}
	var sum rules.Summary
	out := json.NewEncoder(env.Stdout)
	err = replay(ctx, kcfg, env, *topic, starts, ends, *idle, func(r *kgo.Record) error {
		msg, kind, spamScore, err := decodeForRules(ctx, codec, classifier, schema, r)
		if err != nil {
			fmt.Fprintf(env.Stderr, "skipping %s/%d@%d: %v\n", r.Topic, r.Partition, r.Offset, err)
			return nil
		}
		c, err := rules.Compare(ctx, curSet, newSet, classify.Facts(msg, kind, spamScore))
		if err != nil {
			return err
		}
		sum.Add(c)
		if c.Changed() || *showAll {
			return out.Encode(simulatedLine{
				ID: msg.ID, Subject: msg.Subject, Kind: kind, Changed: c.Changed(),
				Old: resultLine(c.Old), New: resultLine(c.New),
			})
		}
		return nil
	})
	if err != nil {
		return err
	}
	printSummary(env.Stdout, curSet, newSet, &sum)
	return nil
}

type simulatedLine struct {
	ID      string     `json:"id"`
	Subject string     `json:"subject"`
	Kind    string     `json:"kind"`
	Changed bool       `json:"changed"`
	Old     lineResult `json:"old"`
	New     lineResult `json:"new"`
}

type lineResult struct {
	Score int64    `json:"score"`
	Band  string   `json:"band"`
	Queue string   `json:"queue"`
	SLA   int      `json:"sla_minutes"`
	Rules []string `json:"rules"`
}

func resultLine(r rules.Result) lineResult {
	l := lineResult{Score: r.Score, Band: string(r.Band), Queue: r.Route.Queue, SLA: r.Route.SLAMinutes, Rules: []string{}}
	for _, c := range r.Contributions {
		l.Rules = append(l.Rules, fmt.Sprintf("%s(%+d)", c.Rule, c.Points))
	}
	return l
}

// decodeForRules returns the message of a record and the kind and spam score the rules see.
func decodeForRules(ctx context.Context, codec *serde.Codec, c *classify.Classifier, schema string, r *kgo.Record) (*events.Parsed, string, float64, error) {
	if schema == kafka.TopicClassified {
		var cl events.Classified
		if err := codec.Decode(ctx, schema, r.Value, &cl); err != nil {
			return nil, "", 0, err
		}
		return &cl.Message, cl.Classification.Kind, cl.Classification.SpamScore, nil
	}
	var msg events.Parsed
	if err := codec.Decode(ctx, schema, r.Value, &msg); err != nil {
		return nil, "", 0, err
	}
	cl, err := c.Classify(ctx, &msg)
	if err != nil {
		return nil, "", 0, err
	}
	return &msg, cl.Kind, cl.SpamScore, nil
}

// replayRange returns, per partition, the first offset at or after from and the last stable
// offset now: the records to replay.
func replayRange(ctx context.Context, kcfg kafka.Config, env app.Env, topic string, from time.Time) (starts, ends map[int32]int64, err error) {
	adm, err := kafka.NewAdmin(kcfg, env.Logger)
	if err != nil {
		return nil, nil, err
	}
	defer adm.Close()
	after, err := adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topic)
	if err != nil {
		return nil, nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	stable, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	if err := errors.Join(after.Error(), stable.Error()); err != nil {
		return nil, nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	starts, ends = map[int32]int64{}, map[int32]int64{}
	after.Each(func(o kadm.ListedOffset) { starts[o.Partition] = o.Offset })
	stable.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	if len(starts) == 0 {
		return nil, nil, fmt.Errorf("topic %s does not exist or has no partitions", topic)
	}
	return starts, ends, nil
}

// replay reads the committed records of topic from starts up to ends and hands each to fn. A
// partition is done when it reached its end; transaction markers take offsets no record has,
// so a partition whose last offsets are markers ends by idleness instead.
func replay(ctx context.Context, kcfg kafka.Config, env app.Env, topic string, starts, ends map[int32]int64, idle time.Duration, fn func(*kgo.Record) error) error {
	parts := map[int32]kgo.Offset{}
	for p, s := range starts {
		if s < ends[p] {
			parts[p] = kgo.NewOffset().At(s)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	cl, err := kafka.NewClient(kcfg, env.Logger, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	pending := len(parts)
	for pending > 0 {
		pollCtx, cancel := context.WithTimeout(ctx, idle)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fetches.Empty() {
			return nil
		}
		if err := fetches.Err0(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("fetching %s: %w", topic, err)
		}
		for _, r := range fetches.Records() {
			end, ok := ends[r.Partition]
			if !ok || r.Offset >= end {
				continue
			}
			if err := fn(r); err != nil {
				return err
			}
			if r.Offset+1 >= end {
				delete(ends, r.Partition)
				pending--
			}
		}
	}
	return nil
}

func printSummary(w io.Writer, cur, next *rules.Set, s *rules.Summary) {
	fmt.Fprintf(w, "\nrules %s → %s: %d messages, %d would change\n", cur.Version(), next.Version(), s.Messages, s.Changed)
	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		sort.Strings(lines)
		fmt.Fprintf(w, "%s:\n  %s\n", title, strings.Join(lines, "\n  "))
	}
	var lines []string
	for m, n := range s.Bands {
		if m.From != m.To {
			lines = append(lines, fmt.Sprintf("%s → %s: %d", m.From, m.To, n))
		}
	}
	section("score bands", lines)
	lines = nil
	for m, n := range s.Queues {
		if m.From != m.To {
			lines = append(lines, fmt.Sprintf("%s → %s: %d", m.From, m.To, n))
		}
	}
	section("queues", lines)
	lines = nil
	for r, n := range s.Rules {
		lines = append(lines, fmt.Sprintf("%s: %d", r, n))
	}
	section("rule contributions changed", lines)
	lines = nil
	for r, n := range s.NewErrors {
		lines = append(lines, fmt.Sprintf("%s: %d", r, n))
	}
	section("new rules failing at run time", lines)
}
