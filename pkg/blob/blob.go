// Package blob stores large payloads outside Kafka (claim check): raw MIME above the inline limit
// and attachments. A Store is addressed by URL; Put returns a ref, itself a URL, which travels in
// the event instead of the bytes and is all a later stage needs to Get them back.
//
// Implementations live in subpackages (fileblob for file://) and pass the blobtest conformance
// suite; Open picks one by the URL's scheme.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"

	"github.com/mailpipe/mailpipe/pkg/blob/fileblob"
	"github.com/mailpipe/mailpipe/pkg/blob/internal/blobkey"
)

// Store keeps blobs by key. Implementations are safe for concurrent use.
type Store interface {
	// Put stores r's bytes under key and returns the blob's ref. It is atomic: a concurrent or
	// later Get sees either the previous complete blob or the new complete one, never a part,
	// and a failed Put (reader error, cancelled ctx) leaves nothing new behind. Putting an
	// existing key replaces it; callers use content addresses (for example "raw/<sha256>") so
	// a replacement carries the same bytes.
	//
	// Keys are one or more "/"-separated segments of A-Z a-z 0-9 . _ - ~ = + @, none empty or
	// starting with a dot (no "..", no hidden or temporary names), each at most 255 bytes and
	// at most 512 bytes in all.
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

// ValidKey reports whether key is acceptable to Put, wrapping ErrInvalidKey when not.
func ValidKey(key string) error { return blobkey.Validate(key) }

// Open returns the store for rawURL, chosen by scheme. Only file:///absolute/dir is built in
// (the directory is created if missing); s3://, gs:// and azblob:// are planned and, like any
// other scheme, fail with ErrUnsupportedScheme for now.
func Open(ctx context.Context, rawURL string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parsing blob store url: %w", err)
	}
	switch u.Scheme {
	case "file":
		return fileblob.Open(ctx, u)
	case "":
		return nil, fmt.Errorf("%w: %q has no scheme (want file:///path)", ErrUnsupportedScheme, rawURL)
	default:
		return nil, fmt.Errorf("%w: %q (built in: file)", ErrUnsupportedScheme, u.Scheme)
	}
}
