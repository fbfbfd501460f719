package backoff_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/backoff"
)

// maxSource always returns the largest allowed value, so Delay == Ceiling-1.
type maxSource struct{}

func (maxSource) Int64N(n int64) int64 { return n - 1 }

func TestCeiling(t *testing.T) {
	b, err := backoff.New(100*time.Millisecond, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		retry int
		want  time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{5, 1600 * time.Millisecond},
		{6, 2 * time.Second},
		{1000, 2 * time.Second},
	} {
		t.Run(fmt.Sprint(tt.retry), func(t *testing.T) {
			if got := b.Ceiling(tt.retry); got != tt.want {
				t.Errorf("Ceiling(%d) = %v, want %v", tt.retry, got, tt.want)
			}
		})
	}
}

func TestDelayFullJitter(t *testing.T) {
	b, err := backoff.New(time.Second, time.Minute, backoff.WithRand(maxSource{}), backoff.WithMultiplier(3))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Delay(3); got != 9*time.Second-1 {
		t.Fatalf("Delay(3) with max source = %v, want 9s-1ns", got)
	}

	seeded, err := backoff.New(time.Second, time.Minute, backoff.WithRand(rand.New(rand.NewPCG(1, 2))))
	if err != nil {
		t.Fatal(err)
	}
	var sawLow, sawHigh bool
	for range 1000 {
		d := seeded.Delay(4) // ceiling 8s
		if d < 0 || d >= 8*time.Second {
			t.Fatalf("Delay(4) = %v, outside [0, 8s)", d)
		}
		sawLow = sawLow || d < 2*time.Second
		sawHigh = sawHigh || d > 6*time.Second
	}
	if !sawLow || !sawHigh {
		t.Fatalf("jitter does not spread over the range: low=%v high=%v", sawLow, sawHigh)
	}
}

func TestAttemptBudget(t *testing.T) {
	b, err := backoff.New(time.Millisecond, time.Second, backoff.WithMaxAttempts(3))
	if err != nil {
		t.Fatal(err)
	}
	if b.MaxAttempts() != 3 || b.Exhausted(2) || !b.Exhausted(3) {
		t.Fatalf("MaxAttempts=%d Exhausted(2)=%v Exhausted(3)=%v", b.MaxAttempts(), b.Exhausted(2), b.Exhausted(3))
	}
}

func TestNewValidates(t *testing.T) {
	for _, tt := range []struct {
		name         string
		initial, max time.Duration
		opts         []backoff.Option
	}{
		{"zero initial", 0, time.Second, nil},
		{"max below initial", time.Second, time.Millisecond, nil},
		{"multiplier below one", time.Millisecond, time.Second, []backoff.Option{backoff.WithMultiplier(0.5)}},
		{"no attempts", time.Millisecond, time.Second, []backoff.Option{backoff.WithMaxAttempts(0)}},
		{"nil rand", time.Millisecond, time.Second, []backoff.Option{backoff.WithRand(nil)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := backoff.New(tt.initial, tt.max, tt.opts...); err == nil {
				t.Fatal("New accepted an invalid policy")
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2015, 10, 21, 7, 28, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 120 * time.Second, true},
		{" 0 ", 0, true},
		{"Wed, 21 Oct 2015 07:28:30 GMT", 30 * time.Second, true},
		{"Wednesday, 21-Oct-15 07:29:00 GMT", time.Minute, true},
		{"Wed Oct 21 07:28:05 2015", 5 * time.Second, true},
		{"Wed, 21 Oct 2015 07:00:00 GMT", 0, true},
		{"99999999999999999999", time.Duration(1<<63 - 1), true},
		{"", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := backoff.ParseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := backoff.Sleep(ctx, time.Hour); err == nil {
		t.Fatal("Sleep ignored a cancelled context")
	}
	if err := backoff.Sleep(t.Context(), time.Millisecond); err != nil {
		t.Fatalf("Sleep = %v", err)
	}
}

func ExampleBackoff_Delay() {
	b, _ := backoff.New(100*time.Millisecond, 10*time.Second, backoff.WithMaxAttempts(4))
	for attempt := 1; !b.Exhausted(attempt); attempt++ {
		fmt.Printf("after attempt %d wait up to %v\n", attempt, b.Ceiling(attempt))
	}
	// Output:
	// after attempt 1 wait up to 100ms
	// after attempt 2 wait up to 200ms
	// after attempt 3 wait up to 400ms
}
