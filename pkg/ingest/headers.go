package ingest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/mail"
	"net/textproto"

	"github.com/mailpipe/mailpipe/pkg/thread"
)

// readHeaders reads the header block of raw, and never parses the body: ingress must not pay
// for MIME parsing, and a body that is broken MIME is the parser's business. It never fails: a
// malformed header line ends the header block where it stands (textproto returns what it read
// so far) and the fields found up to there are used; a message with nothing usable still gets a
// synthetic thread key.
//
// The body digest for synthetic ids is the hex SHA-256 of the bytes after the first empty line
// (thread.Headers.BodyDigest); the Received header smtpd prepends does not change it.
func readHeaders(raw []byte) thread.Headers {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	m, _ := r.ReadMIMEHeader() // partial headers on error, see above
	sum := sha256.Sum256(bodyOf(raw))
	return thread.FromMail(mail.Header(m), hex.EncodeToString(sum[:]))
}

// bodyOf returns what follows the first empty line (CRLF or bare LF), or nil if there is none.
func bodyOf(raw []byte) []byte {
	for i := 0; i < len(raw); {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			return nil
		}
		line := raw[i : i+j]
		i += j + 1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return raw[i:]
		}
	}
	return nil
}
