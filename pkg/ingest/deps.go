package ingest

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/mailpipe/mailpipe/pkg/dedupe"
)

// BlobStore stores raw messages for the claim check. Put stores r under key and returns the
// reference (a blob-store URL) the record carries in raw_blob_ref. blob.Store fits; when the
// store also has Delete (blob.Store does), a blob whose record was not acknowledged is removed.
type BlobStore interface {
	Put(ctx context.Context, key string, r io.Reader) (ref string, err error)
}

// blobDeleter is the optional capability of a BlobStore to remove an orphaned blob.
type blobDeleter interface {
	Delete(ctx context.Context, ref string) error
}

// dropBlob removes the claim-check blob of a record that was not acknowledged. It is best
// effort: an orphan costs storage, never correctness (nothing references it), so a failure is
// logged.
func (in *Ingester) dropBlob(ctx context.Context, ref string) {
	d, ok := in.blobs.(blobDeleter)
	if !ok {
		return
	}
	// The attempt's ctx may be what failed (deadline); cleaning up must not depend on it.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := d.Delete(dctx, ref); err != nil {
		in.log.WarnContext(ctx, "could not delete blob of an unrecorded message", slog.String("ref", ref), slog.String("error", err.Error()))
	}
}

// Deduper is the retry-dedupe store: a dedupe.Store that can also forget a key
// (dedupe.Forgetter); dedupe.Memory and redisdedupe fit. Accept needs Forget because a delivery
// it could not record must not be taken for a duplicate when the sender retries.
type Deduper interface {
	dedupe.Store
	dedupe.Forgetter
}

// inflightMargin is added to the in-flight key's lifetime to cover settle, which runs after
// Accept's deadline (blob delete, two Forgets), each with its own bound (releaseTimeout).
const inflightMargin = 4 * releaseTimeout

// releaseTimeout bounds each cleanup call made after an attempt (Forget, blob Delete).
const releaseTimeout = 5 * time.Second

// retryGuard is one delivery's hold on the retry-dedupe keys. The zero value holds nothing.
//
// Two keys make "recorded" distinguishable from "being recorded" with only MarkSeen and Forget:
// the in-flight key is held while an attempt runs, the done key survives only an attempt whose
// record was acknowledged. A retry that finds the in-flight key gets a temporary error
// (ErrInFlight) instead of a "duplicate" answer that the running attempt might still turn into
// a lie by failing; a retry that finds only the done key is a true duplicate.
type retryGuard struct {
	inflight, done string // keys held by this attempt; empty when not held
}

// claim takes the retry-dedupe keys for key. It returns duplicate when the delivery was recorded
// before, ErrInFlight when another attempt of it is running, and otherwise a guard to settle.
// Store errors mean "not known": the delivery proceeds unguarded.
func (in *Ingester) claim(ctx context.Context, key string) (g retryGuard, duplicate bool, err error) {
	inflight := key + ":inflight"
	// Accept runs at most AcceptTimeout; the margin covers settling after that deadline, so
	// the in-flight key never expires while its attempt can still change the outcome.
	first, err := in.dedupe.MarkSeen(ctx, inflight, in.cfg.AcceptTimeout+inflightMargin)
	if err != nil {
		in.log.WarnContext(ctx, "retry dedupe unavailable, recording anyway", slog.String("error", err.Error()))
		return retryGuard{}, false, nil
	}
	if !first {
		return retryGuard{}, false, ErrInFlight
	}
	g.inflight = inflight
	first, err = in.dedupe.MarkSeen(ctx, key, in.cfg.DedupeTTL)
	switch {
	case err != nil:
		in.log.WarnContext(ctx, "retry dedupe unavailable, recording anyway", slog.String("error", err.Error()))
	case !first:
		in.release(ctx, g.inflight)
		return retryGuard{}, true, nil
	default:
		g.done = key
	}
	return g, false, nil
}

// settle releases the guard after an attempt: the done key stays only if the record was
// acknowledged.
func (in *Ingester) settle(ctx context.Context, g retryGuard, recorded bool) {
	if !recorded && g.done != "" {
		if !in.release(ctx, g.done) {
			// Keep the in-flight key too: retries then get a temporary error until it expires
			// (AcceptTimeout) instead of a false "duplicate" right away.
			in.log.ErrorContext(ctx, "could not release retry-dedupe key of an unrecorded message; "+
				"a retry after the accept timeout and within the dedupe TTL will be taken for a duplicate",
				slog.String("dedupe_key", g.done))
			return
		}
	}
	if g.inflight != "" {
		in.release(ctx, g.inflight)
	}
}

func (in *Ingester) release(ctx context.Context, key string) bool {
	// The attempt's ctx may be what failed (deadline); releasing must not depend on it, but
	// it must stay bounded.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := in.dedupe.Forget(fctx, key); err != nil {
		in.log.WarnContext(ctx, "could not release retry-dedupe key", slog.String("dedupe_key", key), slog.String("error", err.Error()))
		return false
	}
	return true
}
