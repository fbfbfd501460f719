package parsers_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// settings size a run; each comes from a MAILPIPE_BENCH_* variable.
type settings struct {
	// seconds and warmup are each process's timed and untimed parsing time.
	seconds, warmup time.Duration
	// repeat is how many processes each parser gets per corpus, interleaved with the others.
	repeat int
	// cpu is the core every process is pinned to.
	cpu string
	// corpus is the shared corpus; corpus-bounces is its sibling.
	corpus string
}

func loadSettings(t *testing.T, root string) settings {
	t.Helper()
	dur := func(name string, def time.Duration) time.Duration {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			t.Fatalf("%s=%q: want a duration such as 3s", name, v)
		}
		return d
	}
	s := settings{
		seconds: dur("MAILPIPE_BENCH_SECONDS", 3*time.Second),
		warmup:  dur("MAILPIPE_BENCH_WARMUP", time.Second),
		repeat:  3,
		cpu:     os.Getenv("MAILPIPE_BENCH_CPU"),
		corpus:  os.Getenv("MAILPIPE_CORPUS"),
	}
	if v := os.Getenv("MAILPIPE_BENCH_REPEAT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("MAILPIPE_BENCH_REPEAT=%q: want a positive integer", v)
		}
		s.repeat = n
	}
	if s.cpu == "" {
		s.cpu = "0"
	}
	if s.corpus == "" {
		s.corpus = filepath.Join(root, "..", "shared", "corpus")
	}
	return s
}

// result is the JSON line every benchmark process prints (mailpipe parse -bench and
// bench-peers.mjs print the same fields), plus what the harness measures from outside.
type result struct {
	Parser       string  `json:"parser"`
	Version      string  `json:"version"`
	Files        int     `json:"files"`
	Bytes        int64   `json:"bytes"`
	Passes       int     `json:"passes"`
	Messages     int     `json:"messages"`
	Errors       float64 `json:"errors"`
	Seconds      float64 `json:"seconds"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	MessagesPerS float64 `json:"messages_per_s"`
	MBPerS       float64 `json:"mb_per_s"`

	// maxRSS is the process's peak resident set (ru_maxrss).
	maxRSS int64
}

// parser is one contender: the command that benchmarks it over files.
type parser struct {
	name string
	js   bool
	argv func(files []string) []string
	env  []string
}

// TestBenchParsers runs every parser on every corpus in its own pinned process, repeat times
// interleaved, and writes ../PARSERS.md.
func TestBenchParsers(t *testing.T) {
	if os.Getenv("MAILPIPE_BENCH") != "1" {
		t.Skip("a benchmark, not a test: run it with MAILPIPE_BENCH=1 (make bench-parsers)")
	}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatalf("finding the repository root: %v", err)
	}
	s := loadSettings(t, root)
	tmp := t.TempDir()

	// given: mailpipe built as it ships, Node and the pinned peers installed, the corpora listed.
	mailpipe := filepath.Join(tmp, "mailpipe")
	build := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-o", mailpipe, "./mailpipe")
	build.Dir = filepath.Join(root, "services")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building mailpipe: %v\n%s", err, out)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: run scripts/deps.sh (make deps)")
	}
	nodeDir := filepath.Join(root, "scripts", "node")
	for _, pkg := range []string{"mailparser", "postal-mime"} {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("%s is not installed in scripts/node: run scripts/deps.sh (make deps)", pkg)
		}
	}
	var pin []string
	if taskset, err := exec.LookPath("taskset"); err == nil {
		pin = []string{taskset, "-c", s.cpu}
	}
	secs := strconv.FormatFloat(s.seconds.Seconds(), 'f', -1, 64)
	warm := strconv.FormatFloat(s.warmup.Seconds(), 'f', -1, 64)
	parsers := []parser{{
		name: "mailpipe",
		argv: func(files []string) []string {
			return append([]string{mailpipe, "parse", "-bench", s.seconds.String(), "-warmup", s.warmup.String()}, files...)
		},
		env: []string{"GOMAXPROCS=1", "MAILPIPE_LOG_LEVEL=error"},
	}}
	for _, name := range []string{"mailparser", "postal-mime"} {
		parsers = append(parsers, parser{
			name: name, js: true,
			argv: func(files []string) []string {
				return append([]string{node, filepath.Join(nodeDir, "bench-peers.mjs"), "--seconds", secs, "--warmup", warm, name}, files...)
			},
		})
	}
	corpora := []*corpus{
		{name: "corpus", dir: s.corpus},
		{name: "corpus-bounces", dir: filepath.Join(filepath.Dir(filepath.Clean(s.corpus)), "corpus-bounces")},
	}
	for _, c := range corpora {
		c.list(t)
	}

	rep := &report{
		settings: s, pinned: pin != nil, started: time.Now().UTC(), loadBefore: loadAverage(),
		built: describe(t, root), nodeVersion: commandOutput(t, node, "--version"), corpora: corpora,
	}
	for _, p := range parsers {
		rep.parsers = append(rep.parsers, p.name)
	}

	// when: each parser parses each corpus in its own process, the order rotated per repeat so
	// that no parser always runs right after another.
	for _, c := range corpora {
		c.results = map[string][]result{}
		for i := range s.repeat {
			for k := range parsers {
				p := parsers[(i+k)%len(parsers)]
				r := run(t, append(slices.Clone(pin), p.argv(c.files)...), p.env)
				if r.Files != len(c.files) || r.Bytes != c.bytes {
					t.Fatalf("%s on %s: parsed %d files of %d bytes, want %d of %d", p.name, c.name, r.Files, r.Bytes, len(c.files), c.bytes)
				}
				t.Logf("%s %s #%d: %.0f msg/s, %.2f MB/s (%d passes in %.1fs)", c.name, p.name, i+1, r.MessagesPerS, r.MBPerS, r.Passes, r.Seconds)
				c.results[p.name] = append(c.results[p.name], r)
			}
		}
		if c.results["mailpipe"][0].Errors > 0 {
			c.refusedByMailpipe = c.results["mailpipe"][0].Errors
		}
	}
	rep.finished = time.Now().UTC()
	rep.loadAfter = loadAverage()

	// then: the table, on the console and in PARSERS.md.
	md := rep.markdown()
	t.Log("\n" + md)
	if err := os.WriteFile(filepath.Join("..", "PARSERS.md"), []byte(md), 0o644); err != nil {
		t.Fatalf("writing PARSERS.md: %v", err)
	}
}

// corpus is one shared corpus, its messages and the runs over it.
type corpus struct {
	name, dir string
	files     []string
	bytes     int64
	results   map[string][]result
	// refusedByMailpipe counts the messages mailpipe refuses (no readable header block).
	refusedByMailpipe float64
}

// list finds the messages of c: every .eml file but the peer oracles (.expected.*), sorted.
func (c *corpus) list(t *testing.T) {
	t.Helper()
	err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".eml") && !strings.Contains(d.Name(), ".expected") {
			info, err := d.Info()
			if err != nil {
				return err
			}
			c.files = append(c.files, p)
			c.bytes += info.Size()
		}
		return nil
	})
	if err != nil || len(c.files) == 0 {
		t.Fatalf("no messages in %s (%v): set MAILPIPE_CORPUS to the shared corpus directory", c.dir, err)
	}
	slices.Sort(c.files)
}

// run starts one benchmark process and reads its result line.
func run(t *testing.T, argv, env []string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv[:min(len(argv), 8)], " "), err, errs.String())
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%s printed %q: %v", argv[0], out.String(), err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss << 10 // kilobytes on Linux
	}
	return r
}

// report renders PARSERS.md.
type report struct {
	settings              settings
	pinned                bool
	started, finished     time.Time
	loadBefore, loadAfter string
	built, nodeVersion    string
	parsers               []string
	corpora               []*corpus
}

// target is the goal: mailpipe at least this many times the faster JavaScript parser.
const target = 4.0

func (r *report) markdown() string {
	var b strings.Builder
	b.WriteString("# Parser benchmark: mailpipe vs the JavaScript MIME parsers\n\n")
	b.WriteString("Written by `make bench-parsers` (TestBenchParsers in e2e/bench/parsers); rerun it instead of editing this file. " +
		"MAILPIPE_BENCH_SECONDS, _WARMUP, _REPEAT and _CPU size the run; MAILPIPE_CORPUS names the corpus.\n\n")
	fmt.Fprintf(&b, "- Date: %s UTC; the runs took %s\n", r.started.Format("2006-01-02 15:04"), r.finished.Sub(r.started).Round(time.Second))
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), %s memory, Linux %s; load average (1, 5, 15 min) %s before the runs, %s after\n",
		runtime.NumCPU(), cpuModel(), memTotal(), kernel(), r.loadBefore, r.loadAfter)
	pin := "not pinned (taskset not found)"
	if r.pinned {
		pin = "pinned to CPU " + r.settings.cpu + " with `taskset -c " + r.settings.cpu + "`"
	}
	fmt.Fprintf(&b, "- Every parser runs in its own process, %s, %d processes per parser and corpus, interleaved; "+
		"each reads the corpus into memory, parses it for %s untimed (warm-up), then parses the whole corpus over and over, "+
		"in file order, for at least %s of wall time; only whole passes count\n", pin, r.settings.repeat, r.settings.warmup, r.settings.seconds)
	fmt.Fprintf(&b, "- mailpipe: `mailpipe parse -bench` built from the %s with %s, without -race, GOMAXPROCS=1: "+
		"parse.Parser.Parse, the parser stage's transformation (MIME parse within the bomb limits, addresses, "+
		"decoded UTF-8 bodies, text from HTML-only mail, the bluemonday-sanitized HTML copy, the stripped reply, "+
		"attachment metadata with sha256, the mail.parsed.v1 record), without Kafka, Avro or the blob store\n", r.built, runtime.Version())
	fmt.Fprintf(&b, "- Node.js %s: mailparser %s (`simpleParser`) and postal-mime %s (`PostalMime.parse`), default full parse "+
		"(scripts/node/bench-peers.mjs)\n\n", r.nodeVersion, r.version("mailparser"), r.version("postal-mime"))

	b.WriteString("| corpus | parser | messages/s: median (best) | MB/s: median (best) | × faster JS parser | messages per CPU-second | CPU / wall | peak RSS |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|\n")
	var verdicts []string
	for _, c := range r.corpora {
		fasterJS, fasterBest, fasterName := 0.0, 0.0, ""
		for _, name := range r.parsers {
			if name == "mailpipe" {
				continue
			}
			if m := median(rates(c.results[name], false)); m > fasterJS {
				fasterJS, fasterName = m, name
				fasterBest = slices.Max(rates(c.results[name], false))
			}
		}
		for i, name := range r.parsers {
			rs := c.results[name]
			msgs, mbs := rates(rs, false), rates(rs, true)
			label := ""
			if i == 0 {
				label = fmt.Sprintf("%s (%d messages, %.1f MB)", c.name, len(c.files), float64(c.bytes)/1e6)
			}
			perCPU := perCPUSecond(rs)
			var busy []float64
			var rss int64
			for _, x := range rs {
				busy = append(busy, x.CPUSeconds/x.Seconds)
				rss = max(rss, x.maxRSS)
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f (%.0f) | %.2f (%.2f) | %.2f× | %.0f | %.2f | %.0f MiB |\n", label, name,
				median(msgs), slices.Max(msgs), median(mbs), slices.Max(mbs), median(msgs)/fasterJS, median(perCPU),
				median(busy), float64(rss)/(1<<20))
		}
		mp := median(rates(c.results["mailpipe"], false))
		ratio, best := mp/fasterJS, slices.Max(rates(c.results["mailpipe"], false))/fasterBest
		met := "met"
		if ratio < target {
			met = "NOT met"
		}
		fasterCPU := 0.0
		for _, name := range r.parsers {
			if name != "mailpipe" {
				fasterCPU = max(fasterCPU, median(perCPUSecond(c.results[name])))
			}
		}
		cpuRatio := median(perCPUSecond(c.results["mailpipe"])) / fasterCPU
		verdicts = append(verdicts, fmt.Sprintf("%s: mailpipe %.2f× %s in messages/s (median; best against best %.2f×; "+
			"per CPU-second %.2f× the faster JavaScript parser) — %s", c.name, ratio, fasterName, best, cpuRatio, met))
	}
	b.WriteString("\nmessages/s and MB/s (10^6 bytes of raw message) over the timed passes of each process; median and best of the processes. " +
		"× faster JS parser: the median over the median of the faster JavaScript parser on that corpus. " +
		"Messages per CPU-second and CPU / wall (median): the process's processor time over the timed passes, all its threads; " +
		"below 1.00 the core was partly taken by other work on the machine, which lowers messages/s but not messages per CPU-second. " +
		"Peak RSS: the highest ru_maxrss of the processes, corpus and runtime included.\n\n")
	fmt.Fprintf(&b, "**Target** (issue 4: at least %.0f× the faster JavaScript parser on each shared corpus, messages/s on one core):\n\n", target)
	for _, v := range verdicts {
		fmt.Fprintf(&b, "- %s\n", v)
	}
	for _, c := range r.corpora {
		if c.refusedByMailpipe > 0 {
			fmt.Fprintf(&b, "\nOn %s mailpipe refuses %.0f message(s) per pass (no readable header block: the pipeline sends it to the DLQ, class parse); "+
				"it still counts as parsed.\n", c.name, c.refusedByMailpipe)
		}
	}
	for _, name := range r.parsers {
		for _, c := range r.corpora {
			if rs := c.results[name]; len(rs) > 0 && rs[0].Errors > 0 && name != "mailpipe" {
				fmt.Fprintf(&b, "\nOn %s %s refuses %.0f message(s) per pass.\n", c.name, name, rs[0].Errors)
			}
		}
	}
	return b.String()
}

func (r *report) version(name string) string {
	for _, c := range r.corpora {
		if rs := c.results[name]; len(rs) > 0 {
			return rs[0].Version
		}
	}
	return "?"
}

// rates returns the messages/s (or MB/s) of each run.
func rates(rs []result, mb bool) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = r.MessagesPerS
		if mb {
			out[i] = r.MBPerS
		}
	}
	return out
}

// perCPUSecond returns the messages per second of processor time of each run.
func perCPUSecond(rs []result) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = float64(r.Messages) / r.CPUSeconds
	}
	return out
}

// median of xs (a sorted copy); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Sorted(slices.Values(xs))
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

// describe names the source mailpipe was built from.
func describe(t *testing.T, root string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", "describe", "--always", "--dirty", "--abbrev=12")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "work tree"
	}
	return "work tree at " + strings.TrimSpace(string(out))
}

func commandOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).Output()
	if err != nil {
		return "?"
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
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == name {
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
