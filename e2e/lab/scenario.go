package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// Scenario is one test of the plan: a load, faults injected while it runs, and what must hold.
type Scenario struct {
	Name string
	Plan string // the plan's test number(s) and title, for the report
	Load LoadSpec
	Env  map[string][]string // extra environment per service
	// PoisonSchema and PoisonParse are records the lab writes to mail.raw.v1 directly during the
	// load: undecodable bytes (the parser dead-letters them as schema) and valid records whose
	// MIME has no header block (parse).
	PoisonSchema, PoisonParse int
	// Fault runs while the load is sent; the run waits for it before measuring the drain.
	Fault func(ctx context.Context, r *Run) error
	// After runs once the pipeline drained the load (e.g. fix the CRM and replay the DLQ); the
	// drain is measured again after it.
	After func(ctx context.Context, r *Run) error
	// WantDLQ is the exact dead-letter count per class; classes not listed must be 0. A class
	// mapped to -1 may have any count (e.g. "blocked" replies behind a refused message).
	WantDLQ map[string]int
	// DrainLimit bounds the time from the end of load and faults until every acknowledged
	// message is in the CRM and every group's lag is 0. Default 2 minutes.
	DrainLimit time.Duration
}

// Run is one running scenario, passed to its fault and after hooks.
type Run struct {
	T      testing.TB
	Lab    *Lab
	Ledger *Ledger
	Notes  []string
}

// Logf logs and keeps a note for the report.
func (r *Run) Logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.T.Log(msg)
	r.Notes = append(r.Notes, msg)
}

// WaitAcked waits until n distinct messages were acknowledged.
func (r *Run) WaitAcked(ctx context.Context, n int) error {
	for r.Ledger.Acked() < n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Result is a scenario's figures and verdict.
type Result struct {
	Scenario  string
	Plan      string
	Attempt   int
	Report    *Report
	Drain     time.Duration // end of load and faults → CRM complete and lag 0
	Restarts  map[string]int
	PeakRSS   map[string]float64 // MiB
	Shutdown  map[string]time.Duration
	Elapsed   time.Duration
	Failures  []string
	Notes     []string
	FinalLag  int64
	DLQWanted map[string]int
}

// Pass reports whether every check held.
func (res *Result) Pass() bool { return len(res.Failures) == 0 }

// Execute runs sc on a fresh lab and returns its result; an error means the lab itself could not
// run (not a failed check).
func Execute(ctx context.Context, t testing.TB, bins map[string]string, repo string, sc Scenario, attempt int) (*Result, error) {
	began := time.Now()
	dir, err := os.MkdirTemp("", "mailpipe-lab-"+sc.Name+"-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s: lab files kept in %s", sc.Name, dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	lab, err := Start(ctx, t, Config{Repo: repo, Bins: bins, Dir: dir, Env: sc.Env})
	if err != nil {
		return nil, err
	}
	t.Logf("%s: lab up in %s (broker %s, redis %s)", sc.Name, time.Since(began).Round(time.Millisecond), lab.Broker.Addr(), lab.Redis.URL())
	spec := sc.Load
	if spec.Run == "" {
		spec.Run = fmt.Sprintf("%s-%d-%d", sc.Name, attempt, time.Now().UnixNano()%1e6)
	}
	if spec.Domain == "" {
		spec.Domain = Domain
	}
	if spec.GiveUp == 0 {
		spec.GiveUp = 3 * time.Minute
	}
	run := &Run{T: t, Lab: lab, Ledger: Plan(spec)}
	res := &Result{
		Scenario: sc.Name, Plan: sc.Plan, Attempt: attempt, Restarts: map[string]int{}, PeakRSS: map[string]float64{},
		Shutdown: map[string]time.Duration{}, DLQWanted: sc.WantDLQ,
	}

	faultErr := make(chan error, 1)
	loadDone := make(chan struct{})
	go func() {
		if sc.Fault == nil {
			faultErr <- nil
			return
		}
		faultErr <- sc.Fault(ctx, run)
	}()
	if sc.PoisonSchema+sc.PoisonParse > 0 {
		go func() {
			// Spread over the load: after a tenth of it is acknowledged.
			_ = run.WaitAcked(ctx, len(run.Ledger.Entries)/10)
			if err := injectPoison(ctx, lab.Broker.Addr(), spec.Run, sc.PoisonSchema, sc.PoisonParse); err != nil {
				run.Logf("injecting poison: %v", err)
			}
		}()
	}
	go func() { run.Ledger.Send(ctx, lab.SMTPAddr); close(loadDone) }()
	<-loadDone
	if err := <-faultErr; err != nil {
		res.Failures = append(res.Failures, "fault: "+err.Error())
	}
	acked, attempts, transient, permanent := run.Ledger.Counts()
	t.Logf("%s: load sent in %s: %d acknowledged, %d SMTP transactions, %d transient failures, %d permanent",
		sc.Name, run.Ledger.Ended.Sub(run.Ledger.Started).Round(time.Millisecond), acked, attempts, transient, permanent)

	limit := sc.DrainLimit
	if limit == 0 {
		limit = 2 * time.Minute
	}
	expect := func(e *Entry) bool { return e.Acked > 0 && (!e.Refuse || sc.After == nil) }
	if sc.After != nil {
		// Before the fix, neither the refused messages nor the later messages of their threads
		// (held behind them, dead-lettered as blocked) can be in the CRM.
		refusedAt := map[int]int{}
		for _, e := range run.Ledger.Entries {
			if e.Refuse {
				if s, ok := refusedAt[e.Thread]; !ok || e.Seq < s {
					refusedAt[e.Thread] = e.Seq
				}
			}
		}
		free := func(e *Entry) bool {
			s, ok := refusedAt[e.Thread]
			return e.Acked > 0 && (!ok || e.Seq < s)
		}
		if _, err := waitDrained(ctx, lab, run.Ledger, limit, free); err != nil {
			res.Failures = append(res.Failures, "before the after-step: "+err.Error())
		}
		if err := sc.After(ctx, run); err != nil {
			res.Failures = append(res.Failures, "after-step: "+err.Error())
		}
		expect = func(e *Entry) bool { return e.Acked > 0 }
	}
	drain, err := waitDrained(ctx, lab, run.Ledger, limit, expect)
	res.Drain = drain
	if err != nil {
		res.Failures = append(res.Failures, err.Error())
	}
	time.Sleep(2 * time.Second) // let a stray redelivery show up before counting
	res.FinalLag, _, _ = GroupLag(ctx, lab.Broker.Addr(), Groups)

	rep, err := Oracle(ctx, lab.Broker.Addr(), run.Ledger, lab.CRM)
	if err != nil {
		return nil, fmt.Errorf("oracle: %w", err)
	}
	res.Report = rep
	stopErrs := make([]error, len(ServiceNames))
	stopTook := make([]time.Duration, len(ServiceNames))
	var wg sync.WaitGroup
	for i, n := range ServiceNames {
		wg.Go(func() { stopTook[i], stopErrs[i] = lab.Services[n].Stop(30 * time.Second) })
	}
	wg.Wait()
	for i, n := range ServiceNames {
		s := lab.Services[n]
		res.Shutdown[n] = stopTook[i]
		if stopErrs[i] != nil {
			res.Failures = append(res.Failures, fmt.Sprintf("%s shutdown: %v", n, stopErrs[i]))
		}
		res.Restarts[n] = s.Restarts()
		res.PeakRSS[n] = s.PeakRSSMiB()
	}
	res.Notes = run.Notes
	res.Elapsed = time.Since(began)
	res.check(sc)
	if !res.Pass() {
		for _, n := range ServiceNames {
			t.Logf("---- %s (%s), last lines ----\n%s", n, lab.Services[n].LogPath(), lab.Services[n].Tail(25))
		}
	}
	return res, nil
}

// check applies the pass rules common to every scenario.
func (res *Result) check(sc Scenario) {
	r := res.Report
	fail := func(format string, args ...any) { res.Failures = append(res.Failures, fmt.Sprintf(format, args...)) }
	if r.Lost != 0 {
		fail("%d acknowledged messages lost (e.g. %s)", r.Lost, strings.Join(r.LostIDs, ", "))
	}
	if r.DupEffects != 0 {
		fail("%d duplicate CRM effects", r.DupEffects)
	}
	if r.Inversions != 0 {
		fail("%d per-thread order inversions", r.Inversions)
	}
	for _, topic := range SortedKeys(r.DupInTopic) {
		if n := r.DupInTopic[topic]; n != 0 {
			fail("%d duplicates in %s", n, topic)
		}
	}
	if r.Orphans != 0 {
		fail("%d records in read_committed topics without a ledger entry", r.Orphans)
	}
	if r.GaveUp != 0 {
		fail("%d messages never acknowledged within the client's give-up time", r.GaveUp)
	}
	if r.Permanent != 0 {
		fail("%d permanent (5xx) SMTP answers", r.Permanent)
	}
	classes := map[string]bool{}
	for c := range r.DLQ {
		classes[c] = true
	}
	for c := range sc.WantDLQ {
		classes[c] = true
	}
	keys := make([]string, 0, len(classes))
	for c := range classes {
		keys = append(keys, c)
	}
	sort.Strings(keys)
	for _, c := range keys {
		want, listed := sc.WantDLQ[c]
		switch {
		case listed && want < 0:
		case r.DLQ[c] != want:
			fail("DLQ class %q: %d dead letters, want %d", c, r.DLQ[c], want)
		}
	}
	if res.FinalLag != 0 {
		fail("consumer lag %d after the drain", res.FinalLag)
	}
}

// waitDrained waits until every ledger entry selected by expect has a CRM write and the groups'
// lag is 0; it returns how long that took.
func waitDrained(ctx context.Context, lab *Lab, l *Ledger, limit time.Duration, expect func(*Entry) bool) (time.Duration, error) {
	start := time.Now()
	var missing int
	var lag int64
	var lagErr error
	for time.Since(start) < limit {
		written := map[string]bool{}
		for _, w := range lab.CRM.Writes() {
			written[strings.ToLower(w.MessageID)] = true
		}
		missing = 0
		l.mu.Lock()
		for _, e := range l.Entries {
			if expect(e) && !written[strings.ToLower(e.MessageID)] {
				missing++
			}
		}
		l.mu.Unlock()
		if missing == 0 {
			lag, _, lagErr = GroupLag(ctx, lab.Broker.Addr(), Groups)
			if lagErr == nil && lag == 0 {
				return time.Since(start), nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	if lagErr != nil {
		return time.Since(start), fmt.Errorf("not drained after %s: %d expected messages not in the CRM, lag unknown: %w", limit, missing, lagErr)
	}
	return time.Since(start), fmt.Errorf("not drained after %s: %d expected messages not in the CRM, lag %d", limit, missing, lag)
}

// injectPoison writes poison pills to mail.raw.v1: nSchema records that are not
// Confluent-framed Avro at all, and nParse valid records whose raw MIME has no header block.
func injectPoison(ctx context.Context, brokers, run string, nSchema, nParse int) error {
	codec, err := serde.New(ctx)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordRetries(20))
	if err != nil {
		return err
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range nSchema {
		key := fmt.Sprintf("%s%s-schema-%d@lab.example", PoisonPrefix, run, i)
		recs = append(recs, &kgo.Record{Topic: TopicRaw, Key: []byte(key), Value: []byte("\x00\xff\xff\xff\xffnot avro at all " + key)})
	}
	for i := range nParse {
		id := fmt.Sprintf("%s%s-parse-%d@lab.example", PoisonPrefix, run, i)
		raw := []byte("\x00\x01\x02 this is no RFC 5322 message: no header block at all\r\n")
		v := events.Raw{
			ID: fmt.Sprintf("01LABPOISON%015d", i), ReceivedAt: time.Now().UTC(),
			Envelope: events.Envelope{MailFrom: "poison@lab.example", RcptTo: []string{"support@" + Domain}, ClientIP: "127.0.0.1", Source: "smtp"},
			Tenant:   "default", ThreadKey: id, MessageID: id, Size: int64(len(raw)), Sha256: strings.Repeat("0", 64), Raw: &raw,
		}
		b, err := codec.Encode(TopicRaw, &v)
		if err != nil {
			return err
		}
		recs = append(recs, &kgo.Record{Topic: TopicRaw, Key: []byte(id), Value: b})
	}
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

// WriteLedger writes the ledger as TSV (message id, thread, seq, size, flags, codes) for a
// failure report.
func WriteLedger(path string, l *Ledger) error {
	var b strings.Builder
	b.WriteString("message_id\tthread\tseq\tsize\trefuse\tdup\tacked\tcodes\n")
	l.mu.Lock()
	for _, e := range l.Entries {
		fmt.Fprintf(&b, "%s\t%d\t%d\t%d\t%t\t%t\t%d\t%v\n", e.MessageID, e.Thread, e.Seq, e.Size, e.Refuse, e.Dup, e.Acked, e.Codes)
	}
	l.mu.Unlock()
	return os.WriteFile(filepath.Clean(path), []byte(b.String()), 0o600)
}
