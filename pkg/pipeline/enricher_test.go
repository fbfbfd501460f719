package pipeline_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/envconf"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
	"github.com/mailpipe/mailpipe/pkg/redisconn"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

func TestEnricherConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string // error substring; empty for a valid config
	}{
		{name: "defaults", env: map[string]string{}},
		{name: "everything set", env: map[string]string{
			"MAILPIPE_ENRICH_COMPANIES_FILE": "/data/companies.csv", "MAILPIPE_ENRICH_FREEMAIL_FILE": "/data/freemail.txt",
			"MAILPIPE_ENRICH_LOOKUP_TABLE": "true", "MAILPIPE_ENRICH_LOOKUP_TIMEOUT": "250ms",
			"MAILPIPE_ENRICH_CACHE_TTL": "6h", "MAILPIPE_ENRICH_NEGATIVE_CACHE_TTL": "5m",
			"MAILPIPE_ENRICH_BREAKER_FAILURES": "-1", "MAILPIPE_ROUTES_ENABLED": "true",
		}},
		{name: "negative TTL longer", env: map[string]string{"MAILPIPE_ENRICH_CACHE_TTL": "1m"}, want: "MAILPIPE_ENRICH_NEGATIVE_CACHE_TTL (10m0s) must not exceed MAILPIPE_ENRICH_CACHE_TTL (1m0s)"},
		{name: "negative timeout", env: map[string]string{"MAILPIPE_ENRICH_CACHE_TIMEOUT": "-1s"}, want: "MAILPIPE_ENRICH_CACHE_TIMEOUT must not be negative"},
		{
			name: "lookups longer than an attempt",
			env:  map[string]string{"MAILPIPE_ENRICH_LOOKUP_TIMEOUT": "4s", "MAILPIPE_STAGE_ATTEMPT_TIMEOUT": "4s"},
			want: "must stay under the stage attempt timeout (4s)",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := envconf.Load[pipeline.EnricherConfig](app.Env{Getenv: func(k string) string { return tt.env[k] }}, pipeline.EnvPrefix)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Load = %v; want an error with %q", err, tt.want)
			case tt.want != "":
				return
			}
			if tt.name == "defaults" && (cfg.LookupTimeout != 500*time.Millisecond || cfg.CacheTTL != time.Hour ||
				cfg.NegativeCacheTTL != 10*time.Minute || cfg.BreakerFailures != 5 || cfg.LookupTable || cfg.RoutesEnabled) {
				t.Errorf("defaults %+v", cfg)
			}
			if tt.name == "everything set" && (cfg.CompaniesFile != "/data/companies.csv" || !cfg.LookupTable ||
				cfg.LookupTimeout != 250*time.Millisecond || cfg.BreakerFailures != -1 || !cfg.RoutesEnabled) {
				t.Errorf("loaded %+v", cfg)
			}
		})
	}
}

// The enricher service as wired for production: the dataset and free-mail files, the lookup
// table and cache in Redis, and the route table for consent flags, on an embedded cluster.
func TestEnricherService(t *testing.T) {
	// given
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
	route, err := codec.Encode(kafka.TopicRoutes, &events.Route{
		ID: "r-news", Pattern: "news@in.example.com", Tenant: "acme", Consent: map[string]bool{"marketing": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	kafkatest.Produce(t, kcfg.Brokers, &kgo.Record{Topic: kafka.TopicRoutes, Key: []byte("r-news"), Value: route})

	mr := miniredis.RunT(t)
	mr.HSet("mailpipe:crm:contact:ann@acme.com", "owner", "jo@seller.example", "id:hubspot.contact", "101")
	dir := t.TempDir()
	companies := filepath.Join(dir, "companies.jsonl")
	freemailFile := filepath.Join(dir, "freemail.txt")
	if err := os.WriteFile(companies, []byte("{\"domain\":\"acme.com\",\"name\":\"Acme Corp\",\"size\":120}\nnot json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(freemailFile, []byte("mail.ee\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := pipeline.Common{Kafka: kcfg, AdminAddr: "127.0.0.1:0", Redis: redisconn.Config{URL: "redis://" + mr.Addr()}}
	d, err := pipeline.Open(t.Context(), common, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg := pipeline.EnricherConfig{
		StageConfig:   pipeline.StageConfig{Common: common},
		CompaniesFile: companies, FreeMailFile: freemailFile, LookupTable: true, RoutesEnabled: true,
	}
	actors, err := pipeline.Enricher(t.Context(), cfg, d)
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
				t.Errorf("enricher stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("enricher did not stop")
		}
	}()

	// when
	var recs []*kgo.Record
	for _, from := range []string{"ann@eu.acme.com", "ann@acme.com", "pille@mail.ee"} {
		domain := from[strings.IndexByte(from, '@')+1:]
		v, err := codec.Encode(kafka.TopicClassified, &events.Classified{
			Message: events.Parsed{ID: from, RouteID: "r-news", From: &events.Address{Address: from, DomainASCII: domain}},
		})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: kafka.TopicClassified, Key: []byte("t"), Value: v})
	}
	kafkatest.Produce(t, kcfg.Brokers, recs...)

	// then
	out := kafkatest.ConsumeAll(t, kcfg.Brokers, kafka.TopicEnriched, 3, 30*time.Second)
	got := map[string]events.Enrichment{}
	for _, r := range out {
		var e events.Enriched
		if err := codec.Decode(t.Context(), kafka.TopicEnriched, r.Value, &e); err != nil {
			t.Fatal(err)
		}
		got[e.Message.ID] = e.Enrichment
	}
	if en := got["ann@eu.acme.com"]; en.Company == nil || en.Company.Domain != "acme.com" || en.Company.Name != "Acme Corp" || en.Company.Size != "120" ||
		en.Contact.Known || !en.Contact.Consent["marketing"] {
		t.Errorf("ann@eu.acme.com: %+v %+v", en.Contact, en.Company)
	}
	if en := got["ann@acme.com"]; !en.Contact.Known || en.Owner != "jo@seller.example" || en.CRMIds["hubspot.contact"] != "101" || en.Degraded {
		t.Errorf("ann@acme.com: %+v owner %q ids %v", en.Contact, en.Owner, en.CRMIds)
	}
	if en := got["pille@mail.ee"]; en.Company == nil || !en.Company.FreeMail {
		t.Errorf("pille@mail.ee: %+v", en.Company)
	}
	if !mr.Exists("mailpipe:enrich:crm_contact:ann@acme.com") || !mr.Exists("mailpipe:enrich:crm_company:acme.com") {
		t.Errorf("answers not cached: %v", mr.Keys())
	}
}

func TestEnricherServiceConfigErrors(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = kafkatest.NewCluster(t)
	common := pipeline.Common{Kafka: kcfg, AdminAddr: "127.0.0.1:0"}
	d, err := pipeline.Open(t.Context(), common, log)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	allBad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(allBad, []byte("domain,name\nnot a domain,X\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badList := filepath.Join(dir, "freemail.txt")
	if err := os.WriteFile(badList, []byte("localhost\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		cfg  pipeline.EnricherConfig
		want string
	}{
		{"lookup table without redis", pipeline.EnricherConfig{LookupTable: true}, "MAILPIPE_ENRICH_LOOKUP_TABLE needs Redis"},
		{"dataset with no usable row", pipeline.EnricherConfig{CompaniesFile: allBad}, "has no usable row"},
		{"missing dataset", pipeline.EnricherConfig{CompaniesFile: filepath.Join(dir, "missing.csv")}, "opening the company dataset"},
		{"bad free-mail list", pipeline.EnricherConfig{FreeMailFile: badList}, `line 1: "localhost"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.StageConfig = pipeline.StageConfig{Common: common}
			_, err := pipeline.Enricher(t.Context(), tt.cfg, d)
			if !errors.Is(err, app.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Enricher = %v; want a config error with %q", err, tt.want)
			}
		})
	}
}
