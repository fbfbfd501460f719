// Package ratelimittest is the conformance suite every ratelimit.Limiter passes: the in-memory
// limiter in unit tests and redisratelimit against miniredis and a real Redis.
package ratelimittest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/ratelimit"
)

// Run runs the suite. newLimiter returns a limiter for l whose buckets start empty for this
// subtest (a fresh instance, or a fresh key prefix on a shared backend). The refill test waits
// about half a second of real time.
func Run(t *testing.T, newLimiter func(t *testing.T, l ratelimit.Limit) ratelimit.Limiter) {
	t.Run("burst then refused with retry after", func(t *testing.T) {
		l := ratelimit.Limit{Rate: 3, Period: time.Hour}
		lim := newLimiter(t, l)
		for i := range 3 {
			mustAllow(t, lim, "10.0.0.1", i)
		}
		ok, retry, err := lim.Allow(t.Context(), "10.0.0.1")
		if err != nil || ok {
			t.Fatalf("4th Allow = %v, %v, %v; want refused", ok, retry, err)
		}
		// The next token comes one interval (20 minutes) after the first was taken.
		if retry <= l.Interval()-10*time.Second || retry > l.Interval() {
			t.Errorf("retry after = %v, want about %v", retry, l.Interval())
		}
	})

	t.Run("burst other than rate", func(t *testing.T) {
		lim := newLimiter(t, ratelimit.Limit{Rate: 1, Period: time.Hour, Burst: 5})
		for i := range 5 {
			mustAllow(t, lim, "k", i)
		}
		if ok, _, err := lim.Allow(t.Context(), "k"); err != nil || ok {
			t.Fatalf("6th Allow = %v, %v; want refused", ok, err)
		}
	})

	t.Run("keys are independent", func(t *testing.T) {
		lim := newLimiter(t, ratelimit.Limit{Rate: 1, Period: time.Hour})
		for _, key := range []string{"192.0.2.1", "192.0.2.10", "2001:db8::/64", "K", "k", "k ", "ключ"} {
			mustAllow(t, lim, key, 0)
		}
		for _, key := range []string{"192.0.2.1", "k"} {
			if ok, _, err := lim.Allow(t.Context(), key); err != nil || ok {
				t.Errorf("second Allow(%q) = %v, %v; want refused", key, ok, err)
			}
		}
	})

	t.Run("refills over time", func(t *testing.T) {
		l := ratelimit.Limit{Rate: 5, Period: 500 * time.Millisecond} // a token every 100ms
		lim := newLimiter(t, l)
		for i := range 5 {
			mustAllow(t, lim, "refill", i)
		}
		ok, retry, err := lim.Allow(t.Context(), "refill")
		if err != nil || ok {
			t.Fatalf("6th Allow = %v, %v; want refused", ok, err)
		}
		if retry <= 0 || retry > l.Interval() {
			t.Fatalf("retry after = %v, want in (0, %v]", retry, l.Interval())
		}
		time.Sleep(retry + 20*time.Millisecond)
		// One token came back: one event fits, the next does not.
		mustAllow(t, lim, "refill", 6)
		if ok, _, err := lim.Allow(t.Context(), "refill"); err != nil || ok {
			t.Fatalf("Allow right after the refilled token = %v, %v; want refused", ok, err)
		}
		// After a whole period the bucket is full again, not fuller.
		time.Sleep(l.Period + 50*time.Millisecond)
		for i := range 5 {
			mustAllow(t, lim, "refill", i)
		}
		if ok, _, err := lim.Allow(t.Context(), "refill"); err != nil || ok {
			t.Fatalf("Allow beyond a full bucket = %v, %v; want refused", ok, err)
		}
	})

	t.Run("concurrent callers share one bucket", func(t *testing.T) {
		lim := newLimiter(t, ratelimit.Limit{Rate: 10, Period: time.Hour})
		const workers = 40
		var allowed atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				ok, _, err := lim.Allow(t.Context(), "contended")
				if err != nil {
					errs <- err
					return
				}
				if ok {
					allowed.Add(1)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := allowed.Load(); n != 10 {
			t.Fatalf("%d of %d concurrent calls allowed, want 10", n, workers)
		}
	})

	t.Run("empty key fails open", func(t *testing.T) {
		lim := newLimiter(t, ratelimit.Limit{Rate: 1, Period: time.Hour})
		ok, retry, err := lim.Allow(t.Context(), "")
		if !errors.Is(err, ratelimit.ErrInvalid) || !ok || retry != 0 {
			t.Fatalf("Allow(\"\") = %v, %v, %v; want true, 0, ErrInvalid", ok, retry, err)
		}
	})

	t.Run("cancelled context fails open", func(t *testing.T) {
		lim := newLimiter(t, ratelimit.Limit{Rate: 1, Period: time.Hour})
		mustAllow(t, lim, "cancelled", 0)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		ok, _, err := lim.Allow(ctx, "cancelled")
		if err != nil && !ok {
			t.Fatalf("Allow = false with error %v; an error must come with ok = true", err)
		}
		// A limiter may answer before looking at ctx; then the answer must still be right.
		if err == nil && ok {
			t.Fatal("Allow on an empty bucket = true, nil")
		}
	})
}

func mustAllow(t *testing.T, lim ratelimit.Limiter, key string, i int) {
	t.Helper()
	ok, retry, err := lim.Allow(t.Context(), key)
	if err != nil || !ok || retry != 0 {
		t.Fatalf("Allow(%q) #%d = %v, %v, %v; want true, 0, nil", key, i, ok, retry, err)
	}
}
