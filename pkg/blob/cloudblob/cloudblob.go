// Package cloudblob is the blob store over gocloud.dev/blob buckets: file:// for development,
// tests and single-host setups, s3:// (AWS S3 or any S3-compatible service such as MinIO) in
// production. It implements blob.Store and passes the blobtest conformance suite.
//
// Refs are URLs naming the object without any connection settings, so they stay valid when
// endpoints, regions or credentials change:
//
//	file:///var/lib/mailpipe/blobs/raw/01J…   (the root directory, then the key)
//	s3://mail-blobs/prefix/raw/01J…          (the bucket, the optional prefix, then the key)
//
// A store only resolves refs under its own root or bucket and prefix; anything else fails with
// ErrInvalidRef before any I/O, since refs arrive in Kafka records.
//
// # Durability
//
// Both backends make a Put atomic: S3 objects appear whole when the upload completes, and the
// file backend writes a temporary file next to the target and renames it into place. The file
// backend also fsyncs the file before the rename and the directory after it, so a ref returned
// by Put (and then acknowledged to a sender) never points at bytes still in the page cache.
package cloudblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	gcblob "gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcerrors"

	"github.com/mailpipe/mailpipe/pkg/blob/internal/blobkey"
)

// Schemes built in.
const (
	SchemeFile = "file"
	SchemeS3   = "s3"
)

// PrefixParam is the query parameter naming a key prefix inside the bucket, as in gocloud's URL
// conventions. For s3:// the URL path is the same thing spelt more readably:
// s3://bucket/mail and s3://bucket?prefix=mail/ are one store.
const PrefixParam = "prefix"

// S3PartSize is the part size of S3 multipart uploads and so, with one part in flight per Put,
// about the memory an upload holds: S3's minimum part size. gocloud's default is larger and
// uploads several parts at once, which multiplies the memory per message.
const S3PartSize = 5 << 20

// copyBufferSize is the chunk Put copies with. gocloud's own ReadFrom allocates 1 MiB per call.
const copyBufferSize = 64 << 10

// Store is a bucket of blobs. It is safe for concurrent use. Close releases the bucket.
type Store struct {
	bucket *gcblob.Bucket
	// scheme, host and base form every ref: scheme://host + base + "/" + key. base is a clean
	// path without a trailing slash ("" for a bucket without prefix).
	scheme, host, base string
	// dir is the root directory of a file store (fsync and prefix checks); "" otherwise.
	dir  string
	opts gcblob.WriterOptions
}

// Open returns the store for u.
//
//   - file:///absolute/dir (host empty or "localhost") is a directory, created with mode 0750 if
//     missing. No query parameters are accepted.
//   - s3://bucket[/prefix][?params] is an S3 bucket, the path (or the prefix parameter) a key
//     prefix. The parameters are gocloud's s3blob and AWS config ones: region, endpoint,
//     use_path_style, disable_https, hostname_immutable, profile, anonymous, ssetype, kmskeyid,
//     accelerate, dualstack, fips, … A MinIO endpoint is
//     s3://bucket?endpoint=http://minio:9000&use_path_style=true&region=us-east-1.
//     Credentials come from the AWS default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
//     shared profile, web identity, instance role); they are resolved on first use, so Open
//     does not reach the network.
//
// Other schemes fail with an error; package blob maps that to ErrUnsupportedScheme.
func Open(ctx context.Context, u *url.URL) (*Store, error) {
	switch u.Scheme {
	case SchemeFile:
		return openFile(u)
	case SchemeS3:
		return openS3(ctx, u)
	default:
		return nil, fmt.Errorf("cloudblob: scheme %q, want file or s3", u.Scheme)
	}
}

func openFile(u *url.URL) (*Store, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("cloudblob: host %q in %q; want file:///absolute/path", u.Host, u.Redacted())
	}
	if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return nil, fmt.Errorf("cloudblob: %q is not absolute; want file:///absolute/path", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("cloudblob: %q: file stores take no query parameters or fragment", u.Redacted())
	}
	return NewDir(u.Path)
}

// NewDir returns a file store rooted at dir, creating it (mode 0750) if needed.
func NewDir(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("cloudblob: directory is required")
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving blob directory: %w", err)
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("creating blob directory: %w", err)
	}
	b, err := fileblob.OpenBucket(root, &fileblob.Options{
		// Temporary files beside the target: a rename across file systems would fail, and a
		// rename within one directory is atomic.
		NoTempDir: true,
		// No ".attrs" sidecar per blob: nothing here reads content types or metadata.
		Metadata:    fileblob.MetadataDontWrite,
		DirFileMode: 0o750,
	})
	if err != nil {
		return nil, fmt.Errorf("opening blob directory: %w", err)
	}
	return &Store{
		bucket: b, scheme: SchemeFile, base: filepath.ToSlash(root), dir: root,
		opts: gcblob.WriterOptions{ContentType: "application/octet-stream"},
	}, nil
}

func openS3(ctx context.Context, u *url.URL) (*Store, error) {
	if u.Host == "" {
		return nil, fmt.Errorf("cloudblob: %q names no bucket; want s3://bucket[/prefix]", u.Redacted())
	}
	if u.Opaque != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("cloudblob: %q: want s3://bucket[/prefix][?params] (credentials come from the AWS default chain, not the URL)", u.Redacted())
	}
	q := u.Query()
	prefix, err := s3Prefix(u.Path, q)
	if err != nil {
		return nil, err
	}
	q.Del(PrefixParam)
	bare := *u
	bare.Path, bare.RawPath, bare.RawQuery = "", "", q.Encode()
	// A fresh opener per store: s3blob's URLOpener writes URL options into itself.
	b, err := (&s3blob.URLOpener{}).OpenBucketURL(ctx, &bare)
	if err != nil {
		return nil, fmt.Errorf("opening s3 bucket %s: %w", u.Host, err)
	}
	base := ""
	if prefix != "" {
		b = gcblob.PrefixedBucket(b, prefix)
		base = "/" + strings.TrimSuffix(prefix, "/")
	}
	return &Store{
		bucket: b, scheme: SchemeS3, host: u.Host, base: base,
		opts: gcblob.WriterOptions{ContentType: "application/octet-stream", BufferSize: S3PartSize, MaxConcurrency: 1},
	}, nil
}

// s3Prefix returns the key prefix from the URL path or the prefix parameter ("" or ending in
// "/"), which must follow the key rules so refs stay parseable.
func s3Prefix(p string, q url.Values) (string, error) {
	fromPath := strings.Trim(p, "/")
	fromParam := strings.Trim(q.Get(PrefixParam), "/")
	switch {
	case len(q[PrefixParam]) > 1 || (fromPath != "" && q.Has(PrefixParam)):
		return "", errors.New("cloudblob: give the key prefix once, as the URL path or the prefix parameter")
	case fromParam != "":
		fromPath = fromParam
	}
	if fromPath == "" {
		return "", nil
	}
	if err := blobkey.Validate(fromPath); err != nil {
		return "", fmt.Errorf("cloudblob: prefix %q: %w", fromPath, err)
	}
	return fromPath + "/", nil
}

// Close releases the bucket. The store must not be used afterwards.
func (s *Store) Close() error {
	if err := s.bucket.Close(); err != nil {
		return fmt.Errorf("closing blob bucket: %w", err)
	}
	return nil
}

// Ref returns the ref of key in this store, whether or not the blob exists.
func (s *Store) Ref(key string) string {
	return (&url.URL{Scheme: s.scheme, Host: s.host, Path: s.base + "/" + key}).String()
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (ref string, err error) {
	if err := blobkey.Validate(key); err != nil {
		return "", err
	}
	// Cancelling the writer's ctx is gocloud's way to abort a write: nothing is stored.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts := s.opts
	var f *os.File
	if s.dir != "" {
		opts.BeforeWrite = func(as func(any) bool) error {
			as(&f)
			return nil
		}
	}
	w, err := s.bucket.NewWriter(wctx, key, &opts)
	if err != nil {
		return "", fmt.Errorf("opening blob writer: %w", err)
	}
	abort := func(err error) (string, error) {
		cancel()
		_ = w.Close() // reports the cancellation; the temporary file or upload is discarded
		return "", err
	}
	// The writer is hidden behind a plain io.Writer so io.CopyBuffer does not take gocloud's
	// ReadFrom, which allocates a 1 MiB buffer per call.
	buf := make([]byte, copyBufferSize)
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, ctxReader{ctx: ctx, r: r}, buf); err != nil {
		return abort(fmt.Errorf("writing blob: %w", err))
	}
	if f != nil {
		if err := f.Sync(); err != nil {
			return abort(fmt.Errorf("syncing blob: %w", err))
		}
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("storing blob: %w", err)
	}
	if s.dir != "" {
		if err := syncDir(filepath.Dir(filepath.Join(s.dir, filepath.FromSlash(key)))); err != nil {
			return "", err
		}
	}
	return s.Ref(key), nil
}

// Get implements blob.Store. The reader is bound to ctx: reading after ctx ends fails.
func (s *Store) Get(ctx context.Context, ref string) (io.ReadCloser, error) {
	key, err := s.resolve(ref)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rd, err := s.bucket.NewReader(ctx, key, nil)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, fmt.Errorf("opening blob %s: %w", key, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("opening blob %s: %w", key, err)
	}
	return rd, nil
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, ref string) error {
	key, err := s.resolve(ref)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.dir != "" {
		// A directory is a key prefix, not a blob: there is nothing to delete, and gocloud
		// would remove it if it happened to be empty.
		if info, err := os.Lstat(filepath.Join(s.dir, filepath.FromSlash(key))); err == nil && info.IsDir() {
			return nil
		}
	}
	if err := s.bucket.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("deleting blob %s: %w", key, err)
	}
	return nil
}

// resolve maps a ref to a key of this store, rejecting anything else: refs come from Kafka
// records and must not become a way to read arbitrary files or objects.
func (s *Store) resolve(ref string) (string, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("%w: %w", blobkey.ErrInvalidRef, err)
	}
	host := u.Host
	if s.scheme == SchemeFile && host == "localhost" {
		host = ""
	}
	if u.Scheme != s.scheme || host != s.host || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("%w: %q is not a %s ref of this store", blobkey.ErrInvalidRef, ref, s.scheme)
	}
	rest, ok := strings.CutPrefix(u.Path, s.base+"/")
	if !ok || path.Clean(u.Path) != u.Path {
		return "", fmt.Errorf("%w: %q is outside %s", blobkey.ErrInvalidRef, ref, s.Ref(""))
	}
	if err := blobkey.Validate(rest); err != nil {
		return "", fmt.Errorf("%w: %q names no blob: %w", blobkey.ErrInvalidRef, ref, err)
	}
	return rest, nil
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
	ctx context.Context //nolint:containedctx // lives for one io.CopyBuffer call
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Key returns the key ref names in this store, or an error wrapping ErrInvalidRef when ref is
// not one of this store's refs. It does no I/O.
func (s *Store) Key(ref string) (string, error) { return s.resolve(ref) }
