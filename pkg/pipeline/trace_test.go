package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/smtp"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
	"github.com/mailpipe/mailpipe/pkg/redisconn"
	"github.com/mailpipe/mailpipe/pkg/route/kafkaroute"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/sink"
	"github.com/mailpipe/mailpipe/pkg/telemetry"
)

// lockedBuffer is a log sink several handlers may write to at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}

// One message accepted over SMTP yields one trace across the five services, each with its own
// tracer provider (as separate processes have): the accept span in ingress is its root, each
// stage's span is a child of the previous service's, the CRM write is a connector-call span under
// the crm-sink's, and the ingress log line of the message carries the trace id.
func TestOneTracePerMessageAcrossServices(t *testing.T) {
	// given the five services on one embedded cluster, tracing into one recorder
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = kafkatest.NewCluster(t)
	adm, err := kafka.NewAdmin(kcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if err := kafka.ApplyTopics(t.Context(), adm, kafka.TopicSpecs(kafka.DefaultTopicsConfig())); err != nil {
		t.Fatal(err)
	}
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	route, err := codec.Encode(kafka.TopicRoutes, &events.Route{ID: "r-support", Pattern: "support@in.example.com", Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	kafkatest.Produce(t, kcfg.Brokers, &kgo.Record{Topic: kafka.TopicRoutes, Key: []byte("r-support"), Value: route})
	mr := miniredis.RunT(t)
	common := pipeline.Common{Kafka: kcfg, AdminAddr: "127.0.0.1:0", Redis: redisconn.Config{URL: "redis://" + mr.Addr() + "/0"}}
	rec := tracetest.NewSpanRecorder()
	open := func(service string) *pipeline.Deps {
		t.Helper()
		d, err := pipeline.Open(t.Context(), common, log, pipeline.WithServiceName(service),
			pipeline.WithTelemetry(telemetry.WithGetenv(func(string) string { return "" }), telemetry.WithSpanProcessor(rec)))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	stageCfg := pipeline.StageConfig{Common: common}
	var actors []app.Actor
	add := func(d *pipeline.Deps, a []app.Actor, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		actors = append(append(actors, d.Actors()...), a...)
	}
	d := open("parser")
	a, err := pipeline.Parser(t.Context(), pipeline.ParserConfig{StageConfig: stageCfg}, d)
	add(d, a, err)
	d = open("classifier")
	a, err = pipeline.Classifier(t.Context(), pipeline.ClassifierConfig{StageConfig: stageCfg, SpamThreshold: 8}, d)
	add(d, a, err)
	d = open("enricher")
	a, err = pipeline.Enricher(t.Context(), pipeline.EnricherConfig{StageConfig: stageCfg}, d)
	add(d, a, err)
	d = open("crm-sink")
	a, err = pipeline.CRMSink(t.Context(), pipeline.SinkConfig{
		StageConfig:    stageCfg,
		Sink:           sink.Config{LakeSalt: "pipeline-test-lake-key-0123"},
		LocalStorePath: filepath.Join(t.TempDir(), "crm.jsonl"),
	}, d, nil)
	add(d, a, err)
	d = open("ingress")
	ingCfg := pipeline.IngressConfig{Common: common, Ingest: ingest.DefaultConfig(), SMTP: smtpd.DefaultConfig(), HTTP: httpd.DefaultConfig()}
	ingCfg.SMTP.Addr = rateTestAddr(t)
	ingCfg.Routes = kafkaroute.DefaultConfig()
	ingCfg.Routes.Enabled = true
	a, err = pipeline.Ingress(t.Context(), ingCfg, d)
	add(d, a, err)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, slog.New(slog.DiscardHandler), actors...) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("services stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("services did not stop")
		}
	}()

	// when one message is sent over SMTP and its CRM outcome is written
	_ = rateTestGreeting(t, ingCfg.SMTP.Addr) // the listener is up
	msg := "From: Ann <ann@acme.example>\r\nTo: support@in.example.com\r\nSubject: Pricing question\r\n" +
		"Message-ID: <trace-1@acme.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHow much is it?\r\n"
	if err := smtp.SendMail(ingCfg.SMTP.Addr, nil, "ann@acme.example", []string{"support@in.example.com"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	outcomes := kafkatest.ConsumeAll(t, kcfg.Brokers, kafka.TopicCRM, 1, time.Minute)
	var outcome events.CRMOutcome
	if err := codec.Decode(t.Context(), kafka.TopicCRM, outcomes[0].Value, &outcome); err != nil {
		t.Fatal(err)
	}

	// then one accept span is the root of the message's trace
	spans := rec.Ended()
	var root sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "smtp accept" {
			if root != nil {
				t.Fatal("two accept spans for one message")
			}
			root = s
		}
	}
	if root == nil {
		t.Fatalf("no smtp accept span among %v", names(spans))
	}
	tid := root.SpanContext().TraceID()
	if root.Parent().IsValid() || service(root) != "ingress" || attr(root, ingest.AttrTenant) != "acme" ||
		attr(root, ingest.AttrRouteID) != "r-support" || attr(root, ingest.AttrMessageID) != outcome.ID {
		t.Errorf("accept span: parent %v service %q attributes %v; want a root in ingress for message %s of acme, r-support",
			root.Parent(), service(root), root.Attributes(), outcome.ID)
	}
	// and every stage of the message continues it, each a child of the one before, in its own
	// service
	inTrace := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.SpanContext().TraceID() == tid {
			inTrace[s.SpanContext().SpanID()] = s
		}
	}
	parent := root
	for _, st := range []string{"parser", "classifier", "enricher", "crm-sink"} {
		var found []sdktrace.ReadOnlySpan
		for _, s := range spans {
			if s.Name() != st+" process" {
				continue
			}
			if s.SpanContext().TraceID() != tid {
				t.Errorf("%s span in trace %s, want %s", s.Name(), s.SpanContext().TraceID(), tid)
				continue
			}
			found = append(found, s)
		}
		if len(found) != 1 {
			t.Fatalf("%d %q spans in the message's trace, want 1; spans: %v", len(found), st+" process", names(spans))
		}
		s := found[0]
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s: parent %s, want %s (%s)", s.Name(), s.Parent().SpanID(), parent.SpanContext().SpanID(), parent.Name())
		}
		if service(s) != st {
			t.Errorf("%s: service.name %q, want %q", s.Name(), service(s), st)
		}
		parent = s
	}
	// and the crm-sink's connector call is a child of its stage span
	var calls int
	for _, s := range inTrace {
		if strings.HasPrefix(s.Name(), "crm upsert ") {
			calls++
			if s.Parent().SpanID() != parent.SpanContext().SpanID() || service(s) != "crm-sink" || attr(s, "mailpipe.crm.target") != outcome.Target {
				t.Errorf("connector span %q in %s: parent %s target %q, want crm-sink process %s target %q",
					s.Name(), service(s), s.Parent().SpanID(), attr(s, "mailpipe.crm.target"), parent.SpanContext().SpanID(), outcome.Target)
			}
		}
	}
	if calls != 1 {
		t.Errorf("%d connector-call spans in the trace, want 1; spans: %v", calls, names(spans))
	}
	// and every other span of the trace hangs off a span of it (Redis commands, connector calls)
	for _, s := range inTrace {
		if s != root {
			if _, ok := inTrace[s.Parent().SpanID()]; !ok {
				t.Errorf("span %q (%s) has parent %s outside the trace", s.Name(), service(s), s.Parent().SpanID())
			}
		}
	}
	// and Redis commands outside a message (readiness, background work) start no trace of their own
	for _, s := range spans {
		if strings.HasPrefix(s.Name(), "redis ") && !s.Parent().IsValid() {
			t.Errorf("root span %q: Redis commands outside a trace must not be traced", s.Name())
		}
	}
	// and the ingress log line of the message carries the trace id
	var logged bool
	for _, l := range logs.lines() {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil || line["msg"] != "accepted message" {
			continue
		}
		logged = true
		if line[telemetry.LogKeyTraceID] != tid.String() || line[telemetry.LogKeySpanID] != root.SpanContext().SpanID().String() ||
			line["tenant"] != "acme" || line["id"] != outcome.ID {
			t.Errorf("accepted message log line %s, want trace %s span %s tenant acme id %s", l, tid, root.SpanContext().SpanID(), outcome.ID)
		}
	}
	if !logged {
		t.Error("no accepted message log line")
	}
	// and the crm-sink's line of the write names the tenant, carried as baggage from ingress
	logged = false
	for _, l := range logs.lines() {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil || line["msg"] != "delivered" || line["message_id"] != outcome.ID {
			continue
		}
		logged = true
		if line[telemetry.LogKeyTraceID] != tid.String() || line[telemetry.LogKeyTenant] != "acme" {
			t.Errorf("crm-sink log line %s, want trace %s and tenant acme", l, tid)
		}
	}
	if !logged {
		t.Error("no crm-sink delivered log line")
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, 0, len(spans))
	for _, s := range spans {
		out = append(out, s.Name()+"@"+service(s))
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func service(s sdktrace.ReadOnlySpan) string {
	for _, kv := range s.Resource().Attributes() {
		if kv.Key == "service.name" {
			return kv.Value.String()
		}
	}
	return ""
}
