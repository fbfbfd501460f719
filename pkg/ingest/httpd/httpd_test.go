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
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
)

const (
	apiKey   = "mp_test_0123456789abcdef" // tenant default (legacy list)
	acmeKey  = "mp_acme_0123456789abcdef" // tenant acme
	acmeKey2 = "mp_acme_rotated"          // tenant acme, second key
)

// Recipients of the fake route table (see fakeAccepter.Resolve).
const (
	rcptDefault = "support@in.example.com"   // domain fallback: tenant default, no route id
	rcptAcme    = "support@acme.example.com" // route "acme-support" of tenant acme
	rcptGlobex  = "sales@globex.example.com" // route "globex-sales" of tenant globex
)

// fakeAccepter records calls and answers with res/err. It resolves by domain: in.example.com
// is the domain fallback, acme.example.com and globex.example.com are routes of those tenants.
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

func (f *fakeAccepter) AcceptStream(ctx context.Context, env events.Envelope, r io.Reader) (ingest.Result, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return ingest.Result{}, fmt.Errorf("reading message: %w", err)
	}
	if len(raw) == 0 {
		return ingest.Result{}, fmt.Errorf("%w: empty message", ingest.ErrInvalid)
	}
	return f.Accept(ctx, env, raw)
}

func (f *fakeAccepter) Resolve(rcpt string) (ingest.Route, bool) {
	_, domain, _ := strings.Cut(rcpt, "@")
	switch domain {
	case "in.example.com":
		return ingest.Route{Tenant: ingest.DefaultTenant}, true
	case "acme.example.com":
		return ingest.Route{ID: "acme-support", Tenant: "acme"}, true
	case "globex.example.com":
		return ingest.Route{ID: "globex-sales", Tenant: "globex"}, true
	case "policy.example.com": // routes of tenant acme with a size limit or a sender policy
		if strings.HasPrefix(rcpt, "small@") {
			return ingest.Route{ID: "acme-small", Tenant: "acme", MaxSize: int64(len(msg))}, true
		}
		return ingest.Route{ID: "acme-closed", Tenant: "acme", Senders: denyMallory{}}, true
	}
	return ingest.Route{}, false
}

func (f *fakeAccepter) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// testConfig holds every credential the tests use unless a test sets its own.
func testConfig(cfg httpd.Config) httpd.Config {
	if cfg.APIKeySHA256 == nil {
		cfg.APIKeySHA256 = []string{httpd.HashKey("old-key"), strings.ToUpper(httpd.HashKey(apiKey))}
	}
	if cfg.APIKeys == nil {
		cfg.APIKeys = []string{"acme:" + httpd.HashKey(acmeKey), " acme : " + httpd.HashKey(acmeKey2), "globex:" + httpd.HashKey("globex-key")}
	}
	return cfg
}

func newHandler(t *testing.T, cfg httpd.Config, acc httpd.Accepter) http.Handler {
	t.Helper()
	h, err := httpd.New(testConfig(cfg), acc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

const msg = "From: ann@example.org\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n\r\nbody\r\n"

var okResult = ingest.Result{ID: "01JB6Y2M3Q7V00000000000000", ThreadKey: "m1@example.org"}

// want is the expected answer of one request.
type want struct {
	status  int
	problem string // problem type suffix; "" for success
	calls   int    // Accept calls
}

// checkAnswer reads res and checks it against w: a success body with the result's id and
// thread key, or a problem+json body of the given type and status.
func checkAnswer(t *testing.T, res *http.Response, w want) {
	t.Helper()
	defer func() { _ = res.Body.Close() }()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != w.status {
		t.Fatalf("status = %d, want %d; body %s", res.StatusCode, w.status, body)
	}
	if w.problem == "" {
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		if got["id"] != okResult.ID || got["thread_key"] != okResult.ThreadKey || res.Header.Get("Content-Type") != "application/json" {
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
	if p.Type != httpd.ProblemTypeBase+w.problem || p.Status != w.status || p.Title == "" {
		t.Errorf("problem = %+v, want type %s%s and status %d", p, httpd.ProblemTypeBase, w.problem, w.status)
	}
	if w.status == http.StatusServiceUnavailable && res.Header.Get("Retry-After") != "30" {
		t.Errorf("Retry-After = %q, want 30", res.Header.Get("Retry-After"))
	}
	if w.status == http.StatusUnauthorized && res.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
}

func TestPostMessage(t *testing.T) {
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
			target: "/v1/messages?mail_from=ann@example.org&rcpt_to=" + rcptDefault,
			body:   msg, want: want{status: 202, calls: 1},
		},
		{
			name:    "accepted with envelope in headers",
			target:  "/v1/messages",
			headers: map[string]string{"Mail-From": "<ann@example.org>", "Rcpt-To": rcptDefault + ", sales@in.example.com"},
			body:    msg, want: want{status: 202, calls: 1},
		},
		{
			name:    "missing key",
			target:  "/v1/messages?rcpt_to=" + rcptDefault,
			headers: map[string]string{"Authorization": ""},
			body:    msg, want: want{status: 401, problem: "unauthorized"},
		},
		{
			name:    "wrong key",
			target:  "/v1/messages?rcpt_to=" + rcptDefault,
			headers: map[string]string{"Authorization": "Bearer " + apiKey + "x"},
			body:    msg, want: want{status: 401, problem: "unauthorized"},
		},
		{
			name:    "basic auth is not a bearer key",
			target:  "/v1/messages?rcpt_to=" + rcptDefault,
			headers: map[string]string{"Authorization": "Basic " + apiKey},
			body:    msg, want: want{status: 401, problem: "unauthorized"},
		},
		{
			name:    "rotated legacy key still accepted",
			target:  "/v1/messages?rcpt_to=" + rcptDefault,
			headers: map[string]string{"Authorization": "Bearer old-key"},
			body:    msg, want: want{status: 202, calls: 1},
		},
		{
			name:    "tenant key to its own route",
			target:  "/v1/messages?rcpt_to=" + rcptAcme,
			headers: map[string]string{"Authorization": "Bearer " + acmeKey},
			body:    msg, want: want{status: 202, calls: 1},
		},
		{
			name:    "second key of the tenant",
			target:  "/v1/messages?rcpt_to=" + rcptAcme,
			headers: map[string]string{"Authorization": "Bearer " + acmeKey2},
			body:    msg, want: want{status: 202, calls: 1},
		},
		{
			name:    "tenant key to another tenant's route",
			target:  "/v1/messages?rcpt_to=" + rcptGlobex,
			headers: map[string]string{"Authorization": "Bearer " + acmeKey},
			body:    msg, want: want{status: 403, problem: "forbidden"},
		},
		{
			name:    "one recipient of another tenant refuses the request",
			target:  "/v1/messages?rcpt_to=" + rcptAcme + "," + rcptGlobex,
			headers: map[string]string{"Authorization": "Bearer " + acmeKey},
			body:    msg, want: want{status: 403, problem: "forbidden"},
		},
		{
			name:    "tenant key to the domain fallback",
			target:  "/v1/messages?rcpt_to=" + rcptDefault,
			headers: map[string]string{"Authorization": "Bearer " + acmeKey},
			body:    msg, want: want{status: 202, calls: 1},
		},
		{
			name:   "legacy key (tenant default) to a tenant's route",
			target: "/v1/messages?rcpt_to=" + rcptAcme,
			body:   msg, want: want{status: 403, problem: "forbidden"},
		},
		{
			name:   "unknown recipient is refused before the body is read",
			target: "/v1/messages?rcpt_to=x@elsewhere.example",
			body:   msg, want: want{status: 400, problem: "no-route"},
		},
		{
			name:   "no recipient",
			target: "/v1/messages?mail_from=ann@example.org",
			body:   msg, want: want{status: 400, problem: "bad-envelope"},
		},
		{
			name:   "malformed recipient",
			target: "/v1/messages?rcpt_to=" + url.QueryEscape("Ann <ann@in.example.com>"),
			body:   msg, want: want{status: 400, problem: "bad-envelope"},
		},
		{
			name:   "malformed sender",
			target: "/v1/messages?mail_from=ann&rcpt_to=" + rcptDefault,
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
			target: "/v1/messages?rcpt_to=" + rcptDefault,
			body:   "", want: want{status: 400, problem: "empty-message"},
		},
		{
			name:   "body above the limit",
			target: "/v1/messages?rcpt_to=" + rcptDefault,
			cfg:    httpd.Config{MaxBodyBytes: 16},
			body:   msg, want: want{status: 413, problem: "too-large"},
		},
		{
			name:   "body exactly at the limit",
			target: "/v1/messages?rcpt_to=" + rcptDefault,
			cfg:    httpd.Config{MaxBodyBytes: int64(len(msg))},
			body:   msg, want: want{status: 202, calls: 1},
		},
		{
			name:    "chunked body above the limit",
			target:  "/v1/messages?rcpt_to=" + rcptDefault,
			cfg:     httpd.Config{MaxBodyBytes: 16},
			chunked: true,
			body:    msg, want: want{status: 413, problem: "too-large"},
		},
		{
			name:   "route gone between the check and the record",
			target: "/v1/messages?rcpt_to=" + rcptDefault,
			accErr: fmt.Errorf("%w: %s", ingest.ErrNoRoute, rcptDefault),
			body:   msg, want: want{status: 400, problem: "no-route", calls: 1},
		},
		{
			name:   "too large for ingest",
			target: "/v1/messages?rcpt_to=" + rcptDefault,
			accErr: fmt.Errorf("%w: 2000000 bytes", ingest.ErrTooLarge),
			body:   msg, want: want{status: 413, problem: "too-large", calls: 1},
		},
		{
			name:   "invalid for ingest",
			target: "/v1/messages?rcpt_to=" + rcptDefault,
			accErr: fmt.Errorf("%w: recipients of different routes", ingest.ErrInvalid),
			body:   msg, want: want{status: 400, problem: "invalid-message", calls: 1},
		},
		{
			name:   "produce failed",
			target: "/v1/messages?rcpt_to=" + rcptDefault,
			accErr: errors.New("producing raw record: NOT_ENOUGH_REPLICAS"),
			body:   msg, want: want{status: 503, problem: "unavailable", calls: 1},
		},
		{
			name:   "another attempt in flight",
			target: "/v1/messages?rcpt_to=" + rcptDefault,
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
			acc := &fakeAccepter{res: okResult, err: tt.accErr}
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
			checkAnswer(t, rec.Result(), tt.want)
			if acc.callCount() != tt.want.calls {
				t.Errorf("Accept called %d times, want %d", acc.callCount(), tt.want.calls)
			}
		})
	}
}

func TestPostMessagePassesEnvelopeAndBody(t *testing.T) {
	acc := &fakeAccepter{res: okResult}
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
		{name: "bad hash", cfg: httpd.Config{APIKeySHA256: []string{"not-hex"}}, acc: &fakeAccepter{}, want: "API_KEY_SHA256 entry 1: api key sha256 is not 64 hex digits"},
		{name: "short hash", cfg: httpd.Config{APIKeys: []string{"acme:abcd"}}, acc: &fakeAccepter{}, want: "API_KEYS entry 1: api key sha256 is not 64 hex digits"},
		{name: "no tenant", cfg: httpd.Config{APIKeys: []string{httpd.HashKey("k")}}, acc: &fakeAccepter{}, want: "API_KEYS entry 1: want tenant:value"},
		{name: "bad tenant", cfg: httpd.Config{APIKeys: []string{"Acme:" + httpd.HashKey("k")}}, acc: &fakeAccepter{}, want: "API_KEYS entry 1: the tenant is not a valid tenant name"},
		{name: "missing file", cfg: httpd.Config{APIKeysFile: "/nonexistent/keys"}, acc: &fakeAccepter{}, want: "API_KEYS_FILE: reading"},
		{name: "no accepter", cfg: httpd.Config{}, acc: nil, want: "accepter is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := httpd.New(tt.cfg, tt.acc, log)
			if err == nil || strings.Count(err.Error(), tt.want) != 1 {
				t.Errorf("New() error = %v, want one containing %q once", err, tt.want)
			}
		})
	}
}

func TestAPIKeysFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	file := "# rotated 2025-01\n\n  acme:" + httpd.HashKey("from-file") + "\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	acc := &fakeAccepter{res: okResult}
	h := newHandler(t, httpd.Config{APIKeysFile: path, APIKeys: []string{}}, acc)
	for _, tt := range []struct {
		rcpt string
		want int
	}{{rcptAcme, 202}, {rcptGlobex, 403}} {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/messages?rcpt_to="+tt.rcpt, strings.NewReader(msg))
		req.Header.Set("Authorization", "Bearer from-file")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("key from the file to %s: status %d, want %d; %s", tt.rcpt, rec.Code, tt.want, rec.Body)
		}
	}

	// A bad line is reported with the file and line, never with its value.
	if err := os.WriteFile(path, []byte("acme:"+httpd.HashKey("a")+"\nacme:zz-secret-zz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := httpd.Config{APIKeysFile: path}.Validate()
	if err == nil || !strings.Contains(err.Error(), path+" line 2") || strings.Contains(err.Error(), "zz-secret-zz") {
		t.Errorf("Validate() = %v, want the file and line 2 named and the value left out", err)
	}
}

func TestHashKey(t *testing.T) {
	// printf %s abc | sha256sum
	if got, want := httpd.HashKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("HashKey(abc) = %s, want %s", got, want)
	}
}

func nopCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }
