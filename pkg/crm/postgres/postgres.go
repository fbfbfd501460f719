// Package postgres is the crm connector that writes enriched messages to PostgreSQL, into the
// lead-capture data model: company, contact, lead (one per inbound conversation), message and
// event_log (the lead's timeline). The schema ships as embedded, versioned migrations that the
// connector applies before its first write (see [Connector.Migrate]). docs/crm/postgres.md
// describes the model and the time-to-first-response query it answers.
//
// # Idempotency
//
// Every row has a natural key with a unique constraint, and every write is an
// INSERT … ON CONFLICT upsert by it: company (tenant, domain), contact (tenant, email), lead
// (tenant, thread_key), message (tenant, external_id), event_log (tenant, dedupe_key). One
// message is one transaction. Updates are conditional (… WHERE the row differs), so a replay
// that brings nothing new writes nothing: the outcome is created when the message row was
// inserted (xmax = 0 on the upsert's RETURNING), updated when any row changed, and deduped
// otherwise.
//
// # Errors
//
// PostgreSQL errors are classified by SQLSTATE: connection, resource, lock and serialization
// failures are crm_5xx (retryable), a cancelled statement is timeout, authorization failures are
// auth, data and integrity violations are crm_4xx (the same record would fail again), and
// undefined objects or syntax errors are internal. Errors without a server answer (dial, network)
// are left to crm.ClassifyTransport (timeouts) and are otherwise retryable.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// Defaults of [Config].
const (
	DefaultName     = "postgres"
	DefaultSchema   = "public"
	DefaultMaxConns = 4
	DefaultTimeout  = 10 * time.Second
)

// Keys of Result.ObjectIDs: the primary keys of the rows written.
const (
	ObjectCompany = "company"
	ObjectContact = "contact"
	ObjectLead    = "lead"
	ObjectMessage = "message"
)

// Config configures one Postgres target. Load it with envconf under a section such as
// `env:"CRM_POSTGRES"` (MAILPIPE_CRM_POSTGRES_DSN, …).
type Config struct {
	// Name is the target name (dedupe namespace, mail.crm.v1 target); default "postgres".
	Name string `env:"NAME" default:"postgres" usage:"target name of the Postgres connector"`
	// DSN is a libpq connection string or URL, e.g.
	// postgres://mailpipe:…@db:5432/leads?sslmode=verify-full. Required.
	DSN string `env:"DSN" usage:"PostgreSQL connection string (URL or key=value)"`
	// Schema holds the tables and schema_migrations; created when missing (unless "public").
	// Default "public".
	Schema string `env:"SCHEMA" default:"public" usage:"schema of the lead-capture tables"`
	// MaxConns bounds the connection pool; default 4.
	MaxConns int `env:"MAX_CONNS" default:"4" usage:"largest number of pooled connections"`
	// OutboundDomains are the tenant's own mail domains: a message from one of them is the
	// team writing to a lead (a reply copied to the pipeline), stored as direction outbound and
	// logged as a response; it creates no contact, company or lead.
	OutboundDomains []string `env:"OUTBOUND_DOMAINS" usage:"own mail domains; their messages are outbound responses, comma-separated"`
	// Timeout bounds one upsert (one transaction); default 10s.
	Timeout time.Duration `env:"TIMEOUT" default:"10s" usage:"timeout of one upsert transaction"`
}

// schemaName is what Schema may be: a plain lower-case identifier, so it needs no quoting
// anywhere it appears.
var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Validate reports every problem of c, one per line.
func (c Config) Validate() error {
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("dsn is required"))
	} else if _, err := pgxpool.ParseConfig(c.DSN); err != nil {
		// pgconn's parse errors repeat the connection string, password included.
		errs = append(errs, errors.New("dsn is not a valid PostgreSQL connection string"))
	}
	if c.Schema != "" && !schemaName.MatchString(c.Schema) {
		errs = append(errs, errors.New("schema must be a lower-case identifier ([a-z_][a-z0-9_]*)"))
	}
	if c.MaxConns < 0 {
		errs = append(errs, errors.New("max_conns must not be negative"))
	}
	for _, d := range c.OutboundDomains {
		if strings.TrimSpace(d) == "" || strings.ContainsAny(d, "@ ") {
			errs = append(errs, fmt.Errorf("outbound_domains: %q is not a domain", d))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// Connector writes messages to PostgreSQL. It is safe for concurrent use.
type Connector struct {
	name     string
	schema   string
	outbound map[string]bool
	timeout  time.Duration
	pool     *pgxpool.Pool
	log      *slog.Logger

	migrateSem chan struct{} // held while migrating
	migrated   bool          // guarded by migrateSem

	closeOnce sync.Once
	closed    chan struct{} // closed once the pool is
}

var (
	_ crm.Connector = (*Connector)(nil)
	_ crm.Closer    = (*Connector)(nil)
)

// New validates cfg and returns a connector. It does not connect: the pool dials on first use,
// and the first Upsert applies the migrations (call Migrate at start to fail early instead).
// Close releases the pool.
func New(cfg Config, log *slog.Logger) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuring postgres connector: %w", err)
	}
	if log == nil {
		return nil, errors.New("configuring postgres connector: logger is required")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	pc, _ := pgxpool.ParseConfig(cfg.DSN) // validated above
	pc.MaxConns = int32(min(cfg.MaxConns, 1<<16))
	// Unqualified names in the statements resolve to the configured schema only.
	pc.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
	pc.ConnConfig.RuntimeParams["application_name"] = "mailpipe-crm-sink"
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("configuring postgres connector: creating the pool: %w", err)
	}
	c := &Connector{
		name:     cfg.Name,
		schema:   cfg.Schema,
		outbound: map[string]bool{},
		timeout:  cfg.Timeout,
		pool:     pool,
		log:      log.With(slog.String("target", cfg.Name)),

		migrateSem: make(chan struct{}, 1),
		closed:     make(chan struct{}),
	}
	for _, d := range cfg.OutboundDomains {
		c.outbound[strings.ToLower(strings.TrimSpace(d))] = true
	}
	return c, nil
}

// Name returns the target name.
func (c *Connector) Name() string { return c.name }

// Close closes the pool, waiting for connections in use to be returned, at most until ctx ends.
// It is idempotent.
func (c *Connector) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		go func() {
			c.pool.Close()
			close(c.closed)
		}()
	})
	select {
	case <-c.closed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("closing the postgres pool: %w", ctx.Err())
	}
}

// Upsert writes rec in one transaction (see the package doc for the outcome). ObjectIDs holds
// the ids of the company, contact and lead rows involved (when there are such) and of the
// message row. Attempts is 1. Errors are classified (see the package doc).
func (c *Connector) Upsert(ctx context.Context, rec *events.Enriched) (crm.Result, error) {
	id := rec.Message.ExternalID
	if id == "" {
		return crm.Result{}, failure.New(failure.Schema, "writing to postgres: message has no external id")
	}
	if err := ctx.Err(); err != nil {
		return crm.Result{}, crm.ClassifyTransport(fmt.Errorf("writing message %s to postgres: %w", id, err))
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.Migrate(ctx); err != nil {
		return crm.Result{}, err
	}
	var res crm.Result
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		var err error
		res, err = c.write(ctx, tx, newRow(rec, c.outbound))
		return err
	})
	if err != nil {
		return crm.Result{Attempts: 1}, fmt.Errorf("writing message %s to postgres: %w", id, classify(err))
	}
	res.Attempts = 1
	return res, nil
}
