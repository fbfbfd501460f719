// Package dedupe remembers which idempotency keys (mailid external ids) were seen recently, so a
// stage can skip work it already did. It is an optimisation, never the only guard against
// duplicates: every effect downstream is idempotent by external id, and an error from a Store
// means "not known", never "duplicate".
//
// Implementations: Memory here (tests, `mailpipe dev`, single process), redisdedupe (SET NX with
// an expiry) for production. Both pass the dedupetest conformance suite.
package dedupe

import (
	"context"
	"errors"
	"time"
)

// Store records keys with an expiry.
type Store interface {
	// MarkSeen records key for ttl and reports whether this call was the first to do so while the
	// key was live. first == false means another call marked it within ttl: a duplicate.
	//
	// An error means the store could not tell: the key is "not known". Callers must then treat
	// the message as NOT a duplicate (process it; idempotent effects absorb the repeat), because
	// dropping it on a store outage would lose mail. first is false whenever err is non-nil, so
	// code must check err first.
	//
	// ttl must be positive and key non-empty; otherwise MarkSeen returns an error wrapping
	// ErrInvalid. Implementations must be safe for concurrent use; exactly one of several
	// concurrent calls for a fresh key gets first == true.
	MarkSeen(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
}

// Forgetter is implemented by stores that can unmark a key. Use it when the work a successful
// MarkSeen guarded then failed (say the produce to Kafka was not acknowledged), so the sender's
// retry is not mistaken for a duplicate. Forgetting an unknown key is not an error.
type Forgetter interface {
	Forget(ctx context.Context, key string) error
}

// Seer is the optional read capability of a Store: it reports whether key is live without
// marking it, so a caller can skip an effect already confirmed and mark the key only after its
// own effect succeeded. An error means "not known": the caller does the work (idempotently).
type Seer interface {
	Seen(ctx context.Context, key string) (bool, error)
}

// ErrInvalid is wrapped by errors for an empty key or a non-positive ttl.
var ErrInvalid = errors.New("invalid dedupe request")

// CheckArgs returns an error wrapping ErrInvalid when key or ttl is unusable; implementations
// call it first so they all reject the same inputs.
func CheckArgs(key string, ttl time.Duration) error {
	if key == "" {
		return errors.Join(ErrInvalid, errors.New("key is empty"))
	}
	if ttl <= 0 {
		return errors.Join(ErrInvalid, errors.New("ttl must be positive"))
	}
	return nil
}
