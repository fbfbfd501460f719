package bench_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	domain    = "in.example.com"
	recipient = "support@" + domain
	apiKey    = "bench-api-key"
	// redisDB keeps the benchmark's dedupe and thread keys apart from the e2e tests' (DB 7).
	redisDB = 8
)

// settings size one benchmark run; each comes from a MAILPIPE_BENCH_* variable.
type settings struct {
	smtpSessions, smtpMessages int
	httpWorkers, httpMessages  int
	bodyBytes                  int
	largeBytes                 int64
	// repeat is how many times each throughput run is made, each in a fresh process.
	repeat int
	// rev, when set, is a commit to export and build instead of the work tree.
	rev string
}

func loadSettings(t *testing.T) settings {
	t.Helper()
	num := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive integer", name, v)
		}
		return n
	}
	return settings{
		smtpSessions: num("MAILPIPE_BENCH_SMTP_SESSIONS", 20),
		smtpMessages: num("MAILPIPE_BENCH_SMTP_MESSAGES", 5000),
		httpWorkers:  num("MAILPIPE_BENCH_HTTP_WORKERS", 20),
		httpMessages: num("MAILPIPE_BENCH_HTTP_MESSAGES", 5000),
		bodyBytes:    num("MAILPIPE_BENCH_BODY_BYTES", 2048),
		largeBytes:   int64(num("MAILPIPE_BENCH_LARGE_MIB", 50)) << 20,
		repeat:       num("MAILPIPE_BENCH_REPEAT", 5),
		rev:          os.Getenv("MAILPIPE_BENCH_REV"),
	}
}

// requireEnv reads a service address; with MAILPIPE_BENCH=1 a missing one is a failure.
func requireEnv(t *testing.T, name, script string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: start %s (make services-up) and export it, or run make bench", name, script)
	}
	return v
}

// TestBench measures ingress throughput over SMTP and HTTP and its peak memory, each run in a
// fresh ingress process so every VmHWM belongs to that run alone, and writes RESULTS.md.
func TestBench(t *testing.T) {
	if os.Getenv("MAILPIPE_BENCH") != "1" {
		t.Skip("a benchmark, not a test: run it with MAILPIPE_BENCH=1 (make bench)")
	}
	brokers := requireEnv(t, "MAILPIPE_TEST_KAFKA_BROKERS", "scripts/kafka-up.sh")
	redisURL := requireEnv(t, "MAILPIPE_TEST_REDIS_URL", "scripts/redis-up.sh")
	source := smtpSource(t)
	s := loadSettings(t)
	tmp := t.TempDir()
	runID := strconv.FormatInt(time.Now().UnixNano(), 36)

	// given: the binaries built as they ship, the topics applied, an empty Redis database.
	src, built := sourceTree(t, s.rev, tmp)
	bins := build(t, src, tmp, "ingress", "mailpipe")
	apply := exec.CommandContext(t.Context(), bins["mailpipe"], "topics", "apply", "--partitions", "6")
	apply.Env = append(os.Environ(), "MAILPIPE_KAFKA_BROKERS="+brokers)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("mailpipe topics apply: %v\n%s", err, out)
	}
	redisURL = cleanRedis(t, redisURL)
	keyHash := sha256.Sum256([]byte(apiKey))
	env := []string{
		"MAILPIPE_KAFKA_BROKERS=" + brokers,
		"MAILPIPE_REDIS_URL=" + redisURL,
		"MAILPIPE_BLOB_URL=file://" + filepath.Join(tmp, "blobs"),
		"MAILPIPE_INGEST_DOMAINS=" + domain,
		"MAILPIPE_HTTP_API_KEY_SHA256=" + hex.EncodeToString(keyHash[:]),
	}

	rep := report{
		built: built, started: time.Now().UTC(), loadBefore: loadAverage(),
		flush: brokerSetting(t, brokers, "log.flush.interval.messages"),
	}

	// when/then: SMTP load with smtp-source, then HTTP load, each repeated in fresh processes
	// (the machine may be shared, so one run alone says little), then the large message.
	smtpRow := &row{
		name: "SMTP (smtp-source)", messages: s.smtpMessages,
		size: fmt.Sprintf("%d B body", s.bodyBytes), concurrency: fmt.Sprintf("%d sessions", s.smtpSessions),
	}
	httpRow := &row{
		name: "HTTP (POST /v1/messages)", messages: s.httpMessages,
		size: fmt.Sprintf("%d B body", s.bodyBytes), concurrency: fmt.Sprintf("%d workers", s.httpWorkers),
	}
	rep.rows = []*row{smtpRow, httpRow}
	t.Run("smtp", func(t *testing.T) {
		for i := range s.repeat {
			t.Run(strconv.Itoa(i+1), func(t *testing.T) {
				p := startIngress(t, fmt.Sprintf("ingress-smtp-%d", i+1), bins["ingress"], tmp, env)
				p.waitReady(t, 90*time.Second)
				idle, cpu0 := p.memory(t), p.cpu(t)
				from := fmt.Sprintf("smtp-%s-%d@bench.example.org", runID, i+1)
				start := endOffsets(t, brokers)
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
				defer cancel()
				elapsed, clientCPU, err := runSMTPSource(ctx, source, p.smtp, from, recipient, s.smtpSessions, s.smtpMessages, s.bodyBytes)
				peak, cpu1 := p.memory(t), p.cpu(t)
				if err != nil {
					t.Fatal(err)
				}
				got := readRun(t, brokers, start, from, s.smtpMessages, time.Minute)
				checkCount(t, got, s.smtpMessages)
				if err := p.stop(); err != nil {
					t.Error(err)
				}
				smtpRow.samples = append(smtpRow.samples, sample{
					accepted: s.smtpMessages, onTopic: got.records, elapsed: elapsed, idle: idle, peak: peak,
					ingressCPU: cpu1 - cpu0, clientCPU: clientCPU,
				})
			})
		}
	})

	t.Run("http", func(t *testing.T) {
		for i := range s.repeat {
			t.Run(strconv.Itoa(i+1), func(t *testing.T) {
				p := startIngress(t, fmt.Sprintf("ingress-http-%d", i+1), bins["ingress"], tmp, env)
				p.waitReady(t, 90*time.Second)
				idle, cpu0 := p.memory(t), p.cpu(t)
				from := fmt.Sprintf("http-%s-%d@bench.example.org", runID, i+1)
				start := endOffsets(t, brokers)
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
				defer cancel()
				out := runHTTP(ctx, p.http, apiKey, from, recipient, s.httpWorkers, s.httpMessages, s.bodyBytes, fmt.Sprintf("%s-%d", runID, i+1))
				peak, cpu1 := p.memory(t), p.cpu(t)
				if out.accepted != s.httpMessages {
					t.Errorf("%d of %d POSTs answered 202; the others: %v", out.accepted, s.httpMessages, out.failures)
				}
				got := readRun(t, brokers, start, from, out.accepted, time.Minute)
				checkCount(t, got, out.accepted)
				if err := p.stop(); err != nil {
					t.Error(err)
				}
				httpRow.samples = append(httpRow.samples, sample{
					accepted: out.accepted, onTopic: got.records, elapsed: out.elapsed, idle: idle, peak: peak,
					ingressCPU: cpu1 - cpu0, clientCPU: out.cpu,
				})
			})
		}
	})

	t.Run("large", func(t *testing.T) {
		// The message is above the SMTP size default (25 MiB): the limit is raised for this
		// process, and the blob store (configured for every run) takes the claim check.
		p := startIngress(t, "ingress-large", bins["ingress"], tmp, append(env,
			"MAILPIPE_SMTP_MAX_MESSAGE_BYTES="+strconv.FormatInt(s.largeBytes+(8<<20), 10)))
		p.waitReady(t, 90*time.Second)
		before := p.memory(t)
		from := "large-" + runID + "@bench.example.org"
		start := endOffsets(t, brokers)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		sent, elapsed, sendErr := sendLarge(ctx, p.smtp, from, recipient, runID, s.largeBytes)
		after := p.memory(t)
		l := large{sent: sent, elapsed: elapsed, before: before, after: after, err: sendErr}
		if sendErr == nil {
			got := readRun(t, brokers, start, from, 1, time.Minute)
			checkCount(t, got, 1)
			l.record = got.last
			if got.last.RawBlobRef == nil {
				t.Errorf("the %d-byte message is inline on %s, want a blob ref (claim check)", sent, rawTopic)
			}
		}
		if err := p.stop(); err != nil {
			t.Error(err)
		}
		rep.large = &l
	})

	rep.finished, rep.loadAfter = time.Now().UTC(), loadAverage()
	table := rep.markdown(t)
	fmt.Print("\n" + table)
	if t.Failed() || len(smtpRow.samples) != s.repeat || len(httpRow.samples) != s.repeat || rep.large == nil {
		t.Log("not writing RESULTS.md: the run failed or did not run every part")
		return
	}
	if err := os.WriteFile("RESULTS.md", []byte(table), 0o644); err != nil {
		t.Fatalf("writing RESULTS.md: %v", err)
	}
	t.Log("wrote e2e/bench/RESULTS.md")
}

// checkCount compares what read_committed found on the topic with what the clients were told
// was accepted.
func checkCount(t *testing.T, got onTopic, want int) {
	t.Helper()
	if got.records != want {
		t.Errorf("%s holds %d records of this run, the clients got %d acceptances", rawTopic, got.records, want)
	}
	if got.ids != got.records {
		t.Errorf("%s holds %d records of this run under %d distinct ids: duplicates", rawTopic, got.records, got.ids)
	}
}

// cleanRedis empties the benchmark's Redis database, so retry-dedupe keys of an earlier run
// cannot turn this run's messages into duplicates, and returns its URL.
func cleanRedis(t *testing.T, rawURL string) string {
	t.Helper()
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		t.Fatalf("parsing %s: %v", rawURL, err)
	}
	opt.DB = redisDB
	rdb := redis.NewClient(opt)
	defer func() { _ = rdb.Close() }()
	if err := rdb.FlushDB(t.Context()).Err(); err != nil {
		t.Fatalf("flushing redis db %d: %v", redisDB, err)
	}
	return fmt.Sprintf("redis://%s/%d", opt.Addr, redisDB)
}

// sourceTree returns the repository root to build from and says what it is: the work tree
// (with git describe --dirty), or rev exported with git archive into dir, so a run can measure
// a commit while the work tree is being edited.
func sourceTree(t *testing.T, rev, dir string) (root, what string) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatalf("finding the repository root: %v", err)
	}
	git := func(args ...string) string {
		cmd := exec.CommandContext(t.Context(), "git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	if rev == "" {
		return root, "work tree at " + git("describe", "--always", "--dirty", "--abbrev=12")
	}
	sha := git("rev-parse", "--verify", rev+"^{commit}")
	out := filepath.Join(dir, "src")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatalf("creating %s: %v", out, err)
	}
	archive := exec.CommandContext(t.Context(), "sh", "-c", `git archive --format=tar "$1" | tar -x -C "$2"`, "sh", sha, out)
	archive.Dir = root
	if b, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("exporting %s: %v\n%s", sha, err, b)
	}
	return out, "commit " + sha[:12]
}
