// Package blob stores large payloads outside Kafka (claim check): raw MIME above the inline limit
// and attachments. A Store is addressed by URL; Put returns a ref, itself a URL, which travels in
// the event instead of the bytes and is all a later stage needs to Get them back.
//
// Backends come from gocloud.dev/blob (package cloudblob: file:// and s3://, MinIO included) and
// pass the blobtest conformance suite; Open picks one by the URL's scheme. With a [Keyring],
// Open wraps the backend in an [Encrypted] store: every blob is encrypted at rest with its own
// data key, and its ref names the key that wrapped that data key (see Encrypted for the format).
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"

	"github.com/mailpipe/mailpipe/pkg/blob/cloudblob"
	"github.com/mailpipe/mailpipe/pkg/blob/internal/blobkey"
)

// Store keeps blobs by key. Implementations are safe for concurrent use.
type Store interface {
	// Put stores r's bytes under key and returns the blob's ref. It is atomic: a concurrent or
	// later Get sees either the previous complete blob or the new complete one, never a part,
	// and a failed Put (reader error, cancelled ctx) leaves nothing new behind. Putting an
	// existing key replaces it; callers use content addresses (for example "raw/<sha256>") so
	// a replacement carries the same bytes. Put streams: it does not hold r's bytes in memory.
	//
	// Keys are one or more "/"-separated segments of A-Z a-z 0-9 . _ - ~ = + @, none empty or
	// starting with a dot (no "..", no hidden or temporary names), each at most
	// MaxKeySegmentLen (224) bytes and at most MaxKeyLen (512) bytes in all.
	// Other keys fail with an error wrapping ErrInvalidKey; keys are never rewritten, so two
	// keys cannot silently collide.
	Put(ctx context.Context, key string, r io.Reader) (ref string, err error)
	// Get opens the blob ref points to; the caller closes it. A ref that does not belong to this
	// store (another scheme, or a path outside it) fails with ErrInvalidRef before anything is
	// read, since refs arrive in Kafka records; a missing blob fails with ErrNotFound.
	Get(ctx context.Context, ref string) (io.ReadCloser, error)
	// Delete removes the blob ref points to. Deleting a missing blob is not an error.
	Delete(ctx context.Context, ref string) error
}

// Errors every implementation wraps, for errors.Is.
var (
	// ErrNotFound is fs.ErrNotExist, so implementations and os errors match it without
	// importing this package.
	ErrNotFound = fs.ErrNotExist
	// ErrInvalidKey is wrapped by Put for a key breaking the rules on Store.Put.
	ErrInvalidKey = blobkey.ErrInvalidKey
	// ErrInvalidRef is wrapped by Get and Delete for a ref this store does not own.
	ErrInvalidRef = blobkey.ErrInvalidRef
	// ErrUnsupportedScheme is wrapped by Open for a URL scheme without an implementation.
	ErrUnsupportedScheme = errors.New("unsupported blob store scheme")
)

// Key length limits (see Store.Put).
const (
	MaxKeyLen        = blobkey.MaxLen
	MaxKeySegmentLen = blobkey.MaxSegmentLen
)

// ValidKey reports whether key is acceptable to Put, wrapping ErrInvalidKey when not.
func ValidKey(key string) error { return blobkey.Validate(key) }

// Option configures Open.
type Option interface{ apply(*openOptions) }

type openOptions struct {
	keys *Keyring
}

type optionFunc func(*openOptions)

func (f optionFunc) apply(o *openOptions) { f(o) }

// WithKeyring encrypts every blob at rest with keys (see [Encrypted]). The store takes
// ownership: closing it closes the keyring. Default: no encryption, and refs of encrypted blobs
// (with a kid parameter) are refused with ErrInvalidRef.
func WithKeyring(keys *Keyring) Option {
	return optionFunc(func(o *openOptions) { o.keys = keys })
}

// Open returns the store for rawURL, chosen by scheme:
//
//   - file:///absolute/dir, a directory, created if missing;
//   - s3://bucket[/prefix][?region=…&endpoint=…&use_path_style=true…], AWS S3 or an
//     S3-compatible service (see cloudblob.Open for every parameter).
//
// gs:// and azblob:// are planned as further gocloud drivers; they and any other scheme fail
// with ErrUnsupportedScheme. The returned store implements io.Closer; Close releases the
// bucket (and the keyring given with WithKeyring).
func Open(ctx context.Context, rawURL string, opts ...Option) (Store, error) {
	var o openOptions
	for _, opt := range opts {
		opt.apply(&o)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the URL, which may carry a secret query parameter.
		return nil, errors.New("parsing blob store url: not a URL")
	}
	switch u.Scheme {
	case cloudblob.SchemeFile, cloudblob.SchemeS3:
	case "":
		return nil, fmt.Errorf("%w: %q has no scheme (want file:///path or s3://bucket)", ErrUnsupportedScheme, u.Redacted())
	default:
		return nil, fmt.Errorf("%w: %q (built in: file, s3)", ErrUnsupportedScheme, u.Scheme)
	}
	s, err := cloudblob.Open(ctx, u)
	if err != nil {
		return nil, err
	}
	if o.keys == nil {
		return s, nil
	}
	return NewEncrypted(s, o.keys), nil
}
