package crm_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

func TestClassifyHTTP(t *testing.T) {
	serverDate := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name       string
		status     int
		header     http.Header
		body       string
		want       failure.Class
		retryAfter time.Duration
		inText     string
	}{
		{name: "200 ok", status: 200, want: ""},
		{name: "201 created", status: 201, want: ""},
		{name: "204 no content", status: 204, want: ""},
		{name: "400 validation", status: 400, body: `{"message":"email is invalid"}`, want: failure.CRM4xx, inText: "email is invalid"},
		{name: "401", status: 401, want: failure.Auth},
		{name: "403", status: 403, want: failure.Auth},
		{name: "404", status: 404, want: failure.CRM4xx},
		{name: "408", status: 408, want: failure.Timeout},
		{name: "409", status: 409, want: failure.CRM4xx},
		{name: "422", status: 422, want: failure.CRM4xx},
		{name: "429 without retry-after", status: 429, want: failure.RateLimited},
		{name: "429 delta seconds", status: 429, header: http.Header{"Retry-After": {"7"}}, want: failure.RateLimited, retryAfter: 7 * time.Second},
		{
			name: "429 http-date against server date", status: 429,
			header: http.Header{
				"Retry-After": {serverDate.Add(90 * time.Second).Format(http.TimeFormat)},
				"Date":        {serverDate.Format(http.TimeFormat)},
			},
			want: failure.RateLimited, retryAfter: 90 * time.Second,
		},
		{name: "429 garbage retry-after", status: 429, header: http.Header{"Retry-After": {"soon"}}, want: failure.RateLimited},
		{name: "429 zero retry-after", status: 429, header: http.Header{"Retry-After": {"0"}}, want: failure.RateLimited},
		{name: "500", status: 500, want: failure.CRM5xx},
		{name: "502", status: 502, want: failure.CRM5xx},
		{name: "503 with retry-after", status: 503, header: http.Header{"Retry-After": {"3"}}, want: failure.CRM5xx, retryAfter: 3 * time.Second},
		{name: "302 not followed", status: 302, want: failure.CRM4xx},
		{name: "long body is cut", status: 400, body: strings.Repeat("x", 10000), want: failure.CRM4xx},
		{name: "body newlines flattened", status: 422, body: "line one\n\tline two\x00", want: failure.CRM4xx, inText: "line one line two"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://crm.example.com/v1/contacts", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp := &http.Response{StatusCode: tt.status, Header: tt.header, Request: req}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			err = crm.ClassifyHTTP(resp, []byte(tt.body))
			if got := failure.Classify(err); got != tt.want {
				t.Fatalf("class = %q, want %q (err %v)", got, tt.want, err)
			}
			if tt.want == "" {
				return
			}
			d, ok := failure.RetryAfter(err)
			if d != tt.retryAfter || ok != (tt.retryAfter > 0) {
				t.Errorf("RetryAfter = %v, %v; want %v", d, ok, tt.retryAfter)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("HTTP %d", tt.status)) || !strings.Contains(msg, "crm.example.com") {
				t.Errorf("error text %q does not name the status and host", msg)
			}
			if tt.inText != "" && !strings.Contains(msg, tt.inText) {
				t.Errorf("error text %q does not contain %q", msg, tt.inText)
			}
			if len(msg) > 400 {
				t.Errorf("error text is %d bytes, want the body cut", len(msg))
			}
			var sc interface{ StatusCode() int }
			if !errors.As(err, &sc) || sc.StatusCode() != tt.status {
				t.Errorf("chain has no StatusCode() %d", tt.status)
			}
		})
	}
}

type netTimeout struct{}

func (netTimeout) Error() string   { return "i/o timeout" }
func (netTimeout) Timeout() bool   { return true }
func (netTimeout) Temporary() bool { return true }

func TestClassifyTransport(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, tt := range []struct {
		name string
		err  error
		want failure.Class
	}{
		{"nil", nil, ""},
		{"deadline", fmt.Errorf("posting webhook: %w", context.DeadlineExceeded), failure.Timeout},
		{"client timeout url.Error", &url.Error{Op: "Post", URL: "https://x", Err: netTimeout{}}, failure.Timeout},
		{"net timeout", &net.OpError{Op: "read", Err: netTimeout{}}, failure.Timeout},
		{"already classified stays", failure.Wrap(failure.Auth, context.DeadlineExceeded), failure.Auth},
		{"canceled stays unknown", context.Canceled, failure.Unknown},
		{"connection refused stays unknown", &url.Error{Op: "Post", URL: "https://x", Err: refused}, failure.Unknown},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := crm.ClassifyTransport(tt.err)
			if tt.err != nil && !errors.Is(got, tt.err) {
				t.Errorf("ClassifyTransport lost the original error: %v", got)
			}
			if c := failure.Classify(got); c != tt.want {
				t.Errorf("class = %q, want %q", c, tt.want)
			}
		})
	}
}
