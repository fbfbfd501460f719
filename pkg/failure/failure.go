// Package failure classifies errors for the stage retry and dead-letter decisions.
//
// Every error that leaves a stage handler is reduced to one Class. The class decides whether the
// stage retries the record ([Retryable]), how long it waits at least ([RetryAfter]), and which
// error class a dead-lettered record carries in its headers. The classes are the DLQ classes of
// the architecture brief and are defined here, in one place.
//
// Producers of errors attach a class with [Wrap] or [New] (or implement the optional
// FailureClass method); only the stage middleware calls [Classify] and [Retryable], at the point
// where it decides.
package failure

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// Class is the kind of a failure. The zero value means "no failure" and is what [Classify]
// returns for a nil error.
type Class string

// The error classes. The string values are written to the DLQ error-class header and used as a
// metric attribute, so they are part of the wire contract: do not rename them.
const (
	// Parse: the input could not be parsed into anything usable (broken MIME, bad framing).
	// Not retryable: the same bytes fail the same way.
	Parse Class = "parse"
	// Schema: the record does not match the expected schema (unknown schema id, Avro
	// decoding error). Not retryable.
	Schema Class = "schema"
	// CRM4xx: a CRM rejected the request as invalid (HTTP 4xx other than 401/403/408/429).
	// Not retryable.
	CRM4xx Class = "crm_4xx"
	// CRM5xx: a CRM failed on its side (HTTP 5xx). Retryable.
	CRM5xx Class = "crm_5xx"
	// RateLimited: a downstream asked us to slow down (HTTP 429, quota errors). Retryable;
	// the error may carry a Retry-After (see [WithRetryAfter]).
	RateLimited Class = "rate_limited"
	// Timeout: a deadline expired (per-attempt timeout, network timeout). Retryable.
	Timeout Class = "timeout"
	// Auth: credentials were rejected (HTTP 401/403, SASL). Not retryable within a record's
	// attempt budget: waiting seconds does not fix credentials; replay the DLQ after the fix.
	Auth Class = "auth"
	// Internal: a bug in mailpipe (a handler panic, a broken invariant). Not retryable.
	Internal Class = "internal"
	// Config: the deployment cannot do what the record asks (a route names a CRM target that is
	// not configured). Not retryable: replay the DLQ after fixing the configuration.
	Config Class = "config"
	// Blocked: the record waits for an earlier record of its thread that is in the DLQ for the
	// same target (per-thread order). Not retryable: replaying the DLQ in order releases it.
	Blocked Class = "blocked"
	// Unknown: an error nobody classified. Retryable, because unclassified errors are most
	// often transient I/O errors.
	Unknown Class = "unknown"
)

// Classes returns every class, in a stable order (for metrics pre-registration and docs).
func Classes() []Class {
	return []Class{Parse, Schema, CRM4xx, CRM5xx, RateLimited, Timeout, Auth, Internal, Config, Blocked, Unknown}
}

// Retryable reports whether an error of this class may succeed when tried again later.
// An unrecognised class is treated like [Unknown] (retryable); the zero class is not retryable.
func (c Class) Retryable() bool {
	switch c {
	case Parse, Schema, CRM4xx, Auth, Internal, Config, Blocked, "":
		return false
	default:
		return true
	}
}

// String returns the wire value of the class.
func (c Class) String() string { return string(c) }

// Error is an error with a class and, optionally, a server-requested minimum wait.
// Use [Wrap], [New] or [WithRetryAfter] to build one; match it with errors.As.
type Error struct {
	// Class is the failure class.
	Class Class
	// Err is the underlying error; never nil when built by this package.
	Err error
	// After is the minimum wait requested by the remote side (Retry-After); zero if none.
	After time.Duration
}

// Error returns the underlying error's message; the class is not repeated in it because the
// DLQ headers and metrics carry it separately.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// FailureClass returns the class; it makes *Error satisfy the optional interface [Classify]
// looks for.
func (e *Error) FailureClass() Class { return e.Class }

// Wrap attaches class to err. It returns nil when err is nil, so it can wrap a call's result
// directly. If err already carries a class, the new one overrides it, because [Classify] stops
// at the outermost classified error in the chain.
func Wrap(class Class, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Class: class, Err: err}
}

// New returns a new error with the given class and message, like errors.New.
func New(class Class, text string) error {
	return &Error{Class: class, Err: errors.New(text)}
}

// WithRetryAfter records that the remote side asked to wait at least d before the next attempt
// (an HTTP Retry-After, a Kafka throttle). The class of err is kept; an unclassified err becomes
// [RateLimited], the usual reason for a Retry-After. It returns nil when err is nil. A d <= 0
// is ignored.
func WithRetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	class := classOf(err)
	if class == "" {
		class = RateLimited
	}
	return &Error{Class: class, Err: err, After: d}
}

// classifier is the optional interface an error type implements to classify itself without
// depending on *Error (for example a CRM client's response error).
type classifier interface {
	FailureClass() Class
}

// retryAfterer is the optional interface an error implements to carry a Retry-After.
type retryAfterer interface {
	RetryAfter() (time.Duration, bool)
}

// classOf walks the chain (including errors.Join branches) for the first self-classified error.
func classOf(err error) Class {
	var c classifier
	if errors.As(err, &c) {
		return c.FailureClass()
	}
	return ""
}

// Classify returns the class of err:
//   - "" for nil;
//   - the class of the first error in the chain that has one (see [Wrap] and the optional
//     `FailureClass() Class` method);
//   - [Timeout] for context.DeadlineExceeded, os.ErrDeadlineExceeded and net.Error timeouts;
//   - [Unknown] for everything else, including context.Canceled (a cancelled attempt says
//     nothing about the record).
func Classify(err error) Class {
	if err == nil {
		return ""
	}
	if c := classOf(err); c != "" {
		return c
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return Timeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Timeout
	}
	return Unknown
}

// Retryable reports whether the record that produced err should be tried again. It is false for
// nil and for the classes [Parse], [Schema], [CRM4xx], [Auth] and [Internal].
func Retryable(err error) bool {
	return Classify(err).Retryable()
}

// RetryAfter returns the wait the remote side requested, if the chain carries one (see
// [WithRetryAfter] and the optional `RetryAfter() (time.Duration, bool)` method). The first
// positive value in the chain wins.
func RetryAfter(err error) (time.Duration, bool) {
	for _, e := range chain(err) {
		//nolint:errorlint // e is one node of the already unwrapped chain; errors.As would stop at the first *Error even if its After is zero.
		switch v := e.(type) {
		case *Error:
			if v.After > 0 {
				return v.After, true
			}
		case retryAfterer:
			if d, ok := v.RetryAfter(); ok && d > 0 {
				return d, true
			}
		}
	}
	return 0, false
}

// chain flattens err's tree depth-first, in the order errors.Is visits it.
func chain(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		for e != nil {
			out = append(out, e)
			//nolint:errorlint // this is the unwrapping itself, the way errors.Is walks the tree.
			switch u := e.(type) {
			case interface{ Unwrap() []error }:
				for _, b := range u.Unwrap() {
					walk(b)
				}
				return
			case interface{ Unwrap() error }:
				e = u.Unwrap()
			default:
				return
			}
		}
	}
	walk(err)
	return out
}
