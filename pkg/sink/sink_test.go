package sink_test

import (
	"context"
	"errors"
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
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
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
	s, err := sink.New(e.codec, connectors, store, discard(), sink.WithLakeSalt(salt),
		sink.WithClock(func() time.Time { return clock }))
	if err != nil {
		t.Fatal(err)
	}
	return s
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
	lake     events.LakeRow
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
			if i != len(out)-1 {
				t.Errorf("lake record at %d of %d, want it last", i, len(out))
			}
			if err := e.codec.Decode(t.Context(), kafka.TopicLake, r.Value, &d.lake); err != nil {
				t.Fatal(err)
			}
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
	want := []string{msg.Message.ThreadKey, msg.Message.ThreadKey, msg.Message.ID}
	if strings.Join(d.keys, "|") != strings.Join(want, "|") {
		t.Errorf("keys = %q, want thread key per outcome and message id for the lake row", d.keys)
	}
	hook := d.outcomes[1]
	if hook.ID != msg.Message.ID || hook.ExternalID != msg.Message.ExternalID || hook.Tenant != "acme" ||
		hook.Attempts != 1 || hook.ObjectIds["webhook"] != msg.Message.ExternalID ||
		!hook.WrittenAt.Equal(clock) || !hook.ReceivedAt.Equal(msg.Message.ReceivedAt) {
		t.Errorf("webhook outcome = %+v", hook)
	}
	if d.outcomes[0].ObjectIds[localstore.ObjectType] != "1" {
		t.Errorf("local outcome object ids = %v", d.outcomes[0].ObjectIds)
	}
	if d.lake.Outcome != crm.OutcomeCreated || d.lake.Duplicate || strings.Join(d.lake.Targets, ",") != "local,webhook" ||
		d.lake.LatencyMs != clock.Sub(msg.Message.ReceivedAt).Milliseconds() || d.lake.FromHash == "" {
		t.Errorf("lake row = %+v", d.lake)
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
		{"MarkSeen-only store calls the idempotent connectors again", func() dedupe.Store { return markOnly{dedupe.NewMemory()} }, 2, "local=deduped,webhook=created", false},
		{"no store", func() dedupe.Store { return nil }, 2, "local=deduped,webhook=created", false},
		{"broken store means not known", func() dedupe.Store { return &brokenStore{} }, 2, "local=deduped,webhook=created", false},
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
			if second.lake.Duplicate != tt.wantDuplicate {
				t.Errorf("second lake row duplicate = %v, want %v", second.lake.Duplicate, tt.wantDuplicate)
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

func TestFailingTargetFailsTheRecordAndRetryDedupesTheOthers(t *testing.T) {
	e := newEnv(t)
	store := newReadableMemory()
	s := e.sink(t, store, e.local, e.hook)
	msg := crmtest.Message("partial")

	// given the webhook answers 503 with Retry-After once
	e.srv.FailNext(1, 503, "4")

	// when the record is handled
	_, err := s.Handle(t.Context(), e.record(t, msg))

	// then the stage gets a retryable crm_5xx with the wait, the local store has the message,
	// and only the local delivery is recorded in the dedupe store
	if failure.Classify(err) != failure.CRM5xx || !failure.Retryable(err) {
		t.Fatalf("err = %v (class %q), want retryable crm_5xx", err, failure.Classify(err))
	}
	if d, _ := failure.RetryAfter(err); d != 4*time.Second {
		t.Errorf("RetryAfter = %v, want 4s", d)
	}
	if !strings.Contains(err.Error(), "webhook") || !strings.Contains(err.Error(), msg.Message.ID) {
		t.Errorf("error %q does not name the target and message", err)
	}
	if seen, _ := store.Seen(t.Context(), sink.DedupeKey("webhook", msg.Message.ExternalID)); seen {
		t.Error("failed webhook delivery is recorded as seen")
	}
	if seen, _ := store.Seen(t.Context(), sink.DedupeKey("local", msg.Message.ExternalID)); !seen {
		t.Error("confirmed local delivery is not recorded")
	}

	// when the stage retries
	d := e.handle(t, s, msg)

	// then the local target is skipped and the webhook delivered
	if got := outcomeNames(d.outcomes); got != "local=deduped,webhook=created" {
		t.Errorf("retry outcomes = %s", got)
	}
	if d.lake.Outcome != crm.OutcomeDeduped || d.lake.Duplicate {
		t.Errorf("lake outcome %q duplicate %v; want worst=deduped, not a duplicate", d.lake.Outcome, d.lake.Duplicate)
	}
	if e.local.Count() != 1 || e.srv.Objects(msg.Message.ExternalID) != 1 {
		t.Errorf("effects: local %d, webhook %d", e.local.Count(), e.srv.Objects(msg.Message.ExternalID))
	}
}

func TestConnectorErrorsKeepTheirClass(t *testing.T) {
	for _, tt := range []struct {
		name      string
		status    int
		want      failure.Class
		retryable bool
	}{
		{"validation error goes to the DLQ", 422, failure.CRM4xx, false},
		{"bad credentials go to the DLQ", 401, failure.Auth, false},
		{"rate limit is retried", 429, failure.RateLimited, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			store := newReadableMemory()
			s := e.sink(t, store, e.hook)
			e.srv.FailNext(1, tt.status, "")
			msg := crmtest.Message("fails")
			_, err := s.Handle(t.Context(), e.record(t, msg))
			if failure.Classify(err) != tt.want || failure.Retryable(err) != tt.retryable {
				t.Fatalf("err = %v (class %q), want %q retryable=%v", err, failure.Classify(err), tt.want, tt.retryable)
			}
			if store.Len() != 0 {
				t.Errorf("dedupe store holds %d keys after a failure, want 0", store.Len())
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

func TestShadowIsNotRecordedAsDelivered(t *testing.T) {
	e := newEnv(t)
	store := newReadableMemory()
	conn := &fixedConnector{name: "hubspot", res: crm.Result{Outcome: crm.OutcomeShadow}}
	s := e.sink(t, store, conn)
	msg := crmtest.Message("shadow")
	for range 2 {
		d := e.handle(t, s, msg)
		if got := outcomeNames(d.outcomes); got != "hubspot=shadow" || d.lake.Outcome != crm.OutcomeShadow {
			t.Fatalf("outcomes = %s, lake %q", got, d.lake.Outcome)
		}
	}
	if n := conn.calls.Load(); n != 2 {
		t.Errorf("shadow connector called %d times, want 2: a shadow write must never be skipped later", n)
	}
	if store.Len() != 0 {
		t.Errorf("dedupe store holds %d keys, want 0", store.Len())
	}
}

func TestConnectorContractViolations(t *testing.T) {
	for _, tt := range []struct {
		name string
		res  crm.Result
		err  error
		want failure.Class
	}{
		{"unknown outcome", crm.Result{Outcome: "exploded"}, nil, failure.Internal},
		{"empty outcome", crm.Result{}, nil, failure.Internal},
		{"failed outcome without error", crm.Result{Outcome: crm.OutcomeFailed}, nil, failure.Internal},
		{"unclassified error stays unknown", crm.Result{}, errors.New("boom"), failure.Unknown},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			conn := &fixedConnector{name: "x", res: tt.res, err: tt.err}
			_, err := e.sink(t, nil, conn).Handle(t.Context(), e.record(t, crmtest.Message("v")))
			if failure.Classify(err) != tt.want {
				t.Fatalf("err = %v (class %q), want %q", err, failure.Classify(err), tt.want)
			}
		})
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
				if _, err := sink.New(codec, []crm.Connector{&fixedConnector{name: "a"}}, nil, discard(), tt.cfg.Options()...); err != nil {
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
