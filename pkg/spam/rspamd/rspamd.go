// Package rspamd is a client of rspamd's HTTP scanning protocol (POST /checkv2 on a normal or
// proxy worker, https://rspamd.com/doc/developers/protocol.html): the message goes in the body,
// the SMTP envelope in request headers, and the verdict comes back as JSON with the score, the
// score at which rspamd calls a message spam, the recommended action and every symbol that
// matched.
package rspamd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Envelope is the SMTP context rspamd's rules use (SPF, HELO and reverse-DNS checks).
type Envelope struct {
	ClientIP string
	Helo     string
	MailFrom string
	RcptTo   []string
	QueueID  string
}

// Symbol is one rspamd rule that matched.
type Symbol struct {
	Name        string   `json:"name"`
	Score       float64  `json:"score"`
	Description string   `json:"description"`
	Options     []string `json:"options"`
}

// Result is rspamd's verdict.
type Result struct {
	Score         float64           `json:"score"`
	RequiredScore float64           `json:"required_score"`
	Action        string            `json:"action"`
	Skipped       bool              `json:"is_skipped"`
	Symbols       map[string]Symbol `json:"symbols"`
}

// Spam reports rspamd's own opinion: its score reached the spam threshold, or it recommends
// rejecting or tagging the message.
func (r *Result) Spam() bool {
	return (r.RequiredScore > 0 && r.Score >= r.RequiredScore) || r.Action == "reject" || r.Action == "add header" || r.Action == "rewrite subject"
}

// Matched returns the symbols with a non-zero score, highest first (ties by name): the ones
// that explain the score.
func (r *Result) Matched() []Symbol {
	var out []Symbol
	for _, s := range r.Symbols {
		if s.Score != 0 {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Error is a failed check. Retryable is true for failures another attempt may not meet
// (connection errors, timeouts, 5xx, 429).
type Error struct {
	Status    int
	Retryable bool
	Err       error
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("rspamd: HTTP %d: %v", e.Status, e.Err)
	}
	return "rspamd: " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Client talks to one rspamd worker. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	http     *http.Client
	password string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: one with a 10 s timeout).
func WithHTTPClient(c *http.Client) Option { return func(cl *Client) { cl.http = c } }

// WithPassword sends the controller/proxy password (rspamd's Password header).
func WithPassword(p string) Option { return func(cl *Client) { cl.password = p } }

// New returns a client for the worker at baseURL (http://host:11333).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("rspamd URL %q must be http(s)://host:port", baseURL)
	}
	c := &Client{base: u, http: &http.Client{Timeout: 10 * time.Second}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Check scans msg (an RFC 5322 message) with env as its envelope.
func (c *Client) Check(ctx context.Context, msg []byte, env Envelope) (*Result, error) {
	u := c.base.JoinPath("checkv2")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(msg))
	if err != nil {
		return nil, &Error{Err: err}
	}
	set := func(k, v string) {
		if v = strings.TrimSpace(v); v != "" && !strings.ContainsAny(v, "\r\n") {
			req.Header.Add(k, v)
		}
	}
	set("Ip", env.ClientIP)
	set("Helo", env.Helo)
	set("From", env.MailFrom)
	for _, r := range env.RcptTo {
		set("Rcpt", r)
	}
	set("Queue-Id", env.QueueID)
	set("Password", c.password)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{Retryable: true, Err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, &Error{Retryable: true, Err: fmt.Errorf("reading the reply: %w", err)}
	}
	if resp.StatusCode != http.StatusOK {
		retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
		return nil, &Error{Status: resp.StatusCode, Retryable: retry, Err: errors.New(strings.TrimSpace(string(truncate(body, 300))))}
	}
	var r Result
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, &Error{Err: fmt.Errorf("decoding the reply: %w", err)}
	}
	for name, s := range r.Symbols {
		if s.Name == "" {
			s.Name = name
			r.Symbols[name] = s
		}
	}
	return &r, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
