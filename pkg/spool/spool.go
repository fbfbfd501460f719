package spool

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Header is the header field Split adds to the header block of every spooled part, just before
// the empty line that ends it. Its value is "<n> <token>": n is the index of the part in
// [Result.Parts], and token is drawn at random for each Split call, so that a field of the same
// name already present in the message (sent by anyone) is never taken for one of ours. Use
// [Result.Lookup] to resolve a value. The value may be followed by blanks (padding, see
// [Result]), which header parsers trim.
const Header = "X-Mailpipe-Spooled"

// Defaults of [Options].
const (
	DefaultThreshold      = 1 << 20
	DefaultMaxDecodedSize = 64 << 20
	DefaultMaxParts       = 1000
	DefaultMaxDepth       = 32
	DefaultMaxLineLength  = 64 << 10
)

// MinLineLength is the smallest accepted [Options.MaxLineLength]. enmime peeks up to 4096 bytes
// when it looks for a boundary; a smaller buffer could not see what it sees.
const MinLineLength = 4 << 10

// HeadSize is the number of decoded bytes kept in [Part.Head] for content sniffing.
const HeadSize = 512

// maxBoundary is the longest boundary Split follows. RFC 2046 allows 70 characters; a multipart
// with a longer one is not split (enmime itself stops recognising boundaries near 4 KiB).
const maxBoundary = 1000

// Options configure [Split]. The zero value of each field selects its default.
//
// This is a plain struct rather than functional options (STYLE habit 6) because every field is
// data the parser stage copies from its configuration next to the mime limits, and the zero value
// is meaningful for all of them; [Options.Validate] rejects values that cannot work.
type Options struct {
	// Threshold is the encoded body size, in bytes, above which a leaf part is spooled (default
	// 1 MiB). A body is buffered up to Threshold bytes before it is known to be large, so peak
	// memory grows with it. Inside a multipart, a body is also kept unless it reaches past the
	// first 4 KiB of its part (see the package doc), which matters only for thresholds below
	// that.
	Threshold int64
	// TempDir is the directory spooled parts are written to, with os.CreateTemp (default
	// os.TempDir()).
	TempDir string
	// MaxDecodedSize caps the decoded bytes written over all spooled parts of one message
	// (default 64 MiB, mime.DefaultMaxDecodedSize). A part that crosses it is cut, marked
	// Truncated and warned about; later large parts are still removed from the skeleton but
	// keep no bytes. Small parts left in the skeleton do not count: the mime package enforces
	// its own limit on them.
	MaxDecodedSize int64
	// MaxParts is the number of MIME entities (the root and multipart containers included)
	// after which Split stops splitting and passes the rest of the message through unchanged
	// (default 1000, as mime.DefaultMaxParts).
	MaxParts int
	// MaxDepth is the deepest multipart nesting Split follows, the root being level 0; at a
	// container whose parts would be deeper it passes the rest through unchanged (default 32,
	// as mime.DefaultMaxDepth).
	MaxDepth int
	// MaxLineLength is the most bytes of one line held in memory, the size of the read buffer
	// (default 64 KiB, at least [MinLineLength]). Longer lines still work: they are streamed in
	// pieces of this size, and a line is told to be a boundary or not by its first piece.
	MaxLineLength int
	// Keep, when set, is asked for every leaf part above the threshold with its media type
	// (lower case, no parameters; empty when the part has none): true keeps the body in the
	// skeleton. The parser keeps text bodies, which it must read to fill the record's text.
	Keep func(mediaType string) bool
}

// Validate reports option values that cannot work, one sentence each.
func (o Options) Validate() error {
	var errs []error
	if o.Threshold < 0 {
		errs = append(errs, fmt.Errorf("threshold must not be negative, got %d", o.Threshold))
	}
	if o.MaxDecodedSize < 0 {
		errs = append(errs, fmt.Errorf("max decoded size must not be negative, got %d", o.MaxDecodedSize))
	}
	if o.MaxParts < 0 {
		errs = append(errs, fmt.Errorf("max parts must not be negative, got %d", o.MaxParts))
	}
	if o.MaxDepth < 0 {
		errs = append(errs, fmt.Errorf("max depth must not be negative, got %d", o.MaxDepth))
	}
	if o.MaxLineLength != 0 && o.MaxLineLength < MinLineLength {
		errs = append(errs, fmt.Errorf("max line length must be at least %d bytes, got %d", MinLineLength, o.MaxLineLength))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.Threshold == 0 {
		o.Threshold = DefaultThreshold
	}
	if o.MaxDecodedSize == 0 {
		o.MaxDecodedSize = DefaultMaxDecodedSize
	}
	if o.MaxParts == 0 {
		o.MaxParts = DefaultMaxParts
	}
	if o.MaxDepth == 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.MaxLineLength == 0 {
		o.MaxLineLength = DefaultMaxLineLength
	}
	return o
}

// Warning names. Warnings are data (STYLE habit 12): Split returns an error only when it could
// not read the input or write a spool file.
const (
	// WarnBase64Junk: a spooled base64 body held characters outside the base64 alphabet other
	// than white space and '='; they were skipped (enmime does the same, except that it gives up
	// on bytes above 0x7f where this package skips them too).
	WarnBase64Junk = "spool_base64_junk"
	// WarnBase64Incomplete: a spooled base64 body ended with a single character, less than a
	// byte; it was dropped.
	WarnBase64Incomplete = "spool_base64_incomplete"
	// WarnQuotedPrintable: decoding a quoted-printable body failed; what was decoded before is
	// kept, the rest of the body is lost. Severe.
	WarnQuotedPrintable = "spool_quoted_printable"
	// WarnLimitDecodedSize: Options.MaxDecodedSize was reached and a spooled part was cut.
	// Severe.
	WarnLimitDecodedSize = "spool_limit_decoded_size"
	// WarnLimitParts: Options.MaxParts was reached; the rest of the message was passed through.
	WarnLimitParts = "spool_limit_parts"
	// WarnLimitDepth: Options.MaxDepth was reached; the rest of the message was passed through.
	WarnLimitDepth = "spool_limit_depth"
	// WarnNotSplit: more than Threshold bytes stayed in the skeleton because their structure
	// could not be split safely (the detail says why).
	WarnNotSplit = "spool_not_split"
)

// Warning is a problem met while splitting. Severe warnings mean content was lost.
type Warning struct {
	Name   string
	Detail string
	Severe bool
}

// Part is one spooled leaf part.
type Part struct {
	// PartID is the part's position in the MIME tree, labelled as enmime labels it (Part.PartID):
	// "0" for the root, "2" for the second part of the top multipart, "2.1" for the first part of
	// a multipart that is the second part, and so on.
	PartID string
	// ContentType is the part's media type, lower case and without parameters, as enmime reads
	// it; empty when the part has no Content-Type (text/plain by RFC 2045).
	ContentType string
	// Encoding is the Content-Transfer-Encoding that was removed: "base64", "quoted-printable",
	// or empty when the body was copied as is (7bit, 8bit, binary, none or unknown). The bytes are
	// not converted from their charset: a spooled text part is in the charset its header names.
	Encoding string
	// EncodedSize is the size of the body as it was in the message, in bytes.
	EncodedSize int64
	// Size is the number of decoded bytes in the file.
	Size int64
	// SHA256 is the lower-case hex SHA-256 of the decoded bytes in the file.
	SHA256 string
	// Head holds the first HeadSize decoded bytes (fewer when the part is smaller).
	Head []byte
	// Truncated reports that Options.MaxDecodedSize cut the part: the file holds only its first
	// Size bytes.
	Truncated bool

	path string
}

// Open opens the decoded body. The caller closes the reader; it fails after [Result.Close].
func (p *Part) Open() (io.ReadCloser, error) {
	f, err := os.Open(p.path)
	if err != nil {
		return nil, fmt.Errorf("opening spooled part %s: %w", p.PartID, err)
	}
	return f, nil
}

// Result is the outcome of [Split]. It owns the spooled parts' temporary files until Close.
//
// The skeleton is the input with, for each spooled part n, the body removed and the line
// "X-Mailpipe-Spooled: <n> <token>" inserted before the empty line that ends its header block;
// the line break before the part's closing boundary line stays in the skeleton. Everything else,
// including line endings, preamble and epilogue texts and the parts below the threshold, is kept
// byte for byte: when nothing is spooled, Skeleton equals the input.
//
// The inserted line ends with blanks when the spooled part sits in the first 4 KiB of an
// enclosing part (a large part nested in a multipart that starts near it): enmime looks for
// boundaries at every byte of a part's first 4 KiB, and the padding keeps what follows the
// removed body out of that window, as it was in the input.
type Result struct {
	// Skeleton is the message without the spooled bodies. It is owned by the caller.
	Skeleton []byte
	// Parts are the spooled parts, in message order.
	Parts []Part
	// Warnings are the problems met, each at most once per part or limit.
	Warnings []Warning

	token string
	files []string
	once  sync.Once
	err   error
}

// Lookup resolves the value of a [Header] field found in the parsed skeleton to its spooled part.
// It reports false for a value this Result did not write (a forged or stale field). A part may
// carry such fields besides the one Split added (last): try each value
// (textproto.MIMEHeader.Values), not only the first.
func (r *Result) Lookup(value string) (*Part, bool) {
	f := strings.Fields(value)
	if len(f) != 2 || r.token == "" || f[1] != r.token {
		return nil, false
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 0 || n >= len(r.Parts) {
		return nil, false
	}
	return &r.Parts[n], true
}

// Close removes the temporary files. It is idempotent and safe to call on a nil Result.
func (r *Result) Close() error {
	if r == nil {
		return nil
	}
	r.once.Do(func() {
		var errs []error
		for _, name := range r.files {
			if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing spool file: %w", err))
			}
		}
		r.err = errors.Join(errs...)
	})
	return r.err
}

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Split reads a raw RFC 5322 / MIME message from r and returns its skeleton and its spooled
// parts: every leaf part whose encoded body is larger than opts.Threshold has its body decoded
// into a temporary file in opts.TempDir and removed from the skeleton (see [Result]). Memory use
// is bounded by the threshold and opts.MaxLineLength plus the skeleton.
//
// Split returns an error only for invalid options, a failing reader, a spool file that cannot be
// written, or ctx ending (checked between chunks); the files created so far are removed then.
// Malformed MIME is never an error: what cannot be split safely is passed through, and decoding
// problems are reported in Result.Warnings. The caller must Close the Result.
func Split(ctx context.Context, r io.Reader, opts Options) (*Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("validating spool options: %w", err)
	}
	opts = opts.withDefaults()
	s := &splitter{
		ctxErr:  ctx.Err,
		opt:     opts,
		in:      bufio.NewReaderSize(r, opts.MaxLineLength),
		atStart: true,
		budget:  opts.MaxDecodedSize,
		res:     &Result{},

		aheadMemo: map[[2]int]bool{},
	}
	if err := s.run(); err != nil {
		_ = s.res.Close()
		return nil, err
	}
	s.res.Skeleton = s.skel.Bytes()
	return s.res, nil
}
