package crm_test

import (
	"fmt"
	"net/http"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

func ExampleClassifyHTTP() {
	resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"30"}}}
	err := crm.ClassifyHTTP(resp, []byte(`{"message":"slow down"}`))
	after, _ := failure.RetryAfter(err)
	fmt.Println(failure.Classify(err), failure.Retryable(err), after)
	// Output: rate_limited true 30s
}
