package pipeline_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
	"github.com/mailpipe/mailpipe/pkg/route/kafkaroute"
)

// With routes enabled, ingress mounts the route admin API on its admin server, and a route
// created through it is written to mail.routes.v1 and read back by the follower.
func TestIngressMountsRouteAdminAPI(t *testing.T) {
	// given: an embedded cluster with the topics, and ingress configured for routes
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
	common := pipeline.Common{Kafka: kcfg, AdminAddr: "127.0.0.1:0"}
	d, err := pipeline.Open(t.Context(), common, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg := pipeline.IngressConfig{Common: common, Ingest: ingest.DefaultConfig(), SMTP: smtpd.DefaultConfig(), HTTP: httpd.DefaultConfig()}
	cfg.SMTP.Addr = "127.0.0.1:0"
	cfg.Routes = kafkaroute.DefaultConfig()
	cfg.Routes.Enabled = true
	actors, err := pipeline.Ingress(t.Context(), cfg, d)
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
				t.Errorf("ingress stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("ingress did not stop")
		}
	}()
	api := httptest.NewServer(d.Admin.Handler())
	defer api.Close()

	// when
	body := `{"pattern":"support+{tenant}@in.example.com","crm_targets":["webhook"]}`
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, api.URL+"/v1/routes", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()

	// then
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/routes: %s", resp.Status)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, api.URL+"/v1/routes", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(buf.String(), "support+{tenant}@in.example.com") {
		t.Fatalf("GET /v1/routes = %s %s", resp.Status, buf.String())
	}
}
