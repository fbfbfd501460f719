package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// lakeRowsPerFile bounds a Parquet file: large enough for DuckDB to scan efficiently, small
// enough that the export never holds more than this many rows in memory.
const lakeRowsPerFile = 100_000

// lakeParquetRow is one mail.lake.v1 row as the export writes it. It mirrors events.LakeRow
// field for field, column names being the Avro field names (TestLakeParquetRowMirrorsLakeRow
// fails when the schema grows a field this struct lacks). Timestamps are TIMESTAMP(MICROS, UTC)
// so that DuckDB and Spark read them as instants, not as bare integers.
type lakeParquetRow struct {
	ID              string     `parquet:"id"`
	ExternalID      string     `parquet:"external_id"`
	Tenant          string     `parquet:"tenant,dict"`
	RouteID         string     `parquet:"route_id,dict"`
	Source          string     `parquet:"source,dict"`
	ReceivedAt      time.Time  `parquet:"received_at,timestamp(microsecond:utc)"`
	ParsedAt        *time.Time `parquet:"parsed_at,optional,timestamp(microsecond:utc)"`
	ClassifiedAt    *time.Time `parquet:"classified_at,optional,timestamp(microsecond:utc)"`
	EnrichedAt      *time.Time `parquet:"enriched_at,optional,timestamp(microsecond:utc)"`
	DeliveredAt     *time.Time `parquet:"delivered_at,optional,timestamp(microsecond:utc)"`
	LatencyMs       int64      `parquet:"latency_ms"`
	ParseStatus     string     `parquet:"parse_status,dict"`
	Kind            string     `parquet:"kind,dict"`
	SpamScore       float64    `parquet:"spam_score"`
	LeadScore       float64    `parquet:"lead_score"`
	Queue           string     `parquet:"queue,dict"`
	Outcome         string     `parquet:"outcome,dict"`
	Targets         []string   `parquet:"targets,list"`
	FromHash        string     `parquet:"from_hash"`
	FromDomain      string     `parquet:"from_domain,dict"`
	FreeMail        bool       `parquet:"free_mail"`
	AttachmentCount int32      `parquet:"attachment_count"`
	Size            int64      `parquet:"size"`
	ThreadDepth     int32      `parquet:"thread_depth"`
	Duplicate       bool       `parquet:"duplicate"`
	Target          string     `parquet:"target,dict"`
	Attempts        int32      `parquet:"attempts"`
	AttachmentBytes int64      `parquet:"attachment_bytes"`
	RecipientHashes []string   `parquet:"recipient_hashes,list"`
	ErrorClass      string     `parquet:"error_class,dict"`
}

// toParquet converts a decoded row. Avro int fields are 32-bit, so the narrowing cannot lose
// anything a valid record holds.
func toParquet(r *events.LakeRow) lakeParquetRow {
	return lakeParquetRow{
		ID:              r.ID,
		ExternalID:      r.ExternalID,
		Tenant:          r.Tenant,
		RouteID:         r.RouteID,
		Source:          r.Source,
		ReceivedAt:      r.ReceivedAt.UTC(),
		ParsedAt:        utcPtr(r.ParsedAt),
		ClassifiedAt:    utcPtr(r.ClassifiedAt),
		EnrichedAt:      utcPtr(r.EnrichedAt),
		DeliveredAt:     utcPtr(r.DeliveredAt),
		LatencyMs:       r.LatencyMs,
		ParseStatus:     r.ParseStatus,
		Kind:            r.Kind,
		SpamScore:       r.SpamScore,
		LeadScore:       r.LeadScore,
		Queue:           r.Queue,
		Outcome:         r.Outcome,
		Targets:         nonNil(r.Targets),
		FromHash:        r.FromHash,
		FromDomain:      r.FromDomain,
		FreeMail:        r.FreeMail,
		AttachmentCount: int32(r.AttachmentCount), //nolint:gosec // Avro int
		Size:            r.Size,
		ThreadDepth:     int32(r.ThreadDepth), //nolint:gosec // Avro int
		Duplicate:       r.Duplicate,
		Target:          r.Target,
		Attempts:        int32(r.Attempts), //nolint:gosec // Avro int
		AttachmentBytes: r.AttachmentBytes,
		RecipientHashes: nonNil(r.RecipientHashes),
		ErrorClass:      r.ErrorClass,
	}
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// nonNil keeps an empty list an empty LIST rather than relying on how a writer treats nil.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// lakeExport is what `mailpipe lake export` was asked to do.
type lakeExport struct {
	topic       string
	out         string
	since       time.Time
	until       time.Time // zero: no upper bound
	now         time.Time // names the files when until is open
	rowsPerFile int
}

// lakeSummary is what an export did, printed on stderr.
type lakeSummary struct {
	rows       int
	files      []string
	partitions int
	skipped    int // undecodable records
	outside    int // decoded rows whose received_at is outside [since, until)
}

// runLake implements `mailpipe lake export`.
func runLake(ctx context.Context, env app.Env) error {
	if len(env.Args) == 0 || env.Args[0] != "export" {
		return app.ConfigError(errors.New("usage: mailpipe lake export --since TIME --out DIR [flags]"))
	}
	fs := flag.NewFlagSet("lake export", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	brokers := fs.String("brokers", "", "seed brokers (default $MAILPIPE_KAFKA_BROKERS)")
	topic := fs.String("topic", kafka.TopicLake, "lake topic to read")
	sinceFlag := fs.String("since", "", "export rows received at or after this time: RFC 3339, or a duration such as 24h meaning that long ago (required)")
	untilFlag := fs.String("until", "", "export rows received before this time: RFC 3339 or a duration ago (default: no bound)")
	out := fs.String("out", "", "directory to write the Parquet files into (required)")
	if err := fs.Parse(env.Args[1:]); err != nil {
		return app.ConfigError(err)
	}
	if fs.NArg() != 0 {
		return app.ConfigError(fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	now := time.Now()
	if *sinceFlag == "" || *out == "" {
		return app.ConfigError(errors.New("--since and --out are required"))
	}
	since, err := parseLakeTime(*sinceFlag, now)
	if err != nil {
		return app.ConfigError(fmt.Errorf("--since: %w", err))
	}
	var until time.Time
	if *untilFlag != "" {
		if until, err = parseLakeTime(*untilFlag, now); err != nil {
			return app.ConfigError(fmt.Errorf("--until: %w", err))
		}
		if !until.After(since) {
			return app.ConfigError(fmt.Errorf("--until %s is not after --since %s", until.Format(time.RFC3339), since.Format(time.RFC3339)))
		}
	}
	if err := os.MkdirAll(*out, 0o750); err != nil {
		return fmt.Errorf("creating output directory: %w", err)
	}
	kcfg, err := kafkaConfig(env, *brokers)
	if err != nil {
		return err
	}
	codec, err := serde.NewFromEnv(ctx, env.Getenv)
	if err != nil {
		return err
	}
	job := lakeExport{topic: *topic, out: *out, since: since, until: until, now: now, rowsPerFile: lakeRowsPerFile}
	sum, err := exportLake(ctx, env, kcfg, codec, job)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "lake export: %d rows in %d files from %d partitions of %s (received %s to %s)",
		sum.rows, len(sum.files), sum.partitions, job.topic, since.UTC().Format(time.RFC3339), untilText(until))
	if sum.outside > 0 {
		fmt.Fprintf(env.Stderr, "; %d rows outside the window left out", sum.outside)
	}
	if sum.skipped > 0 {
		fmt.Fprintf(env.Stderr, "; %d undecodable records skipped", sum.skipped)
	}
	fmt.Fprintln(env.Stderr)
	for _, f := range sum.files {
		fmt.Fprintln(env.Stdout, f)
	}
	return nil
}

func untilText(until time.Time) string {
	if until.IsZero() {
		return "now"
	}
	return until.UTC().Format(time.RFC3339)
}

// parseLakeTime reads an RFC 3339 time, or a duration meaning that long before now, which is
// what an analyst usually wants ("the last 24h").
func parseLakeTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration like 24h", s)
	}
	if d <= 0 {
		return time.Time{}, fmt.Errorf("duration %q must be positive (it is how long ago)", s)
	}
	return now.Add(-d), nil
}

// lakePartition is the offset range of one partition the export reads.
type lakePartition struct {
	start, end int64 // end: first offset past the last stable offset listed at start
}

// exportLake reads the lake topic between the first offset at or after since and the end
// offsets listed when it starts (so it terminates while the sink keeps writing), and writes
// the rows received in [since, until) to Parquet files.
func exportLake(ctx context.Context, env app.Env, kcfg kafka.Config, codec *serde.Codec, job lakeExport) (lakeSummary, error) {
	var sum lakeSummary
	plan, err := planLakeRead(ctx, env, kcfg, job)
	if err != nil {
		return sum, err
	}
	sum.partitions = len(plan)
	w := &lakeFileWriter{job: job}
	defer w.abort()
	if len(plan) > 0 {
		if err := readLake(ctx, env, kcfg, codec, job, plan, w, &sum); err != nil {
			return sum, err
		}
	}
	if err := w.flush(); err != nil {
		return sum, err
	}
	sum.files = w.files
	return sum, nil
}

// planLakeRead lists, per partition, where records stamped at or after since begin and where
// the committed records end. Partitions with nothing in between are left out.
func planLakeRead(ctx context.Context, env app.Env, kcfg kafka.Config, job lakeExport) (map[int32]lakePartition, error) {
	adm, err := kafka.NewAdmin(kcfg, env.Logger)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	// The last stable offset, not the high watermark: records of a transaction still open are
	// invisible to a read_committed consumer, so waiting for them could take until it ends.
	ends, err := adm.ListCommittedOffsets(ctx, job.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", job.topic, err)
	}
	// Record timestamps are the sink's produce time, never earlier than received_at, so no row
	// received after since sits before this offset.
	starts, err := adm.ListOffsetsAfterMilli(ctx, job.since.UnixMilli(), job.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s after %s: %w", job.topic, job.since.Format(time.RFC3339), err)
	}
	plan := map[int32]lakePartition{}
	var missing []int32
	ends.Each(func(e kadm.ListedOffset) {
		s, ok := starts.Lookup(e.Topic, e.Partition)
		if !ok {
			missing = append(missing, e.Partition)
			return
		}
		if s.Offset < e.Offset {
			plan[e.Partition] = lakePartition{start: s.Offset, end: e.Offset}
		}
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("listing offsets of %s after %s: no answer for partitions %v", job.topic, job.since.Format(time.RFC3339), missing)
	}
	return plan, nil
}

// readLake consumes every planned partition up to its end offset.
func readLake(ctx context.Context, env app.Env, kcfg kafka.Config, codec *serde.Codec, job lakeExport,
	plan map[int32]lakePartition, w *lakeFileWriter, sum *lakeSummary,
) error {
	offsets := map[int32]kgo.Offset{}
	for p, r := range plan {
		offsets[p] = kgo.NewOffset().At(r.start)
	}
	// Control records are kept because the commit marker is the last offset before the end of
	// a transactional partition: without it a read_committed reader never sees the end offset
	// and could not tell "done" from "waiting".
	cl, err := kafka.NewClient(kcfg, env.Logger,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{job.topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords())
	if err != nil {
		return err
	}
	defer cl.Close()
	remaining := len(plan)
	done := map[int32]bool{}
	for remaining > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w (%d partitions not read to the end)", job.topic, err, remaining)
		}
		var fetchErr error
		fetches.EachError(func(topic string, p int32, err error) {
			fetchErr = errors.Join(fetchErr, fmt.Errorf("fetching %s[%d]: %w", topic, p, err))
		})
		if fetchErr != nil {
			return fetchErr
		}
		for _, r := range fetches.Records() {
			end := plan[r.Partition].end
			if done[r.Partition] || r.Offset >= end {
				continue // written after the export started
			}
			if r.Offset == end-1 {
				done[r.Partition] = true
				remaining--
			}
			if r.Attrs.IsControl() {
				continue
			}
			if err := addLakeRecord(ctx, env, codec, job, r, w, sum); err != nil {
				return err
			}
		}
	}
	return nil
}

// addLakeRecord decodes one record and queues its row if it falls in the window. A record that
// does not decode is reported and skipped: one bad record must not cost the analyst the export.
func addLakeRecord(ctx context.Context, env app.Env, codec *serde.Codec, job lakeExport, r *kgo.Record,
	w *lakeFileWriter, sum *lakeSummary,
) error {
	var row events.LakeRow
	var err error
	if r.Value == nil {
		err = errors.New("record has no value")
	} else {
		err = codec.Decode(ctx, kafka.TopicLake, r.Value, &row) // --topic may name a copy; the schema is the lake's
	}
	if err != nil {
		sum.skipped++
		fmt.Fprintf(env.Stderr, "lake export: skipping undecodable record %s[%d]@%d: %v\n", r.Topic, r.Partition, r.Offset, err)
		return nil
	}
	if row.ReceivedAt.Before(job.since) || (!job.until.IsZero() && !row.ReceivedAt.Before(job.until)) {
		sum.outside++
		return nil
	}
	sum.rows++
	return w.add(toParquet(&row))
}

// lakeFileWriter batches rows into Parquet files of job.rowsPerFile rows. Each file is written
// under a temporary name and renamed when complete, so a reader of the directory never sees a
// partial file and an interrupted export leaves no file that looks whole.
type lakeFileWriter struct {
	job   lakeExport
	rows  []lakeParquetRow
	files []string
	tmp   string // the file being written, removed by abort
}

func (w *lakeFileWriter) add(row lakeParquetRow) error {
	w.rows = append(w.rows, row)
	if len(w.rows) >= w.job.rowsPerFile {
		return w.flush()
	}
	return nil
}

// flush writes the queued rows, if any, to the next file.
func (w *lakeFileWriter) flush() error {
	if len(w.rows) == 0 {
		return nil
	}
	// Ordered by time, then id and target, so a file reads well and two exports of the same
	// window produce the same bytes.
	sort.Slice(w.rows, func(i, j int) bool {
		a, b := &w.rows[i], &w.rows[j]
		if !a.ReceivedAt.Equal(b.ReceivedAt) {
			return a.ReceivedAt.Before(b.ReceivedAt)
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Target < b.Target
	})
	name := filepath.Join(w.job.out, lakeFileName(w.job, len(w.files)+1))
	f, err := os.CreateTemp(w.job.out, ".lake-*.parquet.tmp")
	if err != nil {
		return fmt.Errorf("creating Parquet file: %w", err)
	}
	w.tmp = f.Name()
	if err := writeLakeParquet(f, w.rows); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.Rename(w.tmp, name); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	w.tmp = ""
	w.files = append(w.files, name)
	w.rows = w.rows[:0]
	return nil
}

// abort removes a file left half-written by a failed flush.
func (w *lakeFileWriter) abort() {
	if w.tmp != "" {
		_ = os.Remove(w.tmp)
		w.tmp = ""
	}
}

func writeLakeParquet(out io.Writer, rows []lakeParquetRow) error {
	pw := parquet.NewGenericWriter[lakeParquetRow](out, parquet.Compression(&parquet.Zstd))
	if _, err := pw.Write(rows); err != nil {
		return fmt.Errorf("encoding rows: %w", err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("finishing file: %w", err)
	}
	return nil
}

// lakeFileName names the n-th file (from 1) of an export after its window, so exports of
// different windows never overwrite each other, e.g. lake-20260101T000000Z-20260102T000000Z-0001.parquet.
func lakeFileName(job lakeExport, n int) string {
	const stamp = "20060102T150405Z"
	until := job.until
	if until.IsZero() {
		until = job.now
	}
	return fmt.Sprintf("lake-%s-%s-%04d.parquet", job.since.UTC().Format(stamp), until.UTC().Format(stamp), n)
}
