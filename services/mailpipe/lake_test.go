package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// The export must carry every column of the lake schema: a field added to mail.lake.v1 without
// a column here would silently vanish from the analysts' files.
func TestLakeParquetRowMirrorsLakeRow(t *testing.T) {
	avroFields := map[string]reflect.Type{}
	lt := reflect.TypeFor[events.LakeRow]()
	for i := range lt.NumField() {
		f := lt.Field(i)
		avroFields[strings.Split(f.Tag.Get("avro"), ",")[0]] = f.Type
	}
	pqFields := map[string]reflect.Type{}
	pt := reflect.TypeFor[lakeParquetRow]()
	for i := range pt.NumField() {
		f := pt.Field(i)
		pqFields[strings.Split(f.Tag.Get("parquet"), ",")[0]] = f.Type
	}
	for name, at := range avroFields {
		ptype, ok := pqFields[name]
		switch {
		case !ok:
			t.Errorf("events.LakeRow field %q has no column in lakeParquetRow: add it (and to toParquet)", name)
		case !compatible(at, ptype):
			t.Errorf("column %q: events.LakeRow has %v, lakeParquetRow has %v", name, at, ptype)
		}
	}
	for name := range pqFields {
		if _, ok := avroFields[name]; !ok {
			t.Errorf("lakeParquetRow column %q is not a field of events.LakeRow", name)
		}
	}
}

// compatible reports whether a LakeRow field of type a can be exported as type p: the same type,
// or Go's int (Avro int) as int32.
func compatible(a, p reflect.Type) bool {
	return a == p || (a.Kind() == reflect.Int && p.Kind() == reflect.Int32)
}

func TestParseLakeTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{in: "24h", want: now.Add(-24 * time.Hour)},
		{in: "90m", want: now.Add(-90 * time.Minute)},
		{in: "2026-02-27T08:30:00Z", want: time.Date(2026, 2, 27, 8, 30, 0, 0, time.UTC)},
		{in: "2026-02-27T08:30:00.5+01:00", want: time.Date(2026, 2, 27, 7, 30, 0, 5e8, time.UTC)},
		{in: "-1h", wantErr: "must be positive"},
		{in: "0s", wantErr: "must be positive"},
		{in: "yesterday", wantErr: "neither an RFC 3339 time nor a duration"},
		{in: "2026-02-27", wantErr: "neither an RFC 3339 time nor a duration"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseLakeTime(tt.in, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseLakeTime(%q) error %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("parseLakeTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestLakeExportFlags(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{"lake"}, "usage: mailpipe lake export"},
		{"unknown subcommand", []string{"lake", "import"}, "usage: mailpipe lake export"},
		{"no since", []string{"lake", "export", "--out", "x"}, "--since and --out are required"},
		{"no out", []string{"lake", "export", "--since", "1h"}, "--since and --out are required"},
		{"bad since", []string{"lake", "export", "--since", "last week", "--out", "x"}, "--since: "},
		{"until before since", []string{"lake", "export", "--since", "1h", "--until", "2h", "--out", "x"}, "is not after --since"},
		{"stray argument", []string{"lake", "export", "--since", "1h", "--out", "x", "extra"}, "unexpected arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env, _, _ := testEnv(tt.args...)
			err := run(t.Context(), env)
			if !errors.Is(err, app.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want a config error containing %q", err, tt.want)
			}
		})
	}
}

// lakeFixture is what TestLakeExport puts on the topic.
type lakeFixture struct {
	topic   string
	since   time.Time
	want    []events.LakeRow // the rows the export must write, in file order
	brokers []string
}

// newLakeFixture fills a 3-partition topic on a kfake cluster the way the sink does, rows in
// committed transactions, plus what an export must leave out: a row stamped before since (skipped
// by the offset lookup), a row received before since but written late (filtered on received_at),
// a row of an aborted transaction, and a record that is not Avro.
func newLakeFixture(t *testing.T) lakeFixture {
	t.Helper()
	brokers := kafkatest.NewCluster(t)
	topic := kafkatest.TopicName(t, "mail.lake")
	kafkatest.CreateTopic(t, brokers, topic, 3)
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-time.Hour).Truncate(time.Microsecond).UTC()
	at := func(d time.Duration) *time.Time { v := since.Add(d); return &v }
	row := func(id, target string, received time.Duration, delivered bool) events.LakeRow {
		r := events.LakeRow{
			ID: id, ExternalID: "ext-" + id, Tenant: "acme", RouteID: "r-1", Source: "smtp",
			ReceivedAt: since.Add(received), ParsedAt: at(received + time.Millisecond),
			ClassifiedAt: at(received + 2*time.Millisecond), EnrichedAt: at(received + 3*time.Millisecond),
			ParseStatus: "ok", Kind: "lead", SpamScore: 0.25, LeadScore: 0.75, Queue: "sales",
			Outcome: "failed", Targets: []string{"hubspot", "webhook"}, FromHash: strings.Repeat("ab", 32),
			FromDomain: "example.org", FreeMail: true, AttachmentCount: 2, Size: 4096, ThreadDepth: 1,
			Target: target, Attempts: 3, AttachmentBytes: 1234,
			RecipientHashes: []string{strings.Repeat("cd", 32), strings.Repeat("ef", 32)}, ErrorClass: "crm_5xx",
		}
		if delivered {
			r.DeliveredAt, r.LatencyMs, r.Outcome, r.ErrorClass = at(received+40*time.Millisecond), 40, "created", ""
		}
		return r
	}
	rec := func(p int32, ts time.Time, r events.LakeRow) *kgo.Record {
		v, err := codec.Encode(kafka.TopicLake, &r)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: topic, Partition: p, Key: []byte(r.ID), Value: v, Timestamp: ts}
	}
	now := time.Now()
	old := row("m-old", "webhook", -2*time.Hour, true)
	late := row("m-late", "webhook", -10*time.Minute, true)
	a1, a2 := row("m-a1", "webhook", time.Second, true), row("m-a2", "webhook", 2*time.Second, false)
	a2.Targets, a2.RecipientHashes, a2.ParsedAt, a2.ClassifiedAt, a2.EnrichedAt = nil, nil, nil, nil, nil
	b1h, b1w := row("m-b1", "hubspot", 3*time.Second, true), row("m-b1", "webhook", 3*time.Second, true)
	aborted := row("m-aborted", "webhook", 4*time.Second, true)

	produce := func(txn bool, commit bool, records ...*kgo.Record) {
		t.Helper()
		opts := []kgo.Opt{kgo.RecordPartitioner(kgo.ManualPartitioner())}
		if txn {
			opts = append(opts, kgo.TransactionalID("lake-test-"+topic))
		}
		cl := kafkatest.Client(t, brokers, opts...)
		if txn {
			if err := cl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.ProduceSync(t.Context(), records...).FirstErr(); err != nil {
			t.Fatalf("producing: %v", err)
		}
		if txn {
			if err := cl.EndTransaction(t.Context(), kgo.TransactionEndTry(commit)); err != nil {
				t.Fatalf("ending transaction: %v", err)
			}
		}
		cl.Close()
	}
	produce(false, false,
		rec(0, old.ReceivedAt, old),
		rec(2, old.ReceivedAt, old),
		&kgo.Record{Topic: topic, Partition: 1, Key: []byte("m-garbage"), Value: []byte("not avro at all"), Timestamp: now},
		rec(1, now, late))
	produce(true, true, rec(0, now, a1), rec(0, now, a2), rec(1, now, b1h), rec(1, now, b1w))
	// Aborted at the end of partition 0: the export must leave the row out and stop at the marker.
	produce(true, false, rec(0, now, aborted))
	return lakeFixture{topic: topic, since: since, want: []events.LakeRow{a1, a2, b1h, b1w}, brokers: brokers}
}

func TestLakeExport(t *testing.T) {
	fx := newLakeFixture(t)
	dir := filepath.Join(t.TempDir(), "out")
	var stdout, stderr bytes.Buffer
	env := app.Env{
		Args:   []string{"lake", "export", "--since", fx.since.Format(time.RFC3339Nano), "--out", dir, "--topic", fx.topic},
		Stdout: &stdout, Stderr: &stderr, Logger: slog.New(slog.DiscardHandler),
		Getenv: func(k string) string {
			return map[string]string{"MAILPIPE_KAFKA_BROKERS": strings.Join(fx.brokers, ",")}[k]
		},
	}
	if err := run(t.Context(), env); err != nil {
		t.Fatalf("lake export: %v\nstderr:\n%s", err, stderr.String())
	}
	for _, want := range []string{
		"lake export: 4 rows in 1 files from 2 partitions of " + fx.topic,
		"skipping undecodable record " + fx.topic + "[1]@0: ",
		"1 undecodable records skipped",
		"1 rows outside the window",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	files := strings.Fields(stdout.String())
	if len(files) != 1 {
		t.Fatalf("stdout lists %d files, want 1:\n%s", len(files), stdout.String())
	}
	if ok, _ := regexp.MatchString(`^lake-\d{8}T\d{6}Z-\d{8}T\d{6}Z-0001\.parquet$`, filepath.Base(files[0])); !ok {
		t.Errorf("file name %s does not follow lake-<since>-<until>-<n>.parquet", files[0])
	}
	assertOnlyFiles(t, dir, files)
	assertParquetRows(t, files, fx.want)
	assertParquetSchema(t, files[0])
}

// A window larger than a file's row limit is split into several files, each whole.
func TestLakeExportSplitsFiles(t *testing.T) {
	fx := newLakeFixture(t)
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var stderr bytes.Buffer
	env := app.Env{Stderr: &stderr, Logger: slog.New(slog.DiscardHandler)}
	cfg := kafka.DefaultConfig()
	cfg.Brokers = fx.brokers
	until := fx.since.Add(time.Hour)
	job := lakeExport{topic: fx.topic, out: dir, since: fx.since, until: until, now: time.Now(), rowsPerFile: 3}
	sum, err := exportLake(t.Context(), env, cfg, codec, job)
	if err != nil {
		t.Fatalf("export: %v\n%s", err, stderr.String())
	}
	if sum.rows != 4 || sum.partitions != 2 || sum.skipped != 1 || sum.outside != 1 || len(sum.files) != 2 {
		t.Fatalf("summary %+v, want 4 rows in 2 files from 2 partitions, 1 skipped, 1 outside", sum)
	}
	for i, f := range sum.files {
		want := lakeFileName(job, i+1)
		if filepath.Base(f) != want {
			t.Errorf("file %d is %s, want %s", i+1, filepath.Base(f), want)
		}
	}
	assertOnlyFiles(t, dir, sum.files)
	// Files are sorted within themselves only: compare as a set in arrival order per file.
	got := readParquet(t, sum.files)
	if len(got) != len(fx.want) {
		t.Fatalf("%d rows in the files, want %d", len(got), len(fx.want))
	}
}

func assertOnlyFiles(t *testing.T, dir string, files []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(files) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only the %d exported files (no temporary file left)", names, len(files))
	}
}

func readParquet(t *testing.T, files []string) []lakeParquetRow {
	t.Helper()
	var out []lakeParquetRow
	for _, f := range files {
		rows, err := parquet.ReadFile[lakeParquetRow](f)
		if err != nil {
			t.Fatalf("reading %s back: %v", f, err)
		}
		out = append(out, rows...)
	}
	return out
}

func assertParquetRows(t *testing.T, files []string, want []events.LakeRow) {
	t.Helper()
	got := readParquet(t, files)
	if len(got) != len(want) {
		t.Fatalf("%d rows in the files, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := toParquet(&want[i]), normalizeTimes(got[i])
		if !reflect.DeepEqual(g, w) {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	// Spot-check against the source values, not only against toParquet.
	if g := got[0]; !g.ReceivedAt.Equal(want[0].ReceivedAt) || g.DeliveredAt == nil || !g.DeliveredAt.Equal(*want[0].DeliveredAt) ||
		g.AttachmentCount != 2 || len(g.RecipientHashes) != 2 || g.Targets[1] != "webhook" {
		t.Errorf("first row %+v does not hold the values produced", g)
	}
	if g := got[1]; g.DeliveredAt != nil || g.ParsedAt != nil || len(g.Targets) != 0 || g.ErrorClass != "crm_5xx" {
		t.Errorf("undelivered row %+v: want null timestamps and empty lists", g)
	}
}

// normalizeTimes puts every timestamp in UTC, as toParquet does, so rows compare deeply.
func normalizeTimes(r lakeParquetRow) lakeParquetRow {
	r.ReceivedAt = r.ReceivedAt.UTC()
	r.ParsedAt, r.ClassifiedAt, r.EnrichedAt, r.DeliveredAt = utcPtr(r.ParsedAt), utcPtr(r.ClassifiedAt), utcPtr(r.EnrichedAt), utcPtr(r.DeliveredAt)
	return r
}

// assertParquetSchema checks the logical types DuckDB relies on to read timestamps as
// timestamps and lists as lists.
func assertParquetSchema(t *testing.T, file string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatalf("opening %s: %v", file, err)
	}
	schema := pf.Schema().String()
	for _, want := range []string{
		"required int64 received_at (TIMESTAMP(isAdjustedToUTC=true,unit=MICROS))",
		"optional int64 delivered_at (TIMESTAMP(isAdjustedToUTC=true,unit=MICROS))",
		"optional int64 parsed_at (TIMESTAMP(isAdjustedToUTC=true,unit=MICROS))",
		"required group targets (LIST)",
		"required group recipient_hashes (LIST)",
		"required binary kind (STRING)",
		"required int32 attachment_count (INT(32,true))",
	} {
		if !strings.Contains(schema, want) {
			t.Errorf("schema lacks %q:\n%s", want, schema)
		}
	}
}
