package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// classify gives err a failure class from its SQLSTATE
// (https://www.postgresql.org/docs/current/errcodes-appendix.html). Errors that already carry a
// class keep it; errors without a server answer go to crm.ClassifyTransport.
func classify(err error) error {
	var c interface{ FailureClass() failure.Class }
	if err == nil || errors.As(err, &c) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return crm.ClassifyTransport(err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return crm.ClassifyTransport(err)
	}
	return failure.Wrap(sqlstateClass(pgErr.Code), err)
}

// sqlstateClass maps a SQLSTATE to a failure class.
func sqlstateClass(code string) failure.Class {
	if len(code) != 5 {
		return failure.CRM5xx
	}
	switch code {
	case "57014": // query_canceled: statement_timeout
		return failure.Timeout
	case "42501": // insufficient_privilege
		return failure.Auth
	}
	switch code[:2] {
	case "28": // invalid authorization specification (bad password, no pg_hba entry)
		return failure.Auth
	case "22", "23": // data exception, integrity constraint violation: the record is the problem
		return failure.CRM4xx
	case "42", "0A", "3F", "2B": // syntax/undefined object, unsupported, bad schema: a bug or a broken schema
		return failure.Internal
	default: // 08 connection, 40 serialization/deadlock, 53 resources, 55 lock, 57 shutdown, 58/XX system
		return failure.CRM5xx
	}
}
