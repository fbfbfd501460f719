package routeadmin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/admin"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/route/kafkaroute"
	"github.com/mailpipe/mailpipe/pkg/route/routeadmin"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

var newCodec = sync.OnceValues(func() (*serde.Codec, error) { return serde.New(context.Background()) })

// failingProducer refuses every record, as a broker without in-sync replicas would.
type failingProducer struct{}

func (failingProducer) ProduceSync(_ context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	out := make(kgo.ProduceResults, len(rs))
	for i, r := range rs {
		out[i] = kgo.ProduceResult{Record: r, Err: errors.New("NOT_ENOUGH_REPLICAS")}
	}
	return out
}

// newServer mounts the API on a real admin server over a store on a kfake routes topic. load
// false leaves the follower unloaded; prod nil uses a real producer.
func newServer(t *testing.T, load bool, prod kafkaroute.Producer) http.Handler {
	t.Helper()
	codec, err := newCodec()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	brokers := kafkatest.NewCluster(t)
	topic := kafkatest.TopicName(t, "mail.routes")
	kafkatest.CreateTopic(t, brokers, topic, 2)
	f, err := kafkaroute.NewFollower(kafka.Config{Brokers: brokers}, codec, log, kafkaroute.WithTopic(topic),
		kafkaroute.WithClientOpts(kgo.FetchMaxWait(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	if load {
		done := make(chan error, 1)
		go func() { done <- f.Run(context.WithoutCancel(t.Context())) }()
		t.Cleanup(func() {
			if err := f.Close(context.Background()); err != nil {
				t.Error(err)
			}
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		deadline := time.Now().Add(10 * time.Second)
		for f.Check(t.Context()) != nil {
			if time.Now().After(deadline) {
				t.Fatal("follower did not load")
			}
			time.Sleep(10 * time.Millisecond)
		}
	} else {
		t.Cleanup(func() { _ = f.Close(context.Background()) })
	}
	if prod == nil {
		p, err := kafka.NewProducer(kafka.Config{Brokers: brokers}, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		prod = p
	}
	store, err := kafkaroute.NewStore(kafkaroute.StoreOptions{Producer: prod, Codec: codec, Follower: f, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h, err := routeadmin.New(store, log)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := admin.New(t.Context(), "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	h.Register(srv)
	return srv.Handler()
}

type step struct {
	name        string
	method      string
	path        string
	body        string
	contentType string
	status      int
	// want are substrings of the response body; problem is the problem type suffix expected.
	want     []string
	problem  string
	pointers []string
	header   map[string]string
}

func do(t *testing.T, h http.Handler, s step) {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), s.method, s.path, strings.NewReader(s.body))
	if s.contentType != "" {
		req.Header.Set("Content-Type", s.contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != s.status {
		t.Fatalf("%s %s: status %d, want %d\n%s", s.method, s.path, rec.Code, s.status, body)
	}
	for _, w := range s.want {
		if !strings.Contains(string(body), w) {
			t.Errorf("%s %s: body lacks %q:\n%s", s.method, s.path, w, body)
		}
	}
	for k, v := range s.header {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("%s %s: header %s = %q, want %q", s.method, s.path, k, got, v)
		}
	}
	if s.problem == "" {
		return
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s %s: Content-Type %q, want application/problem+json", s.method, s.path, ct)
	}
	var p routeadmin.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body: %v\n%s", err, body)
	}
	if p.Type != routeadmin.ProblemTypeBase+s.problem || p.Status != s.status || p.Title == "" {
		t.Errorf("%s %s: problem %+v, want type %s status %d", s.method, s.path, p, s.problem, s.status)
	}
	var ptrs []string
	for _, e := range p.Errors {
		ptrs = append(ptrs, e.Pointer)
		if e.Detail == "" {
			t.Errorf("problem entry %s has no detail", e.Pointer)
		}
	}
	if strings.Join(ptrs, " ") != strings.Join(s.pointers, " ") {
		t.Errorf("%s %s: error pointers %q, want %q", s.method, s.path, ptrs, s.pointers)
	}
}

// TestAPI walks the API through one sequence of requests; each step depends on the previous.
func TestAPI(t *testing.T) {
	h := newServer(t, true, nil)
	for _, s := range []step{
		{name: "empty list", method: "GET", path: "/v1/routes", status: 200, want: []string{`"routes":[]`, `"problems":[]`}},
		{
			name: "create", method: "POST", path: "/v1/routes", contentType: "application/json",
			body:   `{"id":"support","pattern":"Support+{tenant}@IN.example.com","crm_targets":["hubspot","webhook"]}`,
			status: 201, header: map[string]string{"Location": "/v1/routes/support"},
			want: []string{`"pattern":"support+{tenant}@in.example.com"`, `"updated_at":"`},
		},
		{
			name: "create without id derives one", method: "POST", path: "/v1/routes",
			body: `{"pattern":"sales@in.example.com","tenant":"acme"}`, status: 201, want: []string{`"id":"r-`},
		},
		{name: "read your write", method: "GET", path: "/v1/routes/support", status: 200, want: []string{`"crm_targets":["hubspot","webhook"]`}},
		{name: "list", method: "GET", path: "/v1/routes", status: 200, want: []string{`"id":"support"`, `"tenant":"acme"`}},
		{
			name: "create existing id", method: "POST", path: "/v1/routes", body: `{"id":"support","pattern":"x@in.example.com","tenant":"t"}`,
			status: 409, problem: "route-exists",
		},
		{
			name: "every validation problem", method: "POST", path: "/v1/routes",
			body:   `{"pattern":"help@in.example.com","crm_targets":["webhook","hubsopt"],"max_size":-1,"allow_senders":["example.com"]}`,
			status: 422, problem: "invalid-route", pointers: []string{"#/tenant", "#/crm_targets/1", "#/allow_senders/0", "#/max_size"},
			want: []string{`unknown CRM target \"hubsopt\"`, "4 problems"},
		},
		{
			name: "bad pattern", method: "POST", path: "/v1/routes", body: `{"pattern":"help","tenant":"t"}`,
			status: 422, problem: "invalid-route", pointers: []string{"#/pattern"}, want: []string{`has no \"@\"`},
		},
		{
			name: "duplicate pattern", method: "POST", path: "/v1/routes", body: `{"id":"other","pattern":"support+*@in.example.com","tenant":"t"}`,
			status: 422, problem: "invalid-route", pointers: []string{"#/pattern"}, want: []string{`competes with route \"support\"`},
		},
		{
			name: "unknown field", method: "POST", path: "/v1/routes", body: `{"pattern":"a@in.example.com","tennant":"t"}`,
			status: 422, problem: "invalid-route", pointers: []string{"#/tennant"},
		},
		{
			name: "wrong type", method: "POST", path: "/v1/routes", body: `{"pattern":"a@in.example.com","tenant":"t","max_size":"ten"}`,
			status: 422, problem: "invalid-route", pointers: []string{"#/max_size"}, want: []string{"must be a JSON number"},
		},
		{name: "broken json", method: "POST", path: "/v1/routes", body: `{"pattern":`, status: 400, problem: "bad-json"},
		{name: "two values", method: "POST", path: "/v1/routes", body: `{"pattern":"a@in.example.com","tenant":"t"} {}`, status: 400, problem: "bad-json"},
		{name: "not json", method: "POST", path: "/v1/routes", contentType: "text/plain", body: `x`, status: 415, problem: "unsupported-media-type"},
		{name: "too large", method: "POST", path: "/v1/routes", body: `{"pattern":"` + strings.Repeat("a", 2<<20) + `"}`, status: 413, problem: "too-large"},
		{
			name: "put replaces", method: "PUT", path: "/v1/routes/support", body: `{"pattern":"support+{tenant}@in.example.com","shadow":true}`,
			status: 200, want: []string{`"shadow":true`, `"crm_targets":[]`},
		},
		{
			name: "put creates", method: "PUT", path: "/v1/routes/jobs", body: `{"pattern":"jobs@in.example.com","tenant":"hr"}`,
			status: 201, header: map[string]string{"Location": "/v1/routes/jobs"},
		},
		{
			name: "put id mismatch", method: "PUT", path: "/v1/routes/jobs", body: `{"id":"other","pattern":"jobs@in.example.com","tenant":"hr"}`,
			status: 422, problem: "invalid-route", pointers: []string{"#/id"},
		},
		{name: "get unknown", method: "GET", path: "/v1/routes/nope", status: 404, problem: "route-not-found"},
		{name: "delete", method: "DELETE", path: "/v1/routes/jobs", status: 204},
		{name: "gone", method: "GET", path: "/v1/routes/jobs", status: 404, problem: "route-not-found"},
		{name: "delete again", method: "DELETE", path: "/v1/routes/jobs", status: 404, problem: "route-not-found"},
		{
			name: "method not allowed", method: "PATCH", path: "/v1/routes/support", status: 405, problem: "method-not-allowed",
			header: map[string]string{"Allow": "GET, PUT, DELETE"},
		},
		{
			name: "collection method not allowed", method: "DELETE", path: "/v1/routes", status: 405, problem: "method-not-allowed",
			header: map[string]string{"Allow": "GET, POST"},
		},
		{name: "nested path", method: "GET", path: "/v1/routes/a/b", status: 404, problem: "not-found"},
		{name: "admin endpoints still served", method: "GET", path: "/healthz", status: 200},
	} {
		t.Run(s.name, func(t *testing.T) { do(t, h, s) })
	}
}

func TestAPIUnavailable(t *testing.T) {
	t.Run("table not loaded", func(t *testing.T) {
		h := newServer(t, false, nil)
		do(t, h, step{method: "GET", path: "/v1/routes", status: 503, problem: "unavailable", header: map[string]string{"Retry-After": "5"}})
	})
	t.Run("write not acknowledged", func(t *testing.T) {
		h := newServer(t, true, failingProducer{})
		do(t, h, step{method: "POST", path: "/v1/routes", body: `{"pattern":"a@in.example.com","tenant":"t"}`, status: 503, problem: "unavailable"})
		do(t, h, step{method: "GET", path: "/v1/routes", status: 200, want: []string{`"routes":[]`}})
	})
}
