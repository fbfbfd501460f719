package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// migrationFiles holds the schema migrations, named NNNN_description.sql; NNNN is the version.
// Files are only ever added: an applied migration is never edited.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one embedded migration.
type migration struct {
	version int64
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations by version.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	var out []migration
	for _, p := range names {
		base := path.Base(p)
		num, _, ok := strings.Cut(strings.TrimSuffix(base, ".sql"), "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", base)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", base, err)
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return int(a.version - b.version) })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", out[i-1].name, out[i].name, out[i].version)
		}
	}
	return out, nil
}

// migrateLockKey is the transaction-scoped advisory lock that serializes migrations of one
// schema: connectors starting together (several crm-sink replicas) take turns, and the later
// ones find the work done.
func migrateLockKey(schema string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("mailpipe/crm/postgres/migrate:" + schema))
	return int64(h.Sum64()) //nolint:gosec // a lock id: any 64-bit value will do, wrapping is fine.
}

// Migrate applies the embedded migrations the database lacks, all in one transaction holding
// an advisory lock, recording each in schema_migrations (version, name, applied_at). It creates
// the schema when missing. After one success it returns nil at once; Upsert calls it, so
// calling it at start only moves a failure (bad credentials, missing privileges) earlier. A
// database with versions newer than this binary knows (a newer release migrated it) is logged
// and used as is: migrations only add.
func (c *Connector) Migrate(ctx context.Context) error {
	// A channel, not a mutex: upserts waiting for the first one's migration honour their ctx.
	select {
	case c.migrateSem <- struct{}{}:
	case <-ctx.Done():
		return crm.ClassifyTransport(fmt.Errorf("waiting for the postgres migration: %w", ctx.Err()))
	}
	defer func() { <-c.migrateSem }()
	if c.migrated {
		return nil
	}
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		return failure.Wrap(failure.Internal, err)
	}
	var applied []migration
	err = pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		applied, err = migrate(ctx, tx, c.schema, ms, c.log)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrating the postgres schema %s: %w", c.schema, classify(err))
	}
	for _, m := range applied {
		c.log.LogAttrs(ctx, slog.LevelInfo, "applied postgres migration",
			slog.String("schema", c.schema), slog.Int64("version", m.version), slog.String("name", m.name))
	}
	c.migrated = true
	return nil
}

// migrate runs in tx; it returns the migrations it applied.
func migrate(ctx context.Context, tx pgx.Tx, schema string, ms []migration, log *slog.Logger) ([]migration, error) {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey(schema)); err != nil {
		return nil, fmt.Errorf("taking the migration lock: %w", err)
	}
	if schema != DefaultSchema {
		// The schema name is a validated plain identifier (Config.Validate).
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
			return nil, fmt.Errorf("creating schema: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    bigint PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return nil, fmt.Errorf("creating schema_migrations: %w", err)
	}
	rows, err := tx.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("reading schema_migrations: %w", err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("reading schema_migrations: %w", err)
	}
	var applied []migration
	for _, m := range ms {
		if slices.Contains(done, m.version) {
			continue
		}
		// No arguments: pgx sends the file with the simple protocol, several statements at once.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return nil, fmt.Errorf("applying migration %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			return nil, fmt.Errorf("recording migration %s: %w", m.name, err)
		}
		applied = append(applied, m)
	}
	if len(ms) > 0 && len(done) > 0 {
		if newest := slices.Max(done); newest > ms[len(ms)-1].version {
			log.LogAttrs(ctx, slog.LevelWarn, "postgres schema is newer than this binary; using it as is",
				slog.String("schema", schema), slog.Int64("database_version", newest),
				slog.Int64("binary_version", ms[len(ms)-1].version))
		}
	}
	return applied, nil
}

// errNoRow is returned by upsertRow when the statement kept returning no row.
var errNoRow = errors.New("upsert returned no row")
