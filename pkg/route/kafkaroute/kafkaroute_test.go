package kafkaroute_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/route"
	"github.com/mailpipe/mailpipe/pkg/route/kafkaroute"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

var newCodec = sync.OnceValues(func() (*serde.Codec, error) { return serde.New(context.Background()) })

func codec(t testing.TB) *serde.Codec {
	t.Helper()
	c, err := newCodec()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// syncBuffer is a log sink tests read while the follower writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a routes topic on some cluster with helpers to write raw records and run followers.
type env struct {
	brokers []string
	topic   string
	log     *slog.Logger
	logs    *syncBuffer
}

func newEnv(t *testing.T, brokers []string, partitions int32) *env {
	t.Helper()
	e := &env{brokers: brokers, topic: kafkatest.TopicName(t, "mail.routes"), logs: &syncBuffer{}}
	e.log = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kafkatest.CreateTopic(t, brokers, e.topic, partitions)
	return e
}

func (e *env) record(t *testing.T, r events.Route) *kgo.Record {
	t.Helper()
	val, err := codec(t).Encode(kafka.TopicRoutes, &r)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: e.topic, Key: []byte(r.ID), Value: val}
}

func (e *env) tombstone(id string) *kgo.Record { return &kgo.Record{Topic: e.topic, Key: []byte(id)} }

// follower returns a loaded, running follower, stopped by t.Cleanup.
func (e *env) follower(t *testing.T) *kafkaroute.Follower {
	t.Helper()
	f, err := kafkaroute.NewFollower(kafka.Config{Brokers: e.brokers}, codec(t), e.log,
		kafkaroute.WithTopic(e.topic), kafkaroute.WithClientOpts(kgo.FetchMaxWait(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := f.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(context.WithoutCancel(t.Context())) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after Close, want nil", err)
		}
	})
	return f
}

// store returns a store writing through a real producer and waiting on f.
func (e *env) store(t *testing.T, f *kafkaroute.Follower) *kafkaroute.Store {
	t.Helper()
	prod, err := kafka.NewProducer(kafka.Config{Brokers: e.brokers}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	s, err := kafkaroute.NewStore(kafkaroute.StoreOptions{Producer: prod, Codec: codec(t), Follower: f, Logger: e.log})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func resolve(t *testing.T, f *kafkaroute.Follower, addr string) (route.Match, bool) {
	t.Helper()
	return f.Table().Resolve(addr)
}

// eventually polls cond for a short while; the follower applies records asynchronously.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runFollowerLoadsAndFollows is the follower's contract, run on kfake and on the real broker.
func runFollowerLoadsAndFollows(t *testing.T, brokers []string) {
	e := newEnv(t, brokers, 3)

	// given a topic with history: an update, a delete, an undecodable record, an invalid route and
	// two routes competing for one pattern
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	kafkatest.Produce(t, brokers,
		e.record(t, events.Route{ID: "support", Pattern: "support+{tenant}@in.example.com", UpdatedAt: t0}),
		e.record(t, events.Route{ID: "sales", Pattern: "sales@in.example.com", Tenant: "old", UpdatedAt: t0}),
		e.record(t, events.Route{ID: "sales", Pattern: "sales@in.example.com", Tenant: "acme", UpdatedAt: t0.Add(time.Hour)}),
		e.record(t, events.Route{ID: "gone", Pattern: "gone@in.example.com", Tenant: "t", UpdatedAt: t0}),
		e.tombstone("gone"),
		&kgo.Record{Topic: e.topic, Key: []byte("garbage"), Value: []byte("not avro")},
		e.record(t, events.Route{ID: "invalid", Pattern: "nope", Tenant: "t"}),
		e.record(t, events.Route{ID: "dup", Pattern: "SALES@in.example.com", Tenant: "evil", UpdatedAt: t0.Add(2 * time.Hour)}),
		e.record(t, events.Route{ID: "key-wins", Pattern: "key@in.example.com", Tenant: "t"}),
	)
	// a value whose id differs from its key
	rec := e.record(t, events.Route{ID: "value-id", Pattern: "key@in.example.com", Tenant: "t"})
	rec.Key = []byte("key-wins")
	kafkatest.Produce(t, brokers, rec)

	// when a follower starts
	f := e.follower(t)

	// then Load returned with the whole history applied
	if err := f.Check(t.Context()); err != nil {
		t.Fatalf("Check after Load: %v", err)
	}
	snap := f.Table().Load()
	if snap.Len() != 3 {
		t.Errorf("table has %d routes, want 3 (support, sales, key-wins): %+v", snap.Len(), snap.Routes())
	}
	for _, tt := range []struct {
		addr, id, tenant, tag string
		ok                    bool
	}{
		{"support+globex@in.example.com", "support", "globex", "globex", true},
		{"Sales+EMEA@in.example.com", "sales", "acme", "emea", true},
		{"key@in.example.com", "key-wins", "t", "", true},
		{"gone@in.example.com", "", "", "", false},
	} {
		m, ok := resolve(t, f, tt.addr)
		if ok != tt.ok || m.Route.ID != tt.id || m.Tenant != tt.tenant || m.Tag != tt.tag {
			t.Errorf("Resolve(%q) = %q tenant %q tag %q %v; want %q %q %q %v", tt.addr, m.Route.ID, m.Tenant, m.Tag, ok, tt.id, tt.tenant, tt.tag, tt.ok)
		}
	}
	var left []string
	for _, p := range f.Problems() {
		left = append(left, p.ID+" "+p.Field)
	}
	if got := strings.Join(left, "|"); got != "dup pattern|invalid pattern" {
		t.Errorf("Problems = %q, want dup and invalid left out", got)
	}
	for _, want := range []string{"removed a route whose record cannot be decoded", "route record id differs from its key", "route left out of the table"} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, e.logs.String())
		}
	}

	// when routes change on the topic
	kafkatest.Produce(t, brokers,
		e.record(t, events.Route{ID: "deals", Pattern: "deals+*@in.example.com", Tenant: "sales"}),
		e.tombstone("support"),
		e.tombstone("sales"), // frees the pattern "dup" was competing for
	)

	// then the table follows
	eventually(t, "the table to follow the topic", func() bool {
		_, support := resolve(t, f, "support+globex@in.example.com")
		d, deals := resolve(t, f, "deals+q3@in.example.com")
		s, _ := resolve(t, f, "sales@in.example.com")
		return !support && deals && d.Tag == "q3" && s.Route.ID == "dup"
	})
	if ps := f.Problems(); len(ps) != 1 || ps[0].ID != "invalid" {
		t.Errorf("Problems after the changes = %+v, want only invalid", ps)
	}
}

// runStore is the store's contract, run on kfake and on the real broker.
func runStore(t *testing.T, brokers []string) {
	e := newEnv(t, brokers, 3)
	f := e.follower(t)
	s := e.store(t, f)
	ctx := t.Context()

	// Create, then read your write at once
	r, err := s.Create(ctx, events.Route{Pattern: "Support+{tenant}@IN.example.com", CRMTargets: []string{"hubspot"}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if r.ID == "" || r.Pattern != "support+{tenant}@in.example.com" || r.UpdatedAt.IsZero() {
		t.Errorf("Create returned %+v", r)
	}
	if got, ok := s.Get(r.ID); !ok || got.Pattern != r.Pattern || !got.UpdatedAt.Equal(r.UpdatedAt) {
		t.Errorf("Get after Create = %+v, %v", got, ok)
	}
	if m, ok := f.Table().Resolve("support+acme@in.example.com"); !ok || m.Tenant != "acme" {
		t.Errorf("Resolve after Create = %+v, %v", m, ok)
	}

	// Create again: exists (same derived id)
	if _, err := s.Create(ctx, events.Route{Pattern: "support+{tenant}@in.example.com"}); !errors.Is(err, kafkaroute.ErrExists) {
		t.Errorf("second Create error = %v, want ErrExists", err)
	}
	// a competing pattern under another id: validation error naming the route
	_, err = s.Create(ctx, events.Route{ID: "other", Pattern: "support+*@in.example.com", Tenant: "t"})
	if !errors.Is(err, route.ErrInvalid) || !strings.Contains(err.Error(), r.ID) {
		t.Errorf("competing Create error = %v, want ErrInvalid naming %s", err, r.ID)
	}

	// Put replaces
	if _, err := s.Put(ctx, events.Route{ID: "sales", Pattern: "sales@in.example.com", Tenant: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, events.Route{ID: "sales", Pattern: "sales@in.example.com", Tenant: "globex", MaxSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get("sales"); got.Tenant != "globex" || got.MaxSize != 1<<20 {
		t.Errorf("after Put, sales = %+v", got)
	}

	// Import validates everything before writing anything
	before := len(s.List())
	_, err = s.Import(ctx, []events.Route{
		{ID: "ok", Pattern: "ok@in.example.com", Tenant: "t"},
		{ID: "bad", Pattern: "bad@in.example.com", Tenant: "t", CRMTargets: []string{"hubsopt"}},
		{ID: "taken", Pattern: "sales@in.example.com", Tenant: "t"},
		{ID: "neg", Pattern: "neg@in.example.com", MaxSize: -1},
	})
	var ve *route.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Import error = %v, want *route.ValidationError", err)
	}
	var got []string
	for _, p := range ve.Problems {
		got = append(got, p.String())
	}
	want := []string{
		`routes[1]: crm_targets[0]: unknown CRM target "hubsopt"`,
		`routes[2]: pattern: "sales@in.example.com" is already the pattern of route "sales"`,
		"routes[3]: tenant: must not be empty",
		"routes[3]: max_size: -1 is negative",
	}
	if len(got) != len(want) {
		t.Fatalf("Import problems:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
	if _, ok := s.Get("ok"); ok || len(s.List()) != before {
		t.Error("an invalid import wrote routes")
	}

	// a valid import, run twice: the second run changes nothing but updated_at
	batch := []events.Route{
		{Pattern: "a@in.example.com", Tenant: "t"},
		{Pattern: "b@in.example.com", Tenant: "t"},
		{ID: "sales", Pattern: "sales@in.example.com", Tenant: "acme"},
		{Pattern: "*@in.example.com", Tenant: "catchall"},
	}
	for range 2 {
		if _, err := s.Import(ctx, batch); err != nil {
			t.Fatalf("Import: %v", err)
		}
	}
	if n := len(s.List()); n != 5 {
		t.Errorf("after imports %d routes, want 5: %+v", n, s.List())
	}
	if m, ok := f.Table().Resolve("nobody@in.example.com"); !ok || m.Tenant != "catchall" {
		t.Errorf("catch-all after import = %+v, %v", m, ok)
	}

	// Delete
	if err := s.Delete(ctx, "sales"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get("sales"); ok {
		t.Error("sales still there after Delete")
	}
	if err := s.Delete(ctx, "sales"); !errors.Is(err, kafkaroute.ErrNotFound) {
		t.Errorf("second Delete error = %v, want ErrNotFound", err)
	}

	// a second follower started now reads the same table from the topic
	f2 := e.follower(t)
	if a, b := routeIDs(f.Table().Load().Routes()), routeIDs(f2.Table().Load().Routes()); a != b {
		t.Errorf("a fresh follower sees %s, the store's follower %s", b, a)
	}
}

func routeIDs(rs []events.Route) string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID+"="+r.Tenant)
	}
	return strings.Join(ids, ",")
}

func TestFollowerLoadsAndFollows(t *testing.T) {
	runFollowerLoadsAndFollows(t, kafkatest.NewCluster(t))
}

func TestStore(t *testing.T) {
	runStore(t, kafkatest.NewCluster(t))
}

func TestFollowerEmptyTopic(t *testing.T) {
	e := newEnv(t, kafkatest.NewCluster(t), 2)
	f := e.follower(t)
	if err := f.Check(t.Context()); err != nil {
		t.Fatalf("an empty topic is a loaded, empty table: %v", err)
	}
	if _, ok := f.Table().Resolve("a@in.example.com"); ok {
		t.Error("an empty table resolved an address")
	}
}

func TestFollowerMissingTopicFails(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	f, err := kafkaroute.NewFollower(kafka.Config{Brokers: brokers}, codec(t), slog.New(slog.DiscardHandler), kafkaroute.WithTopic("no.such.topic"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(t.Context()) //nolint:errcheck // Run never started, nothing to report
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = f.Load(ctx)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Load error = %v, want one saying the topic does not exist", err)
	}
	if !errors.Is(f.Check(t.Context()), kafkaroute.ErrNotLoaded) {
		t.Error("Check passes although Load failed")
	}
}

func TestFollowerLifecycle(t *testing.T) {
	e := newEnv(t, kafkatest.NewCluster(t), 1)
	kafkatest.Produce(t, e.brokers, e.record(t, events.Route{ID: "a", Pattern: "a@in.example.com", Tenant: "t"}))
	f, err := kafkaroute.NewFollower(kafka.Config{Brokers: e.brokers}, codec(t), e.log, kafkaroute.WithTopic(e.topic))
	if err != nil {
		t.Fatal(err)
	}

	// given a follower whose Run loads the table itself
	if !errors.Is(f.Check(t.Context()), kafkaroute.ErrNotLoaded) {
		t.Fatal("Check passes before Load")
	}
	done := make(chan error, 1)
	go func() { done <- f.Actor().Run(t.Context()) }()
	eventually(t, "Run to load the table", func() bool { return f.Check(t.Context()) == nil })
	if _, ok := f.Table().Resolve("a@in.example.com"); !ok {
		t.Error("route a missing after Run loaded")
	}

	// when it is stopped, twice
	for range 2 {
		if err := f.Actor().Stop(t.Context()); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}

	// then Run returned nil and waiters are released
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v after Stop, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Stop")
	}
	if err := f.WaitFor(t.Context(), 0, 1000); err == nil {
		t.Error("WaitFor on a stopped follower returned nil")
	}
}

func TestNewStoreRequiresDependencies(t *testing.T) {
	_, err := kafkaroute.NewStore(kafkaroute.StoreOptions{})
	for _, want := range []string{"producer is required", "codec is required", "follower is required", "logger is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewStore error = %v, want it to say %q", err, want)
		}
	}
}

func TestConfig(t *testing.T) {
	c := kafkaroute.Config{}.WithDefaults()
	if c.Topic != kafka.TopicRoutes || c.LoadTimeout != kafkaroute.DefaultLoadTimeout || c.Enabled {
		t.Errorf("defaults = %+v", c)
	}
	if err := (kafkaroute.Config{LoadTimeout: -time.Second}).Validate(); err == nil {
		t.Error("a negative load timeout validates")
	}
}

func TestOpen(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	kcfg := kafka.Config{Brokers: brokers}
	log := slog.New(slog.DiscardHandler)
	for _, tt := range []struct {
		name string
		cfg  kafkaroute.Config
		want string
	}{
		{"negative timeout", kafkaroute.Config{LoadTimeout: -time.Second}, "load timeout must not be negative"},
		{"missing topic", kafkaroute.Config{Topic: "no.such.topic", LoadTimeout: 5 * time.Second}, "topic no.such.topic does not exist"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := kafkaroute.Open(t.Context(), tt.cfg, kcfg, codec(t), log); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open error = %v, want %q", err, tt.want)
			}
		})
	}
	topic := kafkatest.TopicName(t, "mail.routes")
	kafkatest.CreateTopic(t, brokers, topic, 1)
	f, err := kafkaroute.Open(t.Context(), kafkaroute.Config{Topic: topic}, kcfg, codec(t), log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(t.Context()) //nolint:errcheck // Run never started, nothing to report
	if f.Check(t.Context()) != nil || f.Topic() != topic {
		t.Errorf("Open returned a follower that is not loaded or reads %s", f.Topic())
	}
}
