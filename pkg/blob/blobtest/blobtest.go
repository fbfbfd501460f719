// Package blobtest is the conformance suite every blob.Store implementation passes.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/blob"
)

// Run runs the suite. newStore returns a fresh, empty store for one subtest.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	t.Run("round trip", func(t *testing.T) {
		s := newStore(t)
		for _, tt := range []struct {
			name, key string
			data      []byte
		}{
			{"empty", "empty", nil},
			{"small", "raw/small.eml", []byte("Subject: hi\r\n\r\nbody\r\n")},
			{"nested key", "att/ab/cd/sha256=0f1e", []byte{0, 1, 2, 255}},
			{"large", "raw/large", randomBytes(t, 3<<20+17)},
		} {
			t.Run(tt.name, func(t *testing.T) {
				ref, err := s.Put(t.Context(), tt.key, bytes.NewReader(tt.data))
				if err != nil {
					t.Fatal(err)
				}
				if u, err := url.Parse(ref); err != nil || u.Scheme == "" {
					t.Fatalf("ref %q is not a URL with a scheme (%v)", ref, err)
				}
				if got := read(t, s, ref); !bytes.Equal(got, tt.data) {
					t.Fatalf("Get returned %d bytes, want %d", len(got), len(tt.data))
				}
			})
		}
	})

	t.Run("distinct keys, distinct refs", func(t *testing.T) {
		s := newStore(t)
		a, err := s.Put(t.Context(), "a", strings.NewReader("A"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Put(t.Context(), "b", strings.NewReader("B"))
		if err != nil {
			t.Fatal(err)
		}
		if a == b {
			t.Fatalf("keys a and b share ref %q", a)
		}
		if string(read(t, s, a)) != "A" || string(read(t, s, b)) != "B" {
			t.Fatal("blobs mixed up")
		}
	})

	t.Run("overwrite", func(t *testing.T) {
		s := newStore(t)
		first, err := s.Put(t.Context(), "k", strings.NewReader("old"))
		if err != nil {
			t.Fatal(err)
		}
		second, err := s.Put(t.Context(), "k", strings.NewReader("new"))
		if err != nil {
			t.Fatal(err)
		}
		if first != second {
			t.Errorf("refs differ for one key: %q vs %q", first, second)
		}
		if got := read(t, s, second); string(got) != "new" {
			t.Fatalf("Get = %q, want new", got)
		}
	})

	t.Run("delete", func(t *testing.T) {
		s := newStore(t)
		ref, err := s.Put(t.Context(), "gone", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 { // idempotent
			if err := s.Delete(t.Context(), ref); err != nil {
				t.Fatalf("Delete #%d: %v", i+1, err)
			}
		}
		if _, err := s.Get(t.Context(), ref); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
		}
	})

	t.Run("invalid keys", func(t *testing.T) {
		s := newStore(t)
		for _, key := range []string{
			"", "/abs", "trailing/", "a//b", "..", "../escape", "a/../b", "a/./b", ".hidden", "a/.tmp-1",
			`a\b`, "a b", "a\x00b", "a?b", "a#b", "a%2Fb", "ü", strings.Repeat("k", blob.MaxKeySegmentLen+1),
			strings.Repeat("k/", blob.MaxKeyLen/2) + "k",
		} {
			if ref, err := s.Put(t.Context(), key, strings.NewReader("x")); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("Put(%q) = %q, %v; want ErrInvalidKey", key, ref, err)
			}
		}
		longest := strings.Repeat("k", blob.MaxKeySegmentLen) + "/" + strings.Repeat("k", blob.MaxKeySegmentLen)
		if _, err := s.Put(t.Context(), longest, strings.NewReader("x")); err != nil {
			t.Errorf("Put of a %d-byte key: %v", len(longest), err)
		}
	})

	t.Run("foreign refs are refused", func(t *testing.T) {
		s := newStore(t)
		ref, err := s.Put(t.Context(), "dir/own", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(ref)
		if err != nil {
			t.Fatal(err)
		}
		parent := *u
		parent.Path = u.Path[:strings.LastIndex(u.Path, "/")]
		escape := *u
		escape.Path = u.Path + "/../../../../../../../../etc/passwd"
		// The parent "directory" of a blob is a key prefix: no blob, and Delete must not touch
		// the blobs under it.
		if rc, err := s.Get(t.Context(), parent.String()); err == nil {
			_ = rc.Close()
			t.Errorf("Get(%q) of a key prefix succeeded", parent.String())
		} else if !errors.Is(err, blob.ErrInvalidRef) && !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrInvalidRef or ErrNotFound", parent.String(), err)
		}
		_ = s.Delete(t.Context(), parent.String())
		if got := read(t, s, ref); string(got) != "x" {
			t.Fatalf("blob under a deleted prefix = %q", got)
		}
		for _, bad := range []string{
			"", "not a url", "ftp://example.com/x", escape.String(), "file:///etc/passwd",
			strings.Replace(ref, "own", ".own", 1), ref + "?x=1",
		} {
			if rc, err := s.Get(t.Context(), bad); err == nil {
				_ = rc.Close()
				t.Errorf("Get(%q) succeeded", bad)
			} else if !errors.Is(err, blob.ErrInvalidRef) {
				t.Errorf("Get(%q) = %v, want ErrInvalidRef", bad, err)
			}
			if err := s.Delete(t.Context(), bad); !errors.Is(err, blob.ErrInvalidRef) {
				t.Errorf("Delete(%q) = %v, want ErrInvalidRef", bad, err)
			}
		}
	})

	t.Run("failed put leaves nothing", func(t *testing.T) {
		s := newStore(t)
		boom := errors.New("client went away")
		if _, err := s.Put(t.Context(), "fp/partial", io.MultiReader(strings.NewReader("half"), errReader{boom})); !errors.Is(err, boom) {
			t.Fatalf("Put = %v, want %v", err, boom)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := s.Put(ctx, "fp/cancelled", strings.NewReader("x")); err == nil {
			t.Fatal("Put with a cancelled context succeeded")
		}
		// Refs name their key, so the refs the failed Puts would have returned can be derived
		// from a sibling's.
		ok, err := s.Put(t.Context(), "fp/ok", strings.NewReader("ok"))
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"fp/partial", "fp/cancelled"} {
			ref := strings.Replace(ok, "fp/ok", key, 1)
			if rc, err := s.Get(t.Context(), ref); !errors.Is(err, blob.ErrNotFound) {
				if err == nil {
					_ = rc.Close()
				}
				t.Errorf("Get(%q) after a failed Put = %v, want ErrNotFound", ref, err)
			}
		}
	})

	t.Run("failed overwrite keeps the old blob", func(t *testing.T) {
		s := newStore(t)
		ref, err := s.Put(t.Context(), "keep", strings.NewReader("old"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(t.Context(), "keep", io.MultiReader(strings.NewReader("ne"), errReader{io.ErrUnexpectedEOF})); err == nil {
			t.Fatal("Put with a failing reader succeeded")
		}
		if got := read(t, s, ref); string(got) != "old" {
			t.Fatalf("Get = %q, want old", got)
		}
	})

	t.Run("concurrent puts never tear", func(t *testing.T) {
		s := newStore(t)
		versions := make([][]byte, 8)
		for i := range versions {
			versions[i] = bytes.Repeat([]byte{byte('a' + i)}, 256<<10)
		}
		var wg sync.WaitGroup
		refs := make([]string, len(versions))
		errs := make([]error, len(versions))
		for i, v := range versions {
			wg.Go(func() { refs[i], errs[i] = s.Put(t.Context(), "contended", bytes.NewReader(v)) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		got := read(t, s, refs[0])
		for _, v := range versions {
			if bytes.Equal(got, v) {
				return
			}
		}
		t.Fatalf("Get returned %d bytes matching no complete version", len(got))
	})
}

func read(t *testing.T, s blob.Store, ref string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), ref)
	if err != nil {
		t.Fatalf("Get(%q): %v", ref, err)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
