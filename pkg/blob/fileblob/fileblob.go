// Package fileblob is the file:// blob store, for development, tests and single-host setups.
// Blobs are files under a root directory, one per key ("raw/ab12" is <root>/raw/ab12); refs are
// file:// URLs of those files.
//
// Writes are atomic and durable: Put writes a hidden temporary file in the target directory,
// fsyncs it, renames it over the target and fsyncs the directory, so a crash leaves either the
// old or the new blob, and a claim-check ref is never acknowledged for bytes still in a cache.
// The root must not be shared with other writers; symlinks placed inside it are followed.
package fileblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailpipe/mailpipe/pkg/blob/internal/blobkey"
)

// Store is a directory of blobs. It is safe for concurrent use, also across processes sharing
// the directory (renames are atomic).
type Store struct {
	root string // absolute and clean
}

// New returns a store rooted at dir, creating it (mode 0750) if needed.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("fileblob: directory is required")
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving blob directory: %w", err)
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("creating blob directory: %w", err)
	}
	return &Store{root: root}, nil
}

// Open returns the store for a file:///absolute/dir URL (host empty or "localhost").
func Open(_ context.Context, u *url.URL) (*Store, error) {
	if u.Scheme != "file" {
		return nil, fmt.Errorf("fileblob: scheme %q, want file", u.Scheme)
	}
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("fileblob: host %q in %q; want file:///absolute/path", u.Host, u.String())
	}
	if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return nil, fmt.Errorf("fileblob: %q is not absolute; want file:///absolute/path", u.String())
	}
	return New(u.Path)
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (ref string, err error) {
	if err := blobkey.Validate(key); err != nil {
		return "", err
	}
	target := filepath.Join(s.root, filepath.FromSlash(key))
	dir := filepath.Dir(target)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("creating blob directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("creating temporary blob: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, ctxReader{ctx: ctx, r: r}); err != nil {
		return "", fmt.Errorf("writing blob: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("syncing blob: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("closing blob: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return "", fmt.Errorf("renaming blob into place: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return "", err
	}
	return (&url.URL{Scheme: "file", Path: target}).String(), nil
}

// Get implements blob.Store.
func (s *Store) Get(ctx context.Context, ref string) (io.ReadCloser, error) {
	path, err := s.resolve(ref)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening blob: %w", err) // wraps fs.ErrNotExist = blob.ErrNotFound
	}
	if info, err := f.Stat(); err != nil || info.IsDir() {
		_ = f.Close()
		// A directory is a key prefix, not a blob.
		return nil, fmt.Errorf("opening blob %s: %w", path, fs.ErrNotExist)
	}
	return f, nil
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, ref string) error {
	path, err := s.resolve(ref)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if info, err := os.Lstat(path); err == nil && info.IsDir() {
		return nil // a key prefix, not a blob: there is nothing to delete, and its blobs stay
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deleting blob: %w", err)
	}
	return nil
}

// resolve maps a ref to a file path inside the root, rejecting anything else: refs come from
// Kafka records and must not become a way to read arbitrary files.
func (s *Store) resolve(ref string) (string, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("%w: %w", blobkey.ErrInvalidRef, err)
	}
	if u.Scheme != "file" || (u.Host != "" && u.Host != "localhost") || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: %q is not a file:/// ref", blobkey.ErrInvalidRef, ref)
	}
	rel, err := filepath.Rel(s.root, filepath.Clean(u.Path))
	if err != nil || u.Path != filepath.Clean(u.Path) {
		return "", fmt.Errorf("%w: %q is not a clean path under %s", blobkey.ErrInvalidRef, ref, s.root)
	}
	if err := blobkey.Validate(filepath.ToSlash(rel)); err != nil {
		return "", fmt.Errorf("%w: %q is outside %s or names no blob", blobkey.ErrInvalidRef, ref, s.root)
	}
	return filepath.Join(s.root, rel), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening blob directory for sync: %w", err)
	}
	defer func() { _ = d.Close() }()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing blob directory: %w", err)
	}
	return nil
}

// ctxReader stops a copy once ctx is done, so a cancelled Put of a large body ends promptly.
type ctxReader struct {
	ctx context.Context //nolint:containedctx // lives for one io.Copy call
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
