package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/classify"
	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/localstore"
	"github.com/mailpipe/mailpipe/pkg/crm/webhook"
	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/dedupe/redisdedupe"
	"github.com/mailpipe/mailpipe/pkg/enrich"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/mailauth"
	"github.com/mailpipe/mailpipe/pkg/mime"
	"github.com/mailpipe/mailpipe/pkg/parse"
	"github.com/mailpipe/mailpipe/pkg/rules"
	"github.com/mailpipe/mailpipe/pkg/sink"
	"github.com/mailpipe/mailpipe/pkg/spam/rspamd"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

// StageConfig configures a Kafka→Kafka stage service (parser, classifier, enricher).
type StageConfig struct {
	Common
	// Stage tunes the transactional loop (MAILPIPE_STAGE_*); name and input topic are fixed
	// per service.
	Stage stage.Config `env:"STAGE"`
}

// ParserConfig configures the parser service.
type ParserConfig struct {
	StageConfig
	// Auth turns on SPF, DKIM and DMARC verification with the system DNS resolver. Off by
	// default until the deployment's resolver is known to answer quickly: every lookup runs on
	// the record's path, inside the stage's per-attempt timeout.
	Auth bool `env:"PARSER_AUTH" usage:"verify SPF, DKIM and DMARC with the system DNS resolver"`
	// TrustedAuthServIDs are the authserv-ids whose Authentication-Results headers are kept.
	TrustedAuthServIDs []string `env:"PARSER_TRUSTED_AUTHSERV_IDS" usage:"authserv-ids whose Authentication-Results headers are preserved, comma-separated"`
	// MaxDKIMSignatures caps the DKIM signatures verified per message (each costs a DNS query
	// and a pass over the body); the rest read permerror and the record is partial.
	MaxDKIMSignatures int `env:"PARSER_MAX_DKIM_SIGNATURES" default:"5" usage:"most DKIM signatures verified per message"`
	// Limits are the MIME-bomb limits; unset ones keep mime.DefaultLimits.
	Limits mime.Limits `env:"PARSER"`
}

// SinkConfig configures the crm-sink service. At least one connector must be configured.
type SinkConfig struct {
	StageConfig
	Sink    sink.Config    `env:"SINK"`
	Webhook webhook.Config `env:"WEBHOOK"`
	// LocalStorePath enables the local JSON-lines store connector (`mailpipe dev`).
	LocalStorePath string `env:"LOCALSTORE_PATH" usage:"file for the local CRM stand-in connector (dev)"`
}

// Parser builds the parser service: mail.raw.v1 → mail.parsed.v1.
func Parser(_ context.Context, cfg ParserConfig, d *Deps) ([]app.Actor, error) {
	var opts []parse.Option
	if cfg.Auth {
		v, err := mailauth.New(mailauth.Config{
			Resolver: net.DefaultResolver, TrustedAuthServIDs: cfg.TrustedAuthServIDs,
			MaxDKIMSignatures: cfg.MaxDKIMSignatures, Logger: d.Log,
		})
		if err != nil {
			return nil, app.ConfigError(fmt.Errorf("parser auth: %w", err))
		}
		opts = append(opts, parse.WithAuth(v))
	}
	lim := cfg.Limits
	if err := mimeLimits(&lim); err != nil {
		return nil, app.ConfigError(fmt.Errorf("parser limits: %w", err))
	}
	opts = append(opts, parse.WithLimits(lim))
	p := parse.New(d.Codec, d.Blobs, d.Log, opts...)
	return runStage(cfg.StageConfig, d, "parser", kafka.TopicRaw, p.Handle)
}

// mimeLimits fills the unset limits with their defaults and checks the result, so that a bad
// setting stops the service at start with a message rather than being replaced at run time.
func mimeLimits(l *mime.Limits) error {
	p, err := mime.NewParser(mime.WithLimits(*l))
	if err != nil {
		return err
	}
	*l = p.Limits()
	return nil
}

// ClassifierConfig configures the classifier service.
type ClassifierConfig struct {
	StageConfig
	// RspamdURL adds rspamd's verdict to the spam score when set.
	RspamdURL string `env:"RSPAMD_URL" usage:"rspamd worker URL (http://host:11333) whose /checkv2 verdict is added to the spam score (optional)"`
	// RspamdTimeout bounds one rspamd check; a slow or failing rspamd is noted on the record
	// and the message is classified without it.
	RspamdTimeout time.Duration `env:"RSPAMD_TIMEOUT" default:"5s" usage:"deadline of one rspamd check"`
	// RulesFile is the lead scoring and routing rules file (docs/rules.md); the embedded
	// default rules when empty. It is polled and reloaded when it changes; a file that does not
	// validate is logged and the rules in use are kept.
	RulesFile string `env:"RULES_FILE" usage:"lead scoring and routing rules file (YAML, docs/rules.md); default rules when empty"`
	// RulesPoll is how often the rules file is checked for changes.
	RulesPoll time.Duration `env:"RULES_POLL" default:"10s" usage:"how often the rules file is checked for changes"`
	// SpamThreshold is the spam score from which a message otherwise human is spam.
	SpamThreshold float64 `env:"SPAM_THRESHOLD" default:"8" usage:"spam score from which a message is classified spam"`
}

// Classifier builds the classifier service: mail.parsed.v1 → mail.classified.v1.
func Classifier(ctx context.Context, cfg ClassifierConfig, d *Deps) ([]app.Actor, error) {
	opts := []classify.Option{classify.WithSpamThreshold(cfg.SpamThreshold)}
	if cfg.RspamdURL != "" {
		c, err := rspamd.New(cfg.RspamdURL, rspamd.WithHTTPClient(&http.Client{Timeout: cfg.RspamdTimeout}))
		if err != nil {
			return nil, app.ConfigError(err)
		}
		opts = append(opts, classify.WithRspamd(c))
	}
	var actors []app.Actor
	if cfg.RulesFile != "" {
		// A bad file at start is a configuration error: there is no good set to keep yet.
		set, err := rules.LoadFile(cfg.RulesFile)
		if err != nil {
			return nil, app.ConfigError(fmt.Errorf("rules file: %w", err))
		}
		h := rules.NewHolder(set, d.Log)
		if _, err := h.Load(ctx, cfg.RulesFile); err != nil {
			return nil, app.ConfigError(fmt.Errorf("rules file: %w", err))
		}
		opts = append(opts, classify.WithRules(h))
		actors = append(actors, app.Actor{
			Name: "rules-watch",
			Run: func(ctx context.Context) error {
				err := h.Watch(ctx, cfg.RulesFile, cfg.RulesPoll)
				if errors.Is(err, context.Canceled) {
					return nil
				}
				return err
			},
		})
	}
	c, err := classify.New(d.Codec, d.Log, opts...)
	if err != nil {
		return nil, err
	}
	st, err := runStage(cfg.StageConfig, d, "classifier", kafka.TopicParsed, c.Handle)
	if err != nil {
		return nil, err
	}
	return append(actors, st...), nil
}

// Enricher builds the enricher service: mail.classified.v1 → mail.enriched.v1.
func Enricher(_ context.Context, cfg StageConfig, d *Deps) ([]app.Actor, error) {
	e := enrich.New(d.Codec, d.Log)
	return runStage(cfg, d, "enricher", kafka.TopicClassified, e.Handle)
}

// CRMSink builds the crm-sink service: mail.enriched.v1 → connectors → mail.crm.v1 and
// mail.lake.v1. Connectors are chosen explicitly here, never registered through init().
// onWrite, if not nil, is called for every entry the local store writes (dev logs them).
func CRMSink(_ context.Context, cfg SinkConfig, d *Deps, onWrite func(localstore.Entry)) ([]app.Actor, error) {
	var conns []crm.Connector
	if cfg.Webhook.URL != "" {
		w, err := webhook.New(cfg.Webhook, d.Log)
		if err != nil {
			return nil, app.ConfigError(fmt.Errorf("webhook: %w", err))
		}
		conns = append(conns, w)
	}
	if cfg.LocalStorePath != "" {
		var opts []localstore.Option
		if onWrite != nil {
			opts = append(opts, localstore.WithOnWrite(onWrite))
		}
		ls, err := localstore.Open(cfg.LocalStorePath, opts...)
		if err != nil {
			return nil, fmt.Errorf("opening the local store: %w", err)
		}
		conns = append(conns, ls)
	}
	if len(conns) == 0 {
		return nil, app.ConfigError(errors.New("crm-sink: no connector configured (set MAILPIPE_WEBHOOK_URL or MAILPIPE_LOCALSTORE_PATH)"))
	}
	var store dedupe.Store
	if d.Redis != nil {
		store = redisdedupe.New(d.Redis, redisdedupe.WithPrefix("mailpipe:sink:"))
	} else {
		store = dedupe.NewMemory()
	}
	s, err := sink.New(d.Codec, conns, store, d.Log, cfg.Sink.Options()...)
	if err != nil {
		return nil, app.ConfigError(fmt.Errorf("sink: %w", err))
	}
	actors, err := runStage(cfg.StageConfig, d, "crm-sink", kafka.TopicEnriched, s.Handle)
	if err != nil {
		return nil, err
	}
	release := app.Hold("connectors", func(ctx context.Context) error {
		var errs []error
		for _, c := range conns {
			if cl, ok := c.(crm.Closer); ok {
				errs = append(errs, cl.Close(ctx))
			}
		}
		return errors.Join(errs...)
	})
	return append([]app.Actor{release}, actors...), nil
}

func runStage(cfg StageConfig, d *Deps, name, input string, h stage.Handler) ([]app.Actor, error) {
	sc := cfg.Stage
	sc.Name = name
	sc.InputTopics = []string{input}
	st, err := stage.New(sc, cfg.Kafka, h, d.Log, stage.WithMeterProvider(d.Admin.MeterProvider()))
	if err != nil {
		return nil, app.ConfigError(fmt.Errorf("%s stage: %w", name, err))
	}
	return []app.Actor{st.Actor()}, nil
}
