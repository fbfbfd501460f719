package bench_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// sample is one throughput run in one fresh ingress process.
type sample struct {
	accepted, onTopic int
	elapsed           time.Duration
	idle, peak        memory
	// ingressCPU and clientCPU are the processor time ingress and the load client used during
	// the run: on a small machine they compete for the same cores.
	ingressCPU, clientCPU time.Duration
}

func (s sample) rate() float64 { return float64(s.accepted) / s.elapsed.Seconds() }

// row is one kind of throughput run and its repeats.
type row struct {
	name, size, concurrency string
	messages                int
	samples                 []sample
}

// large is the single large message run.
type large struct {
	sent          int64
	elapsed       time.Duration
	before, after memory
	err           error
	record        events.Raw
}

// report collects a run's figures and renders RESULTS.md.
type report struct {
	built             string
	started, finished time.Time
	rows              []*row
	// loadBefore and loadAfter are the load averages around the runs.
	loadBefore, loadAfter string
	// flush is the broker's log.flush.interval.messages: 1 means an fsync on every append.
	flush string
	large *large
}

func (r *report) markdown(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# Ingress benchmark\n\n")
	b.WriteString("Written by `make bench` (TestBench in e2e/bench); rerun it instead of editing this file. " +
		"Sizes come from MAILPIPE_BENCH_SMTP_SESSIONS, _SMTP_MESSAGES, _HTTP_WORKERS, _HTTP_MESSAGES, _BODY_BYTES, " +
		"_LARGE_MIB and _REPEAT; MAILPIPE_BENCH_REV=<commit> builds that commit instead of the work tree.\n\n")
	fmt.Fprintf(&b, "- Date: %s UTC; the runs took %s\n", r.started.Format("2006-01-02 15:04"), r.finished.Sub(r.started).Round(time.Second))
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), %s memory, Linux %s\n", runtime.NumCPU(), cpuModel(), memTotal(), kernel())
	fmt.Fprintf(&b, "- Kafka %s (scripts/kafka/pom.xml): one KRaft broker on loopback (log.flush.interval.messages=%s; 1 is an fsync on every append), "+
		"acks=all idempotent producer\n", kafkaVersion(t), r.flush)
	fmt.Fprintf(&b, "- Go %s; ingress built from the %s, without -race, default settings "+
		"(log level info, Redis retry dedupe and thread index, file:// blob store)\n", runtime.Version(), r.built)
	fmt.Fprintf(&b, "- The broker, redis-server, ingress and the load clients share the machine's CPUs; "+
		"load average (1, 5, 15 min) %s before the runs, %s after.\n", r.loadBefore, r.loadAfter)
	b.WriteString("- Every run is a fresh ingress process, so each peak RSS (VmHWM from /proc/PID/status) is that run's alone; " +
		"\"on topic\" counts the run's records read back from mail.raw.v1 with read_committed.\n\n")

	b.WriteString("## Throughput\n\n")
	b.WriteString("| run | messages × runs | size | concurrency | accepted msg/s: median (min–max) | on topic | RSS idle | peak RSS (max) | ingress CPU | client CPU |\n")
	b.WriteString("|---|--:|---|---|--:|--:|--:|--:|--:|--:|\n")
	var ceilings []string
	latencyBound := true
	for _, x := range r.rows {
		rates := make([]float64, len(x.samples))
		var onTopic int
		var idle, ingressCPU, clientCPU []float64
		var peak int64
		for i, s := range x.samples {
			rates[i] = s.rate()
			onTopic += s.onTopic
			idle = append(idle, float64(s.idle.RSS))
			ingressCPU = append(ingressCPU, float64(s.ingressCPU)/float64(s.accepted))
			clientCPU = append(clientCPU, float64(s.clientCPU)/float64(s.accepted))
			peak = max(peak, s.peak.HWM)
		}
		fmt.Fprintf(&b, "| %s | %d × %d | %s | %s | %.0f (%.0f–%.0f) | %d | %s | %s | %s | %s |\n",
			x.name, x.messages, len(x.samples), x.size, x.concurrency,
			median(rates), slices.Min(rates), slices.Max(rates), onTopic, mib(int64(median(idle))), mib(peak),
			msPerMessage(median(ingressCPU)), msPerMessage(median(clientCPU)))
		if c := median(ingressCPU); c > 0 {
			ceiling := float64(time.Second) / c
			ceilings = append(ceilings, fmt.Sprintf("%s about %.0f msg/s", strings.Fields(x.name)[0], ceiling))
			latencyBound = latencyBound && median(rates) < ceiling/2
		}
	}
	b.WriteString("\nSMTP: `smtp-source -d -s SESSIONS -m MESSAGES -l BODY` (Postfix), one connection per session " +
		"reused for its messages; the time is smtp-source's wall clock, and it stops at the first reply " +
		"that is not positive. HTTP: Go workers on keep-alive connections, each POST waiting for its 202. " +
		"On topic: records of the runs found on mail.raw.v1, all runs together. RSS idle: VmRSS once ready " +
		"(median); peak RSS: the highest VmHWM of the runs. CPU columns: processor time (user + system) per " +
		"accepted message (median), of the ingress process and of the " +
		"load client (smtp-source; the Go test process for HTTP).\n")
	if len(ceilings) > 0 {
		fmt.Fprintf(&b, "\nIngress's own processor time per message puts its ceiling per core at %s.", strings.Join(ceilings, ", "))
		if latencyBound {
			b.WriteString(" The rates stay below half of it: each client waits for its message's acknowledgement " +
				"(acks=all on the broker, Redis round trips), so they follow the broker's latency and the " +
				"concurrency, and move with anything else using the disk and the CPUs.")
		}
		b.WriteString("\n")
	}

	if l := r.large; l != nil {
		fmt.Fprintf(&b, "\n## One %s message over SMTP\n\n", mib(l.sent))
		b.WriteString("| message | accepted | time to reply | peak RSS before | peak RSS after | growth | RSS after | record |\n")
		b.WriteString("|--:|---|--:|--:|--:|--:|--:|---|\n")
		accepted, rec := "yes (250)", "inline"
		if l.err != nil {
			accepted = strings.ReplaceAll(l.err.Error(), "|", "/")
			rec = "none"
		} else if l.record.RawBlobRef != nil {
			rec = fmt.Sprintf("blob ref, size %d", l.record.Size)
		}
		growth := l.after.HWM - l.before.HWM
		fmt.Fprintf(&b, "| %d B | %s | %s | %s | %s | %s | %s | %s |\n", l.sent, accepted, l.elapsed.Round(time.Millisecond),
			mib(l.before.HWM), mib(l.after.HWM), mib(growth), mib(l.after.RSS), rec)
		b.WriteString("\nA multipart message with a base64 attachment of generated noise, written by net/smtp while it " +
			"is generated (the client never holds it); SMTP size limit raised above it for this process only.\n\n")
		ratio := float64(growth) / float64(l.sent)
		if ratio >= 0.5 {
			fmt.Fprintf(&b, "**Held in memory:** the peak grew by %.1f× the message size, so ingress buffers the whole "+
				"message (DATA read into memory, then handed to the blob store) instead of streaming it.\n", ratio)
		} else {
			fmt.Fprintf(&b, "**Streamed:** the peak grew by %.2f× the message size, so ingress does not hold the message.\n", ratio)
		}
	}
	return b.String()
}

// median of xs, which it sorts; 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

// msPerMessage formats a duration in nanoseconds per message.
func msPerMessage(ns float64) string { return fmt.Sprintf("%.2f ms/msg", ns/float64(time.Millisecond)) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func kafkaVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "scripts", "kafka", "pom.xml"))
	if err != nil {
		t.Fatalf("reading the Kafka version: %v", err)
	}
	m := regexp.MustCompile(`<kafka.version>([^<]+)</kafka.version>`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no <kafka.version> in scripts/kafka/pom.xml")
	}
	return string(m[1])
}

// procField returns the value of the first "name: value" line of a /proc file, or "?".
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return "?"
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// loadAverage is the 1, 5 and 15 minute load average: a busy machine shows in it.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

func cpuModel() string { return procField("/proc/cpuinfo", "model name") }

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
