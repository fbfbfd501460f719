// Package dedupetest is the conformance suite every dedupe.Store implementation passes: the
// in-memory store in unit tests and redisdedupe against a real Redis.
package dedupetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/dedupe"
)

// Run runs the suite. newStore returns a fresh, empty store for one subtest; keys used by
// different subtests never collide, so a shared backend is fine. The expiry test waits about
// half a second of real time.
func Run(t *testing.T, newStore func(t *testing.T) dedupe.Store) {
	t.Run("first then duplicate", func(t *testing.T) {
		s := newStore(t)
		for i, want := range []bool{true, false, false} {
			first, err := s.MarkSeen(t.Context(), "msg-a", time.Minute)
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			if first != want {
				t.Fatalf("call %d: first = %v, want %v", i, first, want)
			}
		}
	})

	t.Run("keys are independent", func(t *testing.T) {
		s := newStore(t)
		for _, key := range []string{"k1", "k2", "K1", "k1 ", "ключ"} {
			first, err := s.MarkSeen(t.Context(), key, time.Minute)
			if err != nil || !first {
				t.Fatalf("MarkSeen(%q) = %v, %v; want true, nil", key, first, err)
			}
		}
	})

	t.Run("expires after ttl", func(t *testing.T) {
		s := newStore(t)
		const ttl = 300 * time.Millisecond
		if first, err := s.MarkSeen(t.Context(), "short", ttl); err != nil || !first {
			t.Fatalf("MarkSeen = %v, %v", first, err)
		}
		// A long-lived key marked alongside must stay a duplicate throughout.
		if first, err := s.MarkSeen(t.Context(), "long", time.Hour); err != nil || !first {
			t.Fatalf("MarkSeen(long) = %v, %v", first, err)
		}
		time.Sleep(ttl + 100*time.Millisecond)
		deadline := time.Now().Add(2 * time.Second)
		for {
			first, err := s.MarkSeen(t.Context(), "short", ttl)
			if err != nil {
				t.Fatal(err)
			}
			if first {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("key still marked 2s after its ttl")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if first, err := s.MarkSeen(t.Context(), "long", time.Hour); err != nil || first {
			t.Fatalf("MarkSeen(long) = %v, %v; want false (still live)", first, err)
		}
	})

	t.Run("invalid arguments", func(t *testing.T) {
		s := newStore(t)
		for _, tt := range []struct {
			name string
			key  string
			ttl  time.Duration
		}{
			{"empty key", "", time.Minute},
			{"zero ttl", "k", 0},
			{"negative ttl", "k", -time.Second},
		} {
			first, err := s.MarkSeen(t.Context(), tt.key, tt.ttl)
			if !errors.Is(err, dedupe.ErrInvalid) || first {
				t.Errorf("%s: MarkSeen = %v, %v; want false, ErrInvalid", tt.name, first, err)
			}
		}
		// The rejected calls must not have marked "k".
		if first, err := s.MarkSeen(t.Context(), "k", time.Minute); err != nil || !first {
			t.Errorf("MarkSeen(k) after rejected calls = %v, %v; want true, nil", first, err)
		}
	})

	t.Run("cancelled context is not a duplicate", func(t *testing.T) {
		s := newStore(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		first, err := s.MarkSeen(ctx, "cancelled", time.Minute)
		if err == nil {
			// A store may finish before looking at ctx; then the answer must still be right.
			if !first {
				t.Fatal("MarkSeen on a fresh key = false, nil")
			}
			return
		}
		if first {
			t.Fatalf("MarkSeen = true with error %v", err)
		}
	})

	t.Run("exactly one concurrent first", func(t *testing.T) {
		s := newStore(t)
		const workers = 16
		var firsts atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				first, err := s.MarkSeen(t.Context(), "contended", time.Minute)
				if err != nil {
					errs <- err
					return
				}
				if first {
					firsts.Add(1)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := firsts.Load(); n != 1 {
			t.Fatalf("%d of %d concurrent calls got first = true, want 1", n, workers)
		}
	})

	t.Run("forget", func(t *testing.T) {
		s := newStore(t)
		f, ok := s.(dedupe.Forgetter)
		if !ok {
			t.Skipf("%T does not implement dedupe.Forgetter", s)
		}
		if err := f.Forget(t.Context(), "never-marked"); err != nil {
			t.Fatalf("Forget(unknown) = %v", err)
		}
		for i := range 2 {
			first, err := s.MarkSeen(t.Context(), "retry", time.Minute)
			if err != nil || !first {
				t.Fatalf("round %d: MarkSeen = %v, %v; want true after Forget", i, first, err)
			}
			if err := f.Forget(t.Context(), "retry"); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("seen reads without marking", func(t *testing.T) {
		s := newStore(t)
		r, ok := s.(dedupe.Seer)
		if !ok {
			t.Skipf("%T does not implement dedupe.Seer", s)
		}
		seen, err := r.Seen(t.Context(), "unread")
		if err != nil || seen {
			t.Fatalf("Seen(unmarked) = %v, %v; want false", seen, err)
		}
		// Reading must not claim the key: the first MarkSeen after it is still first.
		if first, err := s.MarkSeen(t.Context(), "unread", time.Minute); err != nil || !first {
			t.Fatalf("MarkSeen after Seen = %v, %v; want first", first, err)
		}
		seen, err = r.Seen(t.Context(), "unread")
		if err != nil || !seen {
			t.Fatalf("Seen(marked) = %v, %v; want true", seen, err)
		}
		if seen, _ := r.Seen(t.Context(), "other"); seen {
			t.Fatal("Seen(other) = true; keys must be independent")
		}
	})

	t.Run("many keys", func(t *testing.T) {
		s := newStore(t)
		for i := range 200 {
			key := fmt.Sprintf("bulk-%d", i)
			if first, err := s.MarkSeen(t.Context(), key, time.Minute); err != nil || !first {
				t.Fatalf("MarkSeen(%s) = %v, %v", key, first, err)
			}
		}
		for i := range 200 {
			key := fmt.Sprintf("bulk-%d", i)
			if first, err := s.MarkSeen(t.Context(), key, time.Minute); err != nil || first {
				t.Fatalf("second MarkSeen(%s) = %v, %v", key, first, err)
			}
		}
	})
}
