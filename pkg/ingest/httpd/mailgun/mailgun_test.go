package mailgun_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/mailgun"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/mailgun/mailguntest"
)

// A known answer computed outside Go, from the documented scheme (hex HMAC-SHA256 of timestamp
// then token) with the timestamp and token of Mailgun's "Securing Webhooks" example:
//
//	printf %s 1770920772e0b5477167110d68991efc6b9f89f0a11066af27834600e123 |
//		openssl dgst -sha256 -hmac mailpipe-test-signing-key-0123456789
const (
	kaKey       = "mailpipe-test-signing-key-0123456789"
	kaTimestamp = "1770920772"
	kaToken     = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"
	kaSignature = "a8a2b00f123417ab5416a46f7d3acefd5c6b88b2ed276e1bdd06a8338e388a10"
)

func mustKey(t testing.TB, s string) mailgun.SigningKey {
	t.Helper()
	k, err := mailgun.ParseSigningKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKnownAnswer(t *testing.T) {
	key := mustKey(t, kaKey)
	if got := key.Sign(kaTimestamp, kaToken); got != kaSignature {
		t.Fatalf("Sign = %s, want %s", got, kaSignature)
	}
	for _, tt := range []struct {
		name string
		post mailgun.Post
		key  mailgun.SigningKey
		want bool
	}{
		{name: "signature", post: mailgun.Post{Timestamp: kaTimestamp, Token: kaToken, Signature: kaSignature}, key: key, want: true},
		{name: "upper-case hex", post: mailgun.Post{Timestamp: kaTimestamp, Token: kaToken, Signature: strings.ToUpper(kaSignature)}, key: key, want: true},
		{name: "parent-signature of a subaccount", post: mailgun.Post{Timestamp: kaTimestamp, Token: kaToken, Signature: "00", ParentSignature: kaSignature}, key: key, want: true},
		{name: "other token", post: mailgun.Post{Timestamp: kaTimestamp, Token: kaToken + "x", Signature: kaSignature}, key: key},
		{name: "other timestamp", post: mailgun.Post{Timestamp: "1770920773", Token: kaToken, Signature: kaSignature}, key: key},
		// The signed content has no separator, so moving a character between timestamp and token
		// keeps the signature valid; CheckTime then refuses the timestamp (not integer seconds).
		{name: "timestamp and token shifted", post: mailgun.Post{Timestamp: kaTimestamp + "e", Token: kaToken[1:], Signature: kaSignature}, key: key, want: true},
		{name: "other key", post: mailgun.Post{Timestamp: kaTimestamp, Token: kaToken, Signature: kaSignature}, key: mustKey(t, "other")},
		{name: "zero key", post: mailgun.Post{Timestamp: kaTimestamp, Token: kaToken, Signature: kaSignature}},
		{name: "truncated signature", post: mailgun.Post{Timestamp: kaTimestamp, Token: kaToken, Signature: kaSignature[:32]}, key: key},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.post.VerifiedBy(tt.key); got != tt.want {
				t.Errorf("VerifiedBy = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSigningKey(t *testing.T) {
	if _, err := mailgun.ParseSigningKey("  "); err == nil {
		t.Error("an empty key parsed")
	}
	if s := mustKey(t, kaKey).String(); strings.Contains(s, kaKey) {
		t.Errorf("String() = %q leaks the key", s)
	}
}

func TestSignatureChecks(t *testing.T) {
	now := time.Unix(1_770_920_772, 0)
	for _, tt := range []struct {
		name      string
		post      mailgun.Post
		tolerance time.Duration
		want      error
	}{
		{name: "complete", post: mailgun.Post{Timestamp: kaTimestamp, Token: kaToken, Signature: kaSignature}, tolerance: time.Minute},
		{name: "parent signature only", post: mailgun.Post{Timestamp: kaTimestamp, Token: kaToken, ParentSignature: kaSignature}, tolerance: time.Minute},
		{name: "no timestamp", post: mailgun.Post{Token: kaToken, Signature: kaSignature}, want: mailgun.ErrMissingSignature},
		{name: "no token", post: mailgun.Post{Timestamp: kaTimestamp, Signature: kaSignature}, want: mailgun.ErrMissingSignature},
		{name: "no signature", post: mailgun.Post{Timestamp: kaTimestamp, Token: kaToken}, want: mailgun.ErrMissingSignature},
		{name: "timestamp with a fraction", post: mailgun.Post{Timestamp: kaTimestamp + ".5", Token: kaToken, Signature: "x"}, want: mailgun.ErrInvalidTimestamp},
		{name: "stale", post: mailgun.Post{Timestamp: "1770920711", Token: kaToken, Signature: "x"}, tolerance: time.Minute, want: mailgun.ErrTimestampOutOfWindow},
		{name: "future", post: mailgun.Post{Timestamp: "1770920833", Token: kaToken, Signature: "x"}, tolerance: time.Minute, want: mailgun.ErrTimestampOutOfWindow},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.post.CheckSignatureFields()
			if err == nil {
				err = tt.post.CheckTime(now, tt.tolerance)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

const rawMessage = "From: ann@example.org\r\nSubject: hi & bye = 100%\r\n\r\nGr\xfc\xdfe\r\n--notTheBoundary\r\n"

func TestParseForm(t *testing.T) {
	key := mustKey(t, kaKey)
	ts := time.Unix(1_770_920_772, 0)
	base := mailguntest.Post{Raw: []byte(rawMessage), Recipient: "support+acme@in.example.com", Sender: "ann@example.org", Timestamp: ts, Token: kaToken}
	with := func(edit func(*mailguntest.Post)) func() ([]byte, string) {
		return func() ([]byte, string) {
			p := base
			edit(&p)
			return mailguntest.Form(p, &key)
		}
	}
	wantPost := mailgun.Post{
		Raw: []byte(rawMessage), Recipient: "support+acme@in.example.com", Sender: "ann@example.org",
		Timestamp: kaTimestamp, Token: kaToken, Signature: kaSignature,
	}
	for _, tt := range []struct {
		name  string
		build func() ([]byte, string)
		want  mailgun.Post
		err   error
	}{
		{name: "url-encoded", build: with(func(*mailguntest.Post) {}), want: wantPost},
		{name: "multipart", build: with(func(p *mailguntest.Post) { p.Multipart = true }), want: wantPost},
		{
			name: "unknown fields are ignored",
			build: with(func(p *mailguntest.Post) {
				p.Fields = [][2]string{{"X-Mailgun-Incoming", "Yes"}, {"message-headers", "[]"}}
			}),
			want: wantPost,
		},
		{
			name:  "body-mime repeated",
			build: with(func(p *mailguntest.Post) { p.Fields = [][2]string{{"body-mime", "other"}} }),
			err:   mailgun.ErrMalformed,
		},
		{
			name:  "signature repeated (a forged one appended)",
			build: with(func(p *mailguntest.Post) { p.Fields = [][2]string{{"signature", "00"}}; p.Multipart = true }),
			err:   mailgun.ErrMalformed,
		},
		{
			name:  "recipient repeated",
			build: with(func(p *mailguntest.Post) { p.Fields = [][2]string{{"recipient", "other@in.example.com"}} }),
			err:   mailgun.ErrMalformed,
		},
		{
			name: "parsed (not raw MIME) post",
			build: func() ([]byte, string) {
				return []byte("recipient=a%40b&body-plain=hi"), "application/x-www-form-urlencoded"
			},
			err: mailgun.ErrMalformed,
		},
		{
			name:  "bad percent escape",
			build: func() ([]byte, string) { return []byte("body-mime=%zz"), "application/x-www-form-urlencoded" },
			err:   mailgun.ErrMalformed,
		},
		{
			name: "too many fields",
			build: func() ([]byte, string) {
				return []byte("body-mime=x" + strings.Repeat("&a=b", mailgun.MaxParts)), "application/x-www-form-urlencoded"
			},
			err: mailgun.ErrMalformed,
		},
		{
			name: "multipart truncated",
			build: func() ([]byte, string) {
				b, ct := with(func(p *mailguntest.Post) { p.Multipart = true })()
				return b[:len(b)-10], ct
			},
			err: mailgun.ErrMalformed,
		},
		{
			name: "multipart without boundary",
			build: func() ([]byte, string) {
				b, _ := with(func(p *mailguntest.Post) { p.Multipart = true })()
				return b, "multipart/form-data"
			},
			err: mailgun.ErrNotForm,
		},
		{name: "JSON", build: func() ([]byte, string) { return []byte(`{}`), "application/json" }, err: mailgun.ErrNotForm},
		{name: "no content type", build: func() ([]byte, string) { return []byte("body-mime=x"), "" }, err: mailgun.ErrNotForm},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body, ct := tt.build()
			got, err := mailgun.ParseForm(body, ct)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseForm() error = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(got.Raw, tt.want.Raw) || got.Recipient != tt.want.Recipient || got.Sender != tt.want.Sender ||
				got.Timestamp != tt.want.Timestamp || got.Token != tt.want.Token || got.Signature != tt.want.Signature {
				t.Errorf("ParseForm() = %+v\nwant %+v", got, tt.want)
			}
			if !got.VerifiedBy(key) {
				t.Error("the post's signature does not verify")
			}
		})
	}
}

func FuzzParseForm(f *testing.F) {
	key := mustKey(f, kaKey)
	for _, multi := range []bool{false, true} {
		body, ct := mailguntest.Form(mailguntest.Post{Raw: []byte(rawMessage), Recipient: "a@b", Timestamp: time.Unix(1, 0), Token: "t", Multipart: multi}, &key)
		f.Add(body, ct)
	}
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		p, err := mailgun.ParseForm(body, ct)
		if err == nil && p.Raw == nil {
			t.Errorf("no error and no message for %q", body)
		}
		if err != nil && !errors.Is(err, mailgun.ErrMalformed) && !errors.Is(err, mailgun.ErrNotForm) {
			t.Errorf("error %v wraps neither ErrMalformed nor ErrNotForm", err)
		}
	})
}
