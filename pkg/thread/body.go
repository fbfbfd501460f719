package thread

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"net/mail"
	"net/textproto"
)

// ReadHeaders reads the thread headers from the header block at the start of head and takes
// bodyDigest as given. It never parses the body and never fails: a malformed header line, or the
// end of head, ends the header block where it stands and the fields found up to there are used,
// so a message with nothing usable still gets a synthetic id. Every producer of thread keys
// (ingress, the parser, `mailpipe parse`) reads headers this way, so they agree on synthetic ids.
func ReadHeaders(head []byte, bodyDigest string) Headers {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(head)))
	m, _ := r.ReadMIMEHeader() // partial headers on error, see above
	return FromMail(mail.Header(m), bodyDigest)
}

// FromRaw is ReadHeaders for a whole message held in memory, with its body digest computed by
// a BodyHasher.
func FromRaw(raw []byte) Headers {
	b := NewBodyHasher()
	_, _ = b.Write(raw)
	return ReadHeaders(raw, b.Digest())
}

// BodyHasher hashes what follows the first empty line (CRLF or bare LF) of the bytes written to
// it, so the body digest is computed while a message streams through, without holding it. With
// no empty line it hashes nothing (the digest of the empty body); a last line without its line
// feed never counts as the empty line. Write never fails.
type BodyHasher struct {
	h       hash.Hash
	inBody  bool
	lineLen int  // bytes of the current line so far
	firstCR bool // the current line starts with '\r'
}

// NewBodyHasher returns a hasher for one message.
func NewBodyHasher() *BodyHasher { return &BodyHasher{h: sha256.New()} }

// Write implements io.Writer.
func (b *BodyHasher) Write(p []byte) (int, error) {
	if b.inBody {
		b.h.Write(p)
		return len(p), nil
	}
	for i, c := range p {
		if c == '\n' {
			if b.lineLen == 0 || (b.lineLen == 1 && b.firstCR) {
				b.inBody = true
				b.h.Write(p[i+1:])
				return len(p), nil
			}
			b.lineLen, b.firstCR = 0, false
			continue
		}
		if b.lineLen == 0 {
			b.firstCR = c == '\r'
		}
		b.lineLen++
	}
	return len(p), nil
}

// Digest is the hex SHA-256 of the body seen so far: the BodyDigest of synthetic ids.
func (b *BodyHasher) Digest() string { return hex.EncodeToString(b.h.Sum(nil)) }
