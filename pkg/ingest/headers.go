package ingest

import "github.com/mailpipe/mailpipe/pkg/thread"

// readHeaders reads the header block at the start of head, and never parses the body: ingress
// must not pay for MIME parsing, and a body that is broken MIME is the parser's business. A
// header block longer than the inline limit ends where head ends; see thread.ReadHeaders.
// bodyDigest comes from a thread.BodyHasher fed the whole message while it streams, so the
// Received header smtpd prepends does not change it.
func readHeaders(head []byte, bodyDigest string) thread.Headers {
	return thread.ReadHeaders(head, bodyDigest)
}
