// Package pgtest gives tests a real PostgreSQL: the DSN from MAILPIPE_TEST_POSTGRES_DSN and a
// fresh database per test, dropped when the test ends, so packages and parallel tests share one
// server without seeing each other's rows. Start the server with scripts/postgres-up.sh; its
// role needs CREATEDB.
//
// Under `go test -short` (make unit) the helpers skip the test; otherwise a missing variable or
// an unreachable server fails it: a missing service is a failure, never a silent skip.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// EnvDSN names the variable holding the test server's DSN, e.g.
// postgres://mailpipe:mailpipe@127.0.0.1:15432/mailpipe_test?sslmode=disable.
const EnvDSN = "MAILPIPE_TEST_POSTGRES_DSN"

// DSN returns the test server's DSN, skipping under -short and failing when it is not set.
func DSN(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs PostgreSQL (%s); skipped under -short", EnvDSN)
	}
	dsn := getenv(EnvDSN)
	if dsn == "" {
		t.Fatalf("%s is not set: start scripts/postgres-up.sh and set %s to the DSN it prints", EnvDSN, EnvDSN)
	}
	return dsn
}

// Database creates a fresh, empty database for this test and returns its DSN (the test DSN
// with the database name replaced). The database is dropped when the test ends, connections
// still open to it included.
func Database(t testing.TB) string {
	t.Helper()
	dsn := DSN(t)
	name := Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s (is scripts/postgres-up.sh running?): %v", EnvDSN, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	// name is [a-z0-9_] only, so it needs no quoting.
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled in Cleanup.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("connecting to drop test database %s: %v", name, err)
			return
		}
		defer func() { _ = conn.Close(context.Background()) }()
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
		}
	})
	return WithDatabase(t, dsn, name)
}

// WithDatabase returns dsn with its database replaced by name.
func WithDatabase(t testing.TB, dsn, name string) string {
	t.Helper()
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	// key=value form: a later dbname wins.
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		t.Fatalf("%s is not a valid connection string", EnvDSN)
	}
	return dsn + " dbname=" + name
}

// Name returns a fresh database or schema name "t_<test name>_<random>": lower case, [a-z0-9_],
// at most 63 bytes (PostgreSQL's identifier limit).
func Name(t testing.TB) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	base := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		default:
			return '_'
		}
	}, t.Name())
	const maxBase = 63 - len("t__") - 2*len(b)
	if len(base) > maxBase {
		base = base[len(base)-maxBase:] // the end names the subtest, the most specific part
	}
	return "t_" + base + "_" + hex.EncodeToString(b[:])
}
