package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	dlqreplay "github.com/mailpipe/mailpipe/pkg/dlq/replay"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

const dlqUsage = `usage: mailpipe dlq <ls|show|replay|history> [flags]

  ls                          count dead letters by partition, stage, class and age
  show --partition P --offset O   one dead letter, its value decoded to JSON
  replay --name N [selection] send dead letters back to their original topics
  history                     list the replays recorded on the audit topic

Run 'mailpipe dlq <command> -h' for its flags. See docs/dlq.md.`

// runDLQ implements `mailpipe dlq`; the work is in package dlq/replay.
func runDLQ(ctx context.Context, env app.Env) error {
	if len(env.Args) == 0 {
		fmt.Fprintln(env.Stderr, dlqUsage)
		return app.ConfigError(errors.New("dlq: no subcommand given"))
	}
	sub := env.Args[0]
	env.Args = env.Args[1:]
	switch sub {
	case "ls":
		return runDLQList(ctx, env)
	case "show":
		return runDLQShow(ctx, env)
	case "replay":
		return runDLQReplay(ctx, env)
	case "history":
		return runDLQHistory(ctx, env)
	case "help", "-h", "--help":
		fmt.Fprintln(env.Stdout, dlqUsage)
		return nil
	default:
		fmt.Fprintln(env.Stderr, dlqUsage)
		return app.ConfigError(fmt.Errorf("dlq: unknown subcommand %q", sub))
	}
}

// dlqFlags are the flags every dlq subcommand has.
type dlqFlags struct {
	fs         *flag.FlagSet
	brokers    string
	topic      string
	auditTopic string
}

func newDLQFlags(name string, env app.Env) *dlqFlags {
	f := &dlqFlags{fs: flag.NewFlagSet("dlq "+name, flag.ContinueOnError)}
	f.fs.SetOutput(env.Stderr)
	f.fs.StringVar(&f.brokers, "brokers", "", "seed brokers (default $MAILPIPE_KAFKA_BROKERS)")
	f.fs.StringVar(&f.topic, "topic", kafka.TopicDLQ, "dead-letter topic")
	f.fs.StringVar(&f.auditTopic, "audit-topic", kafka.TopicDLQAudit, "topic of the replay audit records")
	return f
}

func (f *dlqFlags) parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		return app.ConfigError(err)
	}
	if f.fs.NArg() > 0 {
		return app.ConfigError(fmt.Errorf("%s: unexpected arguments %q", f.fs.Name(), f.fs.Args()))
	}
	return nil
}

func (f *dlqFlags) newClient(env app.Env) (dlqreplay.NewClient, error) {
	cfg, err := kafkaConfig(env, f.brokers)
	if err != nil {
		return nil, err
	}
	return func(opts ...kgo.Opt) (*kgo.Client, error) { return kafka.NewClient(cfg, env.Logger, opts...) }, nil
}

func runDLQList(ctx context.Context, env app.Env) error {
	f := newDLQFlags("ls", env)
	maxReplays := f.fs.Int("max-replays", dlqreplay.DefaultMaxReplays, "replay count from which a dead letter counts as looping")
	asJSON := f.fs.Bool("json", false, "print JSON")
	if err := f.parse(env.Args); err != nil {
		return err
	}
	if *maxReplays < 1 {
		return app.ConfigError(errors.New("dlq ls: --max-replays must be at least 1"))
	}
	newClient, err := f.newClient(env)
	if err != nil {
		return err
	}
	codec, err := serde.NewFromEnv(ctx, env.Getenv)
	if err != nil {
		return err
	}
	s, err := dlqreplay.Summarize(ctx, newClient, dlqreplay.SummaryOptions{Topic: f.topic, AuditTopic: f.auditTopic, MaxReplays: *maxReplays, Decoder: codec})
	if err != nil {
		return fmt.Errorf("dlq ls: %w", err)
	}
	if *asJSON {
		return writeJSON(env.Stdout, s)
	}
	_, err = io.WriteString(env.Stdout, s.Text())
	return err
}

func runDLQShow(ctx context.Context, env app.Env) error {
	f := newDLQFlags("show", env)
	partition := f.fs.Int("partition", -1, "DLQ partition (required)")
	offset := f.fs.Int64("offset", -1, "DLQ offset (required)")
	if err := f.parse(env.Args); err != nil {
		return err
	}
	if *partition < 0 || *offset < 0 {
		return app.ConfigError(errors.New("usage: mailpipe dlq show --partition P --offset O"))
	}
	newClient, err := f.newClient(env)
	if err != nil {
		return err
	}
	codec, err := serde.NewFromEnv(ctx, env.Getenv)
	if err != nil {
		return err
	}
	l, err := dlqreplay.Show(ctx, newClient, f.topic, int32(*partition), *offset, codec, 0) //nolint:gosec // partition numbers are small
	if err != nil {
		return fmt.Errorf("dlq show: %w", err)
	}
	return writeJSON(env.Stdout, l)
}

func runDLQReplay(ctx context.Context, env app.Env) error {
	f := newDLQFlags("replay", env)
	o := dlqreplay.Options{}
	f.fs.StringVar(&o.Name, "name", "", "name of the replay: its checkpoints; the same name resumes (required)")
	f.fs.StringVar(&o.Operator, "operator", env.Getenv("USER"), "who replays, for the audit record (default $USER)")
	partition := f.fs.Int("partition", -1, "replay only this DLQ partition")
	from := f.fs.Int64("from", -1, "first DLQ offset to replay (inclusive; needs --partition)")
	to := f.fs.Int64("to", -1, "DLQ offset to stop before (exclusive; needs --partition)")
	stages := f.fs.String("stage", "", "only dead letters of these stages (comma-separated)")
	classes := f.fs.String("class", "", "only these error classes (comma-separated)")
	since := f.fs.String("since", "", "only last failures at or after this time (RFC 3339, or a duration ago like 6h)")
	until := f.fs.String("until", "", "only last failures before this time (RFC 3339, or a duration ago)")
	f.fs.StringVar(&o.Filter.Tenant, "tenant", "", "only messages of this tenant (decodes the value)")
	f.fs.StringVar(&o.Filter.MessageID, "message-id", "", "only the message with this Message-ID (decodes the value)")
	f.fs.BoolVar(&o.DryRun, "dry-run", false, "print what would be replayed; write nothing")
	rate := f.fs.String("rate", "", "at most this many records per second (N or N/s, N/m)")
	f.fs.IntVar(&o.MaxReplays, "max-replays", dlqreplay.DefaultMaxReplays, "skip dead letters replayed this often already (looping)")
	f.fs.BoolVar(&o.Force, "force", false, "replay looping dead letters too")
	quiet := f.fs.Bool("quiet", false, "no progress lines on stderr")
	if err := f.parse(env.Args); err != nil {
		return err
	}
	o.Topic, o.AuditTopic = f.topic, f.auditTopic
	if err := replayFilter(&o.Filter, *partition, *from, *to, *stages, *classes, *since, *until, time.Now()); err != nil {
		return app.ConfigError(fmt.Errorf("dlq replay: %w", err))
	}
	if o.Name == "" && !o.DryRun {
		return app.ConfigError(errors.New("dlq replay: --name is required (it keys the checkpoints a resume continues from)"))
	}
	if o.MaxReplays < 1 {
		return app.ConfigError(errors.New("dlq replay: --max-replays must be at least 1"))
	}
	if *rate != "" {
		lim, err := rateLimiter(*rate)
		if err != nil {
			return app.ConfigError(fmt.Errorf("dlq replay: --rate: %w", err))
		}
		o.Limiter = lim
	}
	newClient, err := f.newClient(env)
	if err != nil {
		return err
	}
	if o.Decoder, err = serde.NewFromEnv(ctx, env.Getenv); err != nil {
		return err
	}
	if o.DryRun {
		o.Each = func(it dlqreplay.Item) { printDryRunItem(env.Stdout, o.Topic, it) }
	}
	if !*quiet {
		o.Progress = func(p dlqreplay.Progress) { printProgress(env.Stderr, p) }
	}
	a, err := dlqreplay.Run(ctx, newClient, o)
	verb := "replayed"
	if o.DryRun {
		verb = "would replay"
	}
	fmt.Fprintf(env.Stdout, "%s %d, skipped %d looping, %d not selected, %d invalid", verb, a.Replayed, a.Looping, a.Filtered, a.Invalid)
	for _, p := range a.Partitions {
		fmt.Fprintf(env.Stdout, "; p%d [%d,%d)", p.Partition, p.From, p.To)
	}
	fmt.Fprintln(env.Stdout)
	if err != nil {
		if errors.Is(err, context.Canceled) && o.Name != "" {
			fmt.Fprintf(env.Stderr, "interrupted: run again with --name %s to continue\n", o.Name)
		}
		return fmt.Errorf("dlq replay: %w", err)
	}
	return nil
}

// replayFilter fills the selection flags into f and checks them.
func replayFilter(f *dlqreplay.Filter, partition int, from, to int64, stages, classes, since, until string, now time.Time) error {
	if partition >= 0 {
		f.Partitions = []int32{int32(partition)} //nolint:gosec // partition numbers are small
	}
	if (from >= 0 || to >= 0) && partition < 0 {
		return errors.New("--from and --to are offsets of one partition: give --partition too")
	}
	if from >= 0 {
		f.From = from
	}
	if to >= 0 {
		if to == 0 {
			return errors.New("--to 0 selects nothing")
		}
		f.To = to
	}
	f.Stages = splitList(stages)
	for _, c := range splitList(classes) {
		f.Classes = append(f.Classes, failure.Class(c))
	}
	var err error
	if f.Since, err = parseWhen(since, now); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if f.Until, err = parseWhen(until, now); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	return f.Validate()
}

// parseWhen reads an RFC 3339 time or a duration before now ("90m", "2h").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a positive duration", s)
	}
	return now.Add(-d).UTC(), nil
}

// rateLimiter builds a token bucket of one token refilled at the rate, so records go out evenly
// rather than a second's worth at once.
func rateLimiter(s string) (*ratelimit.Memory, error) {
	if _, err := strconv.Atoi(s); err == nil {
		s += "/s"
	}
	var l ratelimit.Limit
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return nil, err
	}
	l.Burst = 1
	return ratelimit.NewMemory(l)
}

func printDryRunItem(w io.Writer, topic string, it dlqreplay.Item) {
	switch it.Action {
	case dlqreplay.ActionReplay, dlqreplay.ActionLooping:
		verb := "would replay"
		if it.Action == dlqreplay.ActionLooping {
			verb = "looping, skip"
		}
		fmt.Fprintf(w, "%s %s[%d]@%d -> %s key=%q stage=%s class=%s replays=%d\n",
			verb, topic, it.Partition, it.Offset, it.Info.OriginalTopic, it.Key, it.Info.Stage, it.Info.Class, it.Info.ReplayCount)
	case dlqreplay.ActionInvalid:
		fmt.Fprintf(w, "invalid, skip %s[%d]@%d: %v\n", topic, it.Partition, it.Offset, it.Err)
	case dlqreplay.ActionFiltered:
	}
}

func printProgress(w io.Writer, p dlqreplay.Progress) {
	eta := "-"
	if p.ETA > 0 {
		eta = p.ETA.String()
	}
	fmt.Fprintf(w, "progress: %d/%d offsets, %d replayed, %d looping, %d not selected, elapsed %s, eta %s\n",
		p.Done, p.Total, p.Counts.Replayed, p.Counts.Looping, p.Counts.Filtered, p.Elapsed.Round(time.Millisecond), eta)
}

func runDLQHistory(ctx context.Context, env app.Env) error {
	f := newDLQFlags("history", env)
	asJSON := f.fs.Bool("json", false, "print the audit records as JSON lines")
	if err := f.parse(env.Args); err != nil {
		return err
	}
	newClient, err := f.newClient(env)
	if err != nil {
		return err
	}
	audits, err := dlqreplay.ReadAudits(ctx, newClient, f.auditTopic, 0)
	if err != nil {
		return fmt.Errorf("dlq history: %w", err)
	}
	if len(audits) == 0 && !*asJSON {
		fmt.Fprintln(env.Stdout, "no replays recorded")
		return nil
	}
	enc := json.NewEncoder(env.Stdout)
	for _, a := range audits {
		if *asJSON {
			if err := enc.Encode(a); err != nil {
				return fmt.Errorf("writing output: %w", err)
			}
			continue
		}
		var ranges []string
		for _, p := range a.Partitions {
			ranges = append(ranges, fmt.Sprintf("p%d[%d,%d)", p.Partition, p.From, p.To))
		}
		status := "ok"
		if a.Error != "" {
			status = "stopped: " + a.Error
		}
		filter, _ := json.Marshal(a.Filter)
		fmt.Fprintf(env.Stdout, "%s  %-20s by %-10s replayed %d, looping %d, not selected %d, invalid %d  filter %s  %s  took %s  %s\n",
			a.Started.Format(time.RFC3339), a.Name, a.Operator, a.Replayed, a.Looping, a.Filtered, a.Invalid,
			filter, strings.Join(ranges, " "), a.Finished.Sub(a.Started).Round(time.Millisecond), status)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}
