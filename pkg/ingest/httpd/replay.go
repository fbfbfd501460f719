package httpd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"

	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/events"
)

// ReplayStore remembers the ids of signed requests, so a request replayed inside its signature's
// timestamp window is recorded at most once. dedupe.Memory (the default, per process) and
// redisdedupe (shared by every ingress replica) fit. As everywhere in dedupe, an error means "not
// known": the request goes on, and ingest's own retry dedupe and the idempotent stages
// downstream absorb a repeat.
type ReplayStore interface {
	dedupe.Store
	dedupe.Forgetter
	dedupe.Seer
}

// replayCleanupTimeout bounds each replay-store write made after the attempt (the request's
// context may be done by then).
const replayCleanupTimeout = 5 * time.Second

// replayKey names a signed request's id in the replay store. The id is hashed: it is chosen by
// the sender and may be long or odd.
func replayKey(scheme, tenant, id string) string {
	sum := sha256.Sum256([]byte(id))
	return "httpd:replay:" + scheme + ":" + tenant + ":" + hex.EncodeToString(sum[:16])
}

// replayClaim is one signed request's hold on its id.
type replayClaim struct {
	h        *handler
	inflight string // held while the attempt runs; "" when the store could not tell
	done     string
	ttl      time.Duration
}

// claimReplay checks and takes the id key. A request whose id was recorded within ttl is a
// duplicate (answered as recorded, not recorded again); one whose id is being recorded by
// another request right now gets 503, so its sender retries after that attempt settled. Two
// keys keep "recorded" apart from "being recorded": answering a concurrent repeat as a
// duplicate would be a lie if the first attempt then failed.
func (h *handler) claimReplay(ctx context.Context, key string, ttl time.Duration) (c replayClaim, duplicate bool, p *problem) {
	c = replayClaim{h: h, done: key + ":done", ttl: ttl}
	seen, err := h.replay.Seen(ctx, c.done)
	if err != nil {
		h.log.WarnContext(ctx, "replay store unavailable, recording anyway", slog.String("error", err.Error()))
		return c, false, nil
	}
	if seen {
		return c, true, nil
	}
	// Held at most as long as an attempt can run, plus the time settle may take.
	first, err := h.replay.MarkSeen(ctx, key+":inflight", h.cfg.AcceptTimeout+2*replayCleanupTimeout)
	if err != nil {
		h.log.WarnContext(ctx, "replay store unavailable, recording anyway", slog.String("error", err.Error()))
		return c, false, nil
	}
	if !first {
		return c, false, h.unavailable("a request with the same signature id is being recorded; retry later")
	}
	c.inflight = key + ":inflight"
	return c, false, nil
}

// settle records the outcome: the id is remembered only if the message was recorded, so a
// sender's retry after a failure goes through.
func (c replayClaim) settle(ctx context.Context, recorded bool) {
	if c.inflight == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), replayCleanupTimeout)
	defer cancel()
	if recorded {
		if _, err := c.h.replay.MarkSeen(ctx, c.done, c.ttl); err != nil {
			c.h.log.WarnContext(ctx, "could not remember a recorded request's signature id", slog.String("error", err.Error()))
		}
	}
	if err := c.h.replay.Forget(ctx, c.inflight); err != nil {
		c.h.log.WarnContext(ctx, "could not release a signature id", slog.String("error", err.Error()))
	}
}

// recordOnce records a signed request whose id is key, at most once within ttl (see
// claimReplay), and writes the answer: okStatus on success or duplicate, a problem otherwise.
// fail writes problems the way the endpoint wants them.
func (h *handler) recordOnce(w http.ResponseWriter, r *http.Request, key string, ttl time.Duration, okStatus int,
	fail func(http.ResponseWriter, problem), env events.Envelope, raw []byte,
) {
	claim, dup, p := h.claimReplay(r.Context(), key, ttl)
	if p != nil {
		fail(w, *p)
		return
	}
	if dup {
		h.log.InfoContext(r.Context(), "answered a replayed signed request as a duplicate", slog.String("path", r.URL.Path),
			slog.String("client_ip", env.ClientIP))
		writeJSON(w, okStatus, acceptedBody{Duplicate: true})
		return
	}
	res, p := h.record(r, env, raw)
	claim.settle(r.Context(), p == nil)
	if p != nil {
		fail(w, *p)
		return
	}
	writeAccepted(w, okStatus, res)
}
