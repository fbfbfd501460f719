package failure_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/failure"
)

// selfClassified is a foreign error type that classifies itself through the optional interface.
type selfClassified struct{ after time.Duration }

func (selfClassified) Error() string                       { return "crm said 503" }
func (selfClassified) FailureClass() failure.Class         { return failure.CRM5xx }
func (e selfClassified) RetryAfter() (time.Duration, bool) { return e.after, e.after > 0 }

func TestClassify(t *testing.T) {
	base := errors.New("boom")
	for _, tt := range []struct {
		name      string
		err       error
		want      failure.Class
		retryable bool
	}{
		{"nil", nil, "", false},
		{"plain", base, failure.Unknown, true},
		{"wrapped parse", failure.Wrap(failure.Parse, base), failure.Parse, false},
		{"parse behind fmt wrap", fmt.Errorf("decoding raw record: %w", failure.Wrap(failure.Parse, base)), failure.Parse, false},
		{"new schema", failure.New(failure.Schema, "unknown schema id 7"), failure.Schema, false},
		{"crm 4xx", failure.Wrap(failure.CRM4xx, base), failure.CRM4xx, false},
		{"crm 5xx", failure.Wrap(failure.CRM5xx, base), failure.CRM5xx, true},
		{"rate limited", failure.Wrap(failure.RateLimited, base), failure.RateLimited, true},
		{"auth", failure.Wrap(failure.Auth, base), failure.Auth, false},
		{"internal", failure.Wrap(failure.Internal, base), failure.Internal, false},
		{"outer class overrides inner", failure.Wrap(failure.CRM4xx, failure.Wrap(failure.CRM5xx, base)), failure.CRM4xx, false},
		{"deadline exceeded", fmt.Errorf("calling hubspot: %w", context.DeadlineExceeded), failure.Timeout, true},
		{"os deadline", os.ErrDeadlineExceeded, failure.Timeout, true},
		{"net timeout", &net.OpError{Op: "dial", Err: timeoutErr{}}, failure.Timeout, true},
		{"canceled", context.Canceled, failure.Unknown, true},
		{"self classified", fmt.Errorf("upserting: %w", selfClassified{}), failure.CRM5xx, true},
		{"joined takes first classified", errors.Join(base, failure.Wrap(failure.Schema, base)), failure.Schema, false},
		{"explicit class beats deadline", failure.Wrap(failure.Parse, context.DeadlineExceeded), failure.Parse, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := failure.Classify(tt.err); got != tt.want {
				t.Errorf("Classify = %q, want %q", got, tt.want)
			}
			if got := failure.Retryable(tt.err); got != tt.retryable {
				t.Errorf("Retryable = %v, want %v", got, tt.retryable)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassRetryable(t *testing.T) {
	want := map[failure.Class]bool{
		failure.Parse: false, failure.Schema: false, failure.CRM4xx: false, failure.Auth: false,
		failure.Internal: false, failure.Config: false, failure.Blocked: false, failure.CRM5xx: true, failure.RateLimited: true,
		failure.Timeout: true, failure.Unknown: true,
	}
	for _, c := range failure.Classes() {
		if c.Retryable() != want[c] {
			t.Errorf("%s.Retryable() = %v, want %v", c, c.Retryable(), want[c])
		}
		delete(want, c)
	}
	if len(want) != 0 {
		t.Errorf("Classes() misses %v", want)
	}
	if failure.Class("something_new").Retryable() != true {
		t.Error("an unrecognised class should retry like unknown")
	}
}

func TestRetryAfter(t *testing.T) {
	base := errors.New("429 too many requests")
	for _, tt := range []struct {
		name      string
		err       error
		want      time.Duration
		ok        bool
		wantClass failure.Class
	}{
		{"nil", nil, 0, false, ""},
		{"none", failure.Wrap(failure.CRM5xx, base), 0, false, failure.CRM5xx},
		{"unclassified becomes rate limited", failure.WithRetryAfter(base, 3*time.Second), 3 * time.Second, true, failure.RateLimited},
		{"class kept", failure.WithRetryAfter(failure.Wrap(failure.CRM5xx, base), time.Second), time.Second, true, failure.CRM5xx},
		{"behind wrap", fmt.Errorf("upserting contact: %w", failure.WithRetryAfter(base, 2*time.Second)), 2 * time.Second, true, failure.RateLimited},
		{"zero ignored", failure.WithRetryAfter(base, 0), 0, false, failure.RateLimited},
		{"optional interface", fmt.Errorf("x: %w", selfClassified{after: 5 * time.Second}), 5 * time.Second, true, failure.CRM5xx},
		{"joined", errors.Join(base, failure.WithRetryAfter(base, 4*time.Second)), 4 * time.Second, true, failure.RateLimited},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := failure.RetryAfter(tt.err)
			if got != tt.want || ok != tt.ok {
				t.Errorf("RetryAfter = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
			if c := failure.Classify(tt.err); c != tt.wantClass {
				t.Errorf("Classify = %q, want %q", c, tt.wantClass)
			}
		})
	}
}

func TestWrapKeepsChain(t *testing.T) {
	base := errors.New("boom")
	err := failure.Wrap(failure.Parse, base)
	if !errors.Is(err, base) {
		t.Fatal("errors.Is lost the wrapped error")
	}
	if err.Error() != "boom" {
		t.Fatalf("Error() = %q, want the wrapped message", err.Error())
	}
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Class != failure.Parse {
		t.Fatalf("errors.As *failure.Error = %v", fe)
	}
	if failure.Wrap(failure.Parse, nil) != nil || failure.WithRetryAfter(nil, time.Second) != nil {
		t.Fatal("wrapping nil must return nil")
	}
}

func ExampleClassify() {
	err := fmt.Errorf("upserting contact: %w", failure.WithRetryAfter(failure.Wrap(failure.RateLimited, errors.New("429")), 2*time.Second))
	d, _ := failure.RetryAfter(err)
	fmt.Println(failure.Classify(err), failure.Retryable(err), d)
	// Output: rate_limited true 2s
}
