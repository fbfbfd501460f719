package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// lakeTopic is the analysts' topic; spelled out, as the other e2e tests spell theirs, so this
// module does not depend on pkg/kafka for a name.
const lakeTopic = "mail.lake.v1"

// lakeFigures is the JSON object interop/lake_analysis.py prints.
type lakeFigures struct {
	Rows          int `json:"rows"`
	Messages      int `json:"messages"`
	DeliveredRows int `json:"delivered_rows"`
	LatencyMs     struct {
		P50 *float64 `json:"p50"`
		P95 *float64 `json:"p95"`
		P99 *float64 `json:"p99"`
	} `json:"latency_ms"`
	Kinds            map[string]int            `json:"kinds"`
	OutcomesByTarget map[string]map[string]int `json:"outcomes_by_target"`
	Parquet          struct {
		Files               int        `json:"files"`
		Rows                int        `json:"rows"`
		Missing             [][]string `json:"missing"`
		Extra               [][]string `json:"extra"`
		PairsEqual          bool       `json:"pairs_equal"`
		ReceivedBeforeSince int        `json:"received_before_since"`
	} `json:"parquet"`
	Topic struct {
		Records     int `json:"records"`
		Outside     int `json:"outside"`
		Undecodable int `json:"undecodable"`
		Partitions  int `json:"partitions"`
	} `json:"topic"`
}

// requireLakePython fails, never skips, when the analysts' Python stack is missing: a missing
// dependency is a broken test environment, and scripts/deps.sh is what provides it.
func requireLakePython(t *testing.T) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "python3", "-c", "import duckdb, confluent_kafka, fastavro").CombinedOutput()
	if err != nil {
		t.Fatalf("python3 cannot import duckdb, confluent_kafka and fastavro (%v): run scripts/deps.sh, which `make test` runs\n%s", err, out)
	}
}

// exportLakeParquet runs `mailpipe lake export` and returns the directory it wrote to.
func exportLakeParquet(t *testing.T, mailpipeBin, brokers, topic string, since time.Time) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "lake")
	cmd := exec.CommandContext(ctx, mailpipeBin, "lake", "export", "--since", since.UTC().Format(time.RFC3339Nano),
		"--out", dir, "--brokers", brokers, "--topic", topic)
	cmd.Env = append(os.Environ(), "MAILPIPE_LOG_LEVEL=warn")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mailpipe lake export: %v\n%s", err, stderr.String())
	}
	t.Logf("%s", strings.TrimSpace(stderr.String()))
	return dir
}

// analyseLake runs interop/lake_analysis.py on topic (rows received since since) and the
// exported Parquet files in dir.
func analyseLake(t *testing.T, brokers, topic string, since time.Time, dir string) lakeFigures {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "interop/lake_analysis.py", "--brokers", brokers,
		"--schema", "../schemas/mail.lake.v1.avsc", "--topic", topic,
		"--since", since.UTC().Format(time.RFC3339Nano), "--parquet", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("interop/lake_analysis.py: %v\n%s", err, stderr.String())
	}
	var f lakeFigures
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("lake_analysis.py printed %q: %v", out, err)
	}
	t.Logf("lake_analysis.py: %s\n%s", bytes.TrimSpace(out), strings.TrimSpace(stderr.String()))
	return f
}

// checkLakeFigures asserts what holds for any run: rows = messages × targets, ordered positive
// percentiles, a kind mix that adds up and has every kind sent, and Parquet files holding the
// topic's (id, target) pairs.
func checkLakeFigures(t *testing.T, f lakeFigures, messages int, targets []string, wantKinds map[string]int) {
	t.Helper()
	if want := messages * len(targets); f.Rows != want {
		t.Errorf("lake has %d rows since the start of the test, want %d messages × %d targets = %d", f.Rows, messages, len(targets), want)
	}
	if f.Messages != messages {
		t.Errorf("lake rows name %d messages, want %d", f.Messages, messages)
	}
	p50, p95, p99 := f.LatencyMs.P50, f.LatencyMs.P95, f.LatencyMs.P99
	if p50 == nil || p95 == nil || p99 == nil || *p50 <= 0 || *p50 > *p95 || *p95 > *p99 {
		t.Errorf("latency percentiles %s: want 0 < p50 <= p95 <= p99", mustJSON(f.LatencyMs))
	}
	sum := 0
	for _, n := range f.Kinds {
		sum += n
	}
	if sum != f.Rows {
		t.Errorf("kind mix %v adds up to %d, want the %d rows", f.Kinds, sum, f.Rows)
	}
	for kind, n := range wantKinds {
		if f.Kinds[kind] < n {
			t.Errorf("kind mix %v: %d rows of kind %q, want at least %d", f.Kinds, f.Kinds[kind], kind, n)
		}
	}
	gotTargets := make([]string, 0, len(f.OutcomesByTarget))
	for target := range f.OutcomesByTarget {
		gotTargets = append(gotTargets, target)
	}
	sort.Strings(gotTargets)
	if want := slices.Sorted(slices.Values(targets)); !slices.Equal(gotTargets, want) {
		t.Errorf("outcomes by target %v, want targets %v", f.OutcomesByTarget, want)
	}
	if !f.Parquet.PairsEqual || f.Parquet.Rows != f.Rows || f.Parquet.Files == 0 || f.Parquet.ReceivedBeforeSince != 0 {
		t.Errorf("Parquet export (%d files, %d rows, %d received before since) differs from the topic's %d rows: missing %v, extra %v",
			f.Parquet.Files, f.Parquet.Rows, f.Parquet.ReceivedBeforeSince, f.Rows, f.Parquet.Missing, f.Parquet.Extra)
	}
}

// checkLakeAnalysis is the analysts' check of a pipeline run that sent messages (each written to
// every one of targets) since since, with wantKinds the kinds the webhook saw: export the rows
// to Parquet, analyse topic and files with DuckDB, and judge the figures.
func checkLakeAnalysis(t *testing.T, mailpipeBin, brokers string, since time.Time, messages int, targets []string, wantKinds map[string]int) {
	t.Helper()
	requireLakePython(t)
	dir := exportLakeParquet(t, mailpipeBin, brokers, lakeTopic, since)
	f := analyseLake(t, brokers, lakeTopic, since, dir)
	checkLakeFigures(t, f, messages, targets, wantKinds)
	if f.Topic.Undecodable != 0 {
		t.Errorf("%d lake records did not decode with the .avsc", f.Topic.Undecodable)
	}
}

// payloadKinds counts the webhook payloads by classification kind.
func payloadKinds(payloads map[string]map[string]any) map[string]int {
	out := map[string]int{}
	for _, p := range payloads {
		c, _ := p["classification"].(map[string]any)
		if k, _ := c["kind"].(string); k != "" {
			out[k]++
		}
	}
	return out
}

// TestLakeAnalysisExact runs the export and the analysis on a topic of the real broker filled
// with rows whose figures are known, written in transactions as the sink writes them, next to
// what both must leave out: rows stamped before since, a row received before since but written
// late, an aborted row and a record that is not Avro. It holds the SQL to exact numbers, which
// a pipeline run (timing-dependent) cannot.
func TestLakeAnalysisExact(t *testing.T) {
	brokers := env(t, "MAILPIPE_TEST_KAFKA_BROKERS", "scripts/kafka-up.sh")
	requireLakePython(t)
	seed := strings.Split(brokers, ",")
	topic := fmt.Sprintf("mail.lake.e2e-%d", time.Now().UnixNano()) // a topic of its own on the shared broker
	createTopic(t, seed, topic, 3)
	codec, err := serde.New(t.Context())
	must(t, err, "codec")
	bins := buildServices(t, t.TempDir(), "mailpipe")

	since := time.Now().Add(-time.Hour).Truncate(time.Microsecond).UTC()
	kinds := []string{"human", "human", "bounce", "auto_reply", "human", "spam", "list", "human", "bounce", "notification"}
	targets := []string{"hubspot", "webhook"}
	var latencies []float64
	var inWindow []*kgo.Record
	encode := func(r *events.LakeRow, ts time.Time) *kgo.Record {
		v, err := codec.Encode(lakeTopic, r)
		must(t, err, "encoding lake row")
		return &kgo.Record{Topic: topic, Key: []byte(r.ID), Value: v, Timestamp: ts}
	}
	row := func(i int, target string, received time.Time) *events.LakeRow {
		r := &events.LakeRow{
			ID: fmt.Sprintf("m-%02d", i), Tenant: "default", Source: "smtp", ReceivedAt: received,
			Kind: kinds[i%len(kinds)], Outcome: "created", Target: target, Targets: targets,
			FromHash: strings.Repeat("0f", 32), RecipientHashes: []string{},
		}
		// Latencies 100 ms apart per message, the hubspot row 7 ms behind the webhook one; the
		// last message's hubspot row failed (no delivered_at: out of the percentiles).
		latency := int64(100*(i+1)) + map[string]int64{"webhook": 0, "hubspot": 7}[target]
		if i == len(kinds)-1 && target == "hubspot" {
			r.Outcome, r.ErrorClass = "failed", "crm_5xx"
			return r
		}
		delivered := received.Add(time.Duration(latency) * time.Millisecond)
		r.DeliveredAt, r.LatencyMs = &delivered, latency
		latencies = append(latencies, float64(latency))
		return r
	}
	now := time.Now()
	for i := range kinds {
		for _, target := range targets {
			inWindow = append(inWindow, encode(row(i, target, since.Add(time.Duration(i+1)*time.Second)), now))
		}
	}
	early := encode(&events.LakeRow{ID: "m-early", Kind: "human", Target: "webhook", ReceivedAt: since.Add(-2 * time.Hour)}, since.Add(-2*time.Hour))
	late := encode(&events.LakeRow{ID: "m-late", Kind: "human", Target: "webhook", ReceivedAt: since.Add(-time.Minute)}, now)
	aborted := encode(&events.LakeRow{ID: "m-aborted", Kind: "human", Target: "webhook", ReceivedAt: since.Add(time.Minute)}, now)
	garbage := &kgo.Record{Topic: topic, Key: []byte("m-garbage"), Value: []byte("not avro"), Timestamp: now}

	produceLake(t, seed, "", true, early, late, garbage)
	produceLake(t, seed, "lake-analysis-"+topic, true, inWindow...)
	produceLake(t, seed, "lake-analysis-"+topic, false, aborted)

	dir := exportLakeParquet(t, bins["mailpipe"], brokers, topic, since)
	f := analyseLake(t, brokers, topic, since, dir)
	checkLakeFigures(t, f, len(kinds), targets, map[string]int{"human": 8, "bounce": 4, "auto_reply": 2, "spam": 2, "list": 2, "notification": 2})

	sort.Float64s(latencies)
	for _, q := range []struct {
		name string
		p    float64
		got  *float64
	}{{"p50", 0.5, f.LatencyMs.P50}, {"p95", 0.95, f.LatencyMs.P95}, {"p99", 0.99, f.LatencyMs.P99}} {
		if want := quantileCont(latencies, q.p); q.got == nil || math.Abs(*q.got-want) > 1e-9 {
			t.Errorf("%s latency %s, want %v", q.name, mustJSON(q.got), want)
		}
	}
	if f.DeliveredRows != len(latencies) {
		t.Errorf("%d delivered rows, want %d", f.DeliveredRows, len(latencies))
	}
	wantOutcomes := map[string]map[string]int{"hubspot": {"created": 9, "failed": 1}, "webhook": {"created": 10}}
	if string(mustJSON(f.OutcomesByTarget)) != string(mustJSON(wantOutcomes)) {
		t.Errorf("outcomes by target %v, want %v", f.OutcomesByTarget, wantOutcomes)
	}
	if f.Topic.Outside != 1 || f.Topic.Undecodable != 1 {
		t.Errorf("read %d rows outside the window and %d undecodable records, want 1 (the late row) and 1 (the garbage)",
			f.Topic.Outside, f.Topic.Undecodable)
	}
}

// quantileCont is SQL's quantile_cont: linear interpolation between the closest ranks.
func quantileCont(sorted []float64, p float64) float64 {
	pos := p * float64(len(sorted)-1)
	lo := math.Floor(pos)
	hi := math.Ceil(pos)
	return sorted[int(lo)] + (pos-lo)*(sorted[int(hi)]-sorted[int(lo)])
}

// produceLake writes records, in one transaction ended with commit when txnID is set, or
// plainly otherwise.
func produceLake(t *testing.T, brokers []string, txnID string, commit bool, records ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var opts []kgo.Opt
	if txnID != "" {
		opts = append(opts, kgo.TransactionalID(txnID))
	}
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(brokers...))...)
	must(t, err, "kafka client")
	defer cl.Close()
	if txnID != "" {
		must(t, cl.BeginTransaction(), "beginning transaction")
	}
	must(t, cl.ProduceSync(ctx, records...).FirstErr(), "producing %d records", len(records))
	if txnID != "" {
		must(t, cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)), "ending transaction")
	}
}

// createTopic creates topic and waits until every partition has a leader.
func createTopic(t *testing.T, brokers []string, topic string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	must(t, err, "kafka client")
	defer cl.Close()
	adm := kadm.NewClient(cl)
	_, err = adm.CreateTopic(ctx, partitions, -1, nil, topic)
	must(t, err, "creating topic %s", topic)
	eventually(t, 30*time.Second, "topic "+topic+" to have leaders", func() (bool, string) {
		// WithAuthorizedOps skips the client's metadata cache, which answers "unknown topic" a while.
		td, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), topic)
		if err != nil {
			return false, err.Error()
		}
		d := td[topic]
		if d.Err != nil || len(d.Partitions) != int(partitions) {
			return false, fmt.Sprintf("%d partitions, %v", len(d.Partitions), d.Err)
		}
		for _, p := range d.Partitions {
			if p.Leader < 0 {
				return false, fmt.Sprintf("partition %d has no leader", p.Partition)
			}
		}
		return true, ""
	})
}
