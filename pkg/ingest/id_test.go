package ingest_test

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/ingest"
)

func TestIDGeneratorSpecVector(t *testing.T) {
	// The example from the ULID spec: time 1469918176385 with zero randomness.
	now := func() time.Time { return time.UnixMilli(1469918176385) }
	g := ingest.NewIDGenerator(now, bytes.NewReader(make([]byte, 10)))
	got, err := g.New()
	if err != nil {
		t.Fatal(err)
	}
	if want := "01ARYZ6S410000000000000000"; got != want {
		t.Errorf("New() = %s, want %s", got, want)
	}
}

func TestIDGeneratorOrder(t *testing.T) {
	for _, tt := range []struct {
		name  string
		times []int64 // milliseconds returned by the clock, one per id
	}{
		{name: "same millisecond", times: []int64{1000, 1000, 1000, 1000}},
		{name: "advancing clock", times: []int64{1000, 1001, 1500, 99999}},
		{name: "clock steps back", times: []int64{5000, 4000, 4000, 3000}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			i := 0
			now := func() time.Time { ms := tt.times[i]; i++; return time.UnixMilli(ms) }
			g := ingest.NewIDGenerator(now, nil)
			var ids []string
			for range tt.times {
				id, err := g.New()
				if err != nil {
					t.Fatal(err)
				}
				if len(id) != ingest.IDLen {
					t.Fatalf("len(%q) = %d, want %d", id, len(id), ingest.IDLen)
				}
				ids = append(ids, id)
			}
			if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
				t.Errorf("ids are not strictly increasing: %v", ids)
			}
		})
	}
}

func TestIDGeneratorIncrementsWithinMillisecond(t *testing.T) {
	now := func() time.Time { return time.UnixMilli(1469918176385) }
	// 0xff…ff random bits except the last byte, so the increment carries across bytes.
	entropy := bytes.NewReader([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff})
	g := ingest.NewIDGenerator(now, entropy)
	a, _ := g.New()
	b, err := g.New()
	if err != nil {
		t.Fatal(err)
	}
	if a != "01ARYZ6S410000000000001ZZZ" || b != "01ARYZ6S410000000000002000" {
		t.Errorf("got %s then %s, want 01ARYZ6S410000000000001ZZZ then 01ARYZ6S410000000000002000", a, b)
	}
}

func TestIDGeneratorConcurrent(t *testing.T) {
	g := ingest.NewIDGenerator(nil, nil)
	const workers, each = 8, 500
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				id, err := g.New()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[id] {
					t.Errorf("duplicate id %s", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != workers*each {
		t.Errorf("got %d ids, want %d", len(seen), workers*each)
	}
}

func TestIDGeneratorErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		now     func() time.Time
		entropy io.Reader
	}{
		{name: "entropy fails", now: time.Now, entropy: errReader{}},
		{name: "before 1970", now: func() time.Time { return time.Unix(-1, 0) }, entropy: nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if id, err := ingest.NewIDGenerator(tt.now, tt.entropy).New(); err == nil {
				t.Errorf("New() = %s, want an error", id)
			}
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }
