// Package sendgridtest plays SendGrid's Inbound Parse in tests: it builds the multipart post
// SendGrid makes with send_raw on and signs it the way package sendgrid verifies, with a key
// pair of its own, so an endpoint can be tested without a SendGrid account.
package sendgridtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"strconv"
	"time"

	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/sendgrid"
)

// Post is one inbound message as SendGrid would post it.
type Post struct {
	// Raw is the message (the email field).
	Raw []byte
	// From and To are the SMTP envelope (the envelope field).
	From string
	To   []string
	// SenderIP is the sender_ip field; omitted when "".
	SenderIP string
	// Fields are sent after the documented ones, in order, as extra form fields (to test
	// repeats and unknown fields); nil adds nothing.
	Fields [][2]string
}

// Form encodes p as multipart/form-data with the fields SendGrid documents for send_raw, and
// returns the body and its Content-Type.
func Form(p Post) ([]byte, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	env, _ := json.Marshal(struct {
		To   []string `json:"to"`
		From string   `json:"from"`
	}{To: p.To, From: p.From})
	field := func(name, value string) { _ = w.WriteField(name, value) } // writes to a bytes.Buffer cannot fail
	field("dkim", "{@example.org : pass}")
	field(sendgrid.FieldEmail, string(p.Raw))
	if len(p.To) > 0 {
		field("to", p.To[0])
	}
	field("from", p.From)
	if p.SenderIP != "" {
		field(sendgrid.FieldSenderIP, p.SenderIP)
	}
	field(sendgrid.FieldEnvelope, string(env))
	field("subject", "test")
	field("charsets", `{"to":"UTF-8","from":"UTF-8","subject":"UTF-8"}`)
	field("SPF", "pass")
	for _, f := range p.Fields {
		field(f[0], f[1])
	}
	_ = w.Close()
	return buf.Bytes(), w.FormDataContentType()
}

// Signer signs posts as a SendGrid security policy with signature verification does.
type Signer struct {
	key *ecdsa.PrivateKey
}

// NewSigner returns a signer with a new P-256 key.
func NewSigner() (*Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a P-256 key: %w", err)
	}
	return &Signer{key: k}, nil
}

// PublicKey returns the verification key in the form SendGrid's security policy API returns it:
// base64 of the DER SubjectPublicKeyInfo.
func (s *Signer) PublicKey() string {
	der, err := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	if err != nil {
		panic(err) // a P-256 public key always marshals
	}
	return base64.StdEncoding.EncodeToString(der)
}

// Sign sets the signature headers on h for body signed at ts.
func (s *Signer) Sign(h http.Header, ts time.Time, body []byte) error {
	stamp := strconv.FormatInt(ts.Unix(), 10)
	digest := sha256.Sum256(append([]byte(stamp), body...))
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, digest[:])
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	h.Set(sendgrid.HeaderTimestamp, stamp)
	h.Set(sendgrid.HeaderSignature, base64.StdEncoding.EncodeToString(sig))
	return nil
}

// NewRequest returns the POST of p to url, signed at ts; a nil s leaves it unsigned.
func (s *Signer) NewRequest(ctx context.Context, url string, p Post, ts time.Time) (*http.Request, error) {
	body, ct := Form(p)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Content-Type", ct)
	if s != nil {
		if err := s.Sign(req.Header, ts, body); err != nil {
			return nil, err
		}
	}
	return req, nil
}
