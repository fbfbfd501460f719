package salesforce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"time"

	"github.com/mailpipe/mailpipe/pkg/backoff"
	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// maxResponseBody bounds how much of an API answer is read; save results and single-field
// reads are tiny, and an error needs only its excerpt.
const maxResponseBody = 1 << 20

// call is the bookkeeping of one Upsert: the API requests it made (Result.Attempts).
type call struct {
	requests int
}

// do sends one API request to path (below the instance URL, "/services/data/…") and returns
// the answer, whatever its status, with the body read. On 401 INVALID_SESSION_ID it renews the
// session and sends the request again, once; a second 401 is returned for the caller to classify
// (failure.Auth), so credentials that stopped working cost one token request, not a loop. what
// names the request in errors without the record's key, which may be an address.
func (c *Connector) do(ctx context.Context, cl *call, method, path, what string, payload []byte) (answer, error) {
	sess, err := c.tokens.current(ctx)
	if err != nil {
		return answer{}, err
	}
	for renewed := false; ; renewed = true {
		a, err := c.send(ctx, cl, sess, method, path, what, payload)
		if err != nil {
			return answer{}, err
		}
		if a.status != http.StatusUnauthorized || renewed {
			return a, nil
		}
		c.log.LogAttrs(ctx, slog.LevelDebug, "Salesforce session rejected; renewing", slog.String("error_code", a.code()))
		if sess, err = c.tokens.renew(ctx, sess); err != nil {
			return answer{}, fmt.Errorf("renewing the Salesforce session after a 401 on %s: %w", what, err)
		}
	}
}

// answer is an API response, its body read and closed.
type answer struct {
	status int
	header http.Header
	req    *http.Request
	body   []byte
}

// code is the Salesforce error code of the answer, or "".
func (a answer) code() string { return errorCode(a.body) }

// fail returns the classified error of a non-2xx answer to the request what.
func (a answer) fail(what string) error {
	resp := &http.Response{StatusCode: a.status, Header: a.header, Request: a.req, Body: http.NoBody}
	return fmt.Errorf("%s: %w", what, classify(resp, a.body))
}

func (c *Connector) send(ctx context.Context, cl *call, sess *session, method, path, what string, payload []byte) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, sess.instanceURL+path, rd)
	if err != nil {
		return answer{}, failure.Wrap(failure.Internal, fmt.Errorf("building request %s: %w", what, err))
	}
	req.Header.Set("Authorization", "Bearer "+sess.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mailpipe-crm-sink")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	cl.requests++
	resp, err := c.client.Do(req)
	if err != nil {
		// The client's *url.Error repeats the URL, whose last segment may be an address; name
		// the request instead.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = sess.instanceURL + " (" + what + ")"
		}
		return answer{}, crm.ClassifyTransport(fmt.Errorf("sending %s: %w", what, err))
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil && resp.StatusCode/100 == 2 {
		// A success whose body broke off did happen, but the id in it is lost; the retry
		// finds the record by its key.
		return answer{}, crm.ClassifyTransport(fmt.Errorf("reading the answer to %s: %w", what, err))
	}
	return answer{status: resp.StatusCode, header: resp.Header, req: req, body: body}, nil
}

// classify turns a non-2xx answer into a classified error: crm.ClassifyHTTP, refined by the
// Salesforce error code where the status alone misleads.
//   - 403 REQUEST_LIMIT_EXCEEDED: the org's API allocation (rolling 24 hours) or concurrency
//     limit is used up. Salesforce sends 403, but it is a rate limit: failure.RateLimited.
//   - 400 UNABLE_TO_LOCK_ROW: another transaction held the record for 10 s; retryable
//     contention on Salesforce's side, failure.CRM5xx.
//
// 300 (an External ID value matching several records) stays failure.CRM4xx: the data needs a
// human.
func classify(resp *http.Response, body []byte) error {
	err := crm.ClassifyHTTP(resp, body)
	if err == nil {
		return nil
	}
	switch errorCode(body) {
	case "REQUEST_LIMIT_EXCEEDED":
		if failure.Classify(err) != failure.RateLimited {
			err = failure.Wrap(failure.RateLimited, err)
			if d, ok := retryAfter(resp); ok {
				err = failure.WithRetryAfter(err, d)
			}
		}
	case "UNABLE_TO_LOCK_ROW":
		err = failure.Wrap(failure.CRM5xx, err)
	}
	return err
}

// errorCode returns the errorCode of the first error of a Salesforce error body
// ([{"message":…,"errorCode":…,"fields":[…]}]), or "".
func errorCode(body []byte) string {
	var errs []struct {
		ErrorCode string `json:"errorCode"`
	}
	if json.Unmarshal(body, &errs) != nil || len(errs) == 0 {
		return ""
	}
	return errs[0].ErrorCode
}

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
	return d, ok && d > 0
}

// saveResult is the body of a create (201) and of an upsert (201 new, 200 existing).
type saveResult struct {
	ID      string `json:"id"`
	Success bool   `json:"success"`
	Created *bool  `json:"created"` // upserts from API 46.0 on
}

func (c *Connector) sobjectPath(sobject string) string {
	return "/services/data/v" + c.cfg.APIVersion + "/sobjects/" + sobject
}

func (c *Connector) keyPath(sobject, field, key string) string {
	return c.sobjectPath(sobject) + "/" + field + "/" + url.PathEscape(key)
}

// upsert PATCHes fields to the record of sobject whose External ID field holds key, creating it
// when there is none, and returns its id and whether it was created.
func (c *Connector) upsert(ctx context.Context, cl *call, sobject, field, key string, fields map[string]any) (id string, created bool, err error) {
	what := "upsert of " + sobject + " by " + field
	payload, err := json.Marshal(fields)
	if err != nil {
		return "", false, failure.Wrap(failure.Internal, fmt.Errorf("encoding %s: %w", what, err))
	}
	for try := 1; ; try++ {
		a, err := c.do(ctx, cl, http.MethodPatch, c.keyPath(sobject, field, key), what, payload)
		if err != nil {
			return "", false, err
		}
		switch a.status {
		case http.StatusCreated, http.StatusOK:
			var r saveResult
			if err := json.Unmarshal(a.body, &r); err != nil || r.ID == "" {
				return "", false, failure.New(failure.CRM5xx, what+": the answer has no record id")
			}
			created := a.status == http.StatusCreated
			if r.Created != nil {
				created = *r.Created
			}
			return r.ID, created, nil
		case http.StatusNoContent:
			// An update before API 46.0 answers without a body; read the id back.
			id, found, err := c.lookup(ctx, cl, sobject, field, key)
			if err == nil && !found {
				err = failure.New(failure.CRM5xx, what+": updated record not found by its key")
			}
			return id, false, err
		}
		if try == 1 && a.status == http.StatusBadRequest && a.code() == "DUPLICATE_VALUE" {
			// Two upserts of one new key raced inside Salesforce and the other inserted first;
			// sent again, this one finds the record and updates it.
			continue
		}
		return "", false, a.fail(what)
	}
}

// lookup reads the id of the record of sobject whose External ID field holds key.
func (c *Connector) lookup(ctx context.Context, cl *call, sobject, field, key string) (id string, found bool, err error) {
	what := "read of " + sobject + " by " + field
	a, err := c.do(ctx, cl, http.MethodGet, c.keyPath(sobject, field, key)+"?fields=Id", what, nil)
	if err != nil {
		return "", false, err
	}
	switch a.status {
	case http.StatusOK:
		var r struct {
			ID string `json:"Id"`
		}
		if err := json.Unmarshal(a.body, &r); err != nil || r.ID == "" {
			return "", false, failure.New(failure.CRM5xx, what+": the answer has no record id")
		}
		return r.ID, true, nil
	case http.StatusNotFound:
		if a.code() == "NOT_FOUND" {
			return "", false, nil
		}
	}
	return "", false, a.fail(what)
}

// update PATCHes fields to the record id of sobject. It returns the classified error of a
// non-204 answer, and the Salesforce error code (for DUPLICATE_VALUE).
func (c *Connector) update(ctx context.Context, cl *call, sobject, id string, fields map[string]any) (string, error) {
	what := "update of " + sobject
	payload, err := json.Marshal(fields)
	if err != nil {
		return "", failure.Wrap(failure.Internal, fmt.Errorf("encoding %s: %w", what, err))
	}
	a, err := c.do(ctx, cl, http.MethodPatch, c.sobjectPath(sobject)+"/"+url.PathEscape(id), what, payload)
	if err != nil {
		return "", err
	}
	if a.status/100 == 2 {
		return "", nil
	}
	return a.code(), a.fail(what)
}

// ensure returns the id of the record of sobject keyed by key, creating it with fields (by
// upsert, so a concurrent creation cannot duplicate it) when there is none. An existing record
// is left as it is: people edit Accounts and Contacts in Salesforce, and a later message must
// not undo that.
func (c *Connector) ensure(ctx context.Context, cl *call, sobject, field, key string, fields map[string]any) (string, error) {
	id, found, err := c.lookup(ctx, cl, sobject, field, key)
	if err != nil || found {
		return id, err
	}
	id, _, err = c.upsert(ctx, cl, sobject, field, key, fields)
	return id, err
}

// insertOnce returns the id of the record of sobject keyed by key, inserting it with fields when
// there is none. It is for objects that cannot be upserted because fields holds create-only
// fields (ContentVersion.FirstPublishLocationId): the read skips the insert on a redelivery, and
// the field's Unique attribute turns a concurrent second insert into DUPLICATE_VALUE, after
// which the record is read again.
func (c *Connector) insertOnce(ctx context.Context, cl *call, sobject, field, key string, fields map[string]any) (string, error) {
	id, found, err := c.lookup(ctx, cl, sobject, field, key)
	if err != nil || found {
		return id, err
	}
	what := "insert of " + sobject
	withKey := maps.Clone(fields)
	withKey[field] = key
	payload, err := json.Marshal(withKey)
	if err != nil {
		return "", failure.Wrap(failure.Internal, fmt.Errorf("encoding %s: %w", what, err))
	}
	a, err := c.do(ctx, cl, http.MethodPost, c.sobjectPath(sobject), what, payload)
	if err != nil {
		return "", err
	}
	switch {
	case a.status == http.StatusCreated:
		var r saveResult
		if err := json.Unmarshal(a.body, &r); err != nil || r.ID == "" {
			return "", failure.New(failure.CRM5xx, what+": the answer has no record id")
		}
		return r.ID, nil
	case a.status == http.StatusBadRequest && a.code() == "DUPLICATE_VALUE":
		if id, found, lerr := c.lookup(ctx, cl, sobject, field, key); lerr != nil || found {
			return id, lerr
		}
	}
	return "", a.fail(what)
}
