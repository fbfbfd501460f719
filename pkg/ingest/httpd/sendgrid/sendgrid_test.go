package sendgrid_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/sendgrid"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/sendgrid/sendgridtest"
)

// The test vector published with SendGrid's Go helper library (sendgrid-go,
// helpers/eventwebhook/eventwebhook_test.go): a policy public key, and the signature it made over
// the timestamp followed by the JSON payload. `openssl dgst -sha256 -verify` accepts it too.
const (
	vectorPublicKey = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
	vectorTimestamp = "1588788367"
	vectorSignature = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0="
	vectorPayload   = `{"category":"example_payload","event":"test_event","message_id":"message_id"}`
)

func header(ts, sig string) http.Header {
	h := http.Header{}
	if ts != "" {
		h.Set(sendgrid.HeaderTimestamp, ts)
	}
	if sig != "" {
		h.Set(sendgrid.HeaderSignature, sig)
	}
	return h
}

func TestPublishedVector(t *testing.T) {
	key, err := sendgrid.ParsePublicKey(vectorPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	other, err := sendgridtest.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := sendgrid.ParsePublicKey(other.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		ts, sig string
		payload string
		key     sendgrid.PublicKey
		want    bool
	}{
		{name: "published signature", ts: vectorTimestamp, sig: vectorSignature, payload: vectorPayload, key: key, want: true},
		{name: "other payload", ts: vectorTimestamp, sig: vectorSignature, payload: vectorPayload + " ", key: key},
		{name: "other timestamp", ts: "1588788368", sig: vectorSignature, payload: vectorPayload, key: key},
		{name: "other key", ts: vectorTimestamp, sig: vectorSignature, payload: vectorPayload, key: otherKey},
		{name: "zero key", ts: vectorTimestamp, sig: vectorSignature, payload: vectorPayload},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sendgrid.ParseSignature(header(tt.ts, tt.sig), []byte(tt.payload))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.VerifiedBy(tt.key); got != tt.want {
				t.Errorf("VerifiedBy = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParsePublicKey(t *testing.T) {
	pem := "-----BEGIN PUBLIC KEY-----\n" + vectorPublicKey + "\n-----END PUBLIC KEY-----\n"
	for _, tt := range []struct {
		name, in, err string
	}{
		{name: "base64 DER as the policy API returns it", in: vectorPublicKey},
		{name: "PEM", in: pem},
		{name: "not base64", in: "MFkw***", err: "decoding sendgrid public key"},
		{name: "not a key", in: "aGVsbG8=", err: "parsing sendgrid public key"},
		{name: "Ed25519 key", in: ed25519Key(t), err: "want ECDSA"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sendgrid.ParsePublicKey(tt.in)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("ParsePublicKey() error = %v, want %q", err, tt.err)
			}
		})
	}
}

func ed25519Key(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func TestSignatureChecks(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	stamp := strconv.FormatInt(now.Unix(), 10)
	for _, tt := range []struct {
		name      string
		h         http.Header
		tolerance time.Duration
		want      error // from ParseSignature, then CheckTime
	}{
		{name: "no signature", h: header(stamp, ""), want: sendgrid.ErrMissingHeader},
		{name: "no timestamp", h: header("", vectorSignature), want: sendgrid.ErrMissingHeader},
		{name: "signature not base64", h: header(stamp, "%%%"), want: sendgrid.ErrNoMatch},
		{name: "timestamp not unix seconds", h: header(now.Format(time.RFC3339), vectorSignature), want: sendgrid.ErrInvalidTimestamp},
		{name: "inside the window", h: header(stamp, vectorSignature), tolerance: time.Minute},
		{name: "too old", h: header(strconv.FormatInt(now.Unix()-61, 10), vectorSignature), tolerance: time.Minute, want: sendgrid.ErrTimestampOutOfWindow},
		{name: "too new", h: header(strconv.FormatInt(now.Unix()+61, 10), vectorSignature), tolerance: time.Minute, want: sendgrid.ErrTimestampOutOfWindow},
		{name: "zero tolerance takes any time", h: header("1", vectorSignature)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sendgrid.ParseSignature(tt.h, []byte("body"))
			if err == nil {
				err = s.CheckTime(now, tt.tolerance)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignerRoundTrip(t *testing.T) {
	s, err := sendgridtest.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	key, err := sendgrid.ParsePublicKey(s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := sendgridtest.Form(sendgridtest.Post{Raw: []byte("Subject: x\r\n\r\nhi\r\n"), From: "a@example.org", To: []string{"b@in.example.com"}})
	h := http.Header{}
	if err := s.Sign(h, time.Now(), body); err != nil {
		t.Fatal(err)
	}
	sig, err := sendgrid.ParseSignature(h, body)
	if err != nil {
		t.Fatal(err)
	}
	if !sig.VerifiedBy(key) {
		t.Fatal("a signature of sendgridtest does not verify")
	}
	// The id depends on the signed content, not on the (randomised, malleable) signature.
	h2 := http.Header{}
	if err := s.Sign(h2, time.Unix(sigUnix(t, h), 0), body); err != nil {
		t.Fatal(err)
	}
	sig2, _ := sendgrid.ParseSignature(h2, body)
	if h.Get(sendgrid.HeaderSignature) == h2.Get(sendgrid.HeaderSignature) || sig.ID() != sig2.ID() {
		t.Errorf("two signatures of the same content: ids %s and %s, want equal", sig.ID(), sig2.ID())
	}
}

func sigUnix(t *testing.T, h http.Header) int64 {
	t.Helper()
	n, err := strconv.ParseInt(h.Get(sendgrid.HeaderTimestamp), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// rawMessage has CRLF, 8-bit bytes and a line that looks like a multipart boundary, all of which
// must come through unchanged.
const rawMessage = "From: ann@example.org\r\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=latin1\r\n\r\nGr\xfc\xdfe\r\n--notTheBoundary\r\n.\r\n"

func TestParseForm(t *testing.T) {
	valid := sendgridtest.Post{Raw: []byte(rawMessage), From: "ann@example.org", To: []string{"support@in.example.com"}, SenderIP: "203.0.113.5"}
	form := func(p sendgridtest.Post) ([]byte, string) { return sendgridtest.Form(p) }
	custom := func(parts ...[3]string) ([]byte, string) { // name, filename, value
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		for _, p := range parts {
			if p[1] != "" {
				fw, _ := w.CreateFormFile(p[0], p[1])
				_, _ = fw.Write([]byte(p[2]))
				continue
			}
			_ = w.WriteField(p[0], p[2])
		}
		_ = w.Close()
		return buf.Bytes(), w.FormDataContentType()
	}
	env := `{"to":["support@in.example.com","sales@in.example.com"],"from":""}`
	manyParts := make([][3]string, 0, sendgrid.MaxParts+1)
	manyParts = append(manyParts, [3]string{"email", "", "x"}, [3]string{"envelope", "", env})
	for len(manyParts) <= sendgrid.MaxParts {
		manyParts = append(manyParts, [3]string{"spam_report", "", "."})
	}
	type build func() ([]byte, string)
	for _, tt := range []struct {
		name  string
		build build
		want  sendgrid.Message
		err   error
	}{
		{
			name:  "send_raw post",
			build: func() ([]byte, string) { return form(valid) },
			want:  sendgrid.Message{Raw: []byte(rawMessage), MailFrom: "ann@example.org", RcptTo: []string{"support@in.example.com"}, SenderIP: "203.0.113.5"},
		},
		{
			name:  "several recipients, null sender, no sender_ip",
			build: func() ([]byte, string) { return custom([3]string{"envelope", "", env}, [3]string{"email", "", "x"}) },
			want:  sendgrid.Message{Raw: []byte("x"), RcptTo: []string{"support@in.example.com", "sales@in.example.com"}},
		},
		{
			name: "message sent as a file part",
			build: func() ([]byte, string) {
				return custom([3]string{"email", "message.eml", "x"}, [3]string{"envelope", "", env})
			},
			want: sendgrid.Message{Raw: []byte("x"), RcptTo: []string{"support@in.example.com", "sales@in.example.com"}},
		},
		{
			name:  "parsed mode post (no email field)",
			build: func() ([]byte, string) { return custom([3]string{"text", "", "hi"}, [3]string{"envelope", "", env}) },
			err:   sendgrid.ErrMalformed,
		},
		{
			name:  "no envelope",
			build: func() ([]byte, string) { return custom([3]string{"email", "", "x"}) },
			err:   sendgrid.ErrMalformed,
		},
		{
			name: "email repeated",
			build: func() ([]byte, string) {
				p := valid
				p.Fields = [][2]string{{"email", "other"}}
				return form(p)
			},
			err: sendgrid.ErrMalformed,
		},
		{
			name: "envelope repeated",
			build: func() ([]byte, string) {
				p := valid
				p.Fields = [][2]string{{"envelope", env}}
				return form(p)
			},
			err: sendgrid.ErrMalformed,
		},
		{
			name: "envelope not JSON",
			build: func() ([]byte, string) {
				return custom([3]string{"email", "", "x"}, [3]string{"envelope", "", "to=a@b"})
			},
			err: sendgrid.ErrMalformed,
		},
		{
			name: "envelope with a string for to",
			build: func() ([]byte, string) {
				return custom([3]string{"email", "", "x"}, [3]string{"envelope", "", `{"to":"a@b"}`})
			},
			err: sendgrid.ErrMalformed,
		},
		{
			name: "truncated in the close delimiter",
			build: func() ([]byte, string) {
				b, ct := form(valid)
				return b[:len(b)-10], ct
			},
			err: sendgrid.ErrMalformed,
		},
		{
			name: "truncated in a part header after the message",
			build: func() ([]byte, string) {
				b, ct := form(valid)
				i := bytes.Index(b, []byte(`name="to"`))
				return b[:i], ct
			},
			err: sendgrid.ErrMalformed,
		},
		{
			name:  "body is not the form its boundary says",
			build: func() ([]byte, string) { return []byte(rawMessage), "multipart/form-data; boundary=xyz" },
			err:   sendgrid.ErrMalformed,
		},
		{
			name:  "too many parts",
			build: func() ([]byte, string) { return custom(manyParts...) },
			err:   sendgrid.ErrMalformed,
		},
		{
			name:  "url-encoded form",
			build: func() ([]byte, string) { return []byte("email=x"), "application/x-www-form-urlencoded" },
			err:   sendgrid.ErrNotForm,
		},
		{
			name:  "multipart without boundary",
			build: func() ([]byte, string) { b, _ := form(valid); return b, "multipart/form-data" },
			err:   sendgrid.ErrNotForm,
		},
		{
			name:  "no content type",
			build: func() ([]byte, string) { b, _ := form(valid); return b, "" },
			err:   sendgrid.ErrNotForm,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body, ct := tt.build()
			got, err := sendgrid.ParseForm(body, ct)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseForm() error = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(got.Raw, tt.want.Raw) || got.MailFrom != tt.want.MailFrom || !slices.Equal(got.RcptTo, tt.want.RcptTo) || got.SenderIP != tt.want.SenderIP {
				t.Errorf("ParseForm() = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseForm(f *testing.F) {
	body, ct := sendgridtest.Form(sendgridtest.Post{Raw: []byte(rawMessage), From: "a@example.org", To: []string{"b@in.example.com"}})
	f.Add(body, ct)
	f.Add([]byte("--x\r\nContent-Disposition: form-data; name=email\r\n\r\nhi\r\n--x--\r\n"), "multipart/form-data; boundary=x")
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		m, err := sendgrid.ParseForm(body, ct)
		if err == nil && m.Raw == nil {
			t.Errorf("no error and no message for %q", body)
		}
		if err != nil && !errors.Is(err, sendgrid.ErrMalformed) && !errors.Is(err, sendgrid.ErrNotForm) {
			t.Errorf("error %v wraps neither ErrMalformed nor ErrNotForm", err)
		}
	})
}
