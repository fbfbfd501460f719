package salesforce

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/failure"
)

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		name       string
		status     int
		retryAfter string
		body       string
		want       failure.Class
		after      time.Duration
	}{
		{name: "200 upsert updated", status: 200, body: `{"id":"003","success":true,"created":false}`},
		{name: "201 created", status: 201},
		{name: "204 updated before API 46.0", status: 204},
		{name: "300 external id matches several", status: 300, body: `["/services/data/v62.0/sobjects/Contact/0035g000000001AAA","/services/data/v62.0/sobjects/Contact/0035g000000002AAA"]`, want: failure.CRM4xx},
		{name: "400 required field", status: 400, body: `[{"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]}]`, want: failure.CRM4xx},
		{name: "400 duplicate value", status: 400, body: `[{"message":"duplicate value found","errorCode":"DUPLICATE_VALUE","fields":[]}]`, want: failure.CRM4xx},
		{name: "400 row lock is retryable", status: 400, body: `[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW","fields":[]}]`, want: failure.CRM5xx},
		{name: "401 session", status: 401, body: `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`, want: failure.Auth},
		{name: "403 permission", status: 403, body: `[{"message":"The REST API is not enabled for this Organization.","errorCode":"API_DISABLED_FOR_ORG"}]`, want: failure.Auth},
		{name: "403 request limit is a rate limit", status: 403, body: `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`, want: failure.RateLimited},
		{name: "403 request limit with retry-after", status: 403, retryAfter: "120", body: `[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`, want: failure.RateLimited, after: 2 * time.Minute},
		{name: "404 not found", status: 404, body: `[{"message":"The requested resource does not exist","errorCode":"NOT_FOUND"}]`, want: failure.CRM4xx},
		{name: "408", status: 408, want: failure.Timeout},
		{name: "415", status: 415, body: `[{"errorCode":"UNSUPPORTED_MEDIA_TYPE","message":"x"}]`, want: failure.CRM4xx},
		{name: "429 with retry-after", status: 429, retryAfter: "7", body: `[{"message":"slow down","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`, want: failure.RateLimited, after: 7 * time.Second},
		{name: "500 unknown exception", status: 500, body: `[{"message":"An unexpected error occurred","errorCode":"UNKNOWN_EXCEPTION"}]`, want: failure.CRM5xx},
		{name: "502 from a proxy, HTML body", status: 502, body: `<html>bad gateway</html>`, want: failure.CRM5xx},
		{name: "503 with retry-after", status: 503, retryAfter: "2", body: `[{"message":"Server is temporarily unavailable","errorCode":"SERVER_UNAVAILABLE"}]`, want: failure.CRM5xx, after: 2 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(""))}
			if tt.retryAfter != "" {
				resp.Header.Set("Retry-After", tt.retryAfter)
			}
			err := classify(resp, []byte(tt.body))
			if got := failure.Classify(err); got != tt.want {
				t.Fatalf("class = %q (err %v), want %q", got, err, tt.want)
			}
			if d, _ := failure.RetryAfter(err); d != tt.after {
				t.Errorf("RetryAfter = %v, want %v", d, tt.after)
			}
			if code := errorCode([]byte(tt.body)); err != nil && code != "" && !strings.Contains(err.Error(), code) {
				t.Errorf("error %q does not name the error code %s", err, code)
			}
		})
	}
}

func TestErrorCode(t *testing.T) {
	for _, tt := range []struct{ body, want string }{
		{`[{"message":"m","errorCode":"NOT_FOUND"}]`, "NOT_FOUND"},
		{`[{"errorCode":"A"},{"errorCode":"B"}]`, "A"},
		{`[]`, ""},
		{`{"error":"invalid_grant","error_description":"x"}`, ""},
		{`<html/>`, ""},
		{`["/services/data/v62.0/sobjects/Contact/0035g000000001AAA"]`, ""},
	} {
		if got := errorCode([]byte(tt.body)); got != tt.want {
			t.Errorf("errorCode(%s) = %q, want %q", tt.body, got, tt.want)
		}
	}
}
