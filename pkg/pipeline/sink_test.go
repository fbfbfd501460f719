package pipeline_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/crm/webhook"
	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
	"github.com/mailpipe/mailpipe/pkg/redisconn"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/sink"
	"github.com/mailpipe/mailpipe/pkg/webhooksig"
)

// The crm-sink service follows the route table: each route's crm_targets and shadow flag decide
// what is written, and a target the deployment lacks ends in the DLQ for that target alone.
func TestCRMSinkServiceFollowsRoutes(t *testing.T) {
	// given a route table, a webhook receiver and the local store as the two targets
	log := slog.New(slog.DiscardHandler)
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
	var routes []*kgo.Record
	for _, r := range []events.Route{
		{ID: "r-hook", Pattern: "hook@in.example.com", Tenant: "acme", CRMTargets: []string{"webhook"}},
		{ID: "r-shadow", Pattern: "shadow@in.example.com", Tenant: "acme", CRMTargets: []string{"webhook", "local"}, Shadow: true},
		{ID: "r-sf", Pattern: "sf@in.example.com", Tenant: "acme", CRMTargets: []string{"salesforce", "local"}},
	} {
		v, err := codec.Encode(kafka.TopicRoutes, &r)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, &kgo.Record{Topic: kafka.TopicRoutes, Key: []byte(r.ID), Value: v})
	}
	kafkatest.Produce(t, kcfg.Brokers, routes...)

	secret, err := webhooksig.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	var hooks atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hooks.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()

	mr := miniredis.RunT(t)
	common := pipeline.Common{Kafka: kcfg, AdminAddr: "127.0.0.1:0", Redis: redisconn.Config{URL: "redis://" + mr.Addr()}}
	d, err := pipeline.Open(t.Context(), common, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg := pipeline.SinkConfig{
		StageConfig:    pipeline.StageConfig{Common: common},
		Sink:           sink.Config{LakeSalt: "pipeline-test-lake-key-0123"},
		Webhook:        webhook.Config{URL: recv.URL, Secrets: []string{secret.Encode()}, AllowPrivate: true},
		LocalStorePath: filepath.Join(t.TempDir(), "crm.jsonl"),
		RoutesEnabled:  true,
	}
	actors, err := pipeline.CRMSink(t.Context(), cfg, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, log, append(d.Actors(), actors...)...) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("crm-sink stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("crm-sink did not stop")
		}
	}()

	// when one message arrives on each route
	var in []*kgo.Record
	for _, route := range []string{"r-hook", "r-shadow", "r-sf"} {
		msg := crmtest.Message(route)
		msg.Message.RouteID = route
		msg.Message.ThreadKey = route + "@thread"
		v, err := codec.Encode(kafka.TopicEnriched, msg)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, &kgo.Record{Topic: kafka.TopicEnriched, Key: []byte(msg.Message.ThreadKey), Value: v})
	}
	kafkatest.Produce(t, kcfg.Brokers, in...)

	// then the outcomes follow the routes
	var got []string
	for _, r := range kafkatest.ConsumeAll(t, kcfg.Brokers, kafka.TopicCRM, 5, 30*time.Second) {
		var o events.CRMOutcome
		if err := codec.Decode(t.Context(), kafka.TopicCRM, r.Value, &o); err != nil {
			t.Fatal(err)
		}
		got = append(got, o.RouteID+":"+o.Target+"="+o.Outcome+"/"+o.ErrorClass)
	}
	sort.Strings(got)
	want := []string{"r-hook:webhook=created/", "r-sf:local=created/", "r-sf:salesforce=failed/config", "r-shadow:local=shadow/", "r-shadow:webhook=shadow/"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("outcomes\n%v\nwant\n%v", got, want)
	}
	if n := hooks.Load(); n != 1 {
		t.Errorf("webhook requests = %d, want 1 (shadow writes nothing)", n)
	}
	lake := kafkatest.ConsumeAll(t, kcfg.Brokers, kafka.TopicLake, 5, 30*time.Second)
	if len(lake) != 5 {
		t.Errorf("%d lake rows, want one per message and target", len(lake))
	}
	letters := kafkatest.ConsumeAll(t, kcfg.Brokers, kafka.TopicDLQ, 1, 30*time.Second)
	if len(letters) != 1 {
		t.Fatalf("%d dead letters, want 1", len(letters))
	}
	info, err := dlq.Parse(letters[0])
	if err != nil {
		t.Fatal(err)
	}
	var target string
	for _, h := range letters[0].Headers {
		if h.Key == sink.HeaderTarget {
			target = string(h.Value)
		}
	}
	if target != "salesforce" || info.Class != "config" || info.Stage != sink.StageName || string(letters[0].Key) != "r-sf@thread" {
		t.Errorf("dead letter for %q: %+v", target, info)
	}
}
