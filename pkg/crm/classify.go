package crm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/mailpipe/mailpipe/pkg/backoff"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// maxBodyExcerpt bounds how much of an error response body goes into the error text, which ends
// up in logs and DLQ headers.
const maxBodyExcerpt = 256

// ClassifyHTTP maps a CRM's HTTP response to a classified error, or nil for a 2xx status.
// body is the (possibly truncated) response body the caller read; an excerpt of it goes into the
// error text because CRMs explain validation errors there. The caller still owns resp.Body.
//
//   - 401, 403 → failure.Auth (not retryable: waiting does not fix credentials)
//   - 408 → failure.Timeout
//   - 429 → failure.RateLimited, with the Retry-After wait when the header is present
//   - other 4xx, and 1xx/3xx that reached the caller (redirects are not followed for signed
//     requests) → failure.CRM4xx
//   - 5xx → failure.CRM5xx, with the Retry-After wait when present (503 often sends one)
//
// An HTTP-date Retry-After is measured against the response's Date header when it has one, so
// a skewed local clock does not stretch or shrink the wait; otherwise against the local clock.
// The returned chain holds an error with a `StatusCode() int` method, for callers that log it.
func ClassifyHTTP(resp *http.Response, body []byte) error {
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return nil
	}
	err := &statusError{code: code, excerpt: excerpt(body)}
	if req := resp.Request; req != nil && req.URL != nil {
		err.method, err.host = req.Method, req.URL.Host
	}
	var class failure.Class
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		class = failure.Auth
	case code == http.StatusRequestTimeout:
		class = failure.Timeout
	case code == http.StatusTooManyRequests:
		class = failure.RateLimited
	case code >= 500 && code <= 599:
		class = failure.CRM5xx
	default:
		class = failure.CRM4xx
	}
	classified := failure.Wrap(class, err)
	if class == failure.RateLimited || class == failure.CRM5xx {
		if d, ok := retryAfter(resp); ok {
			classified = failure.WithRetryAfter(classified, d)
		}
	}
	return classified
}

// ClassifyTransport classifies an error returned by an HTTP client call (http.Client.Do, a
// dial): deadlines and network timeouts become failure.Timeout. Errors that already carry a
// class are returned unchanged. Cancellation (the stage is shutting down) and other network
// errors (connection refused, DNS) are returned unclassified: they are retryable as
// failure.Unknown, and no CRM class would describe them truthfully. It returns nil for nil.
func ClassifyTransport(err error) error {
	if err == nil {
		return nil
	}
	var c interface{ FailureClass() failure.Class }
	if errors.As(err, &c) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return failure.Wrap(failure.Timeout, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return failure.Wrap(failure.Timeout, err)
	}
	return err
}

// statusError is a non-2xx CRM response. Its text names the request and the status, never the
// request body (which holds the message).
type statusError struct {
	code         int
	method, host string
	excerpt      string
}

func (e *statusError) Error() string {
	var b strings.Builder
	if e.host != "" {
		fmt.Fprintf(&b, "%s %s: ", e.method, e.host)
	}
	fmt.Fprintf(&b, "HTTP %d %s", e.code, http.StatusText(e.code))
	if e.excerpt != "" {
		fmt.Fprintf(&b, ": %s", e.excerpt)
	}
	return b.String()
}

// StatusCode returns the HTTP status, for connectors and logs that want it.
func (e *statusError) StatusCode() int { return e.code }

// retryAfter reads the Retry-After header relative to the response's Date.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	now := time.Now()
	if date, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		now = date
	}
	d, ok := backoff.ParseRetryAfter(v, now)
	if !ok || d <= 0 {
		return 0, false
	}
	return d, true
}

// excerpt turns the start of a body into one printable line.
func excerpt(body []byte) string {
	if len(body) > maxBodyExcerpt {
		body = body[:maxBodyExcerpt]
	}
	s := strings.ToValidUTF8(string(body), "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}
