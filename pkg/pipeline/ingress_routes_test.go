package pipeline_test

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
	"github.com/mailpipe/mailpipe/pkg/route/kafkaroute"
)

// TestIngressWithRoutes checks the wiring of MAILPIPE_ROUTES_*: the route follower is loaded
// before Ingress returns, runs first (so it stops last), and is a readiness check; the domain list
// and routes are exclusive; a missing routes topic fails startup instead of refusing all mail.
// The SMTP behaviour over the table is tested in package routeingest.
func TestIngressWithRoutes(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	topic := kafkatest.TopicName(t, "mail.routes")
	kafkatest.CreateTopic(t, brokers, topic, 1)
	log := slog.New(slog.DiscardHandler)

	build := func(t *testing.T, routes kafkaroute.Config, domains ...string) (*pipeline.Deps, []app.Actor, error) {
		t.Helper()
		common := pipeline.Common{Kafka: kafka.Config{Brokers: brokers}, AdminAddr: "127.0.0.1:0"}
		d, err := pipeline.Open(t.Context(), common, log)
		if err != nil {
			t.Fatal(err)
		}
		cfg := pipeline.IngressConfig{Common: common, Ingest: ingest.Config{Domains: domains}, Routes: routes}
		cfg.SMTP.Addr = "127.0.0.1:0"
		actors, err := pipeline.Ingress(t.Context(), cfg, d)
		return d, actors, err
	}

	t.Run("exclusive with domains", func(t *testing.T) {
		d, _, err := build(t, kafkaroute.Config{Enabled: true, Topic: topic}, "in.example.com")
		stopAll(t, d.Actors())
		if !errors.Is(err, app.ErrConfig) || !strings.Contains(err.Error(), "exclusive") {
			t.Fatalf("Ingress error = %v, want a config error about exclusive settings", err)
		}
	})
	t.Run("missing topic", func(t *testing.T) {
		d, _, err := build(t, kafkaroute.Config{Enabled: true, Topic: "no.such.topic"})
		stopAll(t, d.Actors())
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("Ingress error = %v, want the missing topic named", err)
		}
	})
	t.Run("disabled keeps the domain list", func(t *testing.T) {
		d, actors, err := build(t, kafkaroute.Config{Topic: topic}, "in.example.com")
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range actors {
			if a.Name == "route-follower" {
				t.Error("a route follower runs although routes are disabled")
			}
		}
		stopAll(t, append(d.Actors(), actors...))
	})
	t.Run("enabled", func(t *testing.T) {
		d, actors, err := build(t, kafkaroute.Config{Enabled: true, Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		if len(actors) == 0 || actors[0].Name != "route-follower" {
			t.Fatalf("first actor %q, want route-follower (started first, stopped last)", actors[0].Name)
		}
		rec := httptest.NewRecorder()
		d.Admin.Handler().ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/readyz", nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "routes") {
			t.Errorf("/readyz = %d %s, want 200 listing the routes check", rec.Code, rec.Body.String())
		}
		stopAll(t, append(d.Actors(), actors...))
	})
}

// stopAll releases what the built actors hold, in reverse order, without running them (running
// and stopping at once races the SMTP server's start against its shutdown).
func stopAll(t *testing.T, actors []app.Actor) {
	t.Helper()
	for i := len(actors) - 1; i >= 0; i-- {
		if actors[i].Stop == nil {
			continue
		}
		if err := actors[i].Stop(t.Context()); err != nil {
			t.Errorf("stopping %s: %v", actors[i].Name, err)
		}
	}
}
