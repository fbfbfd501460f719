package spam

import (
	"bytes"
	"fmt"
	"mime"
	"strings"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// Message rebuilds an RFC 5322 message from a parsed record for a scanner that needs one (the
// classifier does not hold the raw message, which may sit in the blob store): the original
// header fields except the MIME structure ones, then the text and HTML bodies as
// multipart/alternative in UTF-8, and one empty part per attachment carrying its name and
// type, which is what attachment rules look at. Content rules see the decoded text, as they
// would after decoding the original.
func Message(msg *events.Parsed) []byte {
	var b bytes.Buffer
	for _, h := range msg.Headers {
		name := strings.ToLower(h.Name)
		if strings.HasPrefix(name, "content-") || name == "mime-version" {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\r\n", h.Name, oneLine(h.Value))
	}
	// The structure is the simplest that carries the content: scanners score odd structures
	// (a multipart/mixed of one part, an alternative without HTML) as spam signs.
	const outer, alt = "mailpipe-outer-7f3c", "mailpipe-alt-7f3c"
	b.WriteString("MIME-Version: 1.0\r\n")
	body := func(ct, text string) {
		fmt.Fprintf(&b, "Content-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n", ct)
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n"))
		b.WriteString("\r\n")
	}
	content := func() {
		if msg.HTML == "" {
			body("text/plain", msg.Text)
			return
		}
		fmt.Fprintf(&b, "Content-Type: multipart/alternative; boundary=%q\r\n\r\n--%s\r\n", alt, alt)
		body("text/plain", msg.Text)
		fmt.Fprintf(&b, "--%s\r\n", alt)
		body("text/html", msg.HTML)
		fmt.Fprintf(&b, "--%s--\r\n", alt)
	}
	if len(msg.Attachments) == 0 {
		content()
		return b.Bytes()
	}
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n--%s\r\n", outer, outer)
	content()
	for _, a := range msg.Attachments {
		ct := a.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		fmt.Fprintf(&b, "--%s\r\nContent-Type: %s\r\n", outer, ct)
		if a.Filename != "" {
			fmt.Fprintf(&b, "Content-Disposition: attachment; %s\r\n", mime.FormatMediaType("x", map[string]string{"filename": a.Filename})[2:])
		}
		b.WriteString("\r\n\r\n")
	}
	fmt.Fprintf(&b, "--%s--\r\n", outer)
	return b.Bytes()
}

// oneLine keeps a header value on one line. Non-ASCII values stay UTF-8 (RFC 6532), which
// scanners read, rather than encoded words that would swallow addresses.
func oneLine(v string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(v) }
