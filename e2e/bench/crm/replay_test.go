package crm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

const (
	// seed makes every run deliver the same corpus.
	seed = 2026
	// replayMessages sizes TestReplayTwiceNoDuplicates: small enough for make test under -race,
	// large enough that senders, companies and threads repeat.
	replayMessages = 300
	// maxAttempts is how often a retryable failure is tried, as the crm-sink's retry budget
	// would; without injected faults none is expected, and any is reported.
	maxAttempts = 5
)

// workers is the number of goroutines upserting at once: MAILPIPE_BENCH_CRM_WORKERS, default 8.
func workers() int {
	if n, err := strconv.Atoi(os.Getenv("MAILPIPE_BENCH_CRM_WORKERS")); err == nil && n > 0 {
		return n
	}
	return 8
}

// pass is one delivery of every message.
type pass struct {
	elapsed  time.Duration
	latency  []time.Duration // of every Upsert call, sorted
	outcomes map[string]int
	retries  int
}

func (p pass) rate(n int) float64 { return float64(n) / p.elapsed.Seconds() }

// quantile returns the q-quantile of the sorted latencies (nearest rank).
func (p pass) quantile(q float64) time.Duration {
	if len(p.latency) == 0 {
		return 0
	}
	i := int(q*float64(len(p.latency))+0.5) - 1
	return p.latency[min(max(i, 0), len(p.latency)-1)]
}

// deliver upserts msgs in order with n goroutines, as the crm-sink does: a retryable failure is
// tried again (a short wait, at most maxAttempts), any other failure ends the pass.
func deliver(ctx context.Context, c crm.Connector, msgs []*events.Enriched, order []int, n int) (pass, error) {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
		p        = pass{outcomes: map[string]int{}, latency: make([]time.Duration, 0, len(order))}
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	for range n {
		wg.Go(func() {
			var lat []time.Duration
			outcomes := map[string]int{}
			retries := 0
			defer func() {
				mu.Lock()
				p.latency = append(p.latency, lat...)
				for k, v := range outcomes {
					p.outcomes[k] += v
				}
				p.retries += retries
				mu.Unlock()
			}()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(order) || ctx.Err() != nil {
					return
				}
				rec := msgs[order[i]]
				for attempt := 1; ; attempt++ {
					t0 := time.Now()
					res, err := c.Upsert(ctx, rec)
					lat = append(lat, time.Since(t0))
					if err == nil {
						outcomes[res.Outcome]++
						break
					}
					if !failure.Retryable(err) || attempt == maxAttempts {
						mu.Lock()
						if firstErr == nil {
							firstErr = fmt.Errorf("message %d (%s), attempt %d: %w", order[i], rec.Message.ExternalID, attempt, err)
						}
						mu.Unlock()
						cancel()
						return
					}
					retries++
					time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	p.elapsed = time.Since(start)
	slices.Sort(p.latency)
	return p, firstErr
}

// result is what delivering a corpus twice through one target did.
type result struct {
	target        string
	messages      int
	first, replay pass
	kinds         []kind
}

func (r result) duplicates() int {
	n := 0
	for _, k := range r.kinds {
		n += k.duplicates()
	}
	return n
}

// describeKinds lists the objects by kind, e.g. "300 emails, 212 contacts, 41 companies".
func (r result) describeKinds() string {
	parts := make([]string, 0, len(r.kinds))
	for _, k := range r.kinds {
		parts = append(parts, fmt.Sprintf("%d %s", k.stored, k.name))
	}
	return strings.Join(parts, ", ")
}

// replayTwice delivers every message of c through a fresh connector to a fresh system, then
// all of them again, shuffled, through another fresh connector to the same system, and counts
// what the system holds. It fails t on a failed upsert, a duplicate, or a missing or extra key.
func replayTwice(t *testing.T, tg target, c corpus, n int) result {
	t.Helper()
	sys := tg.open(t, c)
	order := make([]int, len(c.msgs))
	for i := range order {
		order[i] = i
	}
	r := result{target: tg.name, messages: len(c.msgs)}
	var err error
	if r.first, err = deliver(t.Context(), sys.connect(t), c.msgs, order, n); err != nil {
		t.Fatalf("%s, first pass: %v", tg.name, err)
	}
	shuffled := slices.Clone(order)
	rand.New(rand.NewPCG(seed, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if r.replay, err = deliver(t.Context(), sys.connect(t), c.msgs, shuffled, n); err != nil {
		t.Fatalf("%s, replay: %v", tg.name, err)
	}
	r.kinds = sys.count(t)
	for _, k := range r.kinds {
		if d := k.duplicates(); d != 0 {
			t.Errorf("%s: %d duplicate %s after the replay (%d stored, %d distinct keys)", tg.name, d, k.name, k.stored, k.distinct)
		}
		if k.distinct != k.want {
			t.Errorf("%s: %d distinct %s, want %d", tg.name, k.distinct, k.name, k.want)
		}
	}
	if r.first.retries+r.replay.retries > 0 {
		t.Logf("%s: %d retried upserts (pass 1 %d, replay %d) although no fault was injected",
			tg.name, r.first.retries+r.replay.retries, r.first.retries, r.replay.retries)
	}
	return r
}

// TestReplayTwiceNoDuplicates is the duplicate figure on a small corpus: every connector
// gets every message twice (the second time shuffled, from a fresh connector) and its target
// must hold one object per message, per sender and per company, never two.
func TestReplayTwiceNoDuplicates(t *testing.T) {
	c := newCorpus(seed, replayMessages)
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			r := replayTwice(t, tg, c, workers())
			t.Logf("%d messages twice: %s; %d duplicates; outcomes pass 1 %v, replay %v",
				r.messages, r.describeKinds(), r.duplicates(), r.first.outcomes, r.replay.outcomes)
		})
	}
}

// TestCorpus checks the generator: deterministic, distinct external ids and Message-IDs, and
// the repetition the replay figures depend on.
func TestCorpus(t *testing.T) {
	a, b := newCorpus(seed, 1000), newCorpus(seed, 1000)
	ids, mids := map[string]bool{}, map[string]bool{}
	replies := 0
	for i, m := range a.msgs {
		if m.Message.ExternalID != b.msgs[i].Message.ExternalID || m.Message.Subject != b.msgs[i].Message.Subject {
			t.Fatalf("message %d differs between two corpora of one seed", i)
		}
		ids[m.Message.ExternalID], mids[m.Message.MessageID] = true, true
		if m.Message.InReplyTo != "" {
			replies++
		}
	}
	if len(ids) != len(a.msgs) || len(mids) != len(a.msgs) {
		t.Errorf("%d external ids and %d Message-IDs for %d messages, want all distinct", len(ids), len(mids), len(a.msgs))
	}
	if other := newCorpus(seed+1, 10); other.msgs[0].Message.ExternalID == a.msgs[0].Message.ExternalID {
		t.Error("another seed gives the same first message")
	}
	for _, tt := range []struct {
		name     string
		got      int
		min, max int
	}{
		{"senders", a.senders, 150, senderCount},
		{"companies", a.companies, 30, companyCount},
		{"threads", a.threads, 400, 800},
		{"replies", replies, 200, 600},
		{"files", a.files, 200, 200},
	} {
		if tt.got < tt.min || tt.got > tt.max {
			t.Errorf("%s = %d, want between %d and %d", tt.name, tt.got, tt.min, tt.max)
		}
	}
}
