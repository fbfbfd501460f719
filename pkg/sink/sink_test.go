package sink_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/crm/localstore"
	"github.com/mailpipe/mailpipe/pkg/crm/webhook"
	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/sink"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

const salt = "test-salt-of-at-least-16-bytes"

var clock = time.Date(2026, 11, 23, 10, 30, 5, 0, time.UTC)

// Handle is a stage.Handler.
var _ stage.Handler = (*sink.Sink)(nil).Handle

// readableMemory is dedupe.Memory with its own Seen bookkeeping; it
// counts Seen calls so tests can tell the skip path ran.
type readableMemory struct {
	*dedupe.Memory
	mu        sync.Mutex
	live      map[string]bool
	seenCalls atomic.Int32
}

func newReadableMemory() *readableMemory {
	return &readableMemory{Memory: dedupe.NewMemory(), live: map[string]bool{}}
}

func (m *readableMemory) MarkSeen(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	first, err := m.Memory.MarkSeen(ctx, key, ttl)
	if err == nil {
		m.mu.Lock()
		m.live[key] = true
		m.mu.Unlock()
	}
	return first, err
}

func (m *readableMemory) Forget(ctx context.Context, key string) error {
	m.mu.Lock()
	delete(m.live, key)
	m.mu.Unlock()
	return m.Memory.Forget(ctx, key)
}

func (m *readableMemory) Seen(_ context.Context, key string) (bool, error) {
	m.seenCalls.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live[key], nil
}

// brokenStore fails every call, like Redis during an outage.
type brokenStore struct{ marks atomic.Int32 }

func (b *brokenStore) MarkSeen(context.Context, string, time.Duration) (bool, error) {
	b.marks.Add(1)
	return false, errors.New("redis: connection refused")
}

func (b *brokenStore) Seen(context.Context, string) (bool, error) {
	return false, errors.New("redis: connection refused")
}

// fixedConnector returns a fixed result and counts its calls.
type fixedConnector struct {
	name  string
	res   crm.Result
	err   error
	calls atomic.Int32
}

func (f *fixedConnector) Name() string { return f.name }

func (f *fixedConnector) Upsert(context.Context, *events.Enriched) (crm.Result, error) {
	f.calls.Add(1)
	return f.res, f.err
}

type env struct {
	codec *serde.Codec
	srv   *crmtest.Server
	hook  *webhook.Connector
	local *localstore.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	srv := crmtest.NewServer(t)
	// The contract server listens on loopback, which the webhook's SSRF guard refuses by default.
	hook, err := webhook.New(webhook.Config{URL: srv.URL(), Secrets: []string{srv.Secret()}, AllowPrivate: true}, discard())
	if err != nil {
		t.Fatal(err)
	}
	local, err := localstore.Open(filepath.Join(t.TempDir(), "crm.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = local.Close(context.Background()) })
	return &env{codec: codec, srv: srv, hook: hook, local: local}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func (e *env) sink(t *testing.T, store dedupe.Store, connectors ...crm.Connector) *sink.Sink {
	t.Helper()
	return e.sinkWith(t, store, connectors)
}

// sinkWith builds a sink with quick retries (3 calls, waits of a few milliseconds) and opts.
func (e *env) sinkWith(t *testing.T, store dedupe.Store, connectors []crm.Connector, opts ...sink.Option) *sink.Sink {
	t.Helper()
	opts = append([]sink.Option{
		sink.WithLakeSalt(salt), sink.WithClock(func() time.Time { return clock }),
		sink.WithRetry(3, time.Millisecond, 5*time.Millisecond),
	}, opts...)
	s, err := sink.New(e.codec, connectors, store, discard(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// replay turns a dead letter back into an input record, as the DLQ replay does.
func replay(letter *kgo.Record) *kgo.Record {
	return &kgo.Record{Topic: kafka.TopicEnriched, Key: letter.Key, Value: letter.Value, Headers: letter.Headers}
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func (e *env) record(t *testing.T, msg *events.Enriched) *kgo.Record {
	t.Helper()
	v, err := e.codec.Encode(kafka.TopicEnriched, msg)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: kafka.TopicEnriched, Key: []byte(msg.Message.ThreadKey), Value: v}
}

// decoded is Handle's output, decoded.
type decoded struct {
	outcomes []events.CRMOutcome
	lake     []events.LakeRow
	letters  []*kgo.Record
	keys     []string // record keys in output order
}

func (e *env) decode(t *testing.T, out []*kgo.Record) decoded {
	t.Helper()
	var d decoded
	for i, r := range out {
		d.keys = append(d.keys, string(r.Key))
		switch r.Topic {
		case kafka.TopicCRM:
			var o events.CRMOutcome
			if err := e.codec.Decode(t.Context(), kafka.TopicCRM, r.Value, &o); err != nil {
				t.Fatal(err)
			}
			d.outcomes = append(d.outcomes, o)
		case kafka.TopicLake:
			if len(d.letters) > 0 {
				t.Errorf("lake record at %d after a dead letter; want outcomes, rows, then letters", i)
			}
			var row events.LakeRow
			if err := e.codec.Decode(t.Context(), kafka.TopicLake, r.Value, &row); err != nil {
				t.Fatal(err)
			}
			d.lake = append(d.lake, row)
		case kafka.TopicDLQ:
			d.letters = append(d.letters, r)
		default:
			t.Fatalf("output %d on unexpected topic %q", i, r.Topic)
		}
	}
	return d
}

func (e *env) handle(t *testing.T, s *sink.Sink, msg *events.Enriched) decoded {
	t.Helper()
	out, err := s.Handle(t.Context(), e.record(t, msg))
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	return e.decode(t, out)
}

func outcomeNames(os []events.CRMOutcome) string {
	var parts []string
	for _, o := range os {
		parts = append(parts, o.Target+"="+o.Outcome)
	}
	return strings.Join(parts, ",")
}

func TestHandleDeliversAndEmitsOutcomes(t *testing.T) {
	e := newEnv(t)
	s := e.sink(t, newReadableMemory(), e.local, e.hook)
	msg := crmtest.Message("happy")

	d := e.handle(t, s, msg)

	if got := outcomeNames(d.outcomes); got != "local=created,webhook=created" {
		t.Fatalf("outcomes = %s", got)
	}
	want := []string{msg.Message.ThreadKey, msg.Message.ThreadKey, msg.Message.ID, msg.Message.ID}
	if strings.Join(d.keys, "|") != strings.Join(want, "|") {
		t.Errorf("keys = %q, want thread key per outcome and message id for the lake rows", d.keys)
	}
	hook := d.outcomes[1]
	if hook.ID != msg.Message.ID || hook.ExternalID != msg.Message.ExternalID || hook.Tenant != "acme" ||
		hook.Attempts != 1 || hook.ObjectIds["webhook"] != msg.Message.ExternalID ||
		!hook.WrittenAt.Equal(clock) || !hook.ReceivedAt.Equal(msg.Message.ReceivedAt) ||
		hook.LatencyMs != clock.Sub(msg.Message.ReceivedAt).Milliseconds() || hook.RouteID != msg.Message.RouteID {
		t.Errorf("webhook outcome = %+v", hook)
	}
	if d.outcomes[0].ObjectIds[localstore.ObjectType] != "1" {
		t.Errorf("local outcome object ids = %v", d.outcomes[0].ObjectIds)
	}
	if len(d.lake) != 2 || len(d.letters) != 0 {
		t.Fatalf("%d lake rows and %d dead letters, want 2 and 0", len(d.lake), len(d.letters))
	}
	for i, row := range d.lake {
		if row.Target != d.outcomes[i].Target || row.Outcome != crm.OutcomeCreated || row.Duplicate ||
			strings.Join(row.Targets, ",") != "local,webhook" || row.Attempts != 1 ||
			row.LatencyMs != clock.Sub(msg.Message.ReceivedAt).Milliseconds() || row.FromHash == "" {
			t.Errorf("lake row %d = %+v", i, row)
		}
	}
	if e.srv.Objects(msg.Message.ExternalID) != 1 || e.local.Count() != 1 {
		t.Errorf("effects: webhook objects %d, local entries %d", e.srv.Objects(msg.Message.ExternalID), e.local.Count())
	}
}

func TestHandleTwice(t *testing.T) {
	for _, tt := range []struct {
		name          string
		store         func() dedupe.Store
		wantRequests  int    // webhook requests after two Handle calls
		wantSecond    string // outcomes of the second Handle
		wantDuplicate bool
	}{
		{"store that can read skips the connectors", func() dedupe.Store { return dedupe.NewMemory() }, 1, "local=deduped,webhook=deduped", true},
		{"MarkSeen-only store calls the idempotent connectors again", func() dedupe.Store { return markOnly{dedupe.NewMemory()} }, 2, "local=unchanged,webhook=created", false},
		{"no store", func() dedupe.Store { return nil }, 2, "local=unchanged,webhook=created", false},
		{"broken store means not known", func() dedupe.Store { return &brokenStore{} }, 2, "local=unchanged,webhook=created", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.sink(t, tt.store(), e.local, e.hook)
			msg := crmtest.Message("twice")

			first := e.handle(t, s, msg)
			second := e.handle(t, s, msg)

			if got := outcomeNames(first.outcomes); got != "local=created,webhook=created" {
				t.Errorf("first outcomes = %s", got)
			}
			if got := outcomeNames(second.outcomes); got != tt.wantSecond {
				t.Errorf("second outcomes = %s, want %s", got, tt.wantSecond)
			}
			for _, row := range second.lake {
				if row.Duplicate != tt.wantDuplicate {
					t.Errorf("second lake row of %s: duplicate = %v, want %v", row.Target, row.Duplicate, tt.wantDuplicate)
				}
			}
			if got := e.srv.Requests(); got != tt.wantRequests {
				t.Errorf("webhook requests = %d, want %d", got, tt.wantRequests)
			}
			// Whatever the store did, each target holds the message once.
			if e.srv.Objects(msg.Message.ExternalID) != 1 || e.local.Count() != 1 {
				t.Errorf("effects: webhook objects %d, local entries %d; want 1 and 1", e.srv.Objects(msg.Message.ExternalID), e.local.Count())
			}
		})
	}
}

func TestRetryableFailureIsRetriedForItsTargetOnly(t *testing.T) {
	e := newEnv(t)
	store := newReadableMemory()
	s := e.sink(t, store, e.local, e.hook)
	msg := crmtest.Message("retry")

	// given the webhook answers 503 with Retry-After once
	e.srv.FailNext(1, 503, "4")

	d := e.handle(t, s, msg)

	// then the sink retried the webhook alone and both targets hold the message once
	if got := outcomeNames(d.outcomes); got != "local=created,webhook=created" {
		t.Fatalf("outcomes = %s", got)
	}
	if d.outcomes[0].Attempts != 1 || d.outcomes[1].Attempts != 2 {
		t.Errorf("attempts local %d webhook %d, want 1 and 2", d.outcomes[0].Attempts, d.outcomes[1].Attempts)
	}
	if e.srv.Requests() != 2 || e.local.Count() != 1 || e.srv.Objects(msg.Message.ExternalID) != 1 || len(d.letters) != 0 {
		t.Errorf("requests %d, local %d, webhook objects %d, letters %d", e.srv.Requests(), e.local.Count(), e.srv.Objects(msg.Message.ExternalID), len(d.letters))
	}
}

func TestTargetThatGivesUpIsDeadLetteredAlone(t *testing.T) {
	e := newEnv(t)
	store := newReadableMemory()
	s := e.sink(t, store, e.local, e.hook)
	msg := crmtest.Message("gives-up")
	rec := e.record(t, msg)
	rec.Partition, rec.Offset = 3, 41

	// given the webhook fails more often than the retry budget allows
	e.srv.FailNext(3, 503, "")

	d := e.handle(t, s, msg)

	// then the local target stands, the webhook is failed with its class, and one dead letter
	// names the webhook
	if got := outcomeNames(d.outcomes); got != "local=created,webhook=failed" {
		t.Fatalf("outcomes = %s", got)
	}
	hook := d.outcomes[1]
	if hook.ErrorClass != string(failure.CRM5xx) || hook.Attempts != 3 || !strings.Contains(hook.Error, "503") || hook.LatencyMs != 0 {
		t.Errorf("failed outcome = %+v", hook)
	}
	if d.lake[1].Outcome != crm.OutcomeFailed || d.lake[1].ErrorClass != "crm_5xx" || d.lake[1].DeliveredAt != nil {
		t.Errorf("failed lake row = %+v", d.lake[1])
	}
	if len(d.letters) != 1 {
		t.Fatalf("%d dead letters, want 1", len(d.letters))
	}
	letter := d.letters[0]
	info, err := dlq.Parse(letter)
	if err != nil {
		t.Fatal(err)
	}
	if header(letter, sink.HeaderTarget) != "webhook" || header(letter, sink.HeaderHolder) != "webhook" ||
		info.Class != failure.CRM5xx || info.Stage != sink.StageName || info.Attempts != 3 || string(letter.Key) != msg.Message.ThreadKey {
		t.Errorf("dead letter headers %v, info %+v", letter.Headers, info)
	}
	if seen, _ := store.Seen(t.Context(), sink.DedupeKey("webhook", msg.Message.ExternalID)); seen {
		t.Error("failed webhook delivery is recorded as seen")
	}

	// when ops replay the dead letter after the webhook recovered
	out, err := s.Handle(t.Context(), replay(letter))
	if err != nil {
		t.Fatal(err)
	}
	r := e.decode(t, out)

	// then only the webhook is written
	if got := outcomeNames(r.outcomes); got != "webhook=created" {
		t.Errorf("replay outcomes = %s, want the webhook only", got)
	}
	if e.local.Count() != 1 || e.srv.Objects(msg.Message.ExternalID) != 1 {
		t.Errorf("effects: local %d, webhook %d", e.local.Count(), e.srv.Objects(msg.Message.ExternalID))
	}
}

func TestConnectorErrorsKeepTheirClass(t *testing.T) {
	for _, tt := range []struct {
		name     string
		status   int
		want     failure.Class
		requests int
	}{
		{"validation error is not retried", 422, failure.CRM4xx, 1},
		{"bad credentials are not retried", 401, failure.Auth, 1},
		{"rate limit is retried to the budget", 429, failure.RateLimited, 3},
		{"server error is retried to the budget", 500, failure.CRM5xx, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			store := newReadableMemory()
			s := e.sink(t, store, e.hook)
			e.srv.FailNext(5, tt.status, "")
			d := e.handle(t, s, crmtest.Message("fails"))
			if d.outcomes[0].Outcome != crm.OutcomeFailed || d.outcomes[0].ErrorClass != string(tt.want) {
				t.Fatalf("outcome = %+v, want failed %s", d.outcomes[0], tt.want)
			}
			if got := e.srv.Requests(); got != tt.requests {
				t.Errorf("requests = %d, want %d", got, tt.requests)
			}
			if store.Len() != 1 {
				// Only the thread hold: no delivery is recorded.
				t.Errorf("store holds %d keys after a failure, want the thread hold alone", store.Len())
			}
		})
	}
}

func TestLaterMessagesOfAThreadWaitBehindADeadLetter(t *testing.T) {
	e := newEnv(t)
	store := newReadableMemory()
	s := e.sink(t, store, e.local, e.hook)
	parent := crmtest.Message("parent")
	reply := crmtest.Message("reply")
	other := crmtest.Message("other-thread")
	other.Message.ThreadKey = "another-thread@example.com"
	if parent.Message.ThreadKey != reply.Message.ThreadKey {
		t.Fatal("test messages must share a thread")
	}

	// given the parent is refused by the webhook for good
	e.srv.FailNext(1, 422, "")
	p := e.handle(t, s, parent)
	// when the reply and a message of another thread follow
	r := e.handle(t, s, reply)
	o := e.handle(t, s, other)

	// then the reply waits for the webhook (not called), is written to the other target, and
	// the other thread is not affected
	if got := outcomeNames(r.outcomes); got != "local=created,webhook=failed" || r.outcomes[1].ErrorClass != string(failure.Blocked) {
		t.Fatalf("reply outcomes = %s (%+v)", got, r.outcomes)
	}
	if got := outcomeNames(o.outcomes); got != "local=created,webhook=created" {
		t.Errorf("other thread outcomes = %s", got)
	}
	if e.srv.Requests() != 2 {
		t.Errorf("webhook requests = %d, want 2 (parent refused, other thread)", e.srv.Requests())
	}
	if len(p.letters) != 1 || len(r.letters) != 1 || header(r.letters[0], sink.HeaderHolder) != "" || header(r.letters[0], sink.HeaderTarget) != "webhook" {
		t.Fatalf("letters: parent %d, reply %d %v", len(p.letters), len(r.letters), r.letters)
	}

	// when ops replay in DLQ order: the reply first would still wait; the parent releases it
	if out, err := s.Handle(t.Context(), replay(r.letters[0])); err != nil || outcomeNames(e.decode(t, out).outcomes) != "webhook=failed" {
		t.Fatalf("reply replayed before its parent: %v %v", err, out)
	}
	for _, letter := range []*kgo.Record{p.letters[0], r.letters[0]} {
		out, err := s.Handle(t.Context(), replay(letter))
		if err != nil {
			t.Fatal(err)
		}
		if got := outcomeNames(e.decode(t, out).outcomes); got != "webhook=created" {
			t.Fatalf("replay outcomes = %s: %+v", got, e.decode(t, out).outcomes)
		}
	}
	order := e.srv.Deliveries()
	if len(order) != 3 || order[1].ID != parent.Message.ExternalID || order[2].ID != reply.Message.ExternalID {
		t.Errorf("webhook deliveries %d; want other thread, then parent, then reply", len(order))
	}
}

func TestRoutesChooseTargetsAndShadowMode(t *testing.T) {
	routes := sink.RoutesFunc(func(id string) (events.Route, bool) {
		switch id {
		case "webhook-only":
			return events.Route{ID: id, CRMTargets: []string{"webhook"}}, true
		case "all":
			return events.Route{ID: id}, true
		case "shadow":
			return events.Route{ID: id, Shadow: true, CRMTargets: []string{"local", "webhook"}}, true
		case "unknown-target":
			return events.Route{ID: id, CRMTargets: []string{"webhook", "salesforce"}}, true
		}
		return events.Route{}, false
	})
	for _, tt := range []struct {
		route    string
		outcomes string
		letters  int
		written  int // webhook requests
	}{
		{"webhook-only", "webhook=created", 0, 1},
		{"all", "local=created,webhook=created", 0, 1},
		{"shadow", "local=shadow,webhook=shadow", 0, 0},
		{"unknown-target", "webhook=created,salesforce=failed", 1, 1},
		{"deleted-route", "local=created,webhook=created", 0, 1},
	} {
		t.Run(tt.route, func(t *testing.T) {
			e := newEnv(t)
			store := newReadableMemory()
			s := e.sinkWith(t, store, []crm.Connector{e.local, e.hook}, sink.WithRoutes(routes))
			msg := crmtest.Message("routed")
			msg.Message.RouteID = tt.route
			d := e.handle(t, s, msg)
			if got := outcomeNames(d.outcomes); got != tt.outcomes {
				t.Fatalf("outcomes = %s, want %s", got, tt.outcomes)
			}
			if len(d.letters) != tt.letters || e.srv.Requests() != tt.written {
				t.Errorf("letters %d, webhook requests %d; want %d, %d", len(d.letters), e.srv.Requests(), tt.letters, tt.written)
			}
			for _, o := range d.outcomes {
				if o.RouteID != tt.route {
					t.Errorf("outcome route %q, want %q", o.RouteID, tt.route)
				}
				if o.Target == "salesforce" && (o.ErrorClass != string(failure.Config) || header(d.letters[0], sink.HeaderTarget) != "salesforce") {
					t.Errorf("unconfigured target: %+v", o)
				}
			}
			if tt.route == "shadow" {
				if store.Len() != 0 || e.local.Count() != 0 {
					t.Errorf("shadow mode left %d store keys and %d local entries", store.Len(), e.local.Count())
				}
				// A replay after the route left shadow mode must write for real.
				msg.Message.RouteID = "all"
				if got := outcomeNames(e.handle(t, s, msg).outcomes); got != "local=created,webhook=created" {
					t.Errorf("after shadow: %s", got)
				}
			}
		})
	}
}

func TestUndecodableRecordsAreSchemaFailures(t *testing.T) {
	e := newEnv(t)
	conn := &fixedConnector{name: "x", res: crm.Result{Outcome: crm.OutcomeCreated}}
	s := e.sink(t, nil, conn)
	noID := crmtest.Message("noid")
	noID.Message.ExternalID = ""
	for _, tt := range []struct {
		name string
		rec  *kgo.Record
	}{
		{"nil value", &kgo.Record{Topic: kafka.TopicEnriched}},
		{"not framed", &kgo.Record{Topic: kafka.TopicEnriched, Value: []byte(`{"json":true}`)}},
		{"unknown schema id", &kgo.Record{Topic: kafka.TopicEnriched, Value: []byte{0, 0, 0, 0, 42, 1, 2}}},
		{"truncated avro", func() *kgo.Record { r := e.record(t, crmtest.Message("cut")); r.Value = r.Value[:20]; return r }()},
		{"no external id", e.record(t, noID)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Handle(t.Context(), tt.rec)
			if failure.Classify(err) != failure.Schema {
				t.Fatalf("err = %v (class %q), want schema", err, failure.Classify(err))
			}
		})
	}
	if n := conn.calls.Load(); n != 0 {
		t.Errorf("connector called %d times for undecodable records", n)
	}
}

func TestConnectorContractViolations(t *testing.T) {
	for _, tt := range []struct {
		name  string
		res   crm.Result
		err   error
		want  failure.Class
		calls int32
	}{
		{"unknown outcome", crm.Result{Outcome: "exploded"}, nil, failure.Internal, 1},
		{"empty outcome", crm.Result{}, nil, failure.Internal, 1},
		{"shadow is the sink's to decide", crm.Result{Outcome: crm.OutcomeShadow}, nil, failure.Internal, 1},
		{"deduped is the sink's to decide", crm.Result{Outcome: crm.OutcomeDeduped}, nil, failure.Internal, 1},
		{"unclassified error stays unknown and is retried", crm.Result{}, errors.New("boom"), failure.Unknown, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			conn := &fixedConnector{name: "x", res: tt.res, err: tt.err}
			d := e.handle(t, e.sink(t, nil, conn), crmtest.Message("v"))
			if d.outcomes[0].ErrorClass != string(tt.want) || len(d.letters) != 1 {
				t.Fatalf("outcome %+v, %d letters; want class %q and a letter", d.outcomes[0], len(d.letters), tt.want)
			}
			if conn.calls.Load() != tt.calls {
				t.Errorf("calls = %d, want %d", conn.calls.Load(), tt.calls)
			}
		})
	}
}

// blockingConnector waits for its context, or for release.
type blockingConnector struct {
	inFlight, peak atomic.Int32
	release        chan struct{}
}

func (b *blockingConnector) Name() string { return "slow" }

func (b *blockingConnector) Upsert(ctx context.Context, _ *events.Enriched) (crm.Result, error) {
	n := b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-ctx.Done():
		return crm.Result{}, failure.Wrap(failure.Timeout, ctx.Err())
	case <-b.release:
		return crm.Result{Outcome: crm.OutcomeCreated}, nil
	}
}

func TestCutShortIsNotADeadLetter(t *testing.T) {
	e := newEnv(t)
	conn := &blockingConnector{release: make(chan struct{})}
	s := e.sink(t, newReadableMemory(), conn)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	out, err := s.Handle(ctx, e.record(t, crmtest.Message("stopping")))
	if err == nil || out != nil {
		t.Fatalf("Handle = %d outputs, %v; want no outputs and an error for the stage", len(out), err)
	}
}

func TestConcurrencyPerTarget(t *testing.T) {
	e := newEnv(t)
	conn := &blockingConnector{release: make(chan struct{})}
	s := e.sinkWith(t, nil, []crm.Connector{conn}, sink.WithConcurrency(8, map[string]int{"slow": 2}))
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			if _, err := s.Handle(t.Context(), e.record(t, crmtest.Message(fmt.Sprint("c", i)))); err != nil {
				t.Errorf("Handle: %v", err)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for conn.inFlight.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // room for a third call, were the limit broken
	close(conn.release)
	wg.Wait()
	if p := conn.peak.Load(); p != 2 {
		t.Errorf("peak calls in flight = %d, want the limit 2", p)
	}
}

func TestRateLimitPerTarget(t *testing.T) {
	e := newEnv(t)
	conn := &fixedConnector{name: "x", res: crm.Result{Outcome: crm.OutcomeCreated}}
	s := e.sinkWith(t, nil, []crm.Connector{conn}, sink.WithRateLimits(map[string]ratelimit.Limit{"x": {Rate: 2, Period: time.Hour}}, nil))
	for i := range 2 {
		if _, err := s.Handle(t.Context(), e.record(t, crmtest.Message(fmt.Sprint("r", i)))); err != nil {
			t.Fatal(err)
		}
	}
	// The bucket is empty for half an hour: the third call waits until the attempt is cut short.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Handle(ctx, e.record(t, crmtest.Message("r3"))); err == nil {
		t.Fatal("third call within the limit's period went through")
	}
	if n := conn.calls.Load(); n != 2 {
		t.Errorf("connector calls = %d, want 2", n)
	}
}

func TestAttemptsAndObjectIDsAreCopied(t *testing.T) {
	e := newEnv(t)
	ids := map[string]string{"contact": "101", "note": "9"}
	conn := &fixedConnector{name: "hubspot", res: crm.Result{Outcome: crm.OutcomeUpdated, ObjectIDs: ids, Attempts: 2}}
	d := e.handle(t, e.sink(t, nil, conn), crmtest.Message("ids"))
	o := d.outcomes[0]
	if o.Attempts != 2 || o.ObjectIds["contact"] != "101" || o.ObjectIds["note"] != "9" || o.Outcome != crm.OutcomeUpdated {
		t.Errorf("outcome = %+v", o)
	}
}

func TestThreadKeyFallsBackToInputKey(t *testing.T) {
	e := newEnv(t)
	conn := &fixedConnector{name: "x", res: crm.Result{Outcome: crm.OutcomeCreated}}
	msg := crmtest.Message("nokey")
	msg.Message.ThreadKey = ""
	rec := e.record(t, msg)
	rec.Key = []byte("input-key")
	out, err := e.sink(t, nil, conn).Handle(t.Context(), rec)
	if err != nil {
		t.Fatal(err)
	}
	if string(out[0].Key) != "input-key" {
		t.Errorf("crm outcome key = %q, want the input key", out[0].Key)
	}
}

func TestConcurrentRedeliveriesLeaveOneObject(t *testing.T) {
	e := newEnv(t)
	s := e.sink(t, newReadableMemory(), e.local, e.hook)
	msg := crmtest.Message("race")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s.Handle(t.Context(), e.record(t, msg)); err != nil {
				t.Errorf("Handle: %v", err)
			}
		})
	}
	wg.Wait()
	if e.srv.Objects(msg.Message.ExternalID) != 1 || e.local.Count() != 1 {
		t.Errorf("effects: webhook objects %d, local entries %d; want 1 and 1", e.srv.Objects(msg.Message.ExternalID), e.local.Count())
	}
}

func TestNewValidates(t *testing.T) {
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	a := &fixedConnector{name: "a"}
	for _, tt := range []struct {
		name       string
		codec      *serde.Codec
		connectors []crm.Connector
		log        *slog.Logger
		opts       []sink.Option
		want       []string
	}{
		{"valid", codec, []crm.Connector{a}, discard(), []sink.Option{sink.WithLakeSalt(salt)}, nil},
		{
			"everything missing", nil, nil, nil, nil,
			[]string{"codec is required", "logger is required", "at least one connector", "lake salt"},
		},
		{"nil connector", codec, []crm.Connector{a, nil}, discard(), []sink.Option{sink.WithLakeSalt(salt)}, []string{"connector 1 is nil"}},
		{"empty name", codec, []crm.Connector{&fixedConnector{}}, discard(), []sink.Option{sink.WithLakeSalt(salt)}, []string{"empty name"}},
		{"duplicate name", codec, []crm.Connector{a, &fixedConnector{name: "a"}}, discard(), []sink.Option{sink.WithLakeSalt(salt)}, []string{`"a" is used by two`}},
		{"short salt", codec, []crm.Connector{a}, discard(), []sink.Option{sink.WithLakeSalt("short")}, []string{"lake salt"}},
		{"zero ttl", codec, []crm.Connector{a}, discard(), []sink.Option{sink.WithLakeSalt(salt), sink.WithDedupeTTL(0)}, []string{"ttl must be positive"}},
		{"bad retry and limits", codec, []crm.Connector{a}, discard(), []sink.Option{
			sink.WithLakeSalt(salt), sink.WithRetry(0, time.Second, time.Millisecond), sink.WithConcurrency(0, map[string]int{"b": 1}),
			sink.WithRateLimits(map[string]ratelimit.Limit{"c": ratelimit.PerSecond(1)}, nil),
		}, []string{"max attempts", "concurrency must be at least 1", `concurrency for unknown target "b"`, `rate limit for unknown target "c"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sink.New(tt.codec, tt.connectors, nil, tt.log, tt.opts...)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if got := strings.Join(s.Targets(), ","); got != "a" {
					t.Errorf("Targets = %q", got)
				}
				return
			}
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  sink.Config
		want string
	}{
		{"valid", sink.Config{LakeSalt: salt, DedupeTTL: time.Hour}, ""},
		{"zero ttl keeps the default", sink.Config{LakeSalt: salt}, ""},
		{"no salt", sink.Config{}, "lake_salt is required"},
		{"negative ttl", sink.Config{LakeSalt: salt, DedupeTTL: -time.Second}, "dedupe_ttl"},
		{"per-target limits", sink.Config{LakeSalt: salt, TargetConcurrency: []string{"a=2"}, TargetRates: []string{"a=10/s"}}, ""},
		{"bad per-target limits", sink.Config{LakeSalt: salt, TargetConcurrency: []string{"a=0", "b"}, TargetRates: []string{"a=fast"}}, "target_concurrency"},
		{"backoffs out of order", sink.Config{LakeSalt: salt, InitialBackoff: time.Minute, MaxBackoff: time.Second}, "initial_backoff"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				codec, cerr := serde.New(t.Context())
				if cerr != nil {
					t.Fatal(cerr)
				}
				if _, err := sink.New(codec, []crm.Connector{&fixedConnector{name: "a"}}, nil, discard(), tt.cfg.Options(nil)...); err != nil {
					t.Fatalf("New with Config.Options: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

// markOnly hides every optional capability of a store (Seen in particular).
type markOnly struct{ dedupe.Store }
