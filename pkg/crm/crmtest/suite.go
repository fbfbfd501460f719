package crmtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/events/eventstest"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// Target is a connector under test together with the means to observe and disturb the system
// behind it.
type Target struct {
	// Connector is the connector under test, fresh for this target.
	Connector crm.Connector
	// Objects returns how many objects the target system holds for the message with
	// externalID. Idempotency means it stays 1 however often the message is upserted.
	Objects func(externalID string) int
	// FailNext makes the target system answer the next n calls with the HTTP status and
	// Retry-After header value ("" for none), as [Server.FailNext] does. Nil for connectors
	// without an HTTP side; the suite then skips the error-classification cases.
	FailNext func(n, status int, retryAfter string)
}

// Target returns the Target of connector c, which must deliver to s.
func (s *Server) Target(c crm.Connector) Target {
	return Target{Connector: c, Objects: s.Objects, FailNext: s.FailNext}
}

// Message returns a fully populated enriched message whose ids derive from seed: the same seed
// gives the same external id, different seeds give different ones.
func Message(seed string) *events.Enriched {
	rec, ok := eventstest.Samples()["mail.enriched.v1"].(*events.Enriched)
	if !ok {
		panic("crmtest: eventstest has no *events.Enriched sample")
	}
	sum := sha256.Sum256([]byte("crmtest:" + seed))
	rec.Message.ExternalID = hex.EncodeToString(sum[:])
	rec.Message.ID = "01JCRMTEST" + hex.EncodeToString(sum[:8])
	rec.Message.MessageID = seed + "@crmtest.example"
	return rec
}

// Run checks that the connectors built by newTarget keep the crm.Connector contract: a first
// upsert creates, upserting again is idempotent by external id (also concurrently), distinct
// messages are distinct objects, an expired context is a timeout, and (when the target has an
// HTTP side) 401/403, 408, 429 with Retry-After, 4xx and 5xx map to their failure classes
// without leaving an object behind, after which the next upsert succeeds. newTarget is called
// once per subtest and must return a target with fresh state.
func Run(t *testing.T, newTarget func(t *testing.T) Target) {
	t.Helper()
	successful := []string{crm.OutcomeCreated, crm.OutcomeUpdated}
	again := []string{crm.OutcomeCreated, crm.OutcomeUpdated, crm.OutcomeUnchanged}

	t.Run("name is set and stable", func(t *testing.T) {
		c := newTarget(t).Connector
		first := c.Name()
		mustUpsert(t, c, Message("name"), successful)
		if first == "" || c.Name() != first {
			t.Fatalf("Name() = %q then %q, want a stable non-empty target name", first, c.Name())
		}
	})

	t.Run("first upsert creates one object", func(t *testing.T) {
		tg := newTarget(t)
		msg := Message("first")
		res := mustUpsert(t, tg.Connector, msg, successful)
		if res.Attempts < 0 {
			t.Errorf("Attempts = %d, want >= 0", res.Attempts)
		}
		if n := tg.Objects(msg.Message.ExternalID); n != 1 {
			t.Errorf("Objects = %d after one upsert, want 1", n)
		}
	})

	t.Run("upsert is idempotent by external id", func(t *testing.T) {
		tg := newTarget(t)
		msg := Message("twice")
		mustUpsert(t, tg.Connector, msg, successful)
		mustUpsert(t, tg.Connector, Message("twice"), again)
		mustUpsert(t, tg.Connector, Message("twice"), again)
		if n := tg.Objects(msg.Message.ExternalID); n != 1 {
			t.Errorf("Objects = %d after three upserts of one message, want 1", n)
		}
	})

	t.Run("distinct messages are distinct objects", func(t *testing.T) {
		tg := newTarget(t)
		a, b := Message("a"), Message("b")
		mustUpsert(t, tg.Connector, a, successful)
		mustUpsert(t, tg.Connector, b, successful)
		for _, m := range []*events.Enriched{a, b} {
			if n := tg.Objects(m.Message.ExternalID); n != 1 {
				t.Errorf("Objects(%s) = %d, want 1", m.Message.ExternalID, n)
			}
		}
	})

	t.Run("concurrent upserts of one message leave one object", func(t *testing.T) {
		tg := newTarget(t)
		const workers = 8
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				res, err := tg.Connector.Upsert(t.Context(), Message("race"))
				if err == nil && !slices.Contains(again, res.Outcome) {
					err = errors.New("unexpected outcome " + res.Outcome)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent Upsert: %v", err)
			}
		}
		if n := tg.Objects(Message("race").Message.ExternalID); n != 1 {
			t.Errorf("Objects = %d after concurrent upserts, want 1", n)
		}
	})

	t.Run("expired context is a timeout", func(t *testing.T) {
		tg := newTarget(t)
		ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		defer cancel()
		msg := Message("late")
		_, err := tg.Connector.Upsert(ctx, msg)
		if c := failure.Classify(err); c != failure.Timeout {
			t.Fatalf("Upsert with an expired context: class %q (err %v), want %q", c, err, failure.Timeout)
		}
		if n := tg.Objects(msg.Message.ExternalID); n != 0 {
			t.Errorf("Objects = %d after a timed-out upsert, want 0", n)
		}
	})

	t.Run("errors are classified", func(t *testing.T) {
		if newTarget(t).FailNext == nil {
			t.Skip("target has no HTTP side (Target.FailNext is nil)")
		}
		for _, tt := range []struct {
			name       string
			status     int
			retryAfter string
			want       failure.Class
			wantAfter  time.Duration
		}{
			{"401 is auth", 401, "", failure.Auth, 0},
			{"403 is auth", 403, "", failure.Auth, 0},
			{"408 is timeout", 408, "", failure.Timeout, 0},
			{"429 with retry-after", 429, "7", failure.RateLimited, 7 * time.Second},
			{"429 without retry-after", 429, "", failure.RateLimited, 0},
			{"400 is crm_4xx", 400, "", failure.CRM4xx, 0},
			{"422 is crm_4xx", 422, "", failure.CRM4xx, 0},
			{"500 is crm_5xx", 500, "", failure.CRM5xx, 0},
			{"503 with retry-after", 503, "2", failure.CRM5xx, 2 * time.Second},
		} {
			t.Run(tt.name, func(t *testing.T) {
				tg := newTarget(t)
				msg := Message("fault")
				tg.FailNext(1, tt.status, tt.retryAfter)

				_, err := tg.Connector.Upsert(t.Context(), msg)
				if c := failure.Classify(err); c != tt.want {
					t.Fatalf("class = %q (err %v), want %q", c, err, tt.want)
				}
				if got, want := failure.Retryable(err), tt.want.Retryable(); got != want {
					t.Errorf("Retryable = %v, want %v", got, want)
				}
				if d, _ := failure.RetryAfter(err); d != tt.wantAfter {
					t.Errorf("RetryAfter = %v, want %v", d, tt.wantAfter)
				}
				if n := tg.Objects(msg.Message.ExternalID); n != 0 {
					t.Errorf("Objects = %d after a failed upsert, want 0", n)
				}

				mustUpsert(t, tg.Connector, msg, successful)
				if n := tg.Objects(msg.Message.ExternalID); n != 1 {
					t.Errorf("Objects = %d after recovery, want 1", n)
				}
			})
		}
	})

	t.Run("a burst of 5xx then success", func(t *testing.T) {
		tg := newTarget(t)
		if tg.FailNext == nil {
			t.Skip("target has no HTTP side (Target.FailNext is nil)")
		}
		msg := Message("burst")
		tg.FailNext(3, 502, "")
		for i := range 3 {
			if _, err := tg.Connector.Upsert(t.Context(), msg); failure.Classify(err) != failure.CRM5xx {
				t.Fatalf("attempt %d: err %v, want crm_5xx", i+1, err)
			}
		}
		mustUpsert(t, tg.Connector, msg, successful)
		if n := tg.Objects(msg.Message.ExternalID); n != 1 {
			t.Errorf("Objects = %d, want 1", n)
		}
	})
}

func mustUpsert(t *testing.T, c crm.Connector, msg *events.Enriched, outcomes []string) crm.Result {
	t.Helper()
	res, err := c.Upsert(t.Context(), msg)
	if err != nil {
		t.Fatalf("Upsert(%s): %v", msg.Message.ExternalID, err)
	}
	if !slices.Contains(outcomes, res.Outcome) {
		t.Fatalf("Upsert(%s) outcome = %q, want one of %v", msg.Message.ExternalID, res.Outcome, outcomes)
	}
	return res
}
