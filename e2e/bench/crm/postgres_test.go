package crm

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/postgres"
	"github.com/mailpipe/mailpipe/pkg/crm/postgres/pgtest"
)

// postgresDSN returns the test server's DSN. A missing server is a failure, not a skip: make
// test starts PostgreSQL and sets the variable. Only -short (make unit, no services) skips, as
// pgtest does everywhere.
func postgresDSN(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs PostgreSQL (%s); skipped under -short", pgtest.EnvDSN)
	}
	if os.Getenv(pgtest.EnvDSN) == "" {
		t.Fatalf("%s is not set: run make test (or make bench-crm), which starts PostgreSQL with scripts/postgres-up.sh and sets it", pgtest.EnvDSN)
	}
	return pgtest.Database(t)
}

func init() { moreTargets = append(moreTargets, postgresTarget) }

func postgresTarget() target {
	return target{
		name: "postgres",
		about: "a real PostgreSQL server (scripts/postgres-up.sh: loopback TCP, fsync and synchronous_commit off), " +
			"a fresh database per run, the connector's migrations applied on first use and a pool of as many " +
			"connections as workers; one transaction per message upserting company, contact, lead, message and " +
			"event_log rows by their unique natural keys",
		open: func(t *testing.T, c corpus) system {
			dsn := postgresDSN(t)
			return system{
				connect: func(t *testing.T) crm.Connector {
					conn, err := postgres.New(postgres.Config{DSN: dsn, MaxConns: workers(), Timeout: requestTimeout}, discard())
					return must(t, conn, err)
				},
				count: func(t *testing.T) []kind {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					db, err := pgx.Connect(ctx, dsn)
					if err != nil {
						t.Fatalf("connecting to count rows: %v", err)
					}
					defer func() { _ = db.Close(context.Background()) }()
					rows := func(name, key, table string, want int) kind {
						k := kind{name: name, want: want}
						// table and key are constants of this file.
						if err := db.QueryRow(ctx, "SELECT count(*), count(DISTINCT (tenant, "+key+")) FROM "+table).Scan(&k.stored, &k.distinct); err != nil {
							t.Fatalf("counting %s: %v", table, err)
						}
						return k
					}
					return []kind{
						rows("messages", "external_id", "message", len(c.msgs)),
						rows("contacts", "email", "contact", c.senders),
						rows("companies", "domain", "company", c.companies),
						rows("leads", "thread_key", "lead", c.threads),
						// message.received per message, lead.created per thread.
						rows("events", "dedupe_key", "event_log", len(c.msgs)+c.threads),
					}
				},
			}
		},
	}
}
