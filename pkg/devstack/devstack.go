// Package devstack runs the whole pipeline in one process for `mailpipe dev`: an embedded Kafka
// (franz-go's kfake, listening on a real port so kcat and `mailpipe tail` can attach), an
// embedded Redis (miniredis), a blob directory, a local JSON-lines file standing in for the CRM,
// and a self-signed certificate (TLSCertFile in Dir) so the SMTP listener offers STARTTLS as
// production does. Every stage is built by package pipeline with the same constructors and
// config structs as the production services, so dev exercises the production code paths.
package devstack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/blob"
	"github.com/mailpipe/mailpipe/pkg/console"
	"github.com/mailpipe/mailpipe/pkg/crm/localstore"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
	"github.com/mailpipe/mailpipe/pkg/redisconn"
	"github.com/mailpipe/mailpipe/pkg/sink"
	"github.com/mailpipe/mailpipe/pkg/spam"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

// Config configures the dev stack. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// Dir holds the blob directory and the local CRM file.
	Dir string
	// KafkaAddr is where the embedded Kafka listens (kcat -b …).
	KafkaAddr string
	// RedisAddr is where the embedded Redis listens.
	RedisAddr string
	// SMTPAddr, HTTPAddr and AdminAddr are the ingress and admin listeners.
	SMTPAddr, HTTPAddr, AdminAddr string
	// Domains are accepted by ingress.
	Domains []string
	// APIKey authenticates POST /v1/messages.
	APIKey string
	// WebhookURL and WebhookSecret, when set, add the signed-webhook connector next to the
	// local store.
	WebhookURL, WebhookSecret string
	// Partitions of each topic.
	Partitions int32
}

// DefaultConfig is what `mailpipe dev` runs with no flags.
func DefaultConfig() Config {
	return Config{
		Dir:        ".mailpipe-dev",
		KafkaAddr:  "127.0.0.1:9092",
		RedisAddr:  "127.0.0.1:6380",
		SMTPAddr:   "127.0.0.1:2525",
		HTTPAddr:   "127.0.0.1:8080",
		AdminAddr:  "127.0.0.1:9090",
		Domains:    []string{"in.example.com", "localhost"},
		APIKey:     "dev-api-key",
		Partitions: 3,
	}
}

// Run starts everything, prints the addresses to out, and blocks until ctx is cancelled; then
// it stops intake first and the embedded Kafka last.
func Run(ctx context.Context, cfg Config, out io.Writer, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "blobs"), 0o750); err != nil {
		return fmt.Errorf("creating %s: %w", cfg.Dir, err)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", cfg.Dir, err)
	}
	certFile, _, generated, err := ensureCert(dir, time.Now())
	if err != nil {
		return fmt.Errorf("preparing the dev STARTTLS certificate: %w", err)
	}
	if generated {
		log.InfoContext(ctx, "generated a self-signed STARTTLS certificate", slog.String("file", certFile))
	}
	port, err := portOf(cfg.KafkaAddr)
	if err != nil {
		return err
	}
	cluster, err := kfake.NewCluster(kfake.Ports(port), kfake.NumBrokers(1))
	if err != nil {
		return fmt.Errorf("starting embedded kafka on %s: %w", cfg.KafkaAddr, err)
	}
	actors := []app.Actor{app.Hold("embedded-kafka", func(context.Context) error { cluster.Close(); return nil })}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr(cfg.RedisAddr); err != nil {
		cluster.Close()
		return fmt.Errorf("starting embedded redis on %s: %w", cfg.RedisAddr, err)
	}
	actors = append(actors, app.Hold("embedded-redis", func(context.Context) error { mr.Close(); return nil }))

	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = cluster.ListenAddrs()
	kcfg.ClientID = "mailpipe-dev"
	if err := applyTopics(ctx, kcfg, cfg.Partitions, log); err != nil {
		cluster.Close()
		mr.Close()
		return err
	}
	common := pipeline.Common{
		Kafka:     kcfg,
		AdminAddr: cfg.AdminAddr,
		Redis:     redisconn.Config{URL: "redis://" + mr.Addr() + "/0"},
		Blob:      blob.Config{URL: "file://" + filepath.Join(dir, "blobs")},
	}
	built, err := build(ctx, cfg, common, dir, out, log)
	if err != nil {
		cluster.Close()
		mr.Close()
		return err
	}
	actors = append(actors, built...)
	fmt.Fprintf(out, `mailpipe dev is running
  SMTP      %s   (swaks --server %s --to support@%s)
  HTTP      http://%s/v1/messages   (Authorization: Bearer %s)
  Kafka     %s   (kcat -b %s -L; mailpipe tail --brokers %s mail.parsed.v1)
  Redis     %s
  admin     http://%s/readyz  /metrics
  console   http://%s/console/   (overview, message lookup, dead letters)
  CRM store %s
  STARTTLS  %s   (self-signed; swaks --tls --server %s --to support@%s)
`, cfg.SMTPAddr, cfg.SMTPAddr, cfg.Domains[0], cfg.HTTPAddr, cfg.APIKey, kcfg.Brokers[0], kcfg.Brokers[0],
		kcfg.Brokers[0], mr.Addr(), cfg.AdminAddr, cfg.AdminAddr, filepath.Join(dir, "crm.jsonl"), certFile, cfg.SMTPAddr, cfg.Domains[0])
	return app.Run(ctx, log, actors...)
}

func build(ctx context.Context, cfg Config, common pipeline.Common, dir string, out io.Writer, log *slog.Logger) ([]app.Actor, error) {
	d, err := pipeline.Open(ctx, common, log)
	if err != nil {
		return nil, err
	}
	actors := d.Actors()
	// The ops console on the admin port (docs/console.md).
	con, err := console.New(console.Config{
		NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) { return kafka.NewClient(common.Kafka, log, opts...) },
		Decoder:   d.Codec,
		Log:       log,
	})
	if err != nil {
		return nil, err
	}
	con.Mount(d.Admin)
	actors = append(actors, con.Actor())

	// Stages are built before ingress so that intake, started last, is stopped first.
	stageCfg := pipeline.StageConfig{Common: common, Stage: stage.Config{MaxPollRecords: 100}}
	a, err := pipeline.Parser(ctx, pipeline.ParserConfig{StageConfig: stageCfg}, d)
	if err != nil {
		return nil, err
	}
	actors = append(actors, a...)
	a, err = pipeline.Classifier(ctx, pipeline.ClassifierConfig{StageConfig: stageCfg, SpamThreshold: spam.DefaultThreshold}, d)
	if err != nil {
		return nil, err
	}
	actors = append(actors, a...)
	// The lookup table is on so that a newcomer can HSET a contact into the embedded Redis and
	// see it come out known (docs/enrichment.md).
	a, err = pipeline.Enricher(ctx, pipeline.EnricherConfig{StageConfig: stageCfg, LookupTable: true}, d)
	if err != nil {
		return nil, err
	}
	actors = append(actors, a...)
	sinkCfg := pipeline.SinkConfig{
		StageConfig:    stageCfg,
		Sink:           sink.Config{LakeSalt: "mailpipe-dev-lake-salt"},
		LocalStorePath: filepath.Join(dir, "crm.jsonl"),
	}
	if cfg.WebhookURL != "" {
		sinkCfg.Webhook.URL = cfg.WebhookURL
		sinkCfg.Webhook.Secrets = []string{cfg.WebhookSecret}
	}
	a, err = pipeline.CRMSink(ctx, sinkCfg, d, func(e localstore.Entry) {
		log.InfoContext(ctx, "message reached the CRM store", "id", e.ID, "external_id", e.ExternalID, "subject", e.Subject, "kind", e.Kind)
	})
	if err != nil {
		return nil, err
	}
	actors = append(actors, a...)

	ingCfg := pipeline.IngressConfig{Common: common, Ingest: ingest.DefaultConfig(), SMTP: smtpd.DefaultConfig(), HTTP: httpd.DefaultConfig(), HTTPAddr: cfg.HTTPAddr}
	ingCfg.Ingest.Domains = cfg.Domains
	ingCfg.SMTP.Addr = cfg.SMTPAddr
	// STARTTLS with the self-signed certificate Run made sure of.
	ingCfg.SMTP.TLSCertFile, ingCfg.SMTP.TLSKeyFile = filepath.Join(dir, TLSCertFile), filepath.Join(dir, TLSKeyFile)
	ingCfg.HTTP.APIKeySHA256 = []string{httpd.HashKey(cfg.APIKey)}
	a, err = pipeline.Ingress(ctx, ingCfg, d)
	if err != nil {
		return nil, err
	}
	return append(actors, a...), nil
}

func applyTopics(ctx context.Context, kcfg kafka.Config, partitions int32, log *slog.Logger) error {
	adm, err := kafka.NewAdmin(kcfg, log)
	if err != nil {
		return err
	}
	defer adm.Close()
	tc := kafka.DefaultTopicsConfig()
	tc.Partitions = partitions
	if err := kafka.ApplyTopics(ctx, adm, kafka.TopicSpecs(tc)); err != nil {
		return fmt.Errorf("creating topics on embedded kafka: %w", err)
	}
	return nil
}

func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("parsing address %q: %w", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return 0, fmt.Errorf("parsing port of %q: %w", addr, err)
	}
	return n, nil
}
