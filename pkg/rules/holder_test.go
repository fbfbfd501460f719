package rules_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/rules"
)

func versioned(v string) string { return "version: " + v + "\n" + catchAll }

const invalid = "version: bad\nroutes:\n  - name: x\n    when: 'score'\n    queue: q\n"

func write(t *testing.T, path, src string) {
	t.Helper()
	// Write and rename, as editors and ConfigMap updates do, so a poll never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestHolderLoad(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	write(t, good, versioned("v2"))
	write(t, bad, invalid)
	for _, tt := range []struct {
		name    string
		path    string
		version string // served after the load
		errText string // "" for success
	}{
		{"valid file replaces the current set", good, "v2", ""},
		{"invalid file keeps the current set", bad, "v1", bad + `:4:11: route "x": condition must be bool, got int`},
		{"missing file keeps the current set", filepath.Join(dir, "nope.yaml"), "v1", "opening rules file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// given
			h := rules.NewHolder(mustParse(t, versioned("v1")), discard())
			// when
			set, err := h.Load(t.Context(), tt.path)
			// then
			if got := h.Current().Version(); got != tt.version {
				t.Errorf("serving %s after the load, want %s", got, tt.version)
			}
			switch {
			case tt.errText == "" && (err != nil || set != h.Current() || h.LastError() != nil):
				t.Errorf("Load = %v, %v; LastError %v", set, err, h.LastError())
			case tt.errText != "" && (err == nil || !strings.Contains(err.Error(), tt.errText) || h.LastError() == nil || h.LastError().Error() != err.Error()):
				t.Errorf("Load error = %v, LastError %v, want %q", err, h.LastError(), tt.errText)
			}
		})
	}
}

func TestHolderReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	h := rules.NewHolder(nil, discard())
	if h.Current() != nil {
		t.Fatal("a holder without an initial set serves one")
	}
	if _, err := h.Reload(t.Context()); err == nil {
		t.Error("Reload before any Load succeeded")
	}
	for _, step := range []struct {
		src, want string
		ok        bool
	}{
		{versioned("v1"), "v1", true},
		{versioned("v2"), "v2", true},
		{invalid, "v2", false},
		{versioned("v3"), "v3", true},
	} {
		write(t, path, step.src)
		var err error
		if h.Current() == nil {
			_, err = h.Load(t.Context(), path)
		} else {
			_, err = h.Reload(t.Context())
		}
		if (err == nil) != step.ok || h.Current().Version() != step.want {
			t.Errorf("after writing %s: serving %s, error %v", step.want, h.Current().Version(), err)
		}
	}
}

func TestHolderLoadCancelled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, path, versioned("v2"))
	h := rules.NewHolder(mustParse(t, versioned("v1")), discard())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := h.Load(ctx, path); !errors.Is(err, context.Canceled) || h.Current().Version() != "v1" {
		t.Errorf("Load with a cancelled context: %v, serving %s", err, h.Current().Version())
	}
}

// syncBuffer is a log sink the watcher goroutine and the test can share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestWatch(t *testing.T) {
	// given a holder on the default rules and a rules file
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, path, versioned("v1"))
	var logs syncBuffer
	h := rules.NewHolder(mustDefault(t), slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.Watch(ctx, path, 5*time.Millisecond) }()

	// then the file is picked up at once
	eventually(t, "v1 is served", func() bool { return h.Current().Version() == "v1" })

	// when the file turns invalid, then the good set stays and the problem is logged once
	write(t, path, invalid)
	eventually(t, "the invalid file is reported", func() bool { return strings.Contains(logs.String(), "rules file invalid") })
	time.Sleep(30 * time.Millisecond) // several more polls
	if v := h.Current().Version(); v != "v1" {
		t.Fatalf("serving %s after an invalid file, want v1", v)
	}
	if n := strings.Count(logs.String(), "rules file invalid"); n != 1 {
		t.Errorf("the invalid file was logged %d times, want once", n)
	}
	if h.LastError() == nil {
		t.Error("LastError is nil after an invalid file")
	}

	// when the file is removed, then the good set stays
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the missing file is reported", func() bool { return strings.Contains(logs.String(), "rules file unreadable") })

	// when it is fixed, then the new set is served
	write(t, path, versioned("v2"))
	eventually(t, "v2 is served", func() bool { return h.Current().Version() == "v2" })
	if h.LastError() != nil {
		t.Errorf("LastError = %v after a good load", h.LastError())
	}

	// when the context ends, then Watch returns nil
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
	if !strings.Contains(logs.String(), "previous_version=2026-11-23.1") {
		t.Errorf("the swap from the default rules was not logged:\n%s", logs.String())
	}
}

// TestHolderConcurrent evaluates with Current while the set is swapped; run with -race.
func TestHolderConcurrent(t *testing.T) {
	dir := t.TempDir()
	h := rules.NewHolder(mustDefault(t), discard())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				set := h.Current()
				res, err := set.Evaluate(t.Context(), lead())
				if err != nil || res.Version != set.Version() || res.Route.Queue == "" {
					t.Errorf("Evaluate = %+v, %v", res, err)
					return
				}
			}
		})
	}
	for i := range 20 {
		path := filepath.Join(dir, fmt.Sprintf("r%d.yaml", i))
		src := versioned(fmt.Sprintf("v%d", i))
		if i%3 == 0 {
			src = invalid
		}
		write(t, path, src)
		_, _ = h.Load(t.Context(), path)
	}
	wg.Wait()
	if v := h.Current().Version(); v != "v19" {
		t.Errorf("serving %s after the last load, want v19", v)
	}
}
