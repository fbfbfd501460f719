// Package webhooksig signs and verifies HTTP payloads per the Standard Webhooks specification
// (standardwebhooks.com), symmetric scheme: the crm webhook connector signs what it sends, and
// the ingress HTTP endpoint verifies HMAC-authenticated posts.
//
// The signed content is "<webhook-id>.<webhook-timestamp>.<body>", where the timestamp is integer
// Unix seconds; the signature is "v1," followed by the standard base64 of its HMAC-SHA256 under
// the secret's key. Secrets are written "whsec_" + base64(key). The webhook-signature header is a
// space-separated list, so a sender can sign with the old and the new secret during a rotation
// and a receiver can accept either; entries with another scheme ("v1a," …) are ignored.
package webhooksig

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names, as the specification spells them.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts the text form of a secret.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a webhook-timestamp may be from the verifier's clock, either way.
const DefaultTolerance = 5 * time.Minute

// Key length limits from the specification (24 to 64 random bytes).
const (
	minKeyLen = 24
	maxKeyLen = 64
)

// Errors returned by Verify, so a receiver can answer and count precisely. All of them mean
// "reject the request" (HTTP 401); none is worth a retry by the same sender with the same body.
var (
	ErrMissingHeader    = errors.New("webhook header missing")
	ErrInvalidTimestamp = errors.New("webhook timestamp is not integer unix seconds")
	ErrTimestampTooOld  = errors.New("webhook timestamp too old")
	ErrTimestampTooNew  = errors.New("webhook timestamp too far in the future")
	ErrNoMatch          = errors.New("no webhook signature matches")
)

// Secret is a symmetric signing key. Its String and LogValue are redacted, so printing or logging
// a config that holds one does not leak it; use Encode for the real text form.
type Secret struct{ key []byte }

// ParseSecret reads "whsec_<base64>" (the prefix is optional, as in the reference libraries).
// The key must decode to 24..64 bytes.
func ParseSecret(s string) (Secret, error) {
	b64 := strings.TrimPrefix(strings.TrimSpace(s), SecretPrefix)
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Secret{}, fmt.Errorf("decoding webhook secret: %w", err)
	}
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return Secret{}, fmt.Errorf("webhook secret key is %d bytes, want %d to %d", len(key), minKeyLen, maxKeyLen)
	}
	return Secret{key: key}, nil
}

// ParseSecrets parses a list of secrets (an envconf []string field), reporting every bad entry
// by position, never by value.
func ParseSecrets(list []string) ([]Secret, error) {
	var (
		out  []Secret
		errs []error
	)
	for i, s := range list {
		sec, err := ParseSecret(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("secret %d: %w", i+1, err))
			continue
		}
		out = append(out, sec)
	}
	return out, errors.Join(errs...)
}

// GenerateSecret returns a new random 32-byte secret.
func GenerateSecret() (Secret, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return Secret{}, fmt.Errorf("reading random bytes: %w", err)
	}
	return Secret{key: key}, nil
}

// Encode returns the secret's text form, "whsec_<base64>", to hand to the other party.
func (s Secret) Encode() string { return SecretPrefix + base64.StdEncoding.EncodeToString(s.key) }

// String is redacted.
func (s Secret) String() string { return SecretPrefix + "[redacted]" }

// LogValue is redacted.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

func (s Secret) sign(content []byte) []byte {
	mac := hmac.New(sha256.New, s.key)
	mac.Write(content)
	return mac.Sum(nil)
}

// signedContent builds "<id>.<timestamp>.<body>".
func signedContent(id, timestamp string, body []byte) []byte {
	b := make([]byte, 0, len(id)+len(timestamp)+len(body)+2)
	b = append(b, id...)
	b = append(b, '.')
	b = append(b, timestamp...)
	b = append(b, '.')
	return append(b, body...)
}

// Sign returns the webhook-signature value for id, ts (truncated to seconds) and body: one
// "v1,<base64>" entry per secret, space-separated, in the given order. Pass the new and the old
// secret during a rotation. The id must be non-empty and must not contain "." (the specification
// forbids it: it would make the signed content ambiguous); at least one secret is required.
func Sign(id string, ts time.Time, body []byte, secrets ...Secret) (string, error) {
	if id == "" || strings.ContainsAny(id, ". \t\r\n") {
		return "", fmt.Errorf("webhook id %q must be non-empty without dots or whitespace", id)
	}
	if len(secrets) == 0 {
		return "", errors.New("signing webhook: no secret")
	}
	content := signedContent(id, strconv.FormatInt(ts.Unix(), 10), body)
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if len(s.key) == 0 {
			return "", errors.New("signing webhook: zero Secret")
		}
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(s.sign(content)))
	}
	return strings.Join(sigs, " "), nil
}

// SetHeaders signs body and sets the three webhook headers on h.
func SetHeaders(h http.Header, id string, ts time.Time, body []byte, secrets ...Secret) error {
	sig, err := Sign(id, ts, body, secrets...)
	if err != nil {
		return err
	}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, sig)
	return nil
}

// Option configures a Verifier.
type Option interface{ apply(*Verifier) }

type optionFunc func(*Verifier)

func (f optionFunc) apply(v *Verifier) { f(v) }

// WithTolerance sets the allowed clock difference, default DefaultTolerance. Zero disables the
// timestamp check (replays within any window pass: only for tests and offline re-verification).
func WithTolerance(d time.Duration) Option { return optionFunc(func(v *Verifier) { v.tolerance = d }) }

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return optionFunc(func(v *Verifier) { v.now = now }) }

// Verifier checks signatures against a set of accepted secrets. It is safe for concurrent use.
type Verifier struct {
	secrets   []Secret
	tolerance time.Duration
	now       func() time.Time
}

// NewVerifier accepts signatures made with any of secrets (at least one).
func NewVerifier(secrets []Secret, opts ...Option) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, errors.New("webhooksig: at least one secret is required")
	}
	for i, s := range secrets {
		if len(s.key) == 0 {
			return nil, fmt.Errorf("webhooksig: secret %d is the zero Secret", i+1)
		}
	}
	v := &Verifier{secrets: append([]Secret(nil), secrets...), tolerance: DefaultTolerance, now: time.Now}
	for _, o := range opts {
		o.apply(v)
	}
	if v.tolerance < 0 {
		return nil, fmt.Errorf("webhooksig: negative tolerance %v", v.tolerance)
	}
	return v, nil
}

// Verify checks the three header values against body. The timestamp must be integer Unix
// seconds within the tolerance of the verifier's clock; then at least one "v1," entry of
// signatures must equal the HMAC under one accepted secret, compared in constant time. It
// returns nil or an error wrapping one of the Err values.
func (v *Verifier) Verify(id, timestamp, signatures string, body []byte) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderID)
	case timestamp == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderTimestamp)
	case strings.TrimSpace(signatures) == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderSignature)
	}
	secs, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrInvalidTimestamp, timestamp)
	}
	if v.tolerance > 0 {
		// Compare in seconds: no time.Time overflow for absurd timestamps.
		now := v.now().Unix()
		tol := int64(v.tolerance / time.Second)
		switch {
		case secs < now-tol:
			return fmt.Errorf("%w: %d s old, tolerance %v", ErrTimestampTooOld, now-secs, v.tolerance)
		case secs > now+tol:
			return fmt.Errorf("%w: %d s ahead, tolerance %v", ErrTimestampTooNew, secs-now, v.tolerance)
		}
	}
	content := signedContent(id, timestamp, body)
	expected := make([][]byte, len(v.secrets))
	for i, s := range v.secrets {
		expected[i] = s.sign(content)
	}
	for entry := range strings.FieldsSeq(signatures) {
		scheme, b64, ok := strings.Cut(entry, ",")
		if !ok || scheme != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		for _, want := range expected {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrNoMatch
}

// VerifyHeader is Verify with the values taken from h.
func (v *Verifier) VerifyHeader(h http.Header, body []byte) error {
	return v.Verify(h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature), body)
}
