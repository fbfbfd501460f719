package hubspot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// TokenPath is the OAuth token endpoint under the base URL.
const TokenPath = "/oauth/v1/token"

// refreshLeeway is how long before its stated expiry an access token is replaced, so a token
// does not expire between the check and HubSpot reading the request.
const refreshLeeway = time.Minute

// tokenSource hands out the bearer token of the next request.
type tokenSource interface {
	// token returns a usable access token.
	token(ctx context.Context) (string, error)
	// invalidate drops tok after HubSpot answered 401 to it, and reports whether asking token
	// again may give a different one (a refresh); false for a private-app token.
	invalidate(tok string) bool
}

// staticToken is a private-app token: it never changes, so a 401 is final.
type staticToken string

func (s staticToken) token(context.Context) (string, error) { return string(s), nil }
func (staticToken) invalidate(string) bool                  { return false }

// oauthToken exchanges a refresh token for access tokens at HubSpot's token endpoint
// (grant_type=refresh_token). Concurrent callers share one exchange.
type oauthToken struct {
	endpoint     string
	clientID     string
	clientSecret string
	client       *http.Client
	timeout      time.Duration
	now          func() time.Time

	mu           sync.Mutex
	refreshToken string
	access       string
	expiry       time.Time
	inflight     *refresh
}

// refresh is one exchange in flight; done is closed when tok and err are set.
type refresh struct {
	done chan struct{}
	tok  string
	err  error
}

func (o *oauthToken) token(ctx context.Context) (string, error) {
	o.mu.Lock()
	if o.access != "" && o.now().Before(o.expiry.Add(-refreshLeeway)) {
		tok := o.access
		o.mu.Unlock()
		return tok, nil
	}
	if f := o.inflight; f != nil {
		o.mu.Unlock()
		select {
		case <-f.done:
			return f.tok, f.err
		case <-ctx.Done():
			return "", crm.ClassifyTransport(fmt.Errorf("waiting for a HubSpot token refresh: %w", ctx.Err()))
		}
	}
	f := &refresh{done: make(chan struct{})}
	o.inflight = f
	refreshToken := o.refreshToken
	o.mu.Unlock()

	// The exchange serves every caller waiting on it, so it must not die with this caller's
	// context alone; it keeps the context's values (trace) and is bounded by the timeout.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.timeout)
	defer cancel()
	tok, err := o.exchange(rctx, refreshToken)

	o.mu.Lock()
	o.inflight = nil
	if err == nil {
		o.access, o.expiry = tok.AccessToken, o.now().Add(time.Duration(tok.ExpiresIn)*time.Second)
		if tok.RefreshToken != "" {
			o.refreshToken = tok.RefreshToken
		}
		f.tok = tok.AccessToken
	}
	f.err = err
	o.mu.Unlock()
	close(f.done)
	return f.tok, f.err
}

func (o *oauthToken) invalidate(tok string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.access == tok {
		o.access = ""
	}
	return true
}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	TokenType    string `json:"token_type"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

// exchange posts the refresh grant. A 400 (unknown or revoked refresh token, wrong client) is
// an auth failure: retrying the same credentials cannot succeed.
func (o *oauthToken) exchange(ctx context.Context, refreshToken string) (tokenResponse, error) {
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"client_id":     {o.clientID},
		"client_secret": {o.clientSecret},
		"refresh_token": {refreshToken},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenResponse{}, failure.Wrap(failure.Internal, fmt.Errorf("building HubSpot token request: %w", err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=utf-8")
	req.Header.Set("Accept", "application/json")
	resp, err := o.client.Do(req)
	if err != nil {
		return tokenResponse{}, crm.ClassifyTransport(fmt.Errorf("refreshing HubSpot access token: %w", err))
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err := crm.ClassifyHTTP(resp, body); err != nil {
		if resp.StatusCode == http.StatusBadRequest {
			err = failure.Wrap(failure.Auth, err)
		}
		return tokenResponse{}, fmt.Errorf("refreshing HubSpot access token: %w", err)
	}
	var tok tokenResponse
	if err := json.Unmarshal(body, &tok); err != nil {
		return tokenResponse{}, failure.Wrap(failure.CRM5xx, fmt.Errorf("decoding HubSpot token response: %w", err))
	}
	if tok.AccessToken == "" {
		return tokenResponse{}, failure.Wrap(failure.CRM5xx, errors.New("refreshing HubSpot access token: the response has no access_token"))
	}
	return tok, nil
}
