package httpd_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/mailgun"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/mailgun/mailguntest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/sendgrid"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/sendgrid/sendgridtest"
)

// inboundMsg is a message with 8-bit bytes and a boundary-like line, which must be recorded
// byte for byte.
const inboundMsg = "From: ann@example.org\r\nSubject: hi\r\nMessage-ID: <in1@example.org>\r\n\r\nGr\xfc\xdfe\r\n--xyz\r\n"

func newSigner(t *testing.T) *sendgridtest.Signer {
	t.Helper()
	s, err := sendgridtest.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func basic(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("sendgrid:"+key))
}

func TestSendGrid(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	acme, globex, stranger := newSigner(t), newSigner(t), newSigner(t)
	keys := []string{"acme:" + acme.PublicKey(), "globex:" + globex.PublicKey()}
	post := sendgridtest.Post{Raw: []byte(inboundMsg), From: "ann@example.org", To: []string{rcptAcme}, SenderIP: "203.0.113.7"}
	with := func(edit func(*sendgridtest.Post)) sendgridtest.Post {
		p := post
		edit(&p)
		return p
	}

	for _, tt := range []struct {
		name    string
		signer  *sendgridtest.Signer // nil: unsigned
		post    sendgridtest.Post
		signed  time.Time // zero: now
		edit    func(*http.Request)
		cfg     httpd.Config
		accErr  error
		want    want
		wantEnv func(t *testing.T, acc *fakeAccepter)
	}{
		{
			name: "signed by the tenant's policy key", signer: acme, post: post,
			want: want{status: 200, calls: 1},
			wantEnv: func(t *testing.T, acc *fakeAccepter) {
				env := acc.envs[0]
				if env.MailFrom != "ann@example.org" || !slices.Equal(env.RcptTo, []string{rcptAcme}) || env.ClientIP != "203.0.113.7" || env.Source != "http" {
					t.Errorf("envelope = %+v, want SendGrid's envelope and sender_ip", env)
				}
				if !bytes.Equal(acc.raws[0], []byte(inboundMsg)) {
					t.Errorf("raw = %q, want the email field unchanged", acc.raws[0])
				}
			},
		},
		{
			name: "several recipients and the null sender", signer: acme,
			post: with(func(p *sendgridtest.Post) { p.From = ""; p.To = []string{rcptAcme, "billing@acme.example.com"} }),
			want: want{status: 200, calls: 1},
			wantEnv: func(t *testing.T, acc *fakeAccepter) {
				if env := acc.envs[0]; env.MailFrom != "" || len(env.RcptTo) != 2 {
					t.Errorf("envelope = %+v, want the null sender and two recipients", env)
				}
			},
		},
		{
			name: "sender_ip that is not an address keeps the peer", signer: acme,
			post: with(func(p *sendgridtest.Post) { p.SenderIP = "unknown" }),
			want: want{status: 200, calls: 1},
			wantEnv: func(t *testing.T, acc *fakeAccepter) {
				if ip := acc.envs[0].ClientIP; ip != "198.51.100.20" {
					t.Errorf("client ip = %q, want the peer 198.51.100.20", ip)
				}
			},
		},
		{name: "signed by another tenant's key", signer: globex, post: post, want: want{status: 403, problem: "forbidden"}},
		{name: "signed by an unknown key", signer: stranger, post: post, want: want{status: 401, problem: "unauthorized"}},
		{
			name: "body changed after signing", signer: acme, post: post,
			edit: func(r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(bytes.Replace(b, []byte("Gr"), []byte("gr"), 1)))
			},
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "timestamp changed after signing", signer: acme, post: post,
			edit: func(r *http.Request) { r.Header.Set(sendgrid.HeaderTimestamp, fmt.Sprint(now.Unix()-1)) },
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "signature header without timestamp", signer: acme, post: post,
			edit: func(r *http.Request) { r.Header.Del(sendgrid.HeaderTimestamp) },
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "a retry signed three days ago", signer: acme, post: post, signed: now.Add(-72 * time.Hour),
			want: want{status: 200, calls: 1},
		},
		{
			name: "signed before the tolerance", signer: acme, post: post, signed: now.Add(-74 * time.Hour),
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "signed before a shorter tolerance", signer: acme, post: post, signed: now.Add(-6 * time.Minute),
			cfg:  httpd.Config{SendGridTolerance: 5 * time.Minute},
			want: want{status: 401, problem: "unauthorized"},
		},
		{name: "unsigned without a key", post: post, want: want{status: 401, problem: "unauthorized"}},
		{
			name: "unsigned with the tenant's API key as Basic password", post: post,
			edit: func(r *http.Request) { r.Header.Set("Authorization", basic(acmeKey)) },
			want: want{status: 200, calls: 1},
		},
		{
			name: "unsigned with the tenant's API key as Bearer", post: post,
			edit: func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+acmeKey) },
			want: want{status: 200, calls: 1},
		},
		{
			name: "unsigned with another tenant's API key", post: post,
			edit: func(r *http.Request) { r.Header.Set("Authorization", basic("globex-key")) },
			want: want{status: 403, problem: "forbidden"},
		},
		{
			name: "unsigned with a wrong key", post: post,
			edit: func(r *http.Request) { r.Header.Set("Authorization", basic(acmeKey+"x")) },
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "empty email field", signer: acme,
			post: with(func(p *sendgridtest.Post) { p.Raw = nil }),
			want: want{status: 400, problem: "empty-message"},
		},
		{
			name: "parsed-mode post (send_raw off: no email field)", post: post,
			edit: func(r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(bytes.Replace(b, []byte(`name="email"`), []byte(`name="text"`), 1)))
				r.Header.Set("Authorization", basic(acmeKey))
			},
			want: want{status: 400, problem: "bad-body"},
		},
		{
			name: "email field repeated", signer: acme,
			post: with(func(p *sendgridtest.Post) { p.Fields = [][2]string{{"email", "Subject: other\r\n\r\n"}} }),
			want: want{status: 400, problem: "bad-body"},
		},
		{
			name: "envelope not JSON", signer: acme,
			post: with(func(p *sendgridtest.Post) { p.Fields = nil }),
			edit: func(r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				b = bytes.Replace(b, []byte(`{"to":`), []byte(`{"to" `), 1)
				r.Body = io.NopCloser(bytes.NewReader(b))
				r.Header.Set("Authorization", basic(acmeKey))
				r.Header.Del(sendgrid.HeaderSignature)
				r.Header.Del(sendgrid.HeaderTimestamp)
			},
			want: want{status: 400, problem: "bad-body"},
		},
		{
			name: "url-encoded post", post: post,
			edit: func(r *http.Request) {
				r.Header.Set("Authorization", basic(acmeKey))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			},
			want: want{status: 415, problem: "unsupported-media-type"},
		},
		{
			name: "envelope recipient malformed", signer: acme,
			post: with(func(p *sendgridtest.Post) { p.To = []string{"Support <" + rcptAcme + ">"} }),
			want: want{status: 400, problem: "bad-envelope"},
		},
		{
			name: "recipient without a route", signer: acme,
			post: with(func(p *sendgridtest.Post) { p.To = []string{"x@elsewhere.example"} }),
			want: want{status: 400, problem: "no-route"},
		},
		{name: "post above the limit", signer: acme, post: post, cfg: httpd.Config{MaxBodyBytes: 256}, want: want{status: 413, problem: "too-large"}},
		{
			name: "too large for ingest", signer: acme, post: post, accErr: ingest.ErrTooLarge,
			want: want{status: 413, problem: "too-large", calls: 1},
		},
		{
			name: "not recorded", signer: acme, post: post, accErr: errors.New("producing raw record: broker down"),
			want: want{status: 503, problem: "unavailable", calls: 1},
		},
		{
			name: "GET", post: post,
			edit: func(r *http.Request) { r.Method = http.MethodGet },
			want: want{status: 405, problem: "method-not-allowed"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			acc := &fakeAccepter{res: okResult, err: tt.accErr}
			cfg := tt.cfg
			cfg.SendGridPublicKeys = keys
			h := newSignedHandler(t, acc, clk, cfg)
			signedAt := tt.signed
			if signedAt.IsZero() {
				signedAt = now
			}
			req, err := tt.signer.NewRequest(t.Context(), httpd.PathSendGrid, tt.post, signedAt)
			if err != nil {
				t.Fatal(err)
			}
			req.RemoteAddr = "198.51.100.20:33000"
			if tt.edit != nil {
				tt.edit(req)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := rec.Result()
			if tt.want.status == 401 && res.Header.Get("WWW-Authenticate") != `Basic realm="mailpipe"` {
				t.Errorf("WWW-Authenticate = %q, want a Basic challenge", res.Header.Get("WWW-Authenticate"))
			}
			checkAnswer(t, res, tt.want)
			if acc.callCount() != tt.want.calls {
				t.Errorf("Accept called %d times, want %d", acc.callCount(), tt.want.calls)
			}
			if tt.wantEnv != nil && acc.callCount() > 0 {
				tt.wantEnv(t, acc)
			}
		})
	}
}

func mustMailgunKey(t *testing.T, s string) *mailgun.SigningKey {
	t.Helper()
	k, err := mailgun.ParseSigningKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return &k
}

func TestMailgun(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	acmeMG, globexMG, sharedMG := mustMailgunKey(t, "mg-acme-key"), mustMailgunKey(t, "mg-globex-key"), mustMailgunKey(t, "mg-shared-account-key")
	keys := []string{"acme:mg-acme-key", "globex:mg-globex-key", "acme:mg-shared-account-key", "globex:mg-shared-account-key"}
	const token = "2b90a03befc0b98ae2b641b0080850cada918a2d2f670e0141" // 50 characters, as documented
	post := mailguntest.Post{Raw: []byte(inboundMsg), Recipient: rcptAcme, Sender: "ann@example.org", Timestamp: now, Token: token}
	with := func(edit func(*mailguntest.Post)) mailguntest.Post {
		p := post
		edit(&p)
		return p
	}

	for _, tt := range []struct {
		name    string
		key     *mailgun.SigningKey // nil: unsigned
		post    mailguntest.Post
		edit    func(*http.Request)
		cfg     httpd.Config
		accErr  error
		want    want
		wantEnv func(t *testing.T, acc *fakeAccepter)
	}{
		{
			name: "signed with the tenant's key", key: acmeMG, post: post,
			want: want{status: 200, calls: 1},
			wantEnv: func(t *testing.T, acc *fakeAccepter) {
				env := acc.envs[0]
				if env.MailFrom != "ann@example.org" || !slices.Equal(env.RcptTo, []string{rcptAcme}) || env.ClientIP != "198.51.100.30" || env.Source != "http" {
					t.Errorf("envelope = %+v, want sender, recipient and the peer", env)
				}
				if !bytes.Equal(acc.raws[0], []byte(inboundMsg)) {
					t.Errorf("raw = %q, want body-mime unchanged", acc.raws[0])
				}
			},
		},
		{name: "multipart post", key: acmeMG, post: with(func(p *mailguntest.Post) { p.Multipart = true }), want: want{status: 200, calls: 1}},
		{name: "account key shared by two tenants, first", key: sharedMG, post: post, want: want{status: 200, calls: 1}},
		{
			name: "account key shared by two tenants, second", key: sharedMG,
			post: with(func(p *mailguntest.Post) { p.Recipient = rcptGlobex }),
			want: want{status: 200, calls: 1},
		},
		{name: "signed with another tenant's key (Mailgun retries)", key: globexMG, post: post, want: want{status: 403, problem: "forbidden"}},
		{name: "signed with an unknown key", key: mustMailgunKey(t, "other"), post: post, want: want{status: 401, problem: "unauthorized"}},
		{
			name: "signature of another token", key: acmeMG, post: post,
			edit: func(r *http.Request) { replaceBody(r, token, strings.Repeat("0", 50)) },
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "no token", key: acmeMG, post: with(func(p *mailguntest.Post) { p.Token = "" }),
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "a retry signed eight hours ago", key: acmeMG, post: with(func(p *mailguntest.Post) { p.Timestamp = now.Add(-8 * time.Hour) }),
			want: want{status: 200, calls: 1},
		},
		{
			name: "signed before the tolerance", key: acmeMG, post: with(func(p *mailguntest.Post) { p.Timestamp = now.Add(-10 * time.Hour) }),
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "signed before a shorter tolerance", key: acmeMG, post: with(func(p *mailguntest.Post) { p.Timestamp = now.Add(-3 * time.Minute) }),
			cfg:  httpd.Config{MailgunTolerance: 2 * time.Minute},
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "unsigned without a key", post: with(func(p *mailguntest.Post) { p.Timestamp = time.Time{}; p.Token = "" }),
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "unsigned with the tenant's API key as Basic password", post: with(func(p *mailguntest.Post) { p.Timestamp = time.Time{}; p.Token = "" }),
			edit: func(r *http.Request) { r.Header.Set("Authorization", basic(acmeKey)) },
			want: want{status: 200, calls: 1},
		},
		{
			name: "an Authorization header takes precedence over the signature", key: acmeMG, post: post,
			edit: func(r *http.Request) { r.Header.Set("Authorization", basic("wrong")) },
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "parsed post (forward URL not ending in mime)", key: acmeMG, post: post,
			edit: func(r *http.Request) { replaceBody(r, "body-mime=", "body-plain=") },
			want: want{status: 406, problem: "bad-body"},
		},
		{
			name: "JSON post", key: acmeMG, post: post,
			edit: func(r *http.Request) { r.Header.Set("Content-Type", "application/json") },
			want: want{status: 406, problem: "unsupported-media-type"},
		},
		{
			name: "recipient without a route", key: acmeMG, post: with(func(p *mailguntest.Post) { p.Recipient = "x@elsewhere.example" }),
			want: want{status: 406, problem: "no-route"},
		},
		{
			name: "no recipient", key: acmeMG, post: with(func(p *mailguntest.Post) { p.Recipient = "" }),
			want: want{status: 406, problem: "bad-envelope"},
		},
		{
			name: "empty body-mime", key: acmeMG, post: with(func(p *mailguntest.Post) { p.Raw = nil }),
			want: want{status: 406, problem: "empty-message"},
		},
		{name: "post above the limit", key: acmeMG, post: post, cfg: httpd.Config{MaxBodyBytes: 128}, want: want{status: 406, problem: "too-large"}},
		{
			name: "too large for ingest", key: acmeMG, post: post, accErr: fmt.Errorf("%w: 2 MB", ingest.ErrTooLarge),
			want: want{status: 406, problem: "too-large", calls: 1},
		},
		{
			name: "not recorded", key: acmeMG, post: post, accErr: errors.New("producing raw record: broker down"),
			want: want{status: 503, problem: "unavailable", calls: 1},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			acc := &fakeAccepter{res: okResult, err: tt.accErr}
			cfg := tt.cfg
			cfg.MailgunSigningKeys = keys
			h := newSignedHandler(t, acc, clk, cfg)
			req, err := mailguntest.NewRequest(t.Context(), httpd.PathMailgun, tt.post, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			req.RemoteAddr = "198.51.100.30:33000"
			if tt.edit != nil {
				tt.edit(req)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			checkAnswer(t, rec.Result(), tt.want)
			if acc.callCount() != tt.want.calls {
				t.Errorf("Accept called %d times, want %d", acc.callCount(), tt.want.calls)
			}
			if tt.wantEnv != nil && acc.callCount() > 0 {
				tt.wantEnv(t, acc)
			}
		})
	}
}

// replaceBody replaces the first old with new in r's body.
func replaceBody(r *http.Request, old, new string) {
	b, _ := io.ReadAll(r.Body)
	b = bytes.Replace(b, []byte(old), []byte(new), 1)
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
}

// TestMailgunTokenReplay: the signature covers timestamp and token only, so a captured post
// could carry another message; each token is recorded once, and a repeat is answered 200
// without being recorded.
func TestMailgunTokenReplay(t *testing.T) {
	clk := newClock()
	acc := &fakeAccepter{res: okResult}
	h := newSignedHandler(t, acc, clk, httpd.Config{MailgunSigningKeys: []string{"acme:mg-acme-key"}})
	key := mustMailgunKey(t, "mg-acme-key")
	p := mailguntest.Post{Raw: []byte(inboundMsg), Recipient: rcptAcme, Sender: "ann@example.org", Timestamp: clk.Now(), Token: "tok-1"}
	send := func(p mailguntest.Post) *httptest.ResponseRecorder {
		req, err := mailguntest.NewRequest(t.Context(), httpd.PathMailgun, p, key)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	// given a recorded post
	if rec := send(p); rec.Code != 200 {
		t.Fatalf("first post: %d %s", rec.Code, rec.Body)
	}
	// when its signature fields come again with another message
	forged := p
	forged.Raw = []byte("From: mallory@example.net\r\n\r\nforged\r\n")
	rec := send(forged)

	// then Mailgun-style success is answered and nothing is recorded
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"duplicate":true`) {
		t.Errorf("replayed token: %d %s, want 200 marked duplicate", rec.Code, rec.Body)
	}
	if acc.callCount() != 1 || string(acc.raws[0]) != inboundMsg {
		t.Errorf("Accept called %d times, want once with the first message", acc.callCount())
	}
}

// TestProvidersOverHTTP posts through a real HTTP client and server, with the API key in the
// URL's userinfo as a provider's URL setting would hold it.
func TestProvidersOverHTTP(t *testing.T) {
	acc := &fakeAccepter{res: okResult}
	srv := httptest.NewServer(newHandler(t, httpd.Config{}, acc))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("mailpipe", acmeKey)

	sgReq, err := (*sendgridtest.Signer)(nil).NewRequest(t.Context(), u.String()+httpd.PathSendGrid,
		sendgridtest.Post{Raw: []byte(inboundMsg), From: "ann@example.org", To: []string{rcptAcme}}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	mgReq, err := mailguntest.NewRequest(t.Context(), u.String()+httpd.PathMailgun,
		mailguntest.Post{Raw: []byte(inboundMsg), Recipient: rcptAcme, Sender: "ann@example.org", Multipart: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []*http.Request{sgReq, mgReq} {
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		checkAnswer(t, res, want{status: 200})
		_ = res.Body.Close()
	}
	if acc.callCount() != 2 {
		t.Errorf("Accept called %d times, want 2", acc.callCount())
	}
}

// TestSendGridReplay: a signed post sent again (a retry after a lost answer, or a capture) is
// recorded once; the id is the signed content, so re-encoding the signature does not help.
func TestSendGridReplay(t *testing.T) {
	clk := newClock()
	acme := newSigner(t)
	acc := &fakeAccepter{res: okResult}
	h := newSignedHandler(t, acc, clk, httpd.Config{SendGridPublicKeys: []string{"acme:" + acme.PublicKey()}})
	body, ct := sendgridtest.Form(sendgridtest.Post{Raw: []byte(inboundMsg), From: "ann@example.org", To: []string{rcptAcme}})
	ts := clk.Now()
	for i, wantDup := range []bool{false, true, true} {
		// Each request is signed anew: ECDSA signatures differ, the signed content does not.
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, httpd.PathSendGrid, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if err := acme.Sign(req.Header, ts, body); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 || strings.Contains(rec.Body.String(), `"duplicate":true`) != wantDup {
			t.Errorf("post %d: %d %s, want 200 with duplicate=%v", i+1, rec.Code, rec.Body, wantDup)
		}
	}
	if acc.callCount() != 1 {
		t.Errorf("Accept called %d times, want 1", acc.callCount())
	}
}
