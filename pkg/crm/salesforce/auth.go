package salesforce

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
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

// jwtBearerGrant is the grant_type of the OAuth 2.0 JWT bearer flow (RFC 7523).
const jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// assertionLifetime is how long a JWT assertion is valid. Salesforce accepts an exp at most
// three minutes ahead; two leave a minute for clock skew either way.
const assertionLifetime = 2 * time.Minute

// maxTokenBody bounds how much of a token response is read.
const maxTokenBody = 64 << 10

// session is an access token and the instance it is valid for.
type session struct {
	token       string
	instanceURL string
}

// tokenSource obtains sessions from the token endpoint and keeps the current one. Salesforce
// access tokens carry no expiry (they last as long as the org's session timeout and can be
// revoked any time), so the only sign of expiry is a 401 from the API, on which the connector
// calls renew.
type tokenSource struct {
	endpoint string
	grant    func() (url.Values, error) // the form of one token request
	client   *http.Client
	timeout  time.Duration

	sem chan struct{} // one token request at a time; a channel so waiting honours ctx
	mu  sync.Mutex
	cur *session
}

func newTokenSource(cfg Config, client *http.Client, key *rsa.PrivateKey, now func() time.Time) *tokenSource {
	ts := &tokenSource{
		endpoint: strings.TrimSuffix(cfg.LoginURL, "/") + "/services/oauth2/token",
		client:   client,
		timeout:  cfg.Timeout,
		sem:      make(chan struct{}, 1),
	}
	if key != nil {
		ts.grant = func() (url.Values, error) {
			assertion, err := signAssertion(key, cfg.ClientID, cfg.Username, cfg.Audience, now())
			if err != nil {
				return nil, err
			}
			return url.Values{"grant_type": {jwtBearerGrant}, "assertion": {assertion}}, nil
		}
	} else {
		ts.grant = func() (url.Values, error) {
			form := url.Values{"grant_type": {"refresh_token"}, "client_id": {cfg.ClientID}, "refresh_token": {cfg.RefreshToken}}
			if cfg.ClientSecret != "" {
				form.Set("client_secret", cfg.ClientSecret)
			}
			return form, nil
		}
	}
	return ts
}

// current returns the current session, requesting one the first time.
func (ts *tokenSource) current(ctx context.Context) (*session, error) {
	ts.mu.Lock()
	cur := ts.cur
	ts.mu.Unlock()
	if cur != nil {
		return cur, nil
	}
	return ts.renew(ctx, nil)
}

// renew replaces the session stale, which the API rejected, and returns the new one. Callers
// that saw the same stale session wait for one token request instead of sending one each; a
// caller whose stale session was already replaced gets the replacement without a request.
func (ts *tokenSource) renew(ctx context.Context, stale *session) (*session, error) {
	select {
	case ts.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, crm.ClassifyTransport(fmt.Errorf("waiting for the Salesforce token request: %w", ctx.Err()))
	}
	defer func() { <-ts.sem }()
	ts.mu.Lock()
	cur := ts.cur
	ts.mu.Unlock()
	if cur != nil && cur != stale {
		return cur, nil
	}
	s, err := ts.request(ctx)
	if err != nil {
		return nil, err
	}
	ts.mu.Lock()
	ts.cur = s
	ts.mu.Unlock()
	return s, nil
}

// request asks the token endpoint for a session. A 4xx other than 408 and 429 is failure.Auth:
// Salesforce answers a bad assertion, an unknown client, a revoked refresh token or an
// unapproved user with 400 invalid_grant or invalid_client_id, none of which waiting fixes.
func (ts *tokenSource) request(ctx context.Context) (*session, error) {
	form, err := ts.grant()
	if err != nil {
		return nil, failure.Wrap(failure.Internal, fmt.Errorf("building Salesforce token request: %w", err))
	}
	ctx, cancel := context.WithTimeout(ctx, ts.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, failure.Wrap(failure.Internal, fmt.Errorf("building Salesforce token request: %w", err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := ts.client.Do(req)
	if err != nil {
		return nil, crm.ClassifyTransport(fmt.Errorf("requesting Salesforce access token: %w", err))
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody))
	if err != nil && resp.StatusCode/100 == 2 {
		return nil, crm.ClassifyTransport(fmt.Errorf("reading Salesforce token response: %w", err))
	}
	if herr := crm.ClassifyHTTP(resp, body); herr != nil {
		if c := resp.StatusCode; c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests {
			herr = failure.Wrap(failure.Auth, herr)
		}
		return nil, fmt.Errorf("requesting Salesforce access token: %w", herr)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		InstanceURL string `json:"instance_url"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" || !httpURL(tok.InstanceURL) {
		// A 200 without a usable token is the server's fault; it is worth another try.
		return nil, failure.New(failure.CRM5xx, "requesting Salesforce access token: the answer has no access_token or instance_url")
	}
	return &session{token: tok.AccessToken, instanceURL: strings.TrimSuffix(tok.InstanceURL, "/")}, nil
}

// signAssertion builds the JWT of the bearer flow: header {"alg":"RS256"}, claims iss (consumer
// key), sub (username), aud (authorization server) and exp, signed with RSASSA-PKCS1-v1_5 over
// SHA-256.
func signAssertion(key *rsa.PrivateKey, iss, sub, aud string, now time.Time) (string, error) {
	enc := base64.RawURLEncoding
	claims, err := json.Marshal(struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
	}{iss, sub, aud, now.Add(assertionLifetime).Unix()})
	if err != nil {
		return "", fmt.Errorf("encoding JWT claims: %w", err)
	}
	input := enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + enc.EncodeToString(claims)
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("signing JWT: %w", err)
	}
	return input + "." + enc.EncodeToString(sig), nil
}

// ParsePrivateKey reads an unencrypted PEM RSA private key, PKCS #1 ("RSA PRIVATE KEY") or
// PKCS #8 ("PRIVATE KEY"), as openssl and the Salesforce setup guides produce.
func ParsePrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("the key is a %T, not an RSA key", k)
		}
		return rk, nil
	default:
		return nil, fmt.Errorf("PEM block %q is not an unencrypted private key", block.Type)
	}
}
