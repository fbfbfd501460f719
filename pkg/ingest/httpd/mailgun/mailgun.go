// Package mailgun reads the posts a Mailgun route makes with forward() to a URL ending in "mime"
// (raw MIME in the body-mime field) and verifies Mailgun's webhook signature on them. It knows
// the wire format only; package httpd decides what to answer.
//
// What Mailgun documents ("Receiving Messages via HTTP through a forward() action", "Securing
// Webhooks"), and what this package does with it:
//
//   - A route action forward("https://host/…/mime") posts the message as-is because the URL ends
//     with "mime"; other URLs get Mailgun's parsed form, which this package does not read. The
//     post is application/x-www-form-urlencoded or multipart/form-data; both are read.
//   - Fields: body-mime (the message), recipient and sender (RCPT TO and MAIL FROM of the SMTP
//     session Mailgun received), and timestamp, token and signature. No field carries the
//     client's IP address.
//   - Signature: hex HMAC-SHA256 of timestamp followed by token (no separator), keyed with the
//     account's HTTP webhook signing key. It does NOT cover body-mime, recipient or sender, so a
//     captured post can be re-sent with another message while its timestamp is accepted. The
//     docs advise refusing a token seen before and a stale timestamp; package httpd keeps each
//     token single-use within the window. For subaccounts Mailgun may add parent-signature, made
//     with the primary account's key; either field may verify.
//   - Answers: 200 means delivered (no retry); 406 means rejected (no retry); any other code is
//     retried for 8 hours (10 min, 15 min, 30 min, 1 h, 2 h, 4 h). The docs do not say whether a
//     retried post is signed anew.
package mailgun

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Form fields this package reads.
const (
	FieldBodyMIME        = "body-mime"
	FieldRecipient       = "recipient"
	FieldSender          = "sender"
	FieldTimestamp       = "timestamp"
	FieldToken           = "token"
	FieldSignature       = "signature"
	FieldParentSignature = "parent-signature"
)

// MaxParts bounds the fields read from one post (Mailgun sends about ten).
const MaxParts = 100

// Errors of ParseForm and the signature checks; each wraps the detail.
var (
	// ErrNotForm: the post is neither url-encoded nor multipart/form-data.
	ErrNotForm = errors.New("not a form post")
	// ErrMalformed: the form is broken, repeats a field, or lacks body-mime.
	ErrMalformed = errors.New("malformed mailgun post")
	// ErrMissingSignature: timestamp, token or signature is absent.
	ErrMissingSignature = errors.New("signature fields missing")
	// ErrInvalidTimestamp: timestamp is not integer Unix seconds.
	ErrInvalidTimestamp = errors.New("timestamp is not integer unix seconds")
	// ErrTimestampOutOfWindow: the timestamp is farther from the clock than the tolerance.
	ErrTimestampOutOfWindow = errors.New("timestamp outside the accepted window")
)

// SigningKey is a Mailgun HTTP webhook signing key, used as the HMAC key byte for byte. Its
// String is redacted.
type SigningKey struct{ key []byte }

// ParseSigningKey takes the key as Mailgun shows it. Only surrounding space is removed.
func ParseSigningKey(s string) (SigningKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return SigningKey{}, errors.New("mailgun signing key is empty")
	}
	return SigningKey{key: []byte(s)}, nil
}

// String is redacted.
func (SigningKey) String() string { return "[redacted]" }

// Sign returns the signature Mailgun sends for timestamp and token: hex HMAC-SHA256 of their
// concatenation.
func (k SigningKey) Sign(timestamp, token string) string {
	mac := hmac.New(sha256.New, k.key)
	mac.Write([]byte(timestamp))
	mac.Write([]byte(token))
	return hex.EncodeToString(mac.Sum(nil))
}

// Post is what a raw-MIME forward() post carries.
type Post struct {
	// Raw is body-mime, byte for byte; it does not alias the request body.
	Raw []byte
	// Recipient and Sender are RCPT TO and MAIL FROM as Mailgun received them.
	Recipient, Sender string
	// Timestamp, Token, Signature and ParentSignature are the signature fields.
	Timestamp, Token, Signature, ParentSignature string
}

// HasSignature reports whether any signature field is present, that is whether the sender meant
// the post to be verified by signature.
func (p Post) HasSignature() bool {
	return p.Timestamp != "" || p.Token != "" || p.Signature != "" || p.ParentSignature != ""
}

// CheckSignatureFields reports a post that lacks a signature field.
func (p Post) CheckSignatureFields() error {
	switch {
	case p.Timestamp == "":
		return fmt.Errorf("%w: %s", ErrMissingSignature, FieldTimestamp)
	case p.Token == "":
		return fmt.Errorf("%w: %s", ErrMissingSignature, FieldToken)
	case p.Signature == "" && p.ParentSignature == "":
		return fmt.Errorf("%w: %s", ErrMissingSignature, FieldSignature)
	}
	return nil
}

// VerifiedBy reports whether k made signature or parent-signature, compared in constant time
// (hex case-insensitive).
func (p Post) VerifiedBy(k SigningKey) bool {
	if len(k.key) == 0 || p.Timestamp == "" || p.Token == "" {
		return false
	}
	want := k.Sign(p.Timestamp, p.Token)
	ok := false
	for _, got := range []string{p.Signature, p.ParentSignature} {
		if got != "" && hmac.Equal([]byte(strings.ToLower(got)), []byte(want)) {
			ok = true
		}
	}
	return ok
}

// CheckTime checks the timestamp against now: integer Unix seconds at most tolerance away,
// either way. A zero tolerance accepts any valid timestamp.
func (p Post) CheckTime(now time.Time, tolerance time.Duration) error {
	secs, err := strconv.ParseInt(p.Timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrInvalidTimestamp, p.Timestamp)
	}
	if tolerance <= 0 {
		return nil
	}
	if d := now.Unix() - secs; d > int64(tolerance/time.Second) || -d > int64(tolerance/time.Second) {
		return fmt.Errorf("%w: %d s from now, tolerance %v", ErrTimestampOutOfWindow, d, tolerance)
	}
	return nil
}

// ParseForm reads a forward() post: body is the raw request body, contentType its
// Content-Type. It fails with ErrNotForm for another media type and ErrMalformed for a broken
// form, more than MaxParts fields, a repeated field this package reads, or no body-mime. The
// signature fields are returned as sent; check them with CheckSignatureFields, CheckTime and
// VerifiedBy.
func ParseForm(body []byte, contentType string) (Post, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return Post{}, fmt.Errorf("%w: content type %q", ErrNotForm, contentType)
	}
	var fields map[string][][]byte
	switch mt {
	case "application/x-www-form-urlencoded":
		fields, err = urlencodedFields(body)
	case "multipart/form-data":
		fields, err = multipartFields(body, params["boundary"])
	default:
		return Post{}, fmt.Errorf("%w: content type %q", ErrNotForm, contentType)
	}
	if err != nil {
		return Post{}, err
	}
	var p Post
	for name, dst := range map[string]*string{
		FieldRecipient: &p.Recipient, FieldSender: &p.Sender, FieldTimestamp: &p.Timestamp,
		FieldToken: &p.Token, FieldSignature: &p.Signature, FieldParentSignature: &p.ParentSignature,
	} {
		switch v := fields[name]; len(v) {
		case 0:
		case 1:
			*dst = strings.TrimSpace(string(v[0]))
		default:
			return Post{}, fmt.Errorf("%w: field %s repeated", ErrMalformed, name)
		}
	}
	switch raw := fields[FieldBodyMIME]; len(raw) {
	case 0:
		return Post{}, fmt.Errorf("%w: no %s field (does the forward() URL end with \"mime\"?)", ErrMalformed, FieldBodyMIME)
	case 1:
		p.Raw = raw[0]
	default:
		return Post{}, fmt.Errorf("%w: field %s repeated", ErrMalformed, FieldBodyMIME)
	}
	return p, nil
}

// wanted reports whether ParseForm reads a field; others are skipped unread.
func wanted(name string) bool {
	switch name {
	case FieldBodyMIME, FieldRecipient, FieldSender, FieldTimestamp, FieldToken, FieldSignature, FieldParentSignature:
		return true
	}
	return false
}

func urlencodedFields(body []byte) (map[string][][]byte, error) {
	fields := make(map[string][][]byte)
	n := 0
	for pair := range strings.SplitSeq(string(body), "&") {
		if pair == "" {
			continue
		}
		if n++; n > MaxParts {
			return nil, fmt.Errorf("%w: more than %d fields", ErrMalformed, MaxParts)
		}
		k, v, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("%w: field %d: %w", ErrMalformed, n, err)
		}
		if !wanted(name) {
			continue
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("%w: field %s: %w", ErrMalformed, name, err)
		}
		fields[name] = append(fields[name], []byte(value))
	}
	return fields, nil
}

func multipartFields(body []byte, boundary string) (map[string][][]byte, error) {
	if boundary == "" {
		return nil, fmt.Errorf("%w: multipart/form-data without a boundary", ErrNotForm)
	}
	// mime/multipart reports a body cut inside a part header as a clean end of the form, so a
	// truncated post is recognised by its missing close delimiter instead.
	if !bytes.Contains(body, []byte("--"+boundary+"--")) {
		return nil, fmt.Errorf("%w: the form does not end with its close delimiter (truncated?)", ErrMalformed)
	}
	fields := make(map[string][][]byte)
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for n := 0; ; n++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return fields, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading part %d: %w", ErrMalformed, n+1, err)
		}
		if n == MaxParts {
			return nil, fmt.Errorf("%w: more than %d parts", ErrMalformed, MaxParts)
		}
		name := p.FormName()
		if !wanted(name) {
			continue
		}
		v, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("%w: reading field %s: %w", ErrMalformed, name, err)
		}
		fields[name] = append(fields[name], v)
	}
}
