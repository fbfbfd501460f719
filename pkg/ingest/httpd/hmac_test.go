package httpd_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
	"github.com/mailpipe/mailpipe/pkg/webhooksig"
)

// Secrets of the HMAC tests (24-byte keys, base64).
const (
	acmeSecret    = "whsec_YWNtZS1zZWNyZXQtMDEyMzQ1Njc4OWFiY2Rl"
	acmeSecretOld = "whsec_YWNtZS1vbGQtc2VjcmV0LTAxMjM0NTY3ODlh"
	globexSecret  = "whsec_Z2xvYmV4LXNlY3JldC0wMTIzNDU2Nzg5YWJj"
)

// clock is a settable clock shared by the handler and its replay store.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

func newClock() *clock { return &clock{now: time.Unix(1_750_000_000, 0)} }

func mustSecret(t *testing.T, s string) webhooksig.Secret {
	t.Helper()
	sec, err := webhooksig.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

func hmacConfig() httpd.Config {
	return httpd.Config{HMACSecrets: []string{"acme:" + acmeSecret, "acme:" + acmeSecretOld, "globex:" + globexSecret}}
}

// newSignedHandler returns a handler for hmacConfig on clk with its own replay store.
func newSignedHandler(t *testing.T, acc httpd.Accepter, clk *clock, cfg httpd.Config, opts ...httpd.Option) http.Handler {
	t.Helper()
	opts = append([]httpd.Option{
		httpd.WithClock(clk.Now),
		httpd.WithReplayStore(dedupe.NewMemory(dedupe.WithClock(clk.Now))),
	}, opts...)
	h, err := httpd.New(testConfig(cfg), acc, slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// signedRequest is a Standard Webhooks request to /v1/messages as a sender library makes it.
type signedRequest struct {
	id      string
	ts      time.Time
	rcpt    string
	body    string
	secrets []string // signing secrets; none: no webhook-signature header
}

func (s signedRequest) build(t *testing.T) *http.Request {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/messages?mail_from=ann@example.org&rcpt_to="+s.rcpt, strings.NewReader(s.body))
	req.RemoteAddr = "198.51.100.9:40000"
	req.Header.Set("Content-Type", "message/rfc822")
	if len(s.secrets) == 0 {
		req.Header.Set(webhooksig.HeaderID, s.id)
		req.Header.Set(webhooksig.HeaderTimestamp, strconv.FormatInt(s.ts.Unix(), 10))
		return req
	}
	secs := make([]webhooksig.Secret, 0, len(s.secrets))
	for _, sec := range s.secrets {
		secs = append(secs, mustSecret(t, sec))
	}
	if err := webhooksig.SetHeaders(req.Header, s.id, s.ts, []byte(s.body), secs...); err != nil {
		t.Fatal(err)
	}
	return req
}

func TestPostSignedMessage(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	for _, tt := range []struct {
		name   string
		req    signedRequest
		edit   func(*http.Request) // after signing
		cfg    httpd.Config
		accErr error
		want   want
	}{
		{
			name: "signed by the tenant of the route",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}},
			want: want{status: 202, calls: 1},
		},
		{
			name: "signed with the old and the new secret during a rotation",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme, body: msg, secrets: []string{"whsec_bmV3LXNlY3JldC1ub3QtY29uZmlndXJlZC15ZXQ=", acmeSecretOld}},
			want: want{status: 202, calls: 1},
		},
		{
			name: "any tenant may sign for the domain fallback",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptDefault, body: msg, secrets: []string{globexSecret}},
			want: want{status: 202, calls: 1},
		},
		{
			name: "signed by another tenant",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme, body: msg, secrets: []string{globexSecret}},
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "body changed after signing",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}},
			edit: func(r *http.Request) { r.Body = nopCloser(msg + "tampered"); r.ContentLength = -1 },
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "webhook-id changed after signing",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}},
			edit: func(r *http.Request) { r.Header.Set(webhooksig.HeaderID, "msg_2") },
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "timestamp older than the tolerance",
			req:  signedRequest{id: "msg_1", ts: now.Add(-6 * time.Minute), rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}},
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "timestamp inside a wider tolerance",
			req:  signedRequest{id: "msg_1", ts: now.Add(-6 * time.Minute), rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}},
			cfg:  httpd.Config{HMACTolerance: 10 * time.Minute},
			want: want{status: 202, calls: 1},
		},
		{
			name: "timestamp in the future",
			req:  signedRequest{id: "msg_1", ts: now.Add(6 * time.Minute), rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}},
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "timestamp not in unix seconds",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}},
			edit: func(r *http.Request) { r.Header.Set(webhooksig.HeaderTimestamp, now.Format(time.RFC3339)) },
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "no signature header",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme, body: msg},
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "signature of another scheme only",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}},
			edit: func(r *http.Request) {
				r.Header.Set(webhooksig.HeaderSignature, strings.Replace(r.Header.Get(webhooksig.HeaderSignature), "v1,", "v1a,", 1))
			},
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "an Authorization header takes precedence over the signature",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}},
			edit: func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong") },
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "recipients of two tenants",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme + "," + rcptGlobex, body: msg, secrets: []string{acmeSecret}},
			want: want{status: 403, problem: "forbidden"},
		},
		{
			name: "unknown recipient",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: "x@elsewhere.example", body: msg, secrets: []string{acmeSecret}},
			want: want{status: 400, problem: "no-route"},
		},
		{
			name: "tenant without secrets",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}},
			cfg:  httpd.Config{HMACSecrets: []string{"globex:" + globexSecret}},
			want: want{status: 401, problem: "unauthorized"},
		},
		{
			name: "body above the limit",
			req:  signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}},
			cfg:  httpd.Config{MaxBodyBytes: 10},
			want: want{status: 413, problem: "too-large"},
		},
		{
			name:   "not recorded",
			req:    signedRequest{id: "msg_1", ts: now, rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}},
			accErr: errors.New("producing raw record: timeout"),
			want:   want{status: 503, problem: "unavailable", calls: 1},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			acc := &fakeAccepter{res: okResult, err: tt.accErr}
			cfg := tt.cfg
			if cfg.HMACSecrets == nil {
				cfg.HMACSecrets = hmacConfig().HMACSecrets
			}
			h := newSignedHandler(t, acc, clk, cfg)
			req := tt.req.build(t)
			if tt.edit != nil {
				tt.edit(req)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			checkAnswer(t, rec.Result(), tt.want)
			if acc.callCount() != tt.want.calls {
				t.Errorf("Accept called %d times, want %d", acc.callCount(), tt.want.calls)
			}
		})
	}
}

// TestSignedReplay: inside the timestamp window a webhook-id is recorded once; a repeat after a
// failure goes through; after the window the id is forgotten and the timestamp check takes over.
func TestSignedReplay(t *testing.T) {
	clk := newClock()
	acc := &fakeAccepter{res: okResult}
	h := newSignedHandler(t, acc, clk, hmacConfig())
	post := func(s signedRequest) *httptest.ResponseRecorder {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, s.build(t))
		return rec
	}
	first := signedRequest{id: "msg_replay", ts: clk.Now(), rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}}

	// given a recorded signed message
	checkAnswer(t, post(first).Result(), want{status: 202})

	// when the same request comes again, or with another envelope (not signed), or re-signed
	// later by a sender that retries after a lost answer
	clk.Add(time.Minute)
	res := post(first)
	otherRcpt := first
	otherRcpt.rcpt = "billing@acme.example.com"
	res2 := post(otherRcpt)
	resigned := first
	resigned.ts = clk.Now()
	res3 := post(resigned)

	// then each is answered as a duplicate and nothing more is recorded
	for i, r := range []*httptest.ResponseRecorder{res, res2, res3} {
		if r.Code != http.StatusAccepted || !strings.Contains(r.Body.String(), `"duplicate":true`) {
			t.Errorf("repeat %d: %d %s, want 202 marked duplicate", i+1, r.Code, r.Body)
		}
	}
	if acc.callCount() != 1 {
		t.Fatalf("Accept called %d times, want 1", acc.callCount())
	}

	// A failed attempt does not use up its id.
	acc2 := &fakeAccepter{res: okResult, err: errors.New("broker down")}
	h = newSignedHandler(t, acc2, clk, hmacConfig())
	failing := signedRequest{id: "msg_retry", ts: clk.Now(), rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}}
	checkAnswer(t, post(failing).Result(), want{status: 503, problem: "unavailable"})
	acc2.mu.Lock()
	acc2.err = nil
	acc2.mu.Unlock()
	checkAnswer(t, post(failing).Result(), want{status: 202})
	if acc2.callCount() != 2 {
		t.Errorf("Accept called %d times, want 2 (the retry after the failure)", acc2.callCount())
	}

	// After twice the tolerance the id is forgotten; a request signed then is new.
	clk.Add(11 * time.Minute)
	late := failing
	late.ts = clk.Now()
	checkAnswer(t, post(late).Result(), want{status: 202})
	if acc2.callCount() != 3 {
		t.Errorf("Accept called %d times, want 3", acc2.callCount())
	}
}

// blockingAccepter holds Accept until release is closed.
type blockingAccepter struct {
	fakeAccepter
	entered chan struct{}
	release chan struct{}
}

func (b *blockingAccepter) Accept(ctx context.Context, env events.Envelope, raw []byte) (ingest.Result, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.fakeAccepter.Accept(ctx, env, raw)
}

func TestSignedReplayWhileRecording(t *testing.T) {
	clk := newClock()
	acc := &blockingAccepter{fakeAccepter: fakeAccepter{res: okResult}, entered: make(chan struct{}, 1), release: make(chan struct{})}
	h := newSignedHandler(t, acc, clk, hmacConfig())
	s := signedRequest{id: "msg_concurrent", ts: clk.Now(), rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}}

	// given a first attempt still recording
	first := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { defer close(done); h.ServeHTTP(first, s.build(t)) }()
	<-acc.entered

	// when the same request arrives
	second := httptest.NewRecorder()
	h.ServeHTTP(second, s.build(t))

	// then it is told to retry, and the first completes
	checkAnswer(t, second.Result(), want{status: 503, problem: "unavailable"})
	close(acc.release)
	<-done
	checkAnswer(t, first.Result(), want{status: 202})
}

// brokenStore fails every call: replay protection is then "not known" and requests go on.
type brokenStore struct{}

func (brokenStore) MarkSeen(context.Context, string, time.Duration) (bool, error) {
	return false, errors.New("redis down")
}
func (brokenStore) Forget(context.Context, string) error { return errors.New("redis down") }

func (brokenStore) Seen(context.Context, string) (bool, error) {
	return false, errors.New("redis down")
}

func TestSignedReplayStoreDown(t *testing.T) {
	clk := newClock()
	acc := &fakeAccepter{res: okResult}
	h := newSignedHandler(t, acc, clk, hmacConfig(), httpd.WithReplayStore(brokenStore{}))
	s := signedRequest{id: "msg_1", ts: clk.Now(), rcpt: rcptAcme, body: msg, secrets: []string{acmeSecret}}
	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, s.build(t))
		checkAnswer(t, rec.Result(), want{status: 202})
	}
	if acc.callCount() != 2 {
		t.Errorf("Accept called %d times, want 2: a store outage must not refuse mail", acc.callCount())
	}
}

func TestHMACSecretsValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  httpd.Config
		want string
	}{
		{name: "not base64", cfg: httpd.Config{HMACSecrets: []string{"acme:whsec_***"}}, want: "HMAC_SECRETS entry 1: decoding webhook secret"},
		{name: "key too short", cfg: httpd.Config{HMACSecrets: []string{"acme:whsec_c2hvcnQ="}}, want: "HMAC_SECRETS entry 1: webhook secret key is 5 bytes"},
		{name: "no tenant", cfg: httpd.Config{HMACSecrets: []string{acmeSecret}}, want: "HMAC_SECRETS entry 1: want tenant:value"},
		{name: "negative tolerance", cfg: httpd.Config{HMACTolerance: -time.Second}, want: "must not be negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
