package httpd_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
)

// denyMallory is a sender policy refusing mallory@example.org.
type denyMallory struct{}

func (denyMallory) AllowsSender(from string) bool { return from != "mallory@example.org" }

func TestRoutePolicy(t *testing.T) {
	big := msg + strings.Repeat("x", 10)
	for _, tt := range []struct {
		name    string
		mailgun bool
		from    string
		rcpt    string
		body    string
		chunked bool
		want    want
	}{
		{name: "sender allowed", from: "ann@example.org", rcpt: "closed@policy.example.com", body: msg, want: want{status: 202, calls: 1}},
		{name: "sender refused", from: "mallory@example.org", rcpt: "closed@policy.example.com", body: msg, want: want{status: 403, problem: "forbidden"}},
		{name: "within route size", from: "ann@example.org", rcpt: "small@policy.example.com", body: msg, want: want{status: 202, calls: 1}},
		{name: "over route size", from: "ann@example.org", rcpt: "small@policy.example.com", body: big, want: want{status: 413, problem: "too-large"}},
		{name: "over route size, chunked", from: "ann@example.org", rcpt: "small@policy.example.com", body: big, chunked: true, want: want{status: 413, problem: "too-large"}},
		{name: "mailgun sender refused", mailgun: true, from: "mallory@example.org", rcpt: "closed@policy.example.com", body: msg, want: want{status: 403, problem: "forbidden"}},
		{name: "mailgun over route size", mailgun: true, from: "ann@example.org", rcpt: "small@policy.example.com", body: big, want: want{status: 406, problem: "too-large"}},
		{name: "mailgun accepted", mailgun: true, from: "ann@example.org", rcpt: "small@policy.example.com", body: msg, want: want{status: 200, calls: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			acc := &fakeAccepter{res: okResult}
			h := newHandler(t, httpd.Config{}, acc)
			var req *http.Request
			if tt.mailgun {
				form := url.Values{"body-mime": {tt.body}, "recipient": {tt.rcpt}, "sender": {tt.from}}
				req = httptest.NewRequestWithContext(t.Context(), http.MethodPost, httpd.PathMailgun, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth("api", acmeKey)
			} else {
				target := httpd.Path + "?" + url.Values{"mail_from": {tt.from}, "rcpt_to": {tt.rcpt}}.Encode()
				req = httptest.NewRequestWithContext(t.Context(), http.MethodPost, target, strings.NewReader(tt.body))
				req.Header.Set("Authorization", "Bearer "+acmeKey)
				if tt.chunked {
					req.ContentLength = -1
				}
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
