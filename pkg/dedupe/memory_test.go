package dedupe_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/dedupe/dedupetest"
)

func TestMemoryConformance(t *testing.T) {
	dedupetest.Run(t, func(*testing.T) dedupe.Store { return dedupe.NewMemory() })
}

func TestMemorySweepsExpiredKeys(t *testing.T) {
	// given a store on a fake clock holding many keys that then expire
	now := time.Unix(1_700_000_000, 0)
	m := dedupe.NewMemory(dedupe.WithClock(func() time.Time { return now }))
	for i := range 1000 {
		if _, err := m.MarkSeen(t.Context(), fmt.Sprintf("old-%d", i), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(2 * time.Minute)
	// when more keys arrive
	for i := range 100 {
		if _, err := m.MarkSeen(t.Context(), fmt.Sprintf("new-%d", i), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// then the expired ones were swept
	if n := m.Len(); n > 1024 || n < 100 {
		t.Fatalf("Len = %d, want the expired keys swept (100..1024)", n)
	}
	if first, _ := m.MarkSeen(t.Context(), "old-1", time.Minute); !first {
		t.Error("expired key still a duplicate")
	}
}

func TestMemoryFakeClockExpiry(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	m := dedupe.NewMemory(dedupe.WithClock(func() time.Time { return now }))
	for _, tt := range []struct {
		advance time.Duration
		want    bool
	}{
		{0, true},
		{59 * time.Second, false},
		{time.Second, true}, // exactly at expiry the key is gone
		{30 * time.Second, false},
	} {
		now = now.Add(tt.advance)
		first, err := m.MarkSeen(t.Context(), "k", time.Minute)
		if err != nil || first != tt.want {
			t.Fatalf("after +%v: MarkSeen = %v, %v; want %v", tt.advance, first, err, tt.want)
		}
	}
}
