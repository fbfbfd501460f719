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
	"github.com/mailpipe/mailpipe/pkg/crm/hubspot"
	"github.com/mailpipe/mailpipe/pkg/crm/localstore"
	"github.com/mailpipe/mailpipe/pkg/crm/pipedrive"
	"github.com/mailpipe/mailpipe/pkg/crm/postgres"
	"github.com/mailpipe/mailpipe/pkg/crm/salesforce"
	"github.com/mailpipe/mailpipe/pkg/crm/webhook"
	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/dedupe/redisdedupe"
	"github.com/mailpipe/mailpipe/pkg/enrich"
	"github.com/mailpipe/mailpipe/pkg/enrich/companydb"
	"github.com/mailpipe/mailpipe/pkg/enrich/freemail"
	"github.com/mailpipe/mailpipe/pkg/enrich/rediscache"
	"github.com/mailpipe/mailpipe/pkg/enrich/redislookup"
	"github.com/mailpipe/mailpipe/pkg/envconf"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/mailauth"
	"github.com/mailpipe/mailpipe/pkg/mime"
	"github.com/mailpipe/mailpipe/pkg/parse"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
	"github.com/mailpipe/mailpipe/pkg/ratelimit/redisratelimit"
	"github.com/mailpipe/mailpipe/pkg/route/kafkaroute"
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
	// Noop is for benchmarks only (make bench-pipeline): the stage forwards every input record
	// unchanged to its output topic instead of doing its work, so the same five Kafka hops can
	// be measured with stages that cost nothing. See noopHandler.
	Noop bool `env:"STAGE_NOOP" usage:"BENCHMARK ONLY: forward each input record unchanged (key, value, headers) to the output topic instead of processing it; the crm-sink writes no CRM"`
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
	// The CRM connectors; each is on when its credentials (or DSN) are set.
	HubSpot    hubspot.Config    `env:"CRM_HUBSPOT"`
	Salesforce salesforce.Config `env:"CRM_SALESFORCE"`
	Pipedrive  pipedrive.Config  `env:"CRM_PIPEDRIVE"`
	Postgres   postgres.Config   `env:"CRM_POSTGRES"`
	// LocalStorePath enables the local JSON-lines store connector (`mailpipe dev`).
	LocalStorePath string `env:"LOCALSTORE_PATH" usage:"file for the local CRM stand-in connector (dev)"`
	// RoutesEnabled follows the route table so that each message's route chooses its CRM
	// targets and shadow mode. It is the variable ingress reads, so one setting turns the route
	// table on for the deployment.
	RoutesEnabled     bool          `env:"ROUTES_ENABLED" usage:"follow the route table on mail.routes.v1: each route's crm_targets and shadow flag choose where its mail is written"`
	RoutesTopic       string        `env:"ROUTES_TOPIC" default:"mail.routes.v1" usage:"compacted topic holding the route table"`
	RoutesLoadTimeout time.Duration `env:"ROUTES_LOAD_TIMEOUT" default:"1m" usage:"how long startup may take to read the route table to its end"`
}

// Parser builds the parser service: mail.raw.v1 → mail.parsed.v1.
func Parser(_ context.Context, cfg ParserConfig, d *Deps) ([]app.Actor, error) {
	opts := []parse.Option{parse.WithMeterProvider(d.Admin.MeterProvider())}
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
	return runStage(cfg.StageConfig, d, "parser", kafka.TopicRaw, kafka.TopicParsed, p.Handle)
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
	opts := []classify.Option{classify.WithSpamThreshold(cfg.SpamThreshold), classify.WithMeterProvider(d.Admin.MeterProvider())}
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
	st, err := runStage(cfg.StageConfig, d, "classifier", kafka.TopicParsed, kafka.TopicClassified, c.Handle)
	if err != nil {
		return nil, err
	}
	return append(actors, st...), nil
}

// EnricherConfig configures the enricher service (docs/enrichment.md). Zero durations and
// counts take the defaults of package enrich, so a config built in code (mailpipe dev) needs
// only the fields it changes.
type EnricherConfig struct {
	StageConfig
	// CompaniesFile is the operator's company dataset; read at start (a restart picks up a new
	// one). Bad rows are logged with their line numbers and left out.
	CompaniesFile string `env:"ENRICH_COMPANIES_FILE" usage:"company dataset, *.csv or *.jsonl with domain, name, size, industry, country (docs/enrichment.md)"`
	// FreeMailFile extends the built-in free-mail list (one domain per line, !domain removes).
	FreeMailFile string `env:"ENRICH_FREEMAIL_FILE" usage:"free-mail domains added to the built-in list, one per line; !domain takes one out"`
	// LookupTable makes the Redis lookup table (package redislookup) the CRM source of known
	// contacts, owners and CRM ids, until a CRM connector offers lookups. Needs Redis.
	LookupTable bool `env:"ENRICH_LOOKUP_TABLE" usage:"look contacts and companies up in the operator-filled Redis lookup table (needs MAILPIPE_REDIS_URL)"`
	// LookupTablePrefix is the key prefix of the lookup table.
	LookupTablePrefix string `env:"ENRICH_LOOKUP_TABLE_PREFIX" default:"mailpipe:crm:" usage:"key prefix of the lookup table"`
	// LookupTimeout is the deadline of one CRM lookup; a source that misses it leaves the record
	// degraded rather than holding it.
	LookupTimeout time.Duration `env:"ENRICH_LOOKUP_TIMEOUT" default:"500ms" usage:"deadline of one CRM lookup; a slower source degrades the record"`
	// CacheTTL and NegativeCacheTTL keep CRM answers in Redis (found and not found); the cache
	// is on whenever Redis is configured.
	CacheTTL         time.Duration `env:"ENRICH_CACHE_TTL" default:"1h" usage:"how long a CRM answer that found something is cached in Redis"`
	NegativeCacheTTL time.Duration `env:"ENRICH_NEGATIVE_CACHE_TTL" default:"10m" usage:"how long a CRM answer that found nothing is cached (at most the cache TTL)"`
	// CacheTimeout bounds one cache read or write; a slower cache is skipped for the lookup.
	CacheTimeout time.Duration `env:"ENRICH_CACHE_TIMEOUT" default:"100ms" usage:"deadline of one enrichment cache read or write"`
	// CachePrefix is the key prefix of the cache; change it to drop every cached answer.
	CachePrefix string `env:"ENRICH_CACHE_PREFIX" default:"mailpipe:enrich:" usage:"key prefix of the enrichment cache"`
	// BreakerFailures is how many CRM lookups in a row may time out or fail before the source is
	// skipped for BreakerCooldown; negative turns the breaker off.
	BreakerFailures int           `env:"ENRICH_BREAKER_FAILURES" default:"5" usage:"CRM lookups failing in a row before the source is skipped for the cool-down; negative disables"`
	BreakerCooldown time.Duration `env:"ENRICH_BREAKER_COOLDOWN" default:"30s" usage:"how long a failing CRM source is skipped before one lookup probes it"`
	// RoutesEnabled follows the route table for the consent flags of each message's route. It is
	// the variable ingress reads, so one setting turns the route table on for the deployment.
	RoutesEnabled     bool          `env:"ROUTES_ENABLED" usage:"follow the route table on mail.routes.v1 and copy each message's route consent flags to its contact"`
	RoutesTopic       string        `env:"ROUTES_TOPIC" default:"mail.routes.v1" usage:"compacted topic holding the route table"`
	RoutesLoadTimeout time.Duration `env:"ROUTES_LOAD_TIMEOUT" default:"1m" usage:"how long startup may take to read the route table to its end"`
}

// withDefaults fills the zero fields a config built in code leaves.
func (c EnricherConfig) withDefaults() EnricherConfig {
	setDuration := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDuration(&c.LookupTimeout, enrich.DefaultLookupTimeout)
	setDuration(&c.CacheTTL, enrich.DefaultCacheTTL)
	setDuration(&c.NegativeCacheTTL, enrich.DefaultNegativeCacheTTL)
	setDuration(&c.CacheTimeout, enrich.DefaultCacheTimeout)
	setDuration(&c.BreakerCooldown, enrich.DefaultBreakerCooldown)
	if c.BreakerFailures == 0 {
		c.BreakerFailures = enrich.DefaultBreakerFailures
	}
	if c.LookupTablePrefix == "" {
		c.LookupTablePrefix = redislookup.DefaultPrefix
	}
	if c.CachePrefix == "" {
		c.CachePrefix = rediscache.DefaultPrefix
	}
	return c
}

// routes returns the route-table section.
func (c EnricherConfig) routes() kafkaroute.Config {
	return kafkaroute.Config{Enabled: c.RoutesEnabled, Topic: c.RoutesTopic, LoadTimeout: c.RoutesLoadTimeout}.WithDefaults()
}

// Validate reports every problem with the enrichment settings, joined.
func (c EnricherConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ENRICH_LOOKUP_TIMEOUT", c.LookupTimeout},
		{"ENRICH_CACHE_TTL", c.CacheTTL},
		{"ENRICH_NEGATIVE_CACHE_TTL", c.NegativeCacheTTL},
		{"ENRICH_CACHE_TIMEOUT", c.CacheTimeout},
		{"ENRICH_BREAKER_COOLDOWN", c.BreakerCooldown},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s_%s must not be negative, got %s", EnvPrefix, d.name, d.v))
		}
	}
	if c.NegativeCacheTTL > c.CacheTTL {
		errs = append(errs, fmt.Errorf("%s_ENRICH_NEGATIVE_CACHE_TTL (%s) must not exceed %s_ENRICH_CACHE_TTL (%s)", EnvPrefix, c.NegativeCacheTTL, EnvPrefix, c.CacheTTL))
	}
	// A message's CRM lookups run in parallel, each after a cache read and before a cache write.
	if worst, attempt := c.LookupTimeout+2*c.CacheTimeout, c.Stage.WithDefaults().AttemptTimeout; worst >= attempt {
		errs = append(errs, fmt.Errorf("%s_ENRICH_LOOKUP_TIMEOUT plus twice %s_ENRICH_CACHE_TIMEOUT (%s) must stay under the stage attempt timeout (%s), or a slow source fails the record instead of degrading it", EnvPrefix, EnvPrefix, worst, attempt))
	}
	if err := c.routes().Validate(); err != nil {
		errs = append(errs, envconf.Prefix("routes", err))
	}
	return errors.Join(errs...)
}

// Enricher builds the enricher service: mail.classified.v1 → mail.enriched.v1. The CRM sources
// and the cache use d.Redis; with routes enabled it reads the route table before it returns.
func Enricher(ctx context.Context, cfg EnricherConfig, d *Deps) ([]app.Actor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, app.ConfigError(err)
	}
	cfg = cfg.withDefaults()
	opts := []enrich.Option{
		enrich.WithLookupTimeout(cfg.LookupTimeout),
		enrich.WithCacheTimeout(cfg.CacheTimeout),
		enrich.WithBreaker(max(cfg.BreakerFailures, 0), cfg.BreakerCooldown),
		enrich.WithMeterProvider(d.Admin.MeterProvider()),
	}
	if cfg.CompaniesFile != "" {
		db, err := companydb.LoadFile(cfg.CompaniesFile)
		if rows, ok := errors.AsType[*companydb.RowsError](err); ok {
			// One bad row in a large dataset must not keep the enricher down; an operator
			// reads the lines to fix in the log.
			d.Log.WarnContext(ctx, "company dataset: rows left out", "file", cfg.CompaniesFile,
				"bad_rows", len(rows.Problems), "companies", db.Len(), "problems", rows.Error())
			if db.Len() == 0 {
				return nil, app.ConfigError(fmt.Errorf("company dataset %s has no usable row: %w", cfg.CompaniesFile, err))
			}
		} else if err != nil {
			return nil, app.ConfigError(err)
		}
		d.Log.InfoContext(ctx, "company dataset loaded", "file", cfg.CompaniesFile, "companies", db.Len())
		opts = append(opts, enrich.WithCompanies(db))
	}
	if cfg.FreeMailFile != "" {
		l, err := freemail.LoadFile(cfg.FreeMailFile)
		if err != nil {
			return nil, app.ConfigError(err)
		}
		added, removed := l.Changes()
		d.Log.InfoContext(ctx, "free-mail list loaded", "file", cfg.FreeMailFile, "added", added, "removed", removed)
		opts = append(opts, enrich.WithFreeMail(l))
	}
	if cfg.LookupTable {
		if d.Redis == nil {
			return nil, app.ConfigError(errors.New("MAILPIPE_ENRICH_LOOKUP_TABLE needs Redis: set MAILPIPE_REDIS_URL"))
		}
		t := redislookup.New(d.Redis, redislookup.WithPrefix(cfg.LookupTablePrefix))
		opts = append(opts, enrich.WithContactLookup(t), enrich.WithCompanyLookup(t))
	}
	if d.Redis != nil {
		opts = append(opts, enrich.WithCache(rediscache.New(d.Redis, rediscache.WithPrefix(cfg.CachePrefix)), cfg.CacheTTL, cfg.NegativeCacheTTL))
	}
	var actors []app.Actor
	if rc := cfg.routes(); rc.Enabled {
		follower, err := kafkaroute.Open(ctx, rc, cfg.Kafka, d.Codec, d.Log)
		if err != nil {
			return nil, err
		}
		d.Admin.Register("routes", follower.Check)
		table := follower.Table()
		opts = append(opts, enrich.WithRoutes(func(id string) (events.Route, bool) { return table.Load().Get(id) }))
		// Started first, stopped last: the stage never runs on a closed table.
		actors = append(actors, follower.Actor())
	}
	e, err := enrich.New(d.Codec, d.Log, opts...)
	if err != nil {
		return nil, app.ConfigError(err)
	}
	st, err := runStage(cfg.StageConfig, d, "enricher", kafka.TopicClassified, kafka.TopicEnriched, e.Handle)
	if err != nil {
		return nil, err
	}
	return append(actors, st...), nil
}

// CRMSink builds the crm-sink service: mail.enriched.v1 → connectors → mail.crm.v1 and
// mail.lake.v1. Connectors are chosen explicitly here, never registered through init().
// onWrite, if not nil, is called for every entry the local store writes (dev logs them).
func CRMSink(ctx context.Context, cfg SinkConfig, d *Deps, onWrite func(localstore.Entry)) ([]app.Actor, error) {
	var conns []crm.Connector
	if cfg.Webhook.URL != "" {
		w, err := webhook.New(cfg.Webhook, d.Log)
		if err != nil {
			return nil, app.ConfigError(fmt.Errorf("webhook: %w", err))
		}
		conns = append(conns, w)
	}
	if c := cfg.HubSpot; c.Token != "" || c.RefreshToken != "" {
		h, err := hubspot.New(c, d.Log)
		if err != nil {
			return nil, app.ConfigError(fmt.Errorf("hubspot: %w", err))
		}
		conns = append(conns, h)
	}
	if cfg.Salesforce.ClientID != "" {
		sf, err := salesforce.New(cfg.Salesforce, d.Log)
		if err != nil {
			return nil, app.ConfigError(fmt.Errorf("salesforce: %w", err))
		}
		conns = append(conns, sf)
	}
	if c := cfg.Pipedrive; c.APIToken != "" || c.AccessToken != "" {
		var opts []pipedrive.Option
		if d.Blobs != nil {
			opts = append(opts, pipedrive.WithBlobs(d.Blobs))
		}
		pd, err := pipedrive.New(c, d.Log, opts...)
		if err != nil {
			return nil, app.ConfigError(fmt.Errorf("pipedrive: %w", err))
		}
		conns = append(conns, pd)
	}
	if cfg.Postgres.DSN != "" {
		pg, err := postgres.New(cfg.Postgres, d.Log) //nolint:contextcheck // New does not dial (crm.Factory contract); Migrate below takes ctx
		if err != nil {
			return nil, app.ConfigError(fmt.Errorf("postgres: %w", err))
		}
		// Migrations at start, so bad credentials or a broken schema stop the service now.
		if err := pg.Migrate(ctx); err != nil {
			_ = pg.Close(ctx)
			return nil, fmt.Errorf("postgres: %w", err)
		}
		conns = append(conns, pg)
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
		return nil, app.ConfigError(errors.New("crm-sink: no connector configured (set MAILPIPE_WEBHOOK_URL, MAILPIPE_CRM_HUBSPOT_TOKEN, MAILPIPE_CRM_SALESFORCE_CLIENT_ID, MAILPIPE_CRM_PIPEDRIVE_API_TOKEN, MAILPIPE_CRM_POSTGRES_DSN or MAILPIPE_LOCALSTORE_PATH)"))
	}
	var store dedupe.Store
	var rates ratelimit.Factory
	if d.Redis != nil {
		store = redisdedupe.New(d.Redis, redisdedupe.WithPrefix("mailpipe:sink:"))
		// Replicas share one request budget per target: the limits are the CRM's, not ours.
		rates = redisratelimit.Factory(d.Redis, redisratelimit.WithPrefix("mailpipe:sink:ratelimit:"))
	} else {
		store = dedupe.NewMemory()
	}
	opts := append(cfg.Sink.Options(rates), sink.WithTracerProvider(d.Tracers), sink.WithMeterProvider(d.Admin.MeterProvider()))
	if topic := cfg.Stage.DLQTopic; topic != "" {
		opts = append(opts, sink.WithDLQTopic(topic))
	}
	var actors []app.Actor
	if rc := (kafkaroute.Config{Enabled: cfg.RoutesEnabled, Topic: cfg.RoutesTopic, LoadTimeout: cfg.RoutesLoadTimeout}.WithDefaults()); rc.Enabled {
		follower, err := kafkaroute.Open(ctx, rc, cfg.Kafka, d.Codec, d.Log)
		if err != nil {
			return nil, err
		}
		d.Admin.Register("routes", follower.Check)
		table := follower.Table()
		opts = append(opts, sink.WithRoutes(sink.RoutesFunc(func(id string) (events.Route, bool) { return table.Load().Get(id) })))
		// Started first, stopped last: the stage never runs on a closed table.
		actors = append(actors, follower.Actor())
	}
	s, err := sink.New(d.Codec, conns, store, d.Log, opts...)
	if err != nil {
		return nil, app.ConfigError(fmt.Errorf("sink: %w", err))
	}
	st, err := runStage(cfg.StageConfig, d, "crm-sink", kafka.TopicEnriched, kafka.TopicCRM, s.Handle)
	if err != nil {
		return nil, err
	}
	actors = append(actors, st...)
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

func runStage(cfg StageConfig, d *Deps, name, input, output string, h stage.Handler) ([]app.Actor, error) {
	if cfg.Noop {
		d.Log.Warn("MAILPIPE_STAGE_NOOP is on: benchmark mode, records are forwarded unprocessed", "stage", name, "output", output)
		h = noopHandler(output)
	}
	sc := cfg.Stage
	sc.Name = name
	sc.InputTopics = []string{input}
	st, err := stage.New(sc, cfg.Kafka, h, d.Log, stage.WithMeterProvider(d.Admin.MeterProvider()),
		stage.WithTracerProvider(d.Tracers), stage.WithPropagator(d.Propagator))
	if err != nil {
		return nil, app.ConfigError(fmt.Errorf("%s stage: %w", name, err))
	}
	return []app.Actor{st.Actor()}, nil
}
