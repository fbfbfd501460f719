package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

const (
	domain    = "in.example.com"
	recipient = "support@" + domain
)

// settings size one run; each comes from a MAILPIPE_BENCH_PIPELINE_* variable. The defaults
// keep the whole run (two modes) under about 15 minutes.
type settings struct {
	rates []int
	// step is how long each fixed rate is sent; hold is how long a rate must be held in the
	// search for the highest sustained rate, which makes searches attempts per mode.
	step, hold time.Duration
	searches   int
	// drain bounds the wait, after a step, for every accepted message to reach mail.crm.v1.
	drain time.Duration
	// conns is the number of concurrent SMTP connections.
	conns int
	// profile is the length of the CPU profile taken of every service in the real mode.
	profile time.Duration
	modes   []string
	// brokers, when set, is an existing broker to use instead of a fresh one of our own.
	brokers string
	// kafkaProps are extra server.properties lines for our own broker (an experiment: a later
	// line overrides an earlier one, e.g. log.flush.interval.messages).
	kafkaProps string
	// crm is the connector the real crm-sink writes to: "webhook" (a receiver in this process
	// that answers 204 at once) or "localstore" (the dev store: a JSON line and an fsync per
	// write, under one lock).
	crm string
}

func loadSettings(t *testing.T) settings {
	t.Helper()
	get := func(name, def string) string {
		if v := os.Getenv("MAILPIPE_BENCH_PIPELINE_" + name); v != "" {
			return v
		}
		return def
	}
	num := func(name string, def int) int {
		v := get(name, strconv.Itoa(def))
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("MAILPIPE_BENCH_PIPELINE_%s=%q: want a non-negative integer", name, v)
		}
		return n
	}
	dur := func(name string, def time.Duration) time.Duration {
		v := get(name, def.String())
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("MAILPIPE_BENCH_PIPELINE_%s=%q: want a positive duration", name, v)
		}
		return d
	}
	s := settings{
		step: dur("STEP", 30*time.Second), hold: dur("HOLD", 60*time.Second),
		searches: num("SEARCH", 3), drain: dur("DRAIN", 90*time.Second),
		conns: max(1, num("CONNS", 64)), profile: dur("PROFILE", 20*time.Second),
		modes:   strings.Split(get("MODES", "noop,real"), ","),
		brokers: get("BROKERS", ""), kafkaProps: get("KAFKA_PROPERTIES", ""),
		crm: get("CRM", "webhook"),
	}
	if s.crm != "webhook" && s.crm != "localstore" {
		t.Fatalf("MAILPIPE_BENCH_PIPELINE_CRM=%q: want webhook or localstore", s.crm)
	}
	for f := range strings.SplitSeq(get("RATES", "100,500,1000,2000"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			t.Fatalf("MAILPIPE_BENCH_PIPELINE_RATES: %q is not a positive rate", f)
		}
		s.rates = append(s.rates, n)
	}
	for _, m := range s.modes {
		if m != "noop" && m != "real" {
			t.Fatalf("MAILPIPE_BENCH_PIPELINE_MODES: %q is neither noop nor real", m)
		}
	}
	return s
}

// env is what every run of the services needs.
type env struct {
	root, tmp, bins string
	brokers, redis  string
	kafkaPID        func() int
	redisPID        func() int
	codec           *serde.Codec
	adm             *kadm.Client
	s               settings
	run             string
	brokerNote      string
}

// TestBenchPipeline runs the five services as processes on a broker of its own, in the no-op
// mode and then the real one, and writes ../PIPELINE.md.
func TestBenchPipeline(t *testing.T) {
	if os.Getenv("MAILPIPE_BENCH") != "1" {
		t.Skip("a benchmark, not a test: run it with MAILPIPE_BENCH=1 (make bench-pipeline)")
	}
	s := loadSettings(t)
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	rep := &report{started: time.Now().UTC(), loadBefore: loadAverage(), s: s, built: describe(t, root)}
	e := &env{root: root, tmp: t.TempDir(), s: s, run: strconv.FormatInt(time.Now().UnixNano(), 36)}
	e.bins = filepath.Join(e.tmp, "bin")
	if err := os.MkdirAll(e.bins, 0o755); err != nil {
		t.Fatal(err)
	}

	// given: the binaries built as they ship, a fresh broker and redis-server of our own, and
	// the topics applied with a short retention so the run's disk use stays bounded.
	build(t, root, e.bins)
	e.startInfra(t)
	rep.broker = e.brokerNote
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	e.adm = kadm.NewClient(cl)
	rep.flush = brokerSetting(t, e.adm, "log.flush.interval.messages")
	e.applyTopics(t)
	if e.codec, err = serde.New(t.Context()); err != nil {
		t.Fatal(err)
	}

	// when/then: each mode with the same binaries, one after the other.
	for _, mode := range s.modes {
		t.Run(mode, func(t *testing.T) { rep.modes = append(rep.modes, e.runMode(t, mode)) })
	}

	rep.finished, rep.loadAfter = time.Now().UTC(), loadAverage()
	text := rep.markdown(t)
	fmt.Print("\n" + text)
	if t.Failed() {
		t.Log("not writing PIPELINE.md: the run failed")
		return
	}
	// MAILPIPE_BENCH_PIPELINE_OUT writes an experiment's report elsewhere.
	path := os.Getenv("MAILPIPE_BENCH_PIPELINE_OUT")
	if path == "" {
		path = filepath.Join("..", "PIPELINE.md")
	}
	if err := os.WriteFile(path, []byte(text+keptNotes(path)), 0o644); err != nil {
		t.Fatalf("writing PIPELINE.md: %v", err)
	}
	t.Log("wrote " + path)
}

// startInfra starts a fresh broker (or takes MAILPIPE_BENCH_PIPELINE_BROKERS) and a fresh
// redis-server, each stopped and its data removed when the test ends.
func (e *env) startInfra(t *testing.T) {
	t.Helper()
	runDir := os.Getenv("MAILPIPE_RUN")
	if runDir == "" {
		cache := os.Getenv("MAILPIPE_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "mailpipe")
		}
		runDir = filepath.Join(cache, "run")
	}
	ctx := context.Background() // the cleanups run after t.Context is done
	if e.s.brokers != "" {
		e.brokers = e.s.brokers
		e.kafkaPID = func() int { return 0 }
		e.brokerNote = "the broker at " + e.brokers + " (MAILPIPE_BENCH_PIPELINE_BROKERS), shared"
	} else {
		port := freeLowPort(t, 21092, 2)
		kenv := []string{
			fmt.Sprintf("KAFKA_PORT=%d", port), "KAFKA_FRESH=1",
			// Old segments go within seconds of their retention: a run writes gigabytes.
			"KAFKA_EXTRA_PROPERTIES=log.retention.check.interval.ms=10000\nlog.segment.bytes=33554432\n" +
				strings.ReplaceAll(e.s.kafkaProps, ",", "\n"),
		}
		addr, err := script(ctx, e.root, "kafka-up.sh", kenv...)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(runDir, fmt.Sprintf("kafka-%d", port))
		t.Cleanup(func() {
			if _, err := script(ctx, e.root, "kafka-down.sh", kenv...); err != nil {
				t.Log(err)
			}
			_ = os.RemoveAll(dir)
		})
		e.brokers = addr
		e.kafkaPID = func() int { return pidFile(filepath.Join(dir, "pid")) }
		e.brokerNote = fmt.Sprintf("a fresh single-node broker of its own (scripts/kafka-up.sh, KRaft, port %d, data wiped before and after)", port)
		if e.s.kafkaProps != "" {
			e.brokerNote += "; extra properties (MAILPIPE_BENCH_PIPELINE_KAFKA_PROPERTIES): `" + e.s.kafkaProps + "`"
		}
	}
	rport := freeLowPort(t, 26579, 1)
	renv := fmt.Sprintf("REDIS_PORT=%d", rport)
	url, err := script(ctx, e.root, "redis-up.sh", renv)
	if err != nil {
		t.Fatal(err)
	}
	rdir := filepath.Join(runDir, fmt.Sprintf("redis-%d", rport))
	t.Cleanup(func() {
		if _, err := script(ctx, e.root, "redis-down.sh", renv); err != nil {
			t.Log(err)
		}
		_ = os.RemoveAll(rdir)
	})
	e.redis = url
	e.redisPID = func() int { return pidFile(filepath.Join(rdir, "pid")) }
}

// applyTopics creates the topics with the CLI, as a deployment does, then shortens the
// retention of the data topics to two minutes.
func (e *env) applyTopics(t *testing.T) {
	t.Helper()
	apply := exec.CommandContext(t.Context(), filepath.Join(e.bins, "mailpipe"), "topics", "apply", "--partitions", "6")
	apply.Env = append(os.Environ(), "MAILPIPE_KAFKA_BROKERS="+e.brokers)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("mailpipe topics apply: %v\n%s", err, out)
	}
	ms, seg := "120000", "33554432"
	topics := []string{kafka.TopicRaw, kafka.TopicParsed, kafka.TopicClassified, kafka.TopicEnriched, kafka.TopicCRM, kafka.TopicLake, kafka.TopicDLQ}
	resp, err := e.adm.AlterTopicConfigs(t.Context(), []kadm.AlterConfig{
		{Name: "retention.ms", Value: &ms}, {Name: "segment.bytes", Value: &seg},
	}, topics...)
	if err != nil {
		t.Fatalf("shortening retention: %v", err)
	}
	for _, r := range resp {
		if r.Err != nil {
			t.Fatalf("shortening retention of %s: %v", r.Name, r.Err)
		}
	}
}

// brokerSetting reads one setting of the (first) broker.
func brokerSetting(t *testing.T, adm *kadm.Client, name string) string {
	t.Helper()
	ids, err := adm.ListBrokers(t.Context())
	if err != nil || len(ids) == 0 {
		return "?"
	}
	rcs, err := adm.DescribeBrokerConfigs(t.Context(), ids.NodeIDs()[0])
	if err != nil {
		return "?"
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key == name {
				return c.MaybeValue()
			}
		}
	}
	return "?"
}

// describe says what was built: the work tree at git describe --dirty.
func describe(t *testing.T, root string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", "describe", "--always", "--dirty", "--abbrev=12")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "work tree (git describe failed)"
	}
	return "work tree at " + strings.TrimSpace(string(out))
}

// mode is one mode's services and results.
type mode struct {
	name  string
	steps []*step
	// best is the highest rate held for the hold time in the search; 0 when none was.
	best int
	// hwm is the peak RSS of each process over the whole mode.
	hwm     map[string]int64
	profile *profile
	notes   []string
}

// step is one load step at one rate.
type step struct {
	idx     int
	rate    int
	search  bool
	load    loadResult
	lat     []time.Duration
	missing int
	lags    []lagSample
	// growth is the lag's least-squares slope over the second half of the sending window,
	// records/s.
	growth float64
	maxLag map[string]int64
	// drain is how long after the last send the last message of the step reached mail.crm.v1.
	drain   time.Duration
	drained bool
	cpu     map[string]time.Duration
	held    bool
	why     string
}

func (s *step) rateAccepted() float64 { return float64(s.load.accepted) / s.load.elapsed.Seconds() }

// runMode starts the five services in mode, runs the fixed rates and the search, and stops
// them.
func (e *env) runMode(t *testing.T, name string) *mode {
	m := &mode{name: name, hwm: map[string]int64{}}
	dir := filepath.Join(e.tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	keyHash := sha256.Sum256([]byte("bench-api-key"))
	common := []string{
		"MAILPIPE_KAFKA_BROKERS=" + e.brokers,
		"MAILPIPE_REDIS_URL=" + e.redis,
		"MAILPIPE_BLOB_URL=file://" + filepath.Join(dir, "blobs"),
	}
	stageEnv := common
	if name == "noop" {
		stageEnv = append(stageEnv[:len(stageEnv):len(stageEnv)], "MAILPIPE_STAGE_NOOP=true")
	}
	smtpAddr := freeAddr(t)
	procs := map[string]*proc{}
	for _, svc := range services {
		var env []string
		switch svc {
		case "ingress":
			env = append(common[:len(common):len(common)], "MAILPIPE_SMTP_ADDR="+smtpAddr, "MAILPIPE_HTTP_ADDR="+freeAddr(t),
				"MAILPIPE_INGEST_DOMAINS="+domain, "MAILPIPE_HTTP_API_KEY_SHA256="+hex.EncodeToString(keyHash[:]))
		case "crm-sink":
			env = append(stageEnv[:len(stageEnv):len(stageEnv)], "MAILPIPE_SINK_LAKE_SALT=bench-lake-salt-0123456789")
			if e.s.crm == "localstore" {
				env = append(env, "MAILPIPE_LOCALSTORE_PATH="+filepath.Join(dir, "crm.jsonl"))
			} else {
				env = append(env, "MAILPIPE_WEBHOOK_URL="+webhookReceiver(t), "MAILPIPE_WEBHOOK_ALLOW_PRIVATE=true",
					"MAILPIPE_WEBHOOK_SECRETS=whsec_"+base64.StdEncoding.EncodeToString([]byte("bench-webhook-secret-0123456789")))
			}
		default:
			env = stageEnv
		}
		procs[svc] = start(t, svc, filepath.Join(e.bins, svc), dir, env)
	}
	for _, svc := range services {
		procs[svc].waitReady(t, 90*time.Second)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	crmStart, err := endOffsets(ctx, e.adm, kafka.TopicCRM)
	if err != nil {
		t.Fatal(err)
	}
	led := newLedger()
	var followErr error
	var wg sync.WaitGroup
	wg.Go(func() { followErr = follow(ctx, e.brokers, crmStart, e.codec, name == "real", led) })
	gen := &generator{addr: smtpAddr, run: e.run + name, conns: e.s.conns, fill: newFillers(), onAccept: led.accept}

	pids := func() map[string]int {
		out := map[string]int{"bench client": os.Getpid(), "kafka": e.kafkaPID(), "redis": e.redisPID()}
		for n, p := range procs {
			out[n] = p.cmd.Process.Pid
		}
		return out
	}

	// A warm-up until mail flows end to end: the groups join, the transactions start and the
	// broker's JIT compiler has seen the traffic.
	warm := gen.send(ctx, -1, 50, 10*time.Second)
	if warm.accepted == 0 {
		t.Fatalf("warm-up: no message accepted: %s", warm.firstErr)
	}
	if !waitDrained(ctx, led, -1, 2*time.Minute) {
		t.Fatalf("warm-up: %d of %d messages did not reach %s in 2 minutes", led.pending(-1), warm.accepted, kafka.TopicCRM)
	}

	idx := 0
	runStep := func(rate int, d time.Duration, search bool, during func()) *step {
		st := e.step(ctx, t, gen, led, pids, idx, rate, d, during)
		st.search = search
		idx++
		m.steps = append(m.steps, st)
		t.Logf("%s %d msg/s for %s: accepted %.0f/s, p50 %s p95 %s p99 %s, lag growth %.1f/s, drained %v in %s, held %v %s",
			name, rate, d, st.rateAccepted(), quantile(st.lat, .5), quantile(st.lat, .95), quantile(st.lat, .99),
			st.growth, st.drained, st.drain.Round(100*time.Millisecond), st.held, st.why)
		return st
	}
	fixedBest, lowestFailed := 0, math.MaxInt
	for _, rate := range e.s.rates {
		st := runStep(rate, e.s.step, false, nil)
		if st.held {
			fixedBest = max(fixedBest, rate)
		} else {
			lowestFailed = min(lowestFailed, rate)
		}
		if !st.drained {
			m.notes = append(m.notes, fmt.Sprintf("%d msg/s did not drain within %s; the higher rates were not run", rate, e.s.drain))
			break
		}
	}

	// The search: confirm the highest fixed rate held over the hold time, then bisect between
	// the highest held and the lowest failed rate (or step up by a quarter).
	lo, hi := 0, lowestFailed
	cand := fixedBest
	if cand == 0 {
		cand = max(50, e.s.rates[0]/2)
	}
	for i := range e.s.searches {
		var during func()
		if name == "real" && i == 0 {
			during = func() { m.profile = e.takeProfiles(ctx, t, procs, dir) }
		}
		st := runStep(cand, e.s.hold, true, during)
		if st.held {
			lo, m.best = cand, max(m.best, cand)
		} else {
			hi = min(hi, cand)
		}
		if !st.drained {
			m.notes = append(m.notes, fmt.Sprintf("the search stopped: %d msg/s did not drain within %s", cand, e.s.drain))
			break
		}
		next := max(cand+50, cand+cand/4)
		if hi != math.MaxInt {
			next = (lo + hi) / 2
		}
		next = max(50, next/50*50)
		if next <= lo || next >= hi {
			break
		}
		cand = next
	}
	for n, pid := range pids() {
		m.hwm[n] = readUsage(pid).hwm
	}
	if m.profile != nil {
		m.profile.analyse(t, m)
	}
	for _, svc := range services {
		if procs[svc].exited() {
			t.Errorf("%s exited during the run: %v", svc, procs[svc].waitErr)
		}
	}
	cancel()
	wg.Wait()
	if followErr != nil {
		t.Errorf("reading %s: %v", kafka.TopicCRM, followErr)
	}
	if led.extra > 0 {
		m.notes = append(m.notes, fmt.Sprintf("%d duplicate records on %s", led.extra, kafka.TopicCRM))
	}
	if led.fetchErrs > 0 {
		m.notes = append(m.notes, fmt.Sprintf("%d fetch errors reading %s, retried (last: %s)", led.fetchErrs, kafka.TopicCRM, led.lastFetchErr))
	}
	if led.failed > 0 {
		m.notes = append(m.notes, fmt.Sprintf("%d outcomes failed", led.failed))
	}
	for _, svc := range slicesReverse(services) {
		if err := procs[svc].stop(); err != nil {
			t.Error(err)
		}
	}
	// The blobs of the 1 MiB messages are not needed any more.
	_ = os.RemoveAll(filepath.Join(dir, "blobs"))
	return m
}

// webhookReceiver serves a CRM stand-in that reads each delivery and answers 204 at once,
// without checking the signature: the real mode then measures the pipeline, not a CRM. It
// runs in the benchmark's process, so its CPU is the bench client's.
func webhookReceiver(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func slicesReverse(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// waitDrained waits until every accepted message of step has its CRM record.
func waitDrained(ctx context.Context, l *ledger, step int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for l.pending(step) > 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// step sends at rate for d while sampling the lag each second and the CPU time of every
// process, then waits for the step's messages to drain. during, if set, runs alongside the
// sending (the profiles).
func (e *env) step(ctx context.Context, t *testing.T, gen *generator, led *ledger, pids func() map[string]int, idx, rate int, d time.Duration, during func()) *step {
	st := &step{idx: idx, rate: rate, maxLag: map[string]int64{}, cpu: map[string]time.Duration{}}
	before := map[string]time.Duration{}
	ps := pids()
	for n, pid := range ps {
		before[n] = readUsage(pid).cpu
	}
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
				s, err := sampleLag(sctx, e.adm)
				if err != nil {
					if sctx.Err() == nil {
						t.Logf("lag sample: %v", err)
					}
					continue
				}
				st.lags = append(st.lags, s)
			}
		}
	})
	if during != nil {
		wg.Go(func() {
			select {
			case <-sctx.Done():
				return
			case <-time.After(min(10*time.Second, d/4)):
			}
			during()
		})
	}
	st.load = gen.send(ctx, idx, float64(rate), d)
	sent := time.Now()
	for n, pid := range ps {
		st.cpu[n] = readUsage(pid).cpu - before[n]
	}
	stop()
	wg.Wait()
	st.drained = waitDrained(ctx, led, idx, e.s.drain)
	st.drain = time.Since(sent)
	st.lat, st.missing = led.latencies(idx)

	var half []lagSample
	for _, s := range st.lags {
		for k, v := range s.by {
			st.maxLag[k] = max(st.maxLag[k], v)
		}
		if s.at.Sub(st.lags[0].at) >= d/2-time.Second {
			half = append(half, s)
		}
	}
	st.growth = slope(half)
	st.held, st.why = judge(st, rate)
	return st
}

// judge decides whether a step held its rate: at least 95 % of it accepted, the lag not
// growing (its slope over the second half of the window under 2 % of the rate, at least 5
// records/s, since transactions of up to 500 records make it saw-toothed), and every accepted
// message written within the drain time.
func judge(st *step, rate int) (bool, string) {
	switch {
	case st.rateAccepted() < 0.95*float64(rate):
		return false, fmt.Sprintf("accepted %.0f/s < 95 %% of %d", st.rateAccepted(), rate)
	case st.growth > max(5, 0.02*float64(rate)):
		return false, fmt.Sprintf("lag grew %.0f records/s", st.growth)
	case !st.drained:
		return false, fmt.Sprintf("%d messages not written within the drain time", st.missing)
	}
	return true, ""
}
