// Package sendgrid reads the posts of SendGrid's Inbound Parse webhook made with "POST the raw,
// full MIME message" (send_raw) and verifies SendGrid's signature on them. It knows the wire
// format only; package httpd decides what to answer.
//
// What SendGrid documents, and what this package does with it:
//
//   - The post is multipart/form-data. With send_raw the message is the "email" field, unchanged;
//     "envelope" is JSON {"to": [...], "from": "..."} with the SMTP envelope; "sender_ip" is the
//     client that delivered to SendGrid. Other fields (to, from, subject, dkim, SPF, charsets,
//     spam_score, …) describe the message and are ignored: the message itself is recorded.
//   - SendGrid removes a post from its queue on any 2xx and retries otherwise, for up to three
//     days, then drops it without notice. Its docs name 5xx as retried and give no code that
//     stops retries without claiming success, so a permanent rejection is a plain 4xx.
//   - Signature ("Securing your Inbound Parse Webhooks"): a security policy attached to the
//     Parse setting makes SendGrid sign each post with ECDSA; the policy's public key is returned
//     by the security policy API as base64 DER (SubjectPublicKeyInfo, P-256). The page says the
//     signature travels in HTTP headers over the payload; the part naming the headers and the
//     signed bytes was not in the copy consulted. This package uses SendGrid's signed-webhook
//     scheme as its Event Webhook security docs and its official helper library
//     (sendgrid-go helpers/eventwebhook) define it: X-Twilio-Email-Event-Webhook-Signature holds
//     the base64 of an ASN.1 DER ECDSA signature over SHA-256 of the
//     X-Twilio-Email-Event-Webhook-Timestamp value followed by the raw request body. The helper
//     library's published test vector passes [Signature.VerifiedBy]. Check one real signed post
//     against this before relying on it.
//   - The policy may instead (or also) use OAuth: SendGrid fetches a token from a server the
//     customer names and sends "Authorization: Bearer <token>". Validating such tokens needs that
//     server and is not implemented. The endpoint also takes an API key as the password of HTTP
//     Basic credentials; the docs consulted do not say whether SendGrid turns userinfo in the
//     Parse URL (https://any:KEY@host/...) into Basic credentials, so prefer the signature.
//   - SendGrid documents no replay window for signed posts and does not say whether a retried
//     post is signed anew, so the caller chooses the timestamp tolerance (see httpd.Config).
package sendgrid

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of a signed post.
const (
	HeaderSignature = "X-Twilio-Email-Event-Webhook-Signature"
	HeaderTimestamp = "X-Twilio-Email-Event-Webhook-Timestamp"
)

// Form fields this package reads.
const (
	FieldEmail    = "email"
	FieldEnvelope = "envelope"
	FieldSenderIP = "sender_ip"
)

// MaxParts bounds the form parts read from one post. send_raw posts carry about a dozen fields;
// the bound stops a crafted body of many tiny parts from costing more than its size suggests.
const MaxParts = 100

// Errors of ParseForm and of signature checks; each wraps the detail.
var (
	// ErrNotForm: the post is not multipart/form-data with a boundary.
	ErrNotForm = errors.New("not a multipart/form-data post")
	// ErrMalformed: the form is broken or lacks the raw message or the envelope.
	ErrMalformed = errors.New("malformed inbound parse post")
	// ErrMissingHeader: a signature header is absent.
	ErrMissingHeader = errors.New("signature header missing")
	// ErrInvalidTimestamp: the timestamp header is not integer Unix seconds.
	ErrInvalidTimestamp = errors.New("signature timestamp is not integer unix seconds")
	// ErrTimestampOutOfWindow: the timestamp is farther from the clock than the tolerance.
	ErrTimestampOutOfWindow = errors.New("signature timestamp outside the accepted window")
	// ErrNoMatch: no configured public key verifies the signature.
	ErrNoMatch = errors.New("no public key verifies the signature")
)

// PublicKey is the verification key of a SendGrid security policy.
type PublicKey struct{ key *ecdsa.PublicKey }

// ParsePublicKey reads a key as the security policy API returns it (base64 of the DER
// SubjectPublicKeyInfo) or as PEM ("-----BEGIN PUBLIC KEY-----"). It must be an ECDSA key.
func ParsePublicKey(s string) (PublicKey, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if block, _ := pem.Decode([]byte(s)); block != nil {
		der = block.Bytes
	} else {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return PublicKey{}, fmt.Errorf("decoding sendgrid public key: %w", err)
		}
		der = b
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return PublicKey{}, fmt.Errorf("parsing sendgrid public key: %w", err)
	}
	ec, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return PublicKey{}, fmt.Errorf("sendgrid public key is %T, want ECDSA", k)
	}
	return PublicKey{key: ec}, nil
}

// Signature is the signature material of one post, with the digest of the signed content
// computed once so checking it against several keys costs one hash.
type Signature struct {
	timestamp string
	sig       []byte
	digest    [sha256.Size]byte
}

// HasSignature reports whether h carries either signature header, that is whether the sender
// meant the post to be verified by signature.
func HasSignature(h http.Header) bool {
	return h.Get(HeaderSignature) != "" || h.Get(HeaderTimestamp) != ""
}

// ParseSignature reads the signature headers of a post whose raw body is body.
func ParseSignature(h http.Header, body []byte) (Signature, error) {
	ts, b64 := h.Get(HeaderTimestamp), strings.TrimSpace(h.Get(HeaderSignature))
	switch {
	case b64 == "":
		return Signature{}, fmt.Errorf("%w: %s", ErrMissingHeader, HeaderSignature)
	case ts == "":
		return Signature{}, fmt.Errorf("%w: %s", ErrMissingHeader, HeaderTimestamp)
	}
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Signature{}, fmt.Errorf("%w: the signature is not base64", ErrNoMatch)
	}
	hash := sha256.New()
	hash.Write([]byte(ts))
	hash.Write(body)
	s := Signature{timestamp: ts, sig: sig}
	hash.Sum(s.digest[:0])
	return s, nil
}

// CheckTime checks the timestamp against now: it must be integer Unix seconds at most tolerance
// away, either way. A zero tolerance accepts any valid timestamp.
func (s Signature) CheckTime(now time.Time, tolerance time.Duration) error {
	secs, err := strconv.ParseInt(s.timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrInvalidTimestamp, s.timestamp)
	}
	if tolerance <= 0 {
		return nil
	}
	// In seconds: no time.Time overflow for absurd values.
	if d := now.Unix() - secs; d > int64(tolerance/time.Second) || -d > int64(tolerance/time.Second) {
		return fmt.Errorf("%w: %d s from now, tolerance %v", ErrTimestampOutOfWindow, d, tolerance)
	}
	return nil
}

// VerifiedBy reports whether k made the signature.
func (s Signature) VerifiedBy(k PublicKey) bool {
	return k.key != nil && ecdsa.VerifyASN1(k.key, s.digest[:], s.sig)
}

// ID identifies the signed content (timestamp and body) for replay detection. It depends on
// the signed bytes only, not on the signature, which an attacker could re-encode (ECDSA
// signatures are malleable).
func (s Signature) ID() string { return base64.RawURLEncoding.EncodeToString(s.digest[:]) }

// Message is what a send_raw post carries for ingest.
type Message struct {
	// Raw is the email field, byte for byte.
	Raw []byte
	// MailFrom and RcptTo are the SMTP envelope SendGrid received ("" is the null sender).
	MailFrom string
	RcptTo   []string
	// SenderIP is the client that delivered the message to SendGrid; "" when not sent.
	SenderIP string
}

// envelope is the JSON of the envelope field.
type envelope struct {
	To   []string `json:"to"`
	From string   `json:"from"`
}

// ParseForm reads a send_raw post: body is the raw request body, contentType its Content-Type.
// It fails with ErrNotForm for another media type and ErrMalformed for a broken form, more than
// MaxParts parts, a repeated or missing email or envelope field, or an envelope that is not the
// documented JSON. The returned Raw does not alias body.
func ParseForm(body []byte, contentType string) (Message, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return Message{}, fmt.Errorf("%w: content type %q", ErrNotForm, contentType)
	}
	// mime/multipart reports a body cut inside a part header as a clean end of the form, so a
	// truncated post is recognised by its missing close delimiter instead.
	if !bytes.Contains(body, []byte("--"+params["boundary"]+"--")) {
		return Message{}, fmt.Errorf("%w: the form does not end with its close delimiter (truncated?)", ErrMalformed)
	}
	var (
		m                Message
		gotRaw, gotEnv   bool
		rawEnv, senderIP []byte
	)
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for n := 0; ; n++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Message{}, fmt.Errorf("%w: reading part %d: %w", ErrMalformed, n+1, err)
		}
		if n == MaxParts {
			return Message{}, fmt.Errorf("%w: more than %d parts", ErrMalformed, MaxParts)
		}
		name := p.FormName()
		if name != FieldEmail && name != FieldEnvelope && name != FieldSenderIP {
			continue // NextPart discards the unread rest
		}
		v, err := io.ReadAll(p)
		if err != nil {
			return Message{}, fmt.Errorf("%w: reading field %s: %w", ErrMalformed, name, err)
		}
		switch name {
		case FieldEmail:
			if gotRaw {
				return Message{}, fmt.Errorf("%w: field %s repeated", ErrMalformed, name)
			}
			m.Raw, gotRaw = v, true
		case FieldEnvelope:
			if gotEnv {
				return Message{}, fmt.Errorf("%w: field %s repeated", ErrMalformed, name)
			}
			rawEnv, gotEnv = v, true
		case FieldSenderIP:
			senderIP = v
		}
	}
	switch {
	case !gotRaw:
		return Message{}, fmt.Errorf("%w: no %s field (is \"POST the raw, full MIME message\" on?)", ErrMalformed, FieldEmail)
	case !gotEnv:
		return Message{}, fmt.Errorf("%w: no %s field", ErrMalformed, FieldEnvelope)
	}
	var env envelope
	if err := json.Unmarshal(rawEnv, &env); err != nil {
		return Message{}, fmt.Errorf("%w: field %s is not {\"to\": [...], \"from\": \"...\"}: %w", ErrMalformed, FieldEnvelope, err)
	}
	m.MailFrom, m.RcptTo = env.From, env.To
	m.SenderIP = strings.TrimSpace(string(senderIP))
	return m, nil
}
