package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/ratelimit"
	"github.com/mailpipe/mailpipe/pkg/ratelimit/ratelimittest"
)

func TestMemoryConformance(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T, l ratelimit.Limit) ratelimit.Limiter {
		m, err := ratelimit.NewMemory(l)
		if err != nil {
			t.Fatal(err)
		}
		return m
	})
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestMemoryTokenBucket(t *testing.T) {
	// given 2 a minute: a bucket of 2, one token back every 30s
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	m, err := ratelimit.NewMemory(ratelimit.PerMinute(2), ratelimit.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	step := func(advance time.Duration, wantOK bool, wantRetry time.Duration) {
		t.Helper()
		c.Add(advance)
		ok, retry, err := m.Allow(t.Context(), "ip")
		if err != nil || ok != wantOK || retry != wantRetry {
			t.Fatalf("after +%v: Allow = %v, %v, %v; want %v, %v, nil", advance, ok, retry, err, wantOK, wantRetry)
		}
	}
	step(0, true, 0)
	step(0, true, 0)
	step(0, false, 30*time.Second)
	step(10*time.Second, false, 20*time.Second) // refused events take no token
	step(20*time.Second, true, 0)
	step(0, false, 30*time.Second)
	step(time.Hour, true, 0) // idle for long: full (2), never more
	step(0, true, 0)
	step(0, false, 30*time.Second)
}

func TestMemorySweepsFullBuckets(t *testing.T) {
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	m, err := ratelimit.NewMemory(ratelimit.PerSecond(1), ratelimit.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if ok, _, err := m.Allow(t.Context(), fmt.Sprint("old-", i)); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	// when the old buckets have refilled and new keys arrive
	c.Add(2 * time.Second)
	for i := range 100 {
		if ok, _, err := m.Allow(t.Context(), fmt.Sprint("new-", i)); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	// then the full ones were dropped at the sweep
	if n := m.Len(); n > 100 {
		t.Errorf("Len = %d after the sweep, want at most the 100 live buckets", n)
	}
}

func TestNewValidatesLimit(t *testing.T) {
	for _, tt := range []struct {
		name string
		l    ratelimit.Limit
	}{
		{"zero limit", ratelimit.Limit{}},
		{"no period", ratelimit.Limit{Rate: 1}},
		{"negative rate", ratelimit.Limit{Rate: -1, Period: time.Second}},
		{"negative burst", ratelimit.Limit{Rate: 1, Period: time.Second, Burst: -1}},
		{"sub-microsecond interval", ratelimit.Limit{Rate: 10_000, Period: time.Millisecond}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ratelimit.NewMemory(tt.l); !errors.Is(err, ratelimit.ErrInvalid) {
				t.Errorf("NewMemory(%+v) error = %v, want ErrInvalid", tt.l, err)
			}
		})
	}
	if _, err := ratelimit.MemoryFactory()("", ratelimit.PerSecond(1)); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("factory with an empty name: error = %v, want ErrInvalid", err)
	}
}

func TestLimitText(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    ratelimit.Limit
		wantErr bool
		text    string
	}{
		{in: "", want: ratelimit.Limit{}, text: ""},
		{in: "60/m", want: ratelimit.PerMinute(60), text: "60/m"},
		{in: " 10 / s ", want: ratelimit.PerSecond(10), text: "10/s"},
		{in: "500/h", want: ratelimit.Limit{Rate: 500, Period: time.Hour}, text: "500/h"},
		{in: "30/90s", want: ratelimit.Limit{Rate: 30, Period: 90 * time.Second}, text: "30/1m30s"},
		{in: "60", wantErr: true},
		{in: "x/m", wantErr: true},
		{in: "60/fortnight", wantErr: true},
		{in: "0/m", wantErr: true},
		{in: "-5/m", wantErr: true},
		{in: "5/-1s", wantErr: true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			var got ratelimit.Limit
			err := got.UnmarshalText([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ratelimit.ErrInvalid) {
					t.Fatalf("UnmarshalText(%q) = %+v, %v; want ErrInvalid", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("UnmarshalText(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != tt.text {
				t.Errorf("String() = %q, want %q", s, tt.text)
			}
		})
	}
	if s := (ratelimit.Limit{Rate: 1, Period: time.Minute, Burst: 10}).String(); s != "1/m burst 10" {
		t.Errorf("String with burst = %q", s)
	}
}

func ExampleNewMemory() {
	lim, err := ratelimit.NewMemory(ratelimit.PerMinute(2))
	if err != nil {
		panic(err)
	}
	for range 3 {
		ok, retryAfter, err := lim.Allow(context.Background(), "192.0.2.1")
		if err != nil {
			// Fail open: ok is true; log err and go on.
			continue
		}
		fmt.Println(ok, retryAfter.Round(time.Second))
	}
	// Output:
	// true 0s
	// true 0s
	// false 30s
}
