package hubspot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// Response size bounds: a success answer is decoded (a search answer carries at most two
// emails' text), an error answer only contributes an excerpt.
const (
	maxResponseBody = 4 << 20
	maxErrorBody    = 64 << 10
)

// call is the bookkeeping of one Upsert: how many requests were sent again after a token
// refresh. Only the goroutine running the Upsert touches it.
type call struct{ resent int }

// do sends one API request with a JSON body (in, unless nil) and decodes a 2xx answer into out
// (unless nil). A 401 under OAuth drops the token, refreshes it and sends the request once more.
// Errors are classified (crm.ClassifyHTTP, crm.ClassifyTransport) and name op; the chain has a
// StatusCode method for HTTP answers (see statusOf).
func (c *Connector) do(ctx context.Context, cl *call, op, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return failure.Wrap(failure.Internal, fmt.Errorf("%s: encoding request: %w", op, err))
		}
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.auth.token(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		respBody, err := c.send(ctx, method, path, body, tok)
		if err != nil {
			if attempt == 0 && statusOf(err) == http.StatusUnauthorized && c.auth.invalidate(tok) {
				cl.resent++
				continue
			}
			return fmt.Errorf("%s: %w", op, err)
		}
		if out != nil {
			if err := json.Unmarshal(respBody, out); err != nil {
				// The request may have taken effect; the stage retries, and every write is
				// idempotent.
				return failure.Wrap(failure.CRM5xx, fmt.Errorf("%s: decoding response: %w", op, err))
			}
		}
		return nil
	}
}

// send makes one HTTP exchange and returns the body of a 2xx answer.
func (c *Connector) send(ctx context.Context, method, path string, body []byte, tok string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, failure.Wrap(failure.Internal, fmt.Errorf("building request: %w", err))
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mailpipe-crm-sink")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, which holds message ids in some paths; the op names the
		// request well enough.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = c.base
		}
		return nil, crm.ClassifyTransport(err)
	}
	defer func() { _ = resp.Body.Close() }()
	limit := int64(maxResponseBody)
	if resp.StatusCode/100 != 2 {
		limit = maxErrorBody
	}
	respBody, readErr := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err := crm.ClassifyHTTP(resp, respBody); err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, crm.ClassifyTransport(fmt.Errorf("reading response: %w", readErr))
	}
	return respBody, nil
}

// statusOf returns the HTTP status carried by err's chain, or 0.
func statusOf(err error) int {
	var s interface{ StatusCode() int }
	if errors.As(err, &s) {
		return s.StatusCode()
	}
	return 0
}
