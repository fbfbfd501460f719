package crm

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchMessages is the corpus size: MAILPIPE_BENCH_CRM_MESSAGES, default 10,000.
func benchMessages(t *testing.T) int {
	t.Helper()
	v := os.Getenv("MAILPIPE_BENCH_CRM_MESSAGES")
	if v == "" {
		return 10_000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("MAILPIPE_BENCH_CRM_MESSAGES=%q: want a positive integer", v)
	}
	return n
}

// TestBenchCRM measures every connector on the full corpus, one connector at a time: upserts
// per second and per-upsert latency for the first delivery and for the replay, and the
// duplicate count after both (which fails the run unless it is 0). It rewrites CRM.md.
func TestBenchCRM(t *testing.T) {
	if os.Getenv("MAILPIPE_BENCH") != "1" {
		t.Skip("a benchmark, not a test: run it with MAILPIPE_BENCH=1 (make bench-crm)")
	}
	rep := benchReport{started: time.Now().UTC(), loadBefore: loadAverage(), workers: workers()}
	c := newCorpus(seed, benchMessages(t))
	rep.corpus = c
	for _, tg := range targets() {
		ok := t.Run(tg.name, func(t *testing.T) {
			r := replayTwice(t, tg, c, rep.workers)
			t.Logf("%s: pass 1 %.0f upserts/s, replay %.0f upserts/s, %s, %d duplicates",
				tg.name, r.first.rate(r.messages), r.replay.rate(r.messages), r.describeKinds(), r.duplicates())
			rep.results = append(rep.results, r)
		})
		if !ok {
			// A failed connector has no figures worth writing down; CRM.md keeps the last good run.
			t.Fatalf("%s failed; CRM.md not rewritten", tg.name)
		}
		rep.targets = append(rep.targets, tg)
	}
	rep.finished, rep.loadAfter = time.Now().UTC(), loadAverage()
	rep.commit = gitDescribe(t)
	out := filepath.Join("..", "CRM.md")
	if err := os.WriteFile(out, []byte(rep.markdown()), 0o644); err != nil {
		t.Fatalf("writing %s: %v", out, err)
	}
	t.Logf("wrote %s", out)
}

type benchReport struct {
	started, finished     time.Time
	loadBefore, loadAfter string
	commit                string
	workers               int
	corpus                corpus
	targets               []target
	results               []result
}

func (r *benchReport) markdown() string {
	var b strings.Builder
	n := len(r.corpus.msgs)
	b.WriteString("# CRM connector benchmark: upserts per second and duplicates after a replay\n\n")
	b.WriteString("Written by `make bench-crm` (TestBenchCRM in e2e/bench/crm); rerun it instead of editing this file. " +
		"MAILPIPE_BENCH_CRM_MESSAGES and MAILPIPE_BENCH_CRM_WORKERS size the run.\n\n")
	fmt.Fprintf(&b, "- Date: %s UTC; the runs took %s\n", r.started.Format("2006-01-02 15:04"), r.finished.Sub(r.started).Round(time.Second))
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), %s memory, Linux %s; load average (1, 5, 15 min) %s before the runs, %s after\n",
		runtime.NumCPU(), procField("/proc/cpuinfo", "model name"), memTotal(), kernel(), r.loadBefore, r.loadAfter)
	fmt.Fprintf(&b, "- %s, without -race, built from the %s; connector, contract server and client share one process "+
		"(GOMAXPROCS=%d), talking HTTP over loopback; PostgreSQL is its own server on loopback\n", runtime.Version(), r.commit, runtime.GOMAXPROCS(0))
	fmt.Fprintf(&b, "- Corpus: %d generated messages (seed %d): distinct Message-IDs, external ids from pkg/mailid, "+
		"%d senders at %d company domains and %d free-mail providers, %d threads (the rest replies into them), "+
		"%d with a stored attachment\n", n, seed, r.corpus.senders, r.corpus.companies, len(freeMail), r.corpus.threads, r.corpus.files)
	fmt.Fprintf(&b, "- Each connector, one after the other, against a fresh system: pass 1 upserts every message in order, "+
		"the replay upserts all of them again in a shuffled order through a second, fresh connector (as after a restart, "+
		"so in-process id caches cannot hide a duplicate); %d goroutines upsert at once in both passes\n\n", r.workers)

	b.WriteString("| connector | messages | pass 1 upserts/s | replay upserts/s | p50 pass 1 / replay | p99 pass 1 / replay | objects | duplicates |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|---|--:|\n")
	for _, res := range r.results {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %s / %s | %s / %s | %s | %d |\n",
			res.target, res.messages, res.first.rate(res.messages), res.replay.rate(res.messages),
			ms(res.first.quantile(0.50)), ms(res.replay.quantile(0.50)), ms(res.first.quantile(0.99)), ms(res.replay.quantile(0.99)),
			res.describeKinds(), res.duplicates())
	}
	b.WriteString("\nUpserts/s: messages over the wall time of the pass. p50 and p99: the latency of one Upsert call " +
		"(every request it makes included), over all calls of the pass. Objects: what the system holds after both passes, " +
		"by kind. Duplicates: objects whose natural key (external id, sender address, company domain, thread key, " +
		"dedupe key) another object of the same kind already holds; every kind must also hold exactly as many distinct " +
		"keys as the corpus has, and the run fails otherwise.\n\n")

	b.WriteString("Outcomes reported by the connectors, and retried upserts (the runner retries a retryable failure " +
		"like the crm-sink does; with no fault injected there should be none):\n\n")
	for _, res := range r.results {
		fmt.Fprintf(&b, "- %s: pass 1 %s; replay %s; %d retries\n", res.target,
			outcomes(res.first.outcomes), outcomes(res.replay.outcomes), res.first.retries+res.replay.retries)
	}

	b.WriteString("\n**Target** (issue: the duplicate count after replaying the messages twice through every connector must be 0):\n\n")
	for _, res := range r.results {
		verdict := "met"
		if res.duplicates() != 0 {
			verdict = "NOT met"
		}
		fmt.Fprintf(&b, "- %s: %d duplicates after %d messages twice — %s\n", res.target, res.duplicates(), res.messages, verdict)
	}

	b.WriteString("\n## What stands in for each system\n\n" +
		"The SaaS CRMs are their contract servers from pkg/crm: in-memory, on httptest over loopback, enforcing the " +
		"validation, uniqueness and auth rules of the documented APIs. They are configured without rate limits, " +
		"search-index lag or injected 429/5xx faults, so the figures are the connectors' own cost (requests per message, " +
		"serialization, JSON) plus the servers', not what the real services would allow: HubSpot, Salesforce and Pipedrive " +
		"rate-limit far below these rates, and their round trips take tens of milliseconds, not tens of microseconds.\n\n")
	for _, tg := range r.targets {
		fmt.Fprintf(&b, "- %s: %s.\n", tg.name, tg.about)
	}
	return b.String()
}

func outcomes(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// gitDescribe names the commit the run was built from, -dirty when the work tree differs.
func gitDescribe(t *testing.T) string {
	cmd := exec.CommandContext(t.Context(), "git", "describe", "--always", "--dirty", "--abbrev=12")
	out, err := cmd.Output()
	if err != nil {
		return "work tree"
	}
	return "work tree at " + strings.TrimSpace(string(out))
}

// procField returns the value of the first "name: value" line of a /proc file, or "?".
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return "?"
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

func memTotal() string {
	var kb int64
	if _, err := fmt.Sscanf(procField("/proc/meminfo", "MemTotal"), "%d kB", &kb); err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
