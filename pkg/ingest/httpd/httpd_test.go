package httpd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
)

const apiKey = "mp_test_0123456789abcdef"

// fakeAccepter records calls and answers with res/err.
type fakeAccepter struct {
	mu    sync.Mutex
	res   ingest.Result
	err   error
	envs  []events.Envelope
	raws  [][]byte
	calls int
}

func (f *fakeAccepter) Accept(_ context.Context, env events.Envelope, raw []byte) (ingest.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.envs = append(f.envs, env)
	f.raws = append(f.raws, append([]byte(nil), raw...))
	return f.res, f.err
}

func newHandler(t *testing.T, cfg httpd.Config, acc httpd.Accepter) http.Handler {
	t.Helper()
	if cfg.APIKeySHA256 == nil {
		cfg.APIKeySHA256 = []string{httpd.HashKey("old-key"), strings.ToUpper(httpd.HashKey(apiKey))}
	}
	h, err := httpd.New(cfg, acc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

const msg = "From: ann@example.org\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n\r\nbody\r\n"

func TestPostMessage(t *testing.T) {
	type want struct {
		status  int
		problem string // problem type suffix; "" for 202
		calls   int
	}
	ok := ingest.Result{ID: "01JB6Y2M3Q7V00000000000000", ThreadKey: "m1@example.org"}
	for _, tt := range []struct {
		name    string
		method  string
		target  string
		headers map[string]string
		body    string
		cfg     httpd.Config
		chunked bool // no Content-Length, so the limit is found while reading
		accErr  error
		want    want
	}{
		{
			name:   "accepted with envelope in the query",
			target: "/v1/messages?mail_from=ann@example.org&rcpt_to=support@in.example.com",
			body:   msg, want: want{status: 202, calls: 1},
		},
		{
			name:    "accepted with envelope in headers",
			target:  "/v1/messages",
			headers: map[string]string{"Mail-From": "<ann@example.org>", "Rcpt-To": "support@in.example.com, sales@in.example.com"},
			body:    msg, want: want{status: 202, calls: 1},
		},
		{
			name:    "missing key",
			target:  "/v1/messages?rcpt_to=support@in.example.com",
			headers: map[string]string{"Authorization": ""},
			body:    msg, want: want{status: 401, problem: "unauthorized"},
		},
		{
			name:    "wrong key",
			target:  "/v1/messages?rcpt_to=support@in.example.com",
			headers: map[string]string{"Authorization": "Bearer " + apiKey + "x"},
			body:    msg, want: want{status: 401, problem: "unauthorized"},
		},
		{
			name:    "basic auth is not a bearer key",
			target:  "/v1/messages?rcpt_to=support@in.example.com",
			headers: map[string]string{"Authorization": "Basic " + apiKey},
			body:    msg, want: want{status: 401, problem: "unauthorized"},
		},
		{
			name:    "rotated key still accepted",
			target:  "/v1/messages?rcpt_to=support@in.example.com",
			headers: map[string]string{"Authorization": "Bearer old-key"},
			body:    msg, want: want{status: 202, calls: 1},
		},
		{
			name:   "no recipient",
			target: "/v1/messages?mail_from=ann@example.org",
			body:   msg, want: want{status: 400, problem: "bad-envelope"},
		},
		{
			name:   "malformed recipient",
			target: "/v1/messages?rcpt_to=" + url.QueryEscape("Ann <ann@example.org>"),
			body:   msg, want: want{status: 400, problem: "bad-envelope"},
		},
		{
			name:   "too many recipients",
			target: "/v1/messages?rcpt_to=a@in.example.com,b@in.example.com,c@in.example.com",
			cfg:    httpd.Config{MaxRecipients: 2},
			body:   msg, want: want{status: 400, problem: "bad-envelope"},
		},
		{
			name:   "empty body",
			target: "/v1/messages?rcpt_to=support@in.example.com",
			body:   "", want: want{status: 400, problem: "empty-message"},
		},
		{
			name:   "body above the limit",
			target: "/v1/messages?rcpt_to=support@in.example.com",
			cfg:    httpd.Config{MaxBodyBytes: 16},
			body:   msg, want: want{status: 413, problem: "too-large"},
		},
		{
			name:    "chunked body above the limit",
			target:  "/v1/messages?rcpt_to=support@in.example.com",
			cfg:     httpd.Config{MaxBodyBytes: 16},
			chunked: true,
			body:    msg, want: want{status: 413, problem: "too-large"},
		},
		{
			name:   "unknown recipient domain",
			target: "/v1/messages?rcpt_to=x@elsewhere.example",
			accErr: fmt.Errorf("%w: x@elsewhere.example", ingest.ErrNoRoute),
			body:   msg, want: want{status: 400, problem: "no-route", calls: 1},
		},
		{
			name:   "too large for ingest",
			target: "/v1/messages?rcpt_to=support@in.example.com",
			accErr: fmt.Errorf("%w: 2000000 bytes", ingest.ErrTooLarge),
			body:   msg, want: want{status: 413, problem: "too-large", calls: 1},
		},
		{
			name:   "produce failed",
			target: "/v1/messages?rcpt_to=support@in.example.com",
			accErr: errors.New("producing raw record: NOT_ENOUGH_REPLICAS"),
			body:   msg, want: want{status: 503, problem: "unavailable", calls: 1},
		},
		{
			name:   "another attempt in flight",
			target: "/v1/messages?rcpt_to=support@in.example.com",
			accErr: ingest.ErrInFlight,
			body:   msg, want: want{status: 503, problem: "unavailable", calls: 1},
		},
		{
			name:   "wrong method",
			method: http.MethodGet,
			target: "/v1/messages",
			want:   want{status: 405, problem: "method-not-allowed"},
		},
		{
			name:   "wrong path",
			target: "/v1/other",
			want:   want{status: 404, problem: "not-found"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			acc := &fakeAccepter{res: ok, err: tt.accErr}
			h := newHandler(t, tt.cfg, acc)
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequestWithContext(t.Context(), method, tt.target, strings.NewReader(tt.body))
			req.RemoteAddr = "198.51.100.4:50123"
			if tt.chunked {
				req.ContentLength = -1
			}
			req.Header.Set("Content-Type", "message/rfc822")
			req.Header.Set("Authorization", "Bearer "+apiKey)
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := rec.Result()
			defer func() { _ = res.Body.Close() }()
			body, _ := io.ReadAll(res.Body)

			if res.StatusCode != tt.want.status {
				t.Fatalf("status = %d, want %d; body %s", res.StatusCode, tt.want.status, body)
			}
			if acc.calls != tt.want.calls {
				t.Errorf("Accept called %d times, want %d", acc.calls, tt.want.calls)
			}
			if tt.want.problem == "" {
				var got map[string]any
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("body %s: %v", body, err)
				}
				if got["id"] != ok.ID || got["thread_key"] != ok.ThreadKey || res.Header.Get("Content-Type") != "application/json" {
					t.Errorf("body = %s (%s), want id and thread_key of the result", body, res.Header.Get("Content-Type"))
				}
				return
			}
			var p httpd.Problem
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("content type = %q, want application/problem+json", ct)
			}
			if p.Type != httpd.ProblemTypeBase+tt.want.problem || p.Status != tt.want.status || p.Title == "" {
				t.Errorf("problem = %+v, want type %s%s and status %d", p, httpd.ProblemTypeBase, tt.want.problem, tt.want.status)
			}
			if tt.want.status == 503 && res.Header.Get("Retry-After") != "30" {
				t.Errorf("Retry-After = %q, want 30", res.Header.Get("Retry-After"))
			}
			if tt.want.status == 401 && res.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestPostMessagePassesEnvelopeAndBody(t *testing.T) {
	acc := &fakeAccepter{res: ingest.Result{ID: "x", ThreadKey: "k"}}
	h := newHandler(t, httpd.Config{}, acc)
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost,
		"/v1/messages?mail_from=ann@example.org&rcpt_to=a@in.example.com&rcpt_to=b@in.example.com,c@in.example.com", strings.NewReader(msg))
	req.RemoteAddr = "[2001:db8::7]:443"
	req.Header.Set("Authorization", "bearer "+apiKey)   // the scheme is case-insensitive
	req.Header.Set("Rcpt-To", "ignored@in.example.com") // the query wins
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d, body %s", rec.Code, rec.Body)
	}
	env := acc.envs[0]
	want := events.Envelope{
		MailFrom: "ann@example.org", RcptTo: []string{"a@in.example.com", "b@in.example.com", "c@in.example.com"},
		ClientIP: "2001:db8::7", Source: "http",
	}
	if env.MailFrom != want.MailFrom || !slices.Equal(env.RcptTo, want.RcptTo) || env.ClientIP != want.ClientIP ||
		env.Source != want.Source || env.Helo != "" || env.TLS != nil {
		t.Errorf("envelope = %+v, want %+v", env, want)
	}
	if string(acc.raws[0]) != msg {
		t.Errorf("raw = %q, want the body unchanged", acc.raws[0])
	}
}

func TestNewValidates(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tt := range []struct {
		name string
		cfg  httpd.Config
		acc  httpd.Accepter
		want string
	}{
		{name: "bad hash", cfg: httpd.Config{APIKeySHA256: []string{"not-hex"}}, acc: &fakeAccepter{}, want: "64 hex digits"},
		{name: "short hash", cfg: httpd.Config{APIKeySHA256: []string{"abcd"}}, acc: &fakeAccepter{}, want: "64 hex digits"},
		{name: "no accepter", cfg: httpd.Config{}, acc: nil, want: "accepter is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := httpd.New(tt.cfg, tt.acc, log)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestHashKey(t *testing.T) {
	// printf %s abc | sha256sum
	if got, want := httpd.HashKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("HashKey(abc) = %s, want %s", got, want)
	}
}
