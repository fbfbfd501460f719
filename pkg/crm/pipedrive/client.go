package pipedrive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// maxResponseBody bounds a response the connector reads. List pages of activities with long
// notes are the largest answers.
const maxResponseBody = 32 << 20

// client sends Pipedrive API v1 requests with the configured authentication.
type client struct {
	base     string
	http     *http.Client
	apiToken string
	tokens   *tokenSource // nil with an API token
	timeout  time.Duration
}

func newClient(cfg Config, hc *http.Client, now func() time.Time, log *slog.Logger) *client {
	c := &client{
		base:     strings.TrimRight(cfg.BaseURL, "/"),
		http:     hc,
		apiToken: cfg.APIToken,
		timeout:  cfg.Timeout,
	}
	if cfg.oauth() {
		c.tokens = &tokenSource{
			sem:          make(chan struct{}, 1),
			access:       cfg.AccessToken,
			refresh:      cfg.RefreshToken,
			clientID:     cfg.ClientID,
			clientSecret: cfg.ClientSecret,
			url:          cfg.TokenURL,
			http:         hc,
			timeout:      cfg.Timeout,
			now:          now,
			log:          log,
		}
	}
	return c
}

// requestBody is a request body that can be produced again for a repeated request. The zero
// value is no body.
type requestBody struct {
	contentType string
	open        func(ctx context.Context) (io.Reader, error)
}

func jsonBody(v any) requestBody {
	b, err := json.Marshal(v)
	return requestBody{contentType: "application/json", open: func(context.Context) (io.Reader, error) {
		if err != nil {
			return nil, failure.Wrap(failure.Internal, fmt.Errorf("encoding request body: %w", err))
		}
		return bytes.NewReader(b), nil
	}}
}

// fileBody is a multipart/form-data body with fields and the blob at ref as the part "file".
// The blob is opened per request and streamed, not held in memory.
func fileBody(blobs BlobGetter, ref, name string, fields map[string]string) requestBody {
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	boundary := "mailpipe-" + hex.EncodeToString(rnd[:])
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return requestBody{
		contentType: "multipart/form-data; boundary=" + boundary,
		open: func(ctx context.Context) (io.Reader, error) {
			blob, err := blobs.Get(ctx, ref)
			if err != nil {
				return nil, fmt.Errorf("opening attachment blob: %w", err)
			}
			pr, pw := io.Pipe()
			go func() {
				defer func() { _ = blob.Close() }()
				mw := multipart.NewWriter(pw)
				err := mw.SetBoundary(boundary)
				for _, k := range keys {
					if err == nil {
						err = mw.WriteField(k, fields[k])
					}
				}
				var part io.Writer
				if err == nil {
					part, err = mw.CreateFormFile("file", name)
				}
				if err == nil {
					_, err = io.Copy(part, blob)
				}
				if err == nil {
					err = mw.Close()
				}
				// The transport closes pr when the request ends, which ends a blocked Copy.
				pw.CloseWithError(err)
			}()
			return pr, nil
		},
	}
}

// pagination is Pipedrive's additional_data.pagination of list answers.
type pagination struct {
	More      bool `json:"more_items_in_collection"`
	NextStart int  `json:"next_start"`
}

// envelope is the shape of every Pipedrive v1 answer.
type envelope struct {
	Success        bool            `json:"success"`
	Data           json.RawMessage `json:"data"`
	Error          string          `json:"error"`
	AdditionalData *struct {
		Pagination pagination `json:"pagination"`
	} `json:"additional_data"`
}

// do sends one request and decodes the answer's data into out (when not nil). With OAuth, a
// 401 refreshes the access token once and repeats the request; repeats counts that.
func (c *client) do(ctx context.Context, method, path string, query url.Values, body requestBody, out any) (page pagination, repeats int, err error) {
	for {
		var token string
		if c.tokens != nil {
			if token, err = c.tokens.token(ctx); err != nil {
				return page, repeats, err
			}
		}
		status, env, err := c.once(ctx, method, path, query, body, token)
		if status == http.StatusUnauthorized && repeats == 0 && c.tokens.canRefresh() {
			if _, rerr := c.tokens.refreshAfter(ctx, token); rerr != nil {
				// The refresh error comes first: its class (auth for a bad grant, crm_5xx for a
				// failing token endpoint) decides whether the stage retries.
				return page, repeats, errors.Join(rerr, err)
			}
			repeats++
			continue
		}
		if err != nil {
			return page, repeats, err
		}
		if env.AdditionalData != nil {
			page = env.AdditionalData.Pagination
		}
		if out != nil && len(env.Data) > 0 && !bytes.Equal(env.Data, []byte("null")) {
			if err := json.Unmarshal(env.Data, out); err != nil {
				return page, repeats, failure.Wrap(failure.CRM5xx, fmt.Errorf("decoding %s %s answer: %w", method, path, err))
			}
		}
		return page, repeats, nil
	}
}

// once sends one request. It returns the HTTP status (0 without an answer) and, for a 2xx
// with success true, the envelope.
func (c *client) once(ctx context.Context, method, path string, query url.Values, body requestBody, bearer string) (int, envelope, error) {
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	if c.apiToken != "" {
		q.Set("api_token", c.apiToken)
	}
	target := c.base + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var r io.Reader
	if body.open != nil {
		var err error
		if r, err = body.open(ctx); err != nil {
			return 0, envelope{}, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, target, r)
	if err != nil {
		if rc, ok := r.(io.Closer); ok {
			_ = rc.Close()
		}
		return 0, envelope{}, failure.Wrap(failure.Internal, fmt.Errorf("building request %s %s: %w", method, path, err))
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mailpipe-crm-sink")
	if body.contentType != "" {
		req.Header.Set("Content-Type", body.contentType)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// The client's *url.Error repeats the URL, api_token included; keep it out of logs and
		// DLQ headers.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = c.base + path
		}
		return 0, envelope{}, crm.ClassifyTransport(fmt.Errorf("%s %s: %w", method, path, err))
	}
	defer func() { _ = resp.Body.Close() }()
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err := crm.ClassifyHTTP(resp, data); err != nil {
		if resp.StatusCode == http.StatusTooManyRequests {
			err = withRateLimitReset(err, resp.Header)
		}
		return resp.StatusCode, envelope{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if rerr != nil {
		return resp.StatusCode, envelope{}, crm.ClassifyTransport(fmt.Errorf("reading %s %s answer: %w", method, path, rerr))
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return resp.StatusCode, envelope{}, failure.Wrap(failure.CRM5xx, fmt.Errorf("decoding %s %s answer: %w", method, path, err))
	}
	if !env.Success {
		return resp.StatusCode, envelope{}, failure.Wrap(failure.CRM4xx, fmt.Errorf("%s %s: pipedrive answered success false: %s", method, path, env.Error))
	}
	return resp.StatusCode, env, nil
}

// withRateLimitReset gives a 429 without Retry-After the wait of Pipedrive's x-ratelimit-reset
// header (seconds until the rate-limit window resets).
func withRateLimitReset(err error, h http.Header) error {
	if _, ok := failure.RetryAfter(err); ok {
		return err
	}
	secs, perr := strconv.ParseFloat(strings.TrimSpace(h.Get("X-Ratelimit-Reset")), 64)
	if perr != nil || secs <= 0 || secs > 24*3600 {
		return err
	}
	return failure.WithRetryAfter(err, time.Duration(secs*float64(time.Second)))
}

// Refresh timing: an access token is refreshed before use when it expires within
// expiryMargin, so a request rarely meets a 401 for an expired token.
const expiryMargin = time.Minute

// tokenSource holds the OAuth tokens and refreshes them, one refresh at a time.
type tokenSource struct {
	sem chan struct{} // held while reading or refreshing the tokens

	access  string
	refresh string
	expiry  time.Time // zero when unknown (a configured access token)

	clientID, clientSecret, url string
	http                        *http.Client
	timeout                     time.Duration
	now                         func() time.Time
	log                         *slog.Logger
}

func (t *tokenSource) canRefresh() bool { return t != nil && t.refresh != "" }

func (t *tokenSource) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return crm.ClassifyTransport(fmt.Errorf("waiting for the pipedrive access token: %w", err))
	}
	select {
	case t.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return crm.ClassifyTransport(fmt.Errorf("waiting for the pipedrive access token: %w", ctx.Err()))
	}
}

func (t *tokenSource) release() { <-t.sem }

// token returns an access token, refreshing it first when it is missing or about to expire.
func (t *tokenSource) token(ctx context.Context) (string, error) {
	if err := t.acquire(ctx); err != nil {
		return "", err
	}
	defer t.release()
	fresh := t.access != "" && (t.expiry.IsZero() || t.now().Add(expiryMargin).Before(t.expiry))
	if fresh || t.refresh == "" {
		// Without a refresh token an old token is still worth a try: Pipedrive decides.
		return t.access, nil
	}
	return t.refreshLocked(ctx)
}

// refreshAfter refreshes the access token after stale was refused, unless another request did
// so meanwhile.
func (t *tokenSource) refreshAfter(ctx context.Context, stale string) (string, error) {
	if err := t.acquire(ctx); err != nil {
		return "", err
	}
	defer t.release()
	if t.access != stale && t.access != "" {
		return t.access, nil
	}
	return t.refreshLocked(ctx)
}

// refreshLocked exchanges the refresh token at the token endpoint (RFC 6749 section 6, client
// credentials in HTTP Basic as Pipedrive requires).
func (t *tokenSource) refreshLocked(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {t.refresh}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, strings.NewReader(form.Encode()))
	if err != nil {
		return "", failure.Wrap(failure.Internal, fmt.Errorf("building token refresh request: %w", err))
	}
	req.SetBasicAuth(t.clientID, t.clientSecret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := t.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = t.url
		}
		return "", crm.ClassifyTransport(fmt.Errorf("refreshing the pipedrive access token: %w", err))
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := crm.ClassifyHTTP(resp, data); err != nil {
		if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			// invalid_grant / invalid_client: the refresh token or the client credentials are
			// bad, which waiting does not fix.
			err = failure.Wrap(failure.Auth, err)
		}
		return "", fmt.Errorf("refreshing the pipedrive access token: %w", err)
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(data, &tok); err != nil || tok.AccessToken == "" {
		return "", failure.New(failure.CRM5xx, "refreshing the pipedrive access token: answer has no access_token")
	}
	t.access = tok.AccessToken
	if tok.RefreshToken != "" {
		t.refresh = tok.RefreshToken
	}
	t.expiry = time.Time{}
	if tok.ExpiresIn > 0 {
		t.expiry = t.now().Add(time.Duration(tok.ExpiresIn) * time.Second)
	}
	t.log.LogAttrs(ctx, slog.LevelInfo, "refreshed the pipedrive access token", slog.Int64("expires_in_s", tok.ExpiresIn))
	return t.access, nil
}
