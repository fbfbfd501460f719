// Package mailguntest plays a Mailgun route's forward() to a "…/mime" URL in tests: it builds the
// post with the documented fields and signs it with a signing key, so an endpoint can be tested
// without a Mailgun account.
package mailguntest

import (
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/mailgun"
)

// Post is one inbound message as Mailgun would post it.
type Post struct {
	// Raw is body-mime.
	Raw []byte
	// Recipient and Sender are the SMTP envelope.
	Recipient, Sender string
	// Timestamp and Token are signed; a zero Timestamp or empty Token is left out.
	Timestamp time.Time
	Token     string
	// Multipart sends multipart/form-data instead of url-encoded (Mailgun sends it when the
	// message has attachments).
	Multipart bool
	// Fields are extra fields sent after the documented ones, in order (to test repeats or
	// forged signatures).
	Fields [][2]string
}

// Form encodes p, signed with key when key is not nil, and returns the body and Content-Type.
func Form(p Post, key *mailgun.SigningKey) ([]byte, string) {
	var fields [][2]string
	add := func(k, v string) { fields = append(fields, [2]string{k, v}) }
	add(mailgun.FieldRecipient, p.Recipient)
	add(mailgun.FieldSender, p.Sender)
	add("from", p.Sender)
	add("subject", "test")
	add(mailgun.FieldBodyMIME, string(p.Raw))
	stamp := ""
	if !p.Timestamp.IsZero() {
		stamp = strconv.FormatInt(p.Timestamp.Unix(), 10)
		add(mailgun.FieldTimestamp, stamp)
	}
	if p.Token != "" {
		add(mailgun.FieldToken, p.Token)
	}
	if key != nil {
		add(mailgun.FieldSignature, key.Sign(stamp, p.Token))
	}
	fields = append(fields, p.Fields...)

	if !p.Multipart {
		var buf bytes.Buffer
		for i, f := range fields {
			if i > 0 {
				buf.WriteByte('&')
			}
			buf.WriteString(url.QueryEscape(f[0]) + "=" + url.QueryEscape(f[1]))
		}
		return buf.Bytes(), "application/x-www-form-urlencoded"
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, f := range fields {
		_ = w.WriteField(f[0], f[1]) // writes to a bytes.Buffer cannot fail
	}
	_ = w.Close()
	return buf.Bytes(), w.FormDataContentType()
}

// NewRequest returns the POST of p to url, signed with key unless key is nil.
func NewRequest(ctx context.Context, url string, p Post, key *mailgun.SigningKey) (*http.Request, error) {
	body, ct := Form(p, key)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Content-Type", ct)
	return req, nil
}
