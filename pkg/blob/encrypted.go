package blob

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
)

// ErrIntegrity is wrapped by reads from an Encrypted store when a blob fails authentication:
// its bytes were altered, truncated, extended, reordered, or moved from another key. A reader
// returns plaintext only segment by segment after each segment is authenticated, so a caller
// that gets this error part way must discard what it read.
var ErrIntegrity = errors.New("encrypted blob failed authentication")

// KeyIDParam is the ref query parameter naming the key a blob's data key is wrapped with.
const KeyIDParam = "kid"

// Encryption format, version 1. Every blob is
//
//	header  = magic "MPB\x01" | uint16 n | body (n bytes)
//	body    = uint32 segment size S | 7-byte nonce prefix P | uint8 len | key id
//	          | uint16 len | blob key | uint16 len | wrapped data key
//	payload = segment 0 | segment 1 | … | segment k
//
// with integers big-endian. The plaintext is cut into segments of S bytes (SegmentSize), the
// last one shorter or empty; segment i is AES-256-GCM under the blob's own random data key with
//
//	nonce = P | uint32 i | 0x01 if i is the last segment else 0x00
//	AAD   = the whole header
//
// and stored as ciphertext followed by the 16-byte tag (S+16 bytes for every segment but the
// last). The counter in the nonce stops reordering, the last-segment flag stops truncation at a
// segment boundary and appending, and the header in the AAD binds the key id, the blob key and
// the wrapped data key to every segment. The data key is wrapped by the keyring's key named in
// the header (gocloud.dev/secrets Keeper.Encrypt: a KMS or Vault call per blob, or local
// secretbox for base64key://). This is the STREAM construction (Hoang, Reyhanitabar, Rogaway,
// Vizár 2015) also used by Tink's streaming AEAD; writers and readers hold one segment in memory.
const (
	// SegmentSize is the plaintext bytes per segment written.
	SegmentSize = 64 << 10
	// Readers accept segment sizes within these bounds, so a corrupt header cannot make them
	// allocate without limit.
	minSegmentSize = 1 << 10
	maxSegmentSize = 4 << 20
	maxHeaderBody  = 8 << 10

	noncePrefixLen = 7
	tagLen         = 16
	dataKeyLen     = 32 // AES-256
)

// magic starts every encrypted blob: "MPB" and the format version.
const magic = "MPB\x01"

// Encrypted is a Store that encrypts every blob at rest (format above) and keeps the ciphertext
// in another Store. Its refs are the inner store's refs plus "?kid=<key id>", naming the key the
// data key was wrapped with when the blob was written; the blob's header names it too and is what
// Get decrypts with, since a later Put of the same key may have replaced the object under a newer
// key. Refs without kid (blobs written before encryption was turned on) are refused with
// ErrInvalidRef. It is safe for concurrent use.
type Encrypted struct {
	inner Store
	keys  *Keyring
	// segSize is SegmentSize except in tests of the format.
	segSize int
}

var _ Store = (*Encrypted)(nil)

// NewEncrypted returns a store encrypting into inner with keys. inner's refs must not carry a
// query (every Store in this module qualifies).
func NewEncrypted(inner Store, keys *Keyring) *Encrypted {
	return &Encrypted{inner: inner, keys: keys, segSize: SegmentSize}
}

// Close closes the inner store (when it can be closed) and the keyring.
func (e *Encrypted) Close() error {
	var errs []error
	if c, ok := e.inner.(io.Closer); ok {
		errs = append(errs, c.Close())
	}
	errs = append(errs, e.keys.Close())
	return errors.Join(errs...)
}

// Put implements Store: one fresh data key per blob, wrapped with the keyring's primary key.
func (e *Encrypted) Put(ctx context.Context, key string, r io.Reader) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	kid := e.keys.Primary()
	keeper, err := e.keys.keeper(kid)
	if err != nil {
		return "", err
	}
	dataKey := make([]byte, dataKeyLen)
	if _, err := rand.Read(dataKey); err != nil {
		return "", fmt.Errorf("making data key: %w", err)
	}
	wrapped, err := keeper.Encrypt(ctx, dataKey)
	if err != nil {
		return "", fmt.Errorf("wrapping data key with key %q: %w", kid, err)
	}
	aead, err := newAEAD(dataKey)
	clear(dataKey)
	if err != nil {
		return "", err
	}
	h := header{segSize: uint32(e.segSize), kid: kid, key: key, wrapped: wrapped}
	if _, err := rand.Read(h.prefix[:]); err != nil {
		return "", fmt.Errorf("making nonce prefix: %w", err)
	}
	hdr, err := h.marshal()
	if err != nil {
		return "", err
	}
	ref, err := e.inner.Put(ctx, key, newSealer(r, aead, hdr, h.prefix, e.segSize))
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(ref, "?#") {
		return "", fmt.Errorf("inner blob store returned ref %q with a query or fragment", ref)
	}
	return ref + "?" + KeyIDParam + "=" + kid, nil
}

// Get implements Store. The header is read and the data key unwrapped before Get returns, so a
// wrong or unknown key fails here; segment authentication failures surface from Read, wrapping
// ErrIntegrity.
func (e *Encrypted) Get(ctx context.Context, ref string) (io.ReadCloser, error) {
	inner, err := splitRef(ref)
	if err != nil {
		return nil, err
	}
	rc, err := e.inner.Get(ctx, inner)
	if err != nil {
		return nil, err
	}
	o, err := e.open(ctx, inner, rc)
	if err != nil {
		_ = rc.Close()
		return nil, err
	}
	return o, nil
}

// Delete implements Store.
func (e *Encrypted) Delete(ctx context.Context, ref string) error {
	inner, err := splitRef(ref)
	if err != nil {
		return err
	}
	return e.inner.Delete(ctx, inner)
}

// splitRef returns the inner ref of an encrypted ref, which must carry exactly one valid kid.
func splitRef(ref string) (string, error) {
	inner, query, ok := strings.Cut(ref, "?")
	if !ok {
		return "", fmt.Errorf("%w: %q carries no %s (not an encrypted blob)", ErrInvalidRef, ref, KeyIDParam)
	}
	q, err := url.ParseQuery(query)
	if err != nil || len(q) != 1 || len(q[KeyIDParam]) != 1 || validKeyID(q.Get(KeyIDParam)) != nil {
		return "", fmt.Errorf("%w: %q: want exactly one valid %s parameter", ErrInvalidRef, ref, KeyIDParam)
	}
	return inner, nil
}

func (e *Encrypted) open(ctx context.Context, innerRef string, rc io.ReadCloser) (*opener, error) {
	var fixed [6]byte
	if _, err := io.ReadFull(rc, fixed[:]); err != nil {
		return nil, integrityErr(innerRef, "reading header", err)
	}
	if string(fixed[:4]) != magic {
		return nil, fmt.Errorf("%w: %s: not an encrypted blob (format %q)", ErrIntegrity, innerRef, fixed[:4])
	}
	n := int(binary.BigEndian.Uint16(fixed[4:]))
	if n > maxHeaderBody {
		return nil, fmt.Errorf("%w: %s: header of %d bytes", ErrIntegrity, innerRef, n)
	}
	hdr := make([]byte, 6+n)
	copy(hdr, fixed[:])
	if _, err := io.ReadFull(rc, hdr[6:]); err != nil {
		return nil, integrityErr(innerRef, "reading header", err)
	}
	h, err := parseHeader(hdr[6:])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrIntegrity, innerRef, err)
	}
	// The header names the key the blob was written under, and the AAD binds it; a blob moved
	// to another key (an attacker with bucket access swapping an attachment for a raw message)
	// is refused here, before any plaintext.
	if !e.holdsKey(innerRef, h.key) {
		return nil, fmt.Errorf("%w: %s holds the blob written under key %q", ErrIntegrity, innerRef, h.key)
	}
	keeper, err := e.keys.keeper(h.kid)
	if err != nil {
		return nil, err
	}
	dataKey, err := keeper.Decrypt(ctx, h.wrapped)
	if err != nil {
		return nil, fmt.Errorf("unwrapping data key of %s with key %q: %w", innerRef, h.kid, err)
	}
	aead, err := newAEAD(dataKey)
	clear(dataKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrIntegrity, innerRef, err)
	}
	return &opener{src: rc, aead: aead, aad: hdr, prefix: h.prefix, segSize: int(h.segSize), name: innerRef}, nil
}

// keyResolver is the optional capability of an inner store to map a ref back to its key
// (cloudblob.Store has it). Without it, Encrypted checks that the ref's path ends with the key.
type keyResolver interface {
	Key(ref string) (string, error)
}

func (e *Encrypted) holdsKey(innerRef, key string) bool {
	if kr, ok := e.inner.(keyResolver); ok {
		k, err := kr.Key(innerRef)
		return err == nil && k == key
	}
	u, err := url.Parse(innerRef)
	return err == nil && strings.HasSuffix(u.Path, "/"+key)
}

func integrityErr(ref, doing string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s: %s: truncated", ErrIntegrity, ref, doing)
	}
	return fmt.Errorf("%s of %s: %w", doing, ref, err)
}

func newAEAD(dataKey []byte) (cipher.AEAD, error) {
	if len(dataKey) != dataKeyLen {
		return nil, fmt.Errorf("data key of %d bytes, want %d", len(dataKey), dataKeyLen)
	}
	block, err := aes.NewCipher(dataKey)
	if err != nil {
		return nil, fmt.Errorf("building cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("building gcm: %w", err)
	}
	return aead, nil
}

type header struct {
	segSize uint32
	prefix  [noncePrefixLen]byte
	kid     string
	key     string
	wrapped []byte
}

func (h header) marshal() ([]byte, error) {
	if len(h.kid) > 255 || len(h.key) > 0xffff || len(h.wrapped) > 0xffff {
		return nil, errors.New("blob header fields too long")
	}
	body := make([]byte, 0, 4+noncePrefixLen+1+len(h.kid)+2+len(h.key)+2+len(h.wrapped))
	body = binary.BigEndian.AppendUint32(body, h.segSize)
	body = append(body, h.prefix[:]...)
	body = append(body, byte(len(h.kid)))
	body = append(body, h.kid...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(h.key)))
	body = append(body, h.key...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(h.wrapped)))
	body = append(body, h.wrapped...)
	if len(body) > maxHeaderBody {
		return nil, fmt.Errorf("blob header of %d bytes, at most %d", len(body), maxHeaderBody)
	}
	out := make([]byte, 0, len(magic)+2+len(body))
	out = append(out, magic...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(body)))
	return append(out, body...), nil
}

func parseHeader(b []byte) (header, error) {
	var h header
	bad := errors.New("malformed header")
	if len(b) < 4+noncePrefixLen+1 {
		return h, bad
	}
	h.segSize = binary.BigEndian.Uint32(b)
	b = b[4:]
	if h.segSize < minSegmentSize || h.segSize > maxSegmentSize {
		return h, fmt.Errorf("segment size %d out of range", h.segSize)
	}
	copy(h.prefix[:], b)
	b = b[noncePrefixLen:]
	n := int(b[0])
	b = b[1:]
	if len(b) < n {
		return h, bad
	}
	h.kid, b = string(b[:n]), b[n:]
	field := func() ([]byte, bool) {
		if len(b) < 2 {
			return nil, false
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, false
		}
		f := b[2 : 2+n]
		b = b[2+n:]
		return f, true
	}
	key, ok1 := field()
	wrapped, ok2 := field()
	if !ok1 || !ok2 || len(b) != 0 || validKeyID(h.kid) != nil || ValidKey(string(key)) != nil {
		return h, bad
	}
	h.key, h.wrapped = string(key), wrapped
	return h, nil
}

// nonce writes segment i's nonce into n (12 bytes).
func nonce(n *[noncePrefixLen + 5]byte, prefix [noncePrefixLen]byte, i uint32, last bool) []byte {
	copy(n[:], prefix[:])
	binary.BigEndian.PutUint32(n[noncePrefixLen:], i)
	n[noncePrefixLen+4] = 0
	if last {
		n[noncePrefixLen+4] = 1
	}
	return n[:]
}

// sealer is the reader Put hands to the inner store: the header, then sealed segments, produced
// one segment at a time as the inner store reads.
type sealer struct {
	src     io.Reader
	aead    cipher.AEAD
	aad     []byte
	prefix  [noncePrefixLen]byte
	segSize int

	plain   []byte // segSize+1: one byte of lookahead decides whether a full segment is the last
	have    int    // bytes of plain filled
	out     []byte // sealed segment
	pending []byte // what Read returns next
	nonce   [noncePrefixLen + 5]byte
	i       uint32
	done    bool
}

func newSealer(src io.Reader, aead cipher.AEAD, hdr []byte, prefix [noncePrefixLen]byte, segSize int) *sealer {
	return &sealer{
		src: src, aead: aead, aad: hdr, prefix: prefix, segSize: segSize,
		plain: make([]byte, segSize+1), out: make([]byte, 0, segSize+tagLen), pending: hdr,
	}
}

func (s *sealer) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if s.done {
			return 0, io.EOF
		}
		if err := s.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// next seals the next segment into pending.
func (s *sealer) next() error {
	n, last, err := fill(s.src, s.plain[s.have:])
	s.have += n
	if err != nil {
		return err // the caller's reader failed: the inner Put must fail with it
	}
	if s.i == ^uint32(0) && !last {
		return errors.New("blob too large for the encryption format")
	}
	seg := s.plain[:min(s.have, s.segSize)]
	s.out = s.aead.Seal(s.out[:0], nonce(&s.nonce, s.prefix, s.i, last), seg, s.aad)
	s.pending = s.out
	s.i++
	if last {
		s.done = true
		return nil
	}
	// Carry the lookahead byte into the next segment.
	s.plain[0] = s.plain[s.segSize]
	s.have = 1
	return nil
}

// fill reads into buf until it is full or r ends. eof reports that r returned io.EOF; any other
// error is returned as is. Unlike io.ReadFull it does not turn a reader's own
// io.ErrUnexpectedEOF into a clean end, which would seal a truncated message as complete.
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF { // Read returns io.EOF itself at the end; anything else is a failure
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

// opener decrypts segments as they are read.
type opener struct {
	src     io.ReadCloser
	aead    cipher.AEAD
	aad     []byte
	prefix  [noncePrefixLen]byte
	segSize int
	name    string

	sealed  []byte // segSize+tagLen+1 with one byte of lookahead
	have    int
	plain   []byte
	pending []byte
	nonce   [noncePrefixLen + 5]byte
	i       uint32
	done    bool
	err     error
	close   sync.Once
}

func (o *opener) Read(p []byte) (int, error) {
	for len(o.pending) == 0 {
		if o.err != nil {
			return 0, o.err
		}
		if o.done {
			return 0, io.EOF
		}
		if err := o.next(); err != nil {
			o.err = err
			return 0, err
		}
	}
	n := copy(p, o.pending)
	o.pending = o.pending[n:]
	return n, nil
}

func (o *opener) next() error {
	if o.sealed == nil {
		o.sealed = make([]byte, o.segSize+tagLen+1)
		o.plain = make([]byte, 0, o.segSize)
	}
	full := o.segSize + tagLen
	n, last, err := fill(o.src, o.sealed[o.have:])
	o.have += n
	if err != nil {
		return fmt.Errorf("reading %s: %w", o.name, err)
	}
	seg := o.sealed[:min(o.have, full)]
	if len(seg) < tagLen {
		return fmt.Errorf("%w: %s: truncated after segment %d", ErrIntegrity, o.name, o.i)
	}
	plain, err := o.aead.Open(o.plain[:0], nonce(&o.nonce, o.prefix, o.i, last), seg, o.aad)
	if err != nil {
		return fmt.Errorf("%w: %s: segment %d", ErrIntegrity, o.name, o.i)
	}
	o.pending = plain
	o.i++
	if last {
		o.done = true
		return nil
	}
	if o.i == 0 {
		return fmt.Errorf("%w: %s: too many segments", ErrIntegrity, o.name)
	}
	o.sealed[0] = o.sealed[full]
	o.have = 1
	return nil
}

func (o *opener) Close() error {
	var err error
	o.close.Do(func() { err = o.src.Close() })
	return err
}
