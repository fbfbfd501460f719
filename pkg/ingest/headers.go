package ingest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"net/mail"
	"net/textproto"

	"github.com/mailpipe/mailpipe/pkg/thread"
)

// readHeaders reads the header block at the start of head, and never parses the body: ingress
// must not pay for MIME parsing, and a body that is broken MIME is the parser's business. It
// never fails: a malformed header line, or the end of head (a header block longer than the
// inline limit), ends the header block where it stands (textproto returns what it read so far)
// and the fields found up to there are used; a message with nothing usable still gets a
// synthetic thread key.
//
// bodyDigest is the hex SHA-256 of the bytes after the first empty line of the whole message
// (see bodyHasher), used for synthetic ids; the Received header smtpd prepends does not change it.
func readHeaders(head []byte, bodyDigest string) thread.Headers {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(head)))
	m, _ := r.ReadMIMEHeader() // partial headers on error, see above
	return thread.FromMail(mail.Header(m), bodyDigest)
}

// bodyHasher hashes what follows the first empty line (CRLF or bare LF) of the bytes written to
// it, so the body digest is computed while a message streams through, without holding it. With
// no empty line it hashes nothing (the digest of the empty body); a last line without its line
// feed never counts as the empty line. Write never fails.
type bodyHasher struct {
	h       hash.Hash
	inBody  bool
	lineLen int  // bytes of the current line so far
	firstCR bool // the current line starts with '\r'
}

func newBodyHasher() *bodyHasher { return &bodyHasher{h: sha256.New()} }

func (b *bodyHasher) Write(p []byte) (int, error) {
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

// digest is the hex SHA-256 of the body seen so far.
func (b *bodyHasher) digest() string { return hex.EncodeToString(b.h.Sum(nil)) }
