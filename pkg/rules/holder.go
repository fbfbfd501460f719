package rules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPollInterval is how often Watch looks at the rules file when given no interval.
const DefaultPollInterval = 5 * time.Second

// Holder keeps the rules set in use and swaps in a new one only when it compiled: a bad rules
// file never replaces a good one. Current is lock-free and safe for concurrent use with Load,
// Reload and Watch; loads are serialised, so a slow load cannot overwrite a newer one.
type Holder struct {
	cur  atomic.Pointer[Set]
	log  *slog.Logger
	opts []Option

	mu      sync.Mutex // serialises loads; guards path and lastErr
	path    string
	lastErr error
}

// NewHolder returns a Holder serving initial (e.g. Default()) until a load succeeds. initial may
// be nil, in which case Current returns nil until then. opts are used for every load.
func NewHolder(initial *Set, log *slog.Logger, opts ...Option) *Holder {
	h := &Holder{log: log, opts: opts}
	if initial != nil {
		h.cur.Store(initial)
	}
	return h
}

// Current returns the rules set in use. The set is immutable; callers may keep it for the
// duration of one message so that score and route come from the same version.
func (h *Holder) Current() *Set { return h.cur.Load() }

// LastError returns the error of the latest load attempt, nil if it succeeded or none ran.
func (h *Holder) LastError() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastErr
}

// Load compiles the rules file at path and, if it is valid, makes it current and remembers path
// for Reload and Watch. On any error the current set stays in place and the error is returned
// (ValidationErrors for an invalid file).
func (h *Holder) Load(ctx context.Context, path string) (*Set, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.path = path
	src, err := readFile(path)
	if err != nil {
		h.lastErr = err
		return nil, err
	}
	return h.swap(ctx, path, src)
}

// Reload loads the file Load or Watch was last given again.
func (h *Holder) Reload(ctx context.Context) (*Set, error) {
	h.mu.Lock()
	path := h.path
	h.mu.Unlock()
	if path == "" {
		return nil, errors.New("reloading rules: no rules file loaded yet")
	}
	return h.Load(ctx, path)
}

// swap compiles src and stores it; h.mu is held.
func (h *Holder) swap(ctx context.Context, path string, src []byte) (*Set, error) {
	s, err := Parse(path, src, h.opts...)
	if err == nil {
		err = ctx.Err() // a load abandoned by its caller must not change what is served
	}
	h.lastErr = err
	if err != nil {
		return nil, err
	}
	old := h.cur.Swap(s)
	if old == nil || old.digest != s.digest {
		args := []any{"path", path, "version", s.version}
		if old != nil {
			args = append(args, "previous_version", old.version)
		}
		h.log.InfoContext(ctx, "rules loaded", args...)
	}
	return s, nil
}

// Watch polls path every interval (DefaultPollInterval if zero or less) and loads it whenever its
// content differs from both the set in use and the last content seen. It checks at once on
// start, so a Holder built on Default() picks the file up immediately. It logs each failed
// load once per content change, keeps serving the previous set, and returns nil when ctx ends.
//
// Polling the content instead of waiting for file events keeps it working with Kubernetes
// ConfigMap volumes (a symlink swap) and editors that replace files.
func (h *Holder) Watch(ctx context.Context, path string, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	h.mu.Lock()
	h.path = path
	h.mu.Unlock()
	var lastSeen, lastReadErr string
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		src, err := readFile(path)
		switch {
		case err != nil:
			if msg := err.Error(); msg != lastReadErr {
				lastReadErr = msg
				h.log.WarnContext(ctx, "rules file unreadable; keeping the current rules", "path", path, "error", err)
			}
		default:
			lastReadErr = ""
			sum := sha256.Sum256(src)
			digest := hex.EncodeToString(sum[:])
			if digest != lastSeen {
				lastSeen = digest
				if cur := h.Current(); cur == nil || cur.digest != digest {
					h.mu.Lock()
					_, err := h.swap(ctx, path, src)
					h.mu.Unlock()
					if err != nil && ctx.Err() == nil {
						h.log.ErrorContext(ctx, "rules file invalid; keeping the current rules", "path", path,
							"current_version", versionOf(h.Current()), "error", err)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func versionOf(s *Set) string {
	if s == nil {
		return ""
	}
	return s.version
}
