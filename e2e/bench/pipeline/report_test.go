package pipeline

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// notesMarker starts the hand-written part of PIPELINE.md, which a run keeps.
const notesMarker = "<!-- notes: written by hand, kept across runs -->"

// keptNotes returns the hand-written part of the file at path, marker included, or a fresh
// marker.
func keptNotes(path string) string {
	b, err := os.ReadFile(path)
	if err == nil {
		if i := strings.Index(string(b), notesMarker); i >= 0 {
			return "\n" + string(b[i:])
		}
	}
	return "\n" + notesMarker + "\n"
}

// profile holds the CPU profiles taken of every service during one real-mode step.
type profile struct {
	step    int
	length  time.Duration
	files   map[string]string
	errs    []string
	slowest string
	top     string
	cum     string
	// ingress is the flat top of ingress's profile: it answers the SMTP clients.
	ingress string
}

// takeProfiles fetches a CPU profile of every service at once.
func (e *env) takeProfiles(ctx context.Context, t *testing.T, procs map[string]*proc, dir string) *profile {
	// MAILPIPE_BENCH_PIPELINE_PROFILES keeps the profiles for go tool pprof after the run.
	pdir := os.Getenv("MAILPIPE_BENCH_PIPELINE_PROFILES")
	if pdir == "" {
		pdir = filepath.Join(dir, "profiles")
	}
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Error(err)
		return nil
	}
	p := &profile{length: e.s.profile, files: map[string]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Go(func() {
			path := filepath.Join(pdir, svc+".pb.gz")
			err := procs[svc].profile(ctx, e.s.profile, path)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				p.errs = append(p.errs, err.Error())
				return
			}
			p.files[svc] = path
		})
	}
	wg.Wait()
	return p
}

// analyse finds the step the profiles were taken in (the first search step), names the
// Kafka stage that used the most CPU per message there, and summarises its profile (and
// ingress's) with go tool pprof.
func (p *profile) analyse(t *testing.T, m *mode) {
	t.Helper()
	var st *step
	for _, s := range m.steps {
		if s.search {
			st = s
			break
		}
	}
	if st == nil {
		return
	}
	p.step = st.idx
	for _, svc := range stages {
		if p.slowest == "" || st.cpu[svc] > st.cpu[p.slowest] {
			p.slowest = svc
		}
	}
	pprof := func(file string, args ...string) string {
		if file == "" {
			return "no profile"
		}
		cmd := exec.CommandContext(t.Context(), "go", append([]string{"tool", "pprof"}, append(args, file)...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Sprintf("go tool pprof: %v\n%s", err, out)
		}
		return strings.TrimRight(string(out), "\n")
	}
	p.top = pprof(p.files[p.slowest], "-top", "-nodecount=25")
	p.cum = pprof(p.files[p.slowest], "-top", "-cum", "-nodecount=25")
	p.ingress = pprof(p.files["ingress"], "-top", "-nodecount=12")
}

// report collects a run's figures and renders PIPELINE.md.
type report struct {
	s             settings
	built, broker string
	// flush is the broker's log.flush.interval.messages: 1 means an fsync on every append.
	flush                 string
	started, finished     time.Time
	loadBefore, loadAfter string
	modes                 []*mode
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

func (r *report) mode(name string) *mode {
	for _, m := range r.modes {
		if m.name == name {
			return m
		}
	}
	return nil
}

// fixed returns the step of m at rate among the fixed rates.
func fixed(m *mode, rate int) *step {
	if m == nil {
		return nil
	}
	for _, s := range m.steps {
		if !s.search && s.rate == rate {
			return s
		}
	}
	return nil
}

func (r *report) markdown(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Pipeline benchmark\n\n")
	w("Written by `make bench-pipeline` (TestBenchPipeline in e2e/bench/pipeline); everything above the notes\n")
	w("marker is rewritten by each run. The five services run as separate processes, built without `-race`,\n")
	w("on a real Kafka broker and redis-server on the same machine, loaded over SMTP.\n\n")

	w("## Machine and run\n\n")
	w("- CPU: %s, %d cores (GOMAXPROCS %d); memory %s; kernel %s\n", cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), memTotal(), kernel())
	w("- Go %s; Apache Kafka %s; %s\n", strings.TrimPrefix(runtime.Version(), "go"), kafkaVersion(t), redisVersion(t))
	w("- Built: %s\n", r.built)
	flush := "`log.flush.interval.messages=" + r.flush + "`"
	if r.flush == "1" {
		flush += " as scripts/kafka-up.sh sets it (an fsync on every append)"
	}
	w("- Broker: %s; %s; 6 partitions per topic, retention cut to 2 min\n", r.broker, flush)
	w("- Started %s, finished %s (%s)\n", r.started.Format(time.RFC3339), r.finished.Format(time.RFC3339), r.finished.Sub(r.started).Round(time.Second))
	w("- Load average (1/5/15 min) before: %s; after: %s. The machine was shared with other work during the run.\n\n", r.loadBefore, r.loadAfter)

	w("## Method\n\n")
	w("- **Modes.** *noop*: the same binaries and the same five hops (SMTP → ingress → raw → parser → parsed → classifier →\n")
	w("  classified → enricher → enriched → crm-sink → mail.crm.v1), with `MAILPIPE_STAGE_NOOP=true` on the four stages,\n")
	w("  which copy each record unchanged inside their normal transactions; ingress works as deployed. *real*: the pipeline\n")
	w("  as deployed, default settings, Redis for dedupe and the enrichment cache, writing to %s.\n", crmText(r.s.crm))
	w("- **Load.** %d concurrent SMTP connections; each message is new (unique Message-ID, so no dedupe); sizes: %.1f %% 1 MiB\n", r.s.conns, shareLarge*100)
	w("  (blob store claim check), %.0f %% 50 KB with a base64 attachment, the rest 2–10 KB text. Each fixed rate runs %s.\n", shareMedium*100, r.s.step)
	w("- **Latency** per message: from the client reading ingress's `250 … queued as ID` to the timestamp of the message's\n")
	w("  record on mail.crm.v1 (set by crm-sink's producer after the CRM write, read back read_committed), matched by id.\n")
	w("- **Held** means: ≥ 95 %% of the rate accepted, the summed consumer lag of the four stages not growing (least-squares\n")
	w("  slope over the second half of the window ≤ max(5, 2 %% of the rate) records/s), and every accepted message written\n")
	w("  within %s after the sending stopped. The highest rate held is searched with %s runs: first the highest fixed rate\n", r.s.drain, r.s.hold)
	w("  held, then halfway to the lowest rate that failed (or a quarter higher); %d runs per mode.\n\n", r.s.searches)

	w("## Side by side\n\n")
	w("| rate (msg/s) | noop accepted/s | noop p50 | noop p95 | noop p99 | noop held | real accepted/s | real p50 | real p95 | real p99 | real held |\n")
	w("|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|:---:|\n")
	cells := func(s *step) string {
		if s == nil {
			return "– | – | – | – | not run"
		}
		return fmt.Sprintf("%.0f | %s | %s | %s | %s", s.rateAccepted(), ms(quantile(s.lat, .5)), ms(quantile(s.lat, .95)), ms(quantile(s.lat, .99)), yes(s.held, s.why))
	}
	for _, rate := range r.s.rates {
		w("| %d | %s | %s |\n", rate, cells(fixed(r.mode("noop"), rate)), cells(fixed(r.mode("real"), rate)))
	}
	w("\n**Highest rate held for %s** (search runs: rate → held, accepted/s, p99):\n\n", r.s.hold)
	for _, m := range r.modes {
		var tries []string
		for _, s := range m.steps {
			if s.search {
				tries = append(tries, fmt.Sprintf("%d → %s, %.0f/s, p99 %s", s.rate, yes(s.held, ""), s.rateAccepted(), ms(quantile(s.lat, .99))))
			}
		}
		best := "none of the rates tried"
		if m.best > 0 {
			best = fmt.Sprintf("**%d msg/s**", m.best)
		}
		w("- %s: %s (%s); %s\n", m.name, best, strings.Join(tries, "; "), sustained(m))
		for _, n := range m.notes {
			w("  - %s\n", n)
		}
	}

	w("\n## Targets\n\n")
	real, noop := r.mode("real"), r.mode("noop")
	if real != nil {
		s := fixed(real, 2000)
		met := s != nil && s.held && quantile(s.lat, .99) <= 500*time.Millisecond
		detail := "2,000 msg/s was not run"
		if s != nil {
			detail = fmt.Sprintf("at 2,000 msg/s the real pipeline accepted %.0f/s, p99 %s, held: %s", s.rateAccepted(), ms(quantile(s.lat, .99)), yes(s.held, s.why))
		}
		w("- 2,000 messages/s sustained with p99 ≤ 0.5 s (real, 2 cores, broker on the machine): **%s** — %s; highest rate held for %s: %d msg/s.\n",
			metText(met), detail, r.s.hold, real.best)
	}
	if real != nil && noop != nil {
		// The held rates stop at what ingress accepted in time; the capacity behind it is the most
		// accepted with the lag flat, so the ratio is taken from that.
		ns, rs := sustainedRate(noop), sustainedRate(real)
		switch {
		case ns == 0 || rs == 0:
			w("- Real within 2× of the no-op ceiling: **not measurable** — a mode kept its lag flat in no step.\n")
		default:
			w("- Real within 2× of the no-op ceiling: **%s** — most accepted with the lag flat: ceiling %.0f msg/s, real %.0f msg/s, ratio %.2f× (held for %s: %d and %d msg/s).\n",
				metText(ns/rs <= 2), ns, rs, ns/rs, r.s.hold, noop.best, real.best)
		}
	}

	w("\n## Every step\n\n")
	w("| mode | rate | length | accepted/s | refused / errors / dropped | MB/s | p50 | p95 | p99 | max | lag growth/s | max lag parser / classifier / enricher / crm-sink | last written after | held |\n")
	w("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|:---:|\n")
	for _, m := range r.modes {
		for _, s := range m.steps {
			kind := ""
			if s.search {
				kind = " (search)"
			}
			var lags []string
			for _, st := range stages {
				lags = append(lags, fmt.Sprint(s.maxLag[st]))
			}
			var maxLat time.Duration
			if len(s.lat) > 0 {
				maxLat = s.lat[len(s.lat)-1]
			}
			drain := s.drain.Round(100 * time.Millisecond).String()
			if !s.drained {
				drain = fmt.Sprintf("%d missing", s.missing)
			}
			w("| %s | %d%s | %s | %.0f | %d / %d / %d | %.1f | %s | %s | %s | %s | %.1f | %s | %s | %s |\n",
				m.name, s.rate, kind, s.load.elapsed, s.rateAccepted(), s.load.refused, s.load.errors, s.load.dropped,
				float64(s.load.bytes)/s.load.elapsed.Seconds()/1e6, ms(quantile(s.lat, .5)), ms(quantile(s.lat, .95)),
				ms(quantile(s.lat, .99)), ms(maxLat), s.growth, strings.Join(lags, " / "), drain, yes(s.held, s.why))
		}
	}
	for _, m := range r.modes {
		for _, s := range m.steps {
			if s.load.firstErr != "" {
				w("\n%s %d msg/s, first client error: `%s`\n", m.name, s.rate, s.load.firstErr)
				break
			}
		}
	}

	procsOrder := append(slices.Clone(services), "kafka", "redis", "bench client")
	w("\n## CPU split\n\nCPU used while sending, as %% of one core (the machine has %d), and CPU ms per accepted message for the services.\n\n", runtime.NumCPU())
	w("| mode | rate | %s | total |\n|---|---:|%s---:|\n", strings.Join(procsOrder, " | "), strings.Repeat("---:|", len(procsOrder)))
	for _, m := range r.modes {
		for _, s := range m.steps {
			var c []string
			var total time.Duration
			for _, n := range procsOrder {
				total += s.cpu[n]
				pct := 100 * s.cpu[n].Seconds() / s.load.elapsed.Seconds()
				if slices.Contains(services, n) && s.load.accepted > 0 {
					c = append(c, fmt.Sprintf("%.0f %% (%.2f ms)", pct, s.cpu[n].Seconds()*1000/float64(s.load.accepted)))
				} else {
					c = append(c, fmt.Sprintf("%.0f %%", pct))
				}
			}
			kind := ""
			if s.search {
				kind = " (search)"
			}
			w("| %s | %d%s | %s | %.0f %% |\n", m.name, s.rate, kind, strings.Join(c, " | "), 100*total.Seconds()/s.load.elapsed.Seconds())
		}
	}
	w("\n## Peak RSS (VmHWM over the whole mode)\n\n| mode | %s |\n|---|%s\n", strings.Join(procsOrder[:len(procsOrder)-1], " | "), strings.Repeat("---:|", len(procsOrder)-1))
	for _, m := range r.modes {
		var c []string
		for _, n := range procsOrder[:len(procsOrder)-1] {
			c = append(c, fmt.Sprintf("%.0f MiB", float64(m.hwm[n])/(1<<20)))
		}
		w("| %s | %s |\n", m.name, strings.Join(c, " | "))
	}

	w("\n## Profile of the slowest stage\n\n")
	if real == nil || real.profile == nil || real.profile.slowest == "" {
		w("No profile was taken (the real mode or its search did not run).\n")
	} else {
		p := real.profile
		st := real.steps[p.step]
		w("CPU profiles of %s were taken of every service, at once, during the real mode's first search run (%d msg/s,\n", p.length, st.rate)
		w("where the search started), through `MAILPIPE_ADMIN_PPROF=true`. The Kafka stage using the most CPU there was\n")
		w("**%s**: %.0f %% of a core, %.2f ms per message.\n", p.slowest, 100*st.cpu[p.slowest].Seconds()/st.load.elapsed.Seconds(),
			st.cpu[p.slowest].Seconds()*1000/float64(max(1, st.load.accepted)))
		for _, e := range p.errs {
			w("\nProfile error: %s\n", e)
		}
		w("\n`go tool pprof -top -nodecount=25` (flat):\n\n```\n%s\n```\n", trimPprof(p.top))
		w("\n`go tool pprof -top -cum -nodecount=25` (cumulative):\n\n```\n%s\n```\n", trimPprof(p.cum))
		w("\nIngress, which answers the SMTP clients, in the same %s (`-top -nodecount=12`):\n\n```\n%s\n```\n", p.length, trimPprof(p.ingress))
	}
	return b.String()
}

// trimPprof drops pprof's header lines naming the temporary file.
func trimPprof(s string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// sustained names the highest accepted rate of any step whose lag did not grow and which
// drained, whatever rate was asked: when ingress accepts less than asked, the pipeline behind it
// may still keep up with what it got.
func sustained(m *mode) string {
	best := sustainedStep(m)
	if best == nil {
		return "no step kept its lag flat"
	}
	return fmt.Sprintf("most accepted with the lag flat and drained: %.0f msg/s (asked %d, p99 %s)", best.rateAccepted(), best.rate, ms(quantile(best.lat, .99)))
}

func sustainedRate(m *mode) float64 {
	if s := sustainedStep(m); s != nil {
		return s.rateAccepted()
	}
	return 0
}

func sustainedStep(m *mode) *step {
	var best *step
	for _, s := range m.steps {
		if s.growth <= max(5, 0.02*s.rateAccepted()) && s.drained && (best == nil || s.rateAccepted() > best.rateAccepted()) {
			best = s
		}
	}
	return best
}

func crmText(crm string) string {
	if crm == "localstore" {
		return "the local-store CRM connector (a JSON line and an fsync per write, under one lock)"
	}
	return "the webhook connector, signed, to a receiver in the benchmark process that answers 204 at once"
}

func yes(ok bool, why string) string {
	if ok {
		return "yes"
	}
	if why == "" {
		return "no"
	}
	return "no (" + why + ")"
}

func metText(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func kafkaVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "scripts", "kafka", "pom.xml"))
	if err != nil {
		return "?"
	}
	if m := regexp.MustCompile(`<kafka.version>([^<]+)</kafka.version>`).FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return "?"
}

func redisVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "redis-server", "--version").Output()
	if err != nil {
		return "redis-server ?"
	}
	f := strings.Fields(string(out))
	for _, x := range f {
		if v, ok := strings.CutPrefix(x, "v="); ok {
			return "redis-server " + v
		}
	}
	return strings.TrimSpace(string(out))
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

// loadAverage is the 1, 5 and 15 minute load average, and the share of the last 5 minutes in
// which some runnable task waited for a CPU or for I/O (Linux pressure stall information): a
// busy machine shows in them.
func loadAverage() string {
	out := "?"
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		out = strings.Join(f[:3], " ")
	}
	for _, res := range []string{"cpu", "io"} {
		b, err := os.ReadFile("/proc/pressure/" + res)
		if err != nil {
			continue
		}
		for f := range strings.FieldsSeq(strings.SplitN(string(b), "\n", 2)[0]) {
			if v, ok := strings.CutPrefix(f, "avg300="); ok {
				out += fmt.Sprintf(", %s pressure (some, 5 min) %s %%", res, v)
			}
		}
	}
	return out
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
