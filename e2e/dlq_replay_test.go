package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/events/eventstest"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// Topic names (pkg/kafka's constants; that package would add dependencies to this module).
const (
	topicEnriched = "mail.enriched.v1"
	topicCRM      = "mail.crm.v1"
	topicDLQ      = "mail.dlq.v1"
	topicDLQAudit = "mail.dlq.audit.v1"
)

const (
	proofMessages   = 1000
	proofPartitions = 6
	proofRedisDB    = 11 // pipeline_test uses 7, the benchmarks 8
	crmSinkGroup    = "mailpipe-crm-sink"
)

// proofMsg is one message of the proof: its thread and place in it (0 is the thread's root).
type proofMsg struct {
	externalID string
	thread     int
	pos        int
}

// TestDLQReplayExactlyOnce is the DLQ replay proof on the real broker (issue 7): a crm-sink
// process dead-letters 1,000 messages while its webhook CRM fails every request, the CRM is
// fixed, `mailpipe dlq replay` sends one DLQ partition back and then the rest under one name,
// and every message reaches the CRM exactly once, each thread in order, with `dlq ls` reporting
// nothing left to replay and `dlq history` both replays.
//
// Isolation on the shared broker: the DLQ and audit topics are this run's own (the crm-sink's
// MAILPIPE_STAGE_DLQ_TOPIC, the CLI's --topic and --audit-topic), and so is the crm-sink's
// consumer group, which starts at the end mail.enriched.v1 had when the test began. The messages
// are written to the shared mail.enriched.v1 (the sink's input topic is fixed); when the test
// ends, the default crm-sink group is moved past them so that a later pipeline test's crm-sink
// does not deliver them.
func TestDLQReplayExactlyOnce(t *testing.T) {
	brokers := env(t, "MAILPIPE_TEST_KAFKA_BROKERS", "scripts/kafka-up.sh")
	redisURL := env(t, "MAILPIPE_TEST_REDIS_URL", "scripts/redis-up.sh")
	ctx := t.Context()
	began := time.Now()

	var rb [4]byte
	_, _ = rand.Read(rb[:])
	run := hex.EncodeToString(rb[:])
	dlqTopic := topicDLQ + ".e2e-replay." + run
	auditTopic := topicDLQAudit + ".e2e-replay." + run
	group := crmSinkGroup + ".e2e-replay." + run
	name := "proof-" + run

	bins := buildServices(t, t.TempDir(), "mailpipe", "crm-sink")
	t.Logf("built mailpipe and crm-sink in %s", time.Since(began).Round(time.Millisecond))
	apply := exec.CommandContext(ctx, bins["mailpipe"], "topics", "apply", "--partitions", strconv.Itoa(proofPartitions))
	apply.Env = append(os.Environ(), "MAILPIPE_KAFKA_BROKERS="+brokers)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("mailpipe topics apply: %v\n%s", err, out)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	must(t, err, "kafka client")
	t.Cleanup(cl.Close) // after cleanUpProof, which uses it
	adm := kadm.NewClient(cl)
	created, err := adm.CreateTopic(ctx, proofPartitions, -1, nil, dlqTopic)
	if err == nil {
		err = created.Err
	}
	must(t, err, "creating %s", dlqTopic)
	enrichedStart := endOffsets(t, brokers, topicEnriched)
	crmStart := endOffsets(t, brokers, topicCRM)
	// The sink's group starts where mail.enriched.v1 ends now: earlier runs' records are not ours.
	start := kadm.Offsets{}
	for p, o := range enrichedStart {
		start.AddOffset(topicEnriched, p, o, -1)
	}
	committed, err := adm.CommitOffsets(ctx, group, start)
	if err == nil {
		err = committed.Error()
	}
	must(t, err, "committing the start offsets of %s", group)
	t.Cleanup(func() { cleanUpProof(t, adm, group, name, dlqTopic, auditTopic) })

	opt, err := redis.ParseURL(redisURL)
	must(t, err, "parsing redis url")
	opt.DB = proofRedisDB
	rdb := redis.NewClient(opt)
	defer func() { _ = rdb.Close() }()
	must(t, rdb.FlushDB(ctx).Err(), "flushing redis db %d", proofRedisDB)

	// given: a CRM (the webhook contract server) behind a switch that answers 503 while broken.
	crm := crmtest.NewServer(t)
	sw := newCRMSwitch(t, crm.URL())
	sw.broken.Store(true)

	codec, err := serde.New(ctx)
	must(t, err, "codec")
	msgs, threads, recs := proofRecords(t, codec, run)
	w := watchProof(t, brokers, codec, crmStart, dlqTopic, msgs)

	sink := startProc(t, "crm-sink", bins["crm-sink"], []string{
		"MAILPIPE_KAFKA_BROKERS=" + brokers,
		fmt.Sprintf("MAILPIPE_REDIS_URL=redis://%s/%d", opt.Addr, proofRedisDB),
		"MAILPIPE_STAGE_GROUP=" + group,
		"MAILPIPE_STAGE_DLQ_TOPIC=" + dlqTopic,
		"MAILPIPE_WEBHOOK_URL=" + sw.srv.URL,
		"MAILPIPE_WEBHOOK_SECRETS=" + crm.Secret(),
		"MAILPIPE_WEBHOOK_ALLOW_PRIVATE=true", // the switch is an httptest server on loopback
		"MAILPIPE_SINK_LAKE_SALT=e2e-lake-salt-0123456789",
		"MAILPIPE_SINK_MAX_ATTEMPTS=2",
		"MAILPIPE_SINK_INITIAL_BACKOFF=1ms",
		"MAILPIPE_SINK_MAX_BACKOFF=5ms",
	})
	sink.waitReady(t, 90*time.Second)
	t.Logf("crm-sink ready after %s", time.Since(began).Round(time.Millisecond))
	diag := func() string {
		return fmt.Sprintf("%s; CRM: %d requests, %d refused by the switch, %d deliveries",
			w.String(), crm.Requests(), sw.refused.Load(), len(crm.Deliveries()))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("state at failure: " + diag())
		}
	})

	// when: 1,000 messages reach the sink while the CRM fails every request …
	sent := time.Now()
	must(t, cl.ProduceSync(ctx, recs...).FirstErr(), "producing to %s", topicEnriched)
	eventually(t, 2*time.Minute, "every message dead-lettered", func() (bool, string) {
		return w.deadLetters() >= proofMessages && w.outcomeCount("failed") >= proofMessages, diag()
	})
	t.Logf("%d messages in %d threads dead-lettered in %s", proofMessages, len(threads), time.Since(sent).Round(time.Millisecond))
	letters := w.letterSnapshot()
	checkDeadLetters(t, letters, msgs)
	if n := len(crm.Deliveries()); n != 0 {
		t.Fatalf("the broken CRM recorded %d deliveries", n)
	}

	// … the CRM is fixed, and `dlq ls` sees them all, none replayed yet.
	sw.broken.Store(false)
	fixed := time.Now()
	cli := proofCLI{t: t, bin: bins["mailpipe"], brokers: brokers, topic: dlqTopic, auditTopic: auditTopic}
	ls := cli.ls()
	roots := len(threads)
	if ls.Total != proofMessages || ls.NotReplayed != proofMessages || ls.ByClass["crm_5xx"] != roots || ls.ByClass["blocked"] != proofMessages-roots {
		t.Fatalf("dlq ls before the replay: total %d, not replayed %d, by class %v; want %d, %d, crm_5xx %d and blocked %d",
			ls.Total, ls.NotReplayed, ls.ByClass, proofMessages, proofMessages, roots, proofMessages-roots)
	}

	// Replay the fullest DLQ partition first, then the rest under the same name.
	first := int32(0)
	byPart := map[int32][]string{}
	for _, l := range letters {
		byPart[l.partition] = append(byPart[l.partition], l.externalID)
	}
	if len(byPart) != proofPartitions {
		t.Errorf("dead letters in %d DLQ partitions, want all %d", len(byPart), proofPartitions)
	}
	for p, ids := range byPart {
		if len(ids) > len(byPart[first]) || (len(ids) == len(byPart[first]) && p < first) {
			first = p
		}
	}
	cli.run("dlq", "replay", "--name", name, "--partition", strconv.Itoa(int(first)), "--quiet")
	eventually(t, 2*time.Minute, fmt.Sprintf("the %d messages of DLQ partition %d written", len(byPart[first]), first), func() (bool, string) {
		return w.outcomeCount("created") >= len(byPart[first]), diag()
	})
	for _, id := range byPart[first] {
		if n := crm.Objects(id); n != 1 {
			t.Errorf("after replaying partition %d: %s is %d objects in the CRM, want 1", first, id, n)
		}
	}
	if n := len(crm.Deliveries()); n != len(byPart[first]) {
		t.Fatalf("after replaying partition %d: %d deliveries, want its %d messages only", first, n, len(byPart[first]))
	}
	cli.run("dlq", "replay", "--name", name, "--quiet")
	eventually(t, 2*time.Minute, "every message written", func() (bool, string) {
		return w.outcomeCount("created") >= proofMessages, diag()
	})
	t.Logf("fixed, replayed and written in %s", time.Since(fixed).Round(time.Millisecond))
	time.Sleep(3 * time.Second) // let a stray duplicate or a new dead letter arrive before counting

	// then: every message reached the CRM exactly once, each thread in order …
	deliveries := crm.Deliveries()
	if len(deliveries) != proofMessages {
		t.Errorf("%d deliveries, want %d", len(deliveries), proofMessages)
	}
	if n := crm.Requests(); n != proofMessages {
		t.Errorf("the CRM got %d requests once fixed, want %d (one per message)", n, proofMessages)
	}
	if n := crm.Rejected(); n != 0 {
		t.Errorf("the CRM rejected %d requests (signature or payload)", n)
	}
	for _, d := range deliveries {
		if d.Count != 1 {
			t.Errorf("webhook-id %s delivered %d times", d.ID, d.Count)
		}
	}
	missing := 0
	for id := range msgs {
		if n := crm.Objects(id); n != 1 {
			missing++
			if missing <= 10 {
				t.Errorf("message %s is %d objects in the CRM, want 1", id, n)
			}
		}
	}
	checkThreadOrder(t, deliveries, msgs)
	outcomes := w.outcomeSnapshot()
	for id := range msgs {
		if got := outcomes[id]; len(got) != 2 || got[0] != "failed" || got[1] != "created" {
			t.Errorf("message %s: outcomes %v on mail.crm.v1, want [failed created]", id, got)
			break
		}
	}
	if n := w.deadLetters(); n != proofMessages {
		t.Errorf("%s holds %d dead letters after the replay, want still %d (nothing failed again)", dlqTopic, n, proofMessages)
	}

	// … `dlq ls` has nothing left to replay, and `dlq history` shows the two replays.
	ls = cli.ls()
	if ls.Total != proofMessages || ls.NotReplayed != 0 || ls.Looping != 0 {
		t.Errorf("dlq ls after the replay: total %d, not replayed %d, looping %d; want %d, 0, 0", ls.Total, ls.NotReplayed, ls.Looping, proofMessages)
	}
	checkHistory(t, cli.history(), name, first, len(byPart[first]))
	t.Logf("%d messages dead-lettered, replayed (partition %d: %d, then %d) and delivered once each, threads in order, in %s",
		proofMessages, first, len(byPart[first]), proofMessages-len(byPart[first]), time.Since(began).Round(time.Millisecond))
}

// proofRecords builds the mail.enriched.v1 records: threads of 1 to 5 messages, each reply
// answering the one before it, keyed by thread key as the enricher keys them.
func proofRecords(t *testing.T, codec *serde.Codec, run string) (map[string]proofMsg, [][]string, []*kgo.Record) {
	t.Helper()
	msgs := map[string]proofMsg{}
	var threads [][]string
	var recs []*kgo.Record
	// Received now, as real mail would be: the lake rows the sink writes for them must not fall
	// into a later test's time window.
	now := time.Now().UTC()
	for th := 0; len(msgs) < proofMessages; th++ {
		size := min(1+th%5, proofMessages-len(msgs))
		root := fmt.Sprintf("root-%s-%d@dlq-proof.example", run, th)
		var ids []string
		var refs []string
		for pos := range size {
			v := *eventstest.Samples()[topicEnriched].(*events.Enriched)
			m := &v.Message
			m.MessageID = root
			if pos > 0 {
				m.MessageID = fmt.Sprintf("reply-%s-%d-%d@dlq-proof.example", run, th, pos)
				m.InReplyTo = refs[len(refs)-1]
				m.Subject = "Re: thread " + strconv.Itoa(th)
			} else {
				m.InReplyTo = ""
				m.Subject = "thread " + strconv.Itoa(th)
			}
			m.References = slices.Clone(refs)
			sum := sha256.Sum256([]byte(strings.ToLower(m.MessageID) + "\x00a@example.com"))
			m.ExternalID = hex.EncodeToString(sum[:])
			m.ID = fmt.Sprintf("dlqproof-%s-%04d", run, len(msgs))
			m.ThreadKey, m.RouteID, m.Attachments = root, "", nil
			m.ReceivedAt, m.ParsedAt, m.Date = now, now, &now
			v.Classification.Bounce, v.Classification.ClassifiedAt, v.Enrichment.EnrichedAt = nil, now, now
			b, err := codec.Encode(topicEnriched, &v)
			must(t, err, "encoding %s", m.MessageID)
			recs = append(recs, &kgo.Record{Topic: topicEnriched, Key: []byte(root), Value: b})
			msgs[m.ExternalID] = proofMsg{externalID: m.ExternalID, thread: th, pos: pos}
			ids = append(ids, m.ExternalID)
			refs = append(refs, m.MessageID)
		}
		threads = append(threads, ids)
	}
	return msgs, threads, recs
}

// crmSwitch stands in front of the CRM: while broken it answers 503 itself, otherwise it passes
// the request on unchanged.
type crmSwitch struct {
	srv     *httptest.Server
	broken  atomic.Bool
	refused atomic.Int64
}

func newCRMSwitch(t *testing.T, target string) *crmSwitch {
	t.Helper()
	u, err := url.Parse(target)
	must(t, err, "parsing %s", target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	s := &crmSwitch{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.broken.Load() {
			s.refused.Add(1)
			http.Error(w, `{"error":"down for the test"}`, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// proofLetter is one dead letter the watcher read.
type proofLetter struct {
	partition  int32
	offset     int64
	externalID string
	stage      string // the mailpipe.dlq.* headers the test checks
	class      string
	origTopic  string
	target     string
	holder     string
	err        error
}

// proofWatch reads the run's DLQ topic from its start and mail.crm.v1 from where it ended when
// the test began, in the background, keeping what concerns the run's messages.
type proofWatch struct {
	mu       sync.Mutex
	letters  []proofLetter
	outcomes map[string][]string // per external id, in the order written
	classes  map[string]int
	foreign  int // outcomes or dead letters of other messages (none expected on the DLQ topic)
	errs     []error
}

func watchProof(t *testing.T, brokers string, codec *serde.Codec, crmStart map[int32]int64, dlqTopic string, msgs map[string]proofMsg) *proofWatch {
	t.Helper()
	offsets := map[string]map[int32]kgo.Offset{topicCRM: {}, dlqTopic: {}}
	for p, o := range crmStart {
		offsets[topicCRM][p] = kgo.NewOffset().At(o)
	}
	for p := range int32(proofPartitions) {
		offsets[dlqTopic][p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ConsumePartitions(offsets), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	must(t, err, "kafka client")
	w := &proofWatch{outcomes: map[string][]string{}, classes: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachError(func(topic string, p int32, err error) {
				if ctx.Err() == nil {
					w.fail(fmt.Errorf("fetching %s[%d]: %w", topic, p, err))
				}
			})
			fs.EachRecord(func(r *kgo.Record) {
				if r.Topic == topicCRM {
					var o events.CRMOutcome
					if err := codec.Decode(ctx, topicCRM, r.Value, &o); err != nil {
						w.fail(fmt.Errorf("decoding %s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err))
						return
					}
					w.outcome(msgs, &o)
					return
				}
				w.letter(ctx, codec, msgs, r)
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return w
}

func (w *proofWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, err)
}

func (w *proofWatch) outcome(msgs map[string]proofMsg, o *events.CRMOutcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := msgs[o.ExternalID]; !ok {
		w.foreign++
		return
	}
	w.outcomes[o.ExternalID] = append(w.outcomes[o.ExternalID], o.Outcome)
}

func (w *proofWatch) letter(ctx context.Context, codec *serde.Codec, msgs map[string]proofMsg, r *kgo.Record) {
	l := proofLetter{partition: r.Partition, offset: r.Offset}
	for _, h := range r.Headers {
		switch h.Key {
		case "mailpipe.dlq.stage":
			l.stage = string(h.Value)
		case "mailpipe.dlq.error.class":
			l.class = string(h.Value)
		case "mailpipe.dlq.original.topic":
			l.origTopic = string(h.Value)
		case "mailpipe.sink.target":
			l.target = string(h.Value)
		case "mailpipe.sink.holder":
			l.holder = string(h.Value)
		}
	}
	var v events.Enriched
	l.err = codec.Decode(ctx, topicEnriched, r.Value, &v)
	l.externalID = v.Message.ExternalID
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := msgs[l.externalID]; !ok {
		w.foreign++
	}
	w.letters = append(w.letters, l)
	w.classes[l.class]++
}

func (w *proofWatch) deadLetters() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.letters)
}

// outcomeCount counts the run's messages whose outcomes include want.
func (w *proofWatch) outcomeCount(want string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, os := range w.outcomes {
		if slices.Contains(os, want) {
			n++
		}
	}
	return n
}

func (w *proofWatch) letterSnapshot() []proofLetter {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.letters)
}

func (w *proofWatch) outcomeSnapshot() map[string][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]string{}
	for k, v := range w.outcomes {
		out[k] = slices.Clone(v)
	}
	return out
}

func (w *proofWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	byOutcome := map[string]int{}
	for _, os := range w.outcomes {
		for _, o := range os {
			byOutcome[o]++
		}
	}
	s := fmt.Sprintf("%d dead letters %v, outcomes %v, %d of other messages", len(w.letters), w.classes, byOutcome, w.foreign)
	if len(w.errs) > 0 {
		s += fmt.Sprintf(", watch errors (%d): %v", len(w.errs), w.errs[0])
	}
	return s
}

// checkDeadLetters checks that each message has exactly one dead letter, from crm-sink for the
// webhook target: crm_5xx with the holder header for a thread's root, blocked for its replies,
// a thread's letters in one DLQ partition in thread order.
func checkDeadLetters(t *testing.T, letters []proofLetter, msgs map[string]proofMsg) {
	t.Helper()
	seen := map[string]int{}
	type at struct {
		partition int32
		offset    int64
		pos       int
	}
	last := map[int]at{}
	bad := 0
	for _, l := range letters {
		seen[l.externalID]++
		m, ok := msgs[l.externalID]
		wantClass, wantHolder := "blocked", ""
		if m.pos == 0 {
			wantClass, wantHolder = "crm_5xx", "webhook"
		}
		if !ok || l.err != nil || l.stage != "crm-sink" || l.class != wantClass || l.target != "webhook" || l.holder != wantHolder ||
			l.origTopic != topicEnriched {
			if bad++; bad <= 10 {
				t.Errorf("dead letter %d@%d: message %s (ours %v, place %d in its thread), stage %q, class %q, target %q, holder %q, original topic %q, error %v; want crm-sink, %s, webhook, holder %q",
					l.partition, l.offset, l.externalID, ok, m.pos, l.stage, l.class, l.target, l.holder, l.origTopic, l.err, wantClass, wantHolder)
			}
			continue
		}
		if prev, ok := last[m.thread]; ok && (prev.partition != l.partition || prev.offset > l.offset || prev.pos > m.pos) {
			t.Errorf("thread %d: message %d dead-lettered at %d@%d after message %d at %d@%d", m.thread, m.pos, l.partition, l.offset, prev.pos, prev.partition, prev.offset)
		}
		last[m.thread] = at{l.partition, l.offset, m.pos}
	}
	for id := range msgs {
		if seen[id] != 1 {
			t.Errorf("message %s has %d dead letters, want 1", id, seen[id])
			break
		}
	}
	if len(letters) != len(msgs) {
		t.Fatalf("%d dead letters, want %d", len(letters), len(msgs))
	}
	if t.Failed() {
		t.FailNow()
	}
}

// checkThreadOrder checks that the CRM got every reply after the message it answers.
func checkThreadOrder(t *testing.T, deliveries []crmtest.Delivery, msgs map[string]proofMsg) {
	t.Helper()
	lastPos := map[int]int{}
	bad := 0
	for i, d := range deliveries {
		m, ok := msgs[d.ExternalID]
		if !ok {
			t.Errorf("delivery %d is not one of the run's messages: %s", i, d.ExternalID)
			continue
		}
		if prev, ok := lastPos[m.thread]; (ok && m.pos != prev+1) || (!ok && m.pos != 0) {
			if bad++; bad <= 10 {
				t.Errorf("thread %d: message %d delivered after message %d (delivery %d)", m.thread, m.pos, prev, i)
			}
		}
		lastPos[m.thread] = m.pos
	}
}

// proofCLI runs `mailpipe dlq …` on the run's DLQ and audit topics.
type proofCLI struct {
	t                 *testing.T
	bin, brokers      string
	topic, auditTopic string
}

func (c proofCLI) run(args ...string) []byte {
	c.t.Helper()
	args = append(args[:2:2], append([]string{"--topic", c.topic, "--audit-topic", c.auditTopic}, args[2:]...)...)
	ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), "MAILPIPE_KAFKA_BROKERS="+c.brokers, "MAILPIPE_LOG_LEVEL=warn")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("mailpipe %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	c.t.Logf("mailpipe %s took %s", strings.Join(args[:2], " "), time.Since(began).Round(time.Millisecond))
	return stdout.Bytes()
}

// proofSummary is the part of `dlq ls --json` the test reads.
type proofSummary struct {
	Total       int            `json:"total"`
	NotReplayed int            `json:"not_replayed"`
	Looping     int            `json:"looping"`
	ByClass     map[string]int `json:"by_class"`
}

func (c proofCLI) ls() proofSummary {
	c.t.Helper()
	out := c.run("dlq", "ls", "--json")
	var s proofSummary
	if err := json.Unmarshal(out, &s); err != nil {
		c.t.Fatalf("decoding dlq ls --json: %v\n%s", err, out)
	}
	return s
}

// proofAudit is the part of a `dlq history --json` line the test reads.
type proofAudit struct {
	Name       string `json:"name"`
	Replayed   int    `json:"replayed"`
	Looping    int    `json:"looping"`
	Filtered   int    `json:"filtered"`
	Invalid    int    `json:"invalid"`
	Error      string `json:"error"`
	Partitions []struct {
		Partition int32 `json:"partition"`
		Replayed  int   `json:"replayed"`
	} `json:"partitions"`
}

func (c proofCLI) history() []proofAudit {
	c.t.Helper()
	out := c.run("dlq", "history", "--json")
	var audits []proofAudit
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		if len(bytes.TrimSpace(s.Bytes())) == 0 {
			continue
		}
		var a proofAudit
		if err := json.Unmarshal(s.Bytes(), &a); err != nil {
			c.t.Fatalf("decoding dlq history --json: %v\n%s", err, out)
		}
		audits = append(audits, a)
	}
	return audits
}

func checkHistory(t *testing.T, audits []proofAudit, name string, first int32, firstCount int) {
	t.Helper()
	if len(audits) != 2 {
		t.Fatalf("dlq history shows %d replays, want 2: %+v", len(audits), audits)
	}
	for i, want := range []int{firstCount, proofMessages - firstCount} {
		a := audits[i]
		if a.Name != name || a.Replayed != want || a.Looping+a.Filtered+a.Invalid != 0 || a.Error != "" {
			t.Errorf("replay %d in dlq history: %+v; want name %s, %d replayed, nothing skipped, no error", i+1, a, name, want)
		}
		perPart := map[int32]int{}
		for _, p := range a.Partitions {
			perPart[p.Partition] += p.Replayed
		}
		if i == 0 && (perPart[first] != firstCount || len(perPart) != 1) {
			t.Errorf("first replay went over partitions %v, want only %d", perPart, first)
		}
		if i == 1 && perPart[first] != 0 {
			t.Errorf("second replay replayed %d of partition %d again", perPart[first], first)
		}
	}
}

// cleanUpProof moves the default crm-sink group past the run's records on mail.enriched.v1, so
// that a pipeline test's crm-sink (which consumes it in that group) does not deliver them, and,
// when the test passed, deletes the run's topics and groups.
func cleanUpProof(t *testing.T, adm *kadm.Client, group, name, dlqTopic, auditTopic string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topicEnriched)
	if err == nil {
		err = ends.Error()
	}
	var committed kadm.OffsetResponses
	if err == nil {
		committed, err = adm.FetchOffsets(ctx, crmSinkGroup)
	}
	if err != nil {
		t.Logf("could not move %s past this test's records: %v", crmSinkGroup, err)
	} else {
		move := kadm.Offsets{}
		ends.Each(func(e kadm.ListedOffset) {
			if c, ok := committed.Lookup(e.Topic, e.Partition); !ok || c.At < e.Offset {
				move.AddOffset(e.Topic, e.Partition, e.Offset, -1)
			}
		})
		if len(move) > 0 {
			resp, err := adm.CommitOffsets(ctx, crmSinkGroup, move)
			if err == nil {
				err = resp.Error()
			}
			if err != nil {
				t.Logf("could not move %s past this test's records: %v", crmSinkGroup, err)
			}
		}
	}
	if t.Failed() {
		t.Logf("kept for inspection: topics %s and %s, groups %s and mailpipe-dlq-replay.%s", dlqTopic, auditTopic, group, name)
		return
	}
	_, _ = adm.DeleteTopics(ctx, dlqTopic, auditTopic)
	_, _ = adm.DeleteGroups(ctx, group, "mailpipe-dlq-replay."+name)
}
