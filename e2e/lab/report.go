package lab

import (
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Versions are the component versions a report records.
type Versions struct {
	Kafka, FranzGo, Go string
}

// DetectVersions reads the Kafka version from scripts/kafka/pom.xml, franz-go's from the e2e
// module's build list, and the Go version of the toolchain.
func DetectVersions(repo string) Versions {
	v := Versions{Go: runtime.Version()}
	if out, err := exec.Command("sed", "-n", `s:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p`, repo+"/scripts/kafka/pom.xml").Output(); err == nil { //nolint:noctx // quick local read
		v.Kafka = strings.TrimSpace(string(out))
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/twmb/franz-go") //nolint:noctx // quick local read
	cmd.Dir = repo + "/e2e"
	if out, err := cmd.Output(); err == nil {
		v.FranzGo = strings.TrimSpace(string(out))
	}
	return v
}

// Summary is a one-line digest of a result for test logs.
func (res *Result) Summary() string {
	r := res.Report
	verdict := "PASS"
	if !res.Pass() {
		verdict = "FAIL"
	}
	return fmt.Sprintf("%s %s #%d: acked %d/%d, lost %d, dup-effective %d, dup-in-topic %v, raw extra %d, inversions %d, orphans %d, DLQ %v, drain %s, p50 %s p99 %s, raw CRM calls %d (redelivered %d), restarts %v, peak RSS MiB %v, %s",
		verdict, res.Scenario, res.Attempt, r.Acked, r.Sent, r.Lost, r.DupEffects, r.DupInTopic, r.RawExtra, r.Inversions, r.Orphans,
		withReplayed(r), res.Drain.Round(100*time.Millisecond), r.LatencyP50.Round(time.Millisecond), r.LatencyP99.Round(time.Millisecond),
		r.RawCalls, r.Redelivered, res.Restarts, rssList(res.PeakRSS), res.Elapsed.Round(time.Second))
}

func withReplayed(r *Report) string {
	n := 0
	for _, v := range r.Replayed {
		n += v
	}
	if n == 0 {
		return classes(r.DLQ)
	}
	return fmt.Sprintf("%s (replayed %d)", classes(r.DLQ), n)
}

func rssList(m map[string]float64) string {
	parts := make([]string, 0, len(ServiceNames))
	for _, n := range ServiceNames {
		parts = append(parts, fmt.Sprintf("%s=%.0f", n, m[n]))
	}
	return strings.Join(parts, " ")
}

func dupTopics(m map[string]int) string {
	return fmt.Sprintf("%d/%d/%d", m[TopicParsed], m[TopicClassified], m[TopicEnriched])
}

func classes(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range SortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// Markdown renders docs/reliability.md from the results, grouped by scenario in run order.
func Markdown(results []*Result, v Versions, size Size, race bool, cmdline string, notRun []string) string {
	var b strings.Builder
	b.WriteString("# Reliability lab results\n\n")
	fmt.Fprintf(&b, "Written by `%s` on %s. The lab (`e2e/lab`) and what each figure means: see the end of this page.\n\n", cmdline, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Kafka %s (one combined broker+controller, KRaft, the lab's own per scenario), franz-go %s, %s\n", v.Kafka, v.FranzGo, v.Go)
	fmt.Fprintf(&b, "- Load per run: %d messages over SMTP at %.0f/s from %d clients, %d thread keys; 80%% ~2-5 KB, 18%% ~50 KB, 2%% 1-2 MiB with an attachment; 3%% exact duplicates (20%% in the Redis test)\n",
		size.Messages, size.Rate, size.Workers, size.Threads)
	fmt.Fprintf(&b, "- Services: five OS processes, GOMAXPROCS=1 each, race detector %s; session timeout 10 s, transaction timeout 10 s\n", map[bool]string{true: "on", false: "off"}[race])
	fmt.Fprintf(&b, "- Machine: %d CPUs, %s/%s\n\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	b.WriteString("**Scope limits.** One broker: no ISR, replication or leader-failover coverage. SIGKILL is not power loss: the page cache survives a killed process, so fsync behaviour is not tested. Network faults through toxiproxy and memory limits are not in this run (see *Not run*).\n\n")

	order := []string{}
	by := map[string][]*Result{}
	for _, r := range results {
		if _, ok := by[r.Scenario]; !ok {
			order = append(order, r.Scenario)
		}
		by[r.Scenario] = append(by[r.Scenario], r)
	}
	b.WriteString("## Summary\n\n| test | plan | runs passed |\n|---|---|---|\n")
	for _, name := range order {
		pass := 0
		for _, r := range by[name] {
			if r.Pass() {
				pass++
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %d/%d |\n", name, by[name][0].Plan, pass, len(by[name]))
	}
	for _, name := range order {
		rs := by[name]
		fmt.Fprintf(&b, "\n## %s — %s\n\n", name, rs[0].Plan)
		b.WriteString("| run | verdict | acked/sent | lost | dup-effective | dup-in-topic p/c/e | raw extra | inversions | orphans | DLQ by class | lag→0 | p50 / p99 | raw CRM calls (redelivered) | restarts | peak RSS MiB (in/pa/cl/en/sink) |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, res := range rs {
			r := res.Report
			verdict := "pass"
			if !res.Pass() {
				verdict = "**FAIL**"
			}
			restarts := 0
			for _, n := range res.Restarts {
				restarts += n
			}
			fmt.Fprintf(&b, "| %d | %s | %d/%d | %d | %d | %s | %d | %d | %d | %s | %.1f s | %s / %s | %d (%d) | %d | %.0f/%.0f/%.0f/%.0f/%.0f |\n",
				res.Attempt, verdict, r.Acked, r.Sent, r.Lost, r.DupEffects, dupTopics(r.DupInTopic), r.RawExtra, r.Inversions, r.Orphans,
				withReplayed(r), res.Drain.Seconds(), r.LatencyP50.Round(time.Millisecond), r.LatencyP99.Round(time.Millisecond),
				r.RawCalls, r.Redelivered, restarts,
				res.PeakRSS["ingress"], res.PeakRSS["parser"], res.PeakRSS["classifier"], res.PeakRSS["enricher"], res.PeakRSS["crm-sink"])
		}
		for _, res := range rs {
			for _, n := range res.Notes {
				fmt.Fprintf(&b, "\n- run %d: %s", res.Attempt, n)
			}
			for _, f := range res.Failures {
				fmt.Fprintf(&b, "\n- run %d failed: %s", res.Attempt, f)
			}
		}
		b.WriteString("\n")
	}
	if len(notRun) > 0 {
		b.WriteString("\n## Not run\n\n")
		for _, n := range notRun {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	b.WriteString(definitions)
	return b.String()
}

const definitions = `
## What the figures mean

- **acked/sent**: distinct messages answered ` + "`250`" + ` at least once / distinct messages in the ledger.
  A ` + "`4xx`" + ` answer or a cut connection is retried by the client with backoff, as an MTA would.
- **lost**: acknowledged messages with no accepted write at the CRM contract server.
- **dup-effective**: objects beyond one per external id at the contract server (it dedupes on
  ` + "`webhook-id`" + `, so a redelivery with the same id is not an effect; a new id would be).
- **dup-in-topic p/c/e**: records in ` + "`mail.parsed.v1`/`mail.classified.v1`/`mail.enriched.v1`" + `
  (read_committed) beyond the number of ` + "`mail.raw.v1`" + ` records with the same Message-ID: what
  exactly-once between the Kafka stages forbids.
- **raw extra**: ` + "`mail.raw.v1`" + ` records beyond one per acknowledged message (an exact duplicate or a
  client retry whose ingress dedupe state was lost, e.g. by a Redis restart). Allowed; they must
  collapse to 0 dup-effective.
- **inversions**: per thread, a first CRM write of a message after the first write of a later
  message of the same thread (ledger sequence).
- **orphans**: records in read_committed topics whose Message-ID is not in the ledger (aborted
  transactions leaking), the lab's own poison pills excepted.
- **DLQ by class**: records in ` + "`mail.dlq.v1`" + ` by ` + "`mailpipe.dlq.error.class`" + `.
- **lag→0**: from the end of the load and the faults until every expected message is in the CRM
  and the consumer lag of every stage's group is 0.
- **p50 / p99**: SMTP ` + "`250`" + ` to the first accepted CRM write, per message.
- **raw CRM calls**: every request the CRM front received, injected faults included; redelivered:
  accepted requests beyond the first per message.
- **peak RSS**: the highest VmHWM (read every 100 ms) over every incarnation of the service.
`
