// Package httpd is the HTTP front-end of ingress: POST /v1/messages takes one raw RFC 5322
// message and hands it to the ingest use case.
//
// The envelope comes from query parameters or headers (mail_from, rcpt_to), the caller
// authenticates with an API key (Authorization: Bearer <key>), and the handler answers
// 202 {"id": …, "thread_key": …} only after ingest recorded the message on mail.raw.v1.
// Errors are RFC 9457 problem details (application/problem+json): 401 bad or missing key,
// 400 bad envelope or message, 413 too large, 503 (with Retry-After) when the message could not
// be recorded and the caller should retry.
package httpd

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
)

// Path is the endpoint the handler serves.
const Path = "/v1/messages"

// Request parameters. Each is read from the query string first, then from the header of the
// same meaning; rcpt_to may repeat and may hold a comma-separated list.
const (
	ParamMailFrom  = "mail_from"
	ParamRcptTo    = "rcpt_to"
	HeaderMailFrom = "Mail-From"
	HeaderRcptTo   = "Rcpt-To"
)

// Environment variable names of [Config], relative to the prefix the service gives the section
// (the ingress service reads them as MAILPIPE_HTTP_<NAME>).
const (
	EnvAPIKeySHA256  = "API_KEY_SHA256"
	EnvMaxBodyBytes  = "MAX_BODY_BYTES"
	EnvMaxRecipients = "MAX_RECIPIENTS"
	EnvAcceptTimeout = "ACCEPT_TIMEOUT"
	EnvRetryAfter    = "RETRY_AFTER"
)

// Defaults of [Config].
const (
	DefaultMaxBodyBytes  = 25 << 20 // as smtpd's DefaultMaxMessageBytes
	DefaultMaxRecipients = 100
	DefaultAcceptTimeout = 30 * time.Second
	DefaultRetryAfter    = 30 * time.Second
)

// Config configures the handler. Zero fields take the defaults.
type Config struct {
	// APIKeySHA256 are the accepted API keys, each as the lower- or upper-case hex SHA-256 of
	// the key, so the configuration (ConfigMap, env dump) never holds a usable secret. Several
	// entries allow rotation. Empty means every request is refused with 401.
	APIKeySHA256 []string `env:"API_KEY_SHA256" usage:"hex sha256 of each accepted API key, comma-separated"`
	// MaxBodyBytes bounds the request body; larger requests get 413. Default 25 MiB.
	MaxBodyBytes int64 `env:"MAX_BODY_BYTES" default:"26214400" usage:"largest message accepted over HTTP, bytes"`
	// MaxRecipients bounds rcpt_to entries; more get 400. Default 100.
	MaxRecipients int `env:"MAX_RECIPIENTS" default:"100" usage:"recipients per HTTP request"`
	// AcceptTimeout bounds recording one message (claim check plus produce) beyond the
	// request's own context. Default 30s.
	AcceptTimeout time.Duration `env:"ACCEPT_TIMEOUT" default:"30s" usage:"deadline for recording one message"`
	// RetryAfter is sent with 503 so clients back off. Default 30s.
	RetryAfter time.Duration `env:"RETRY_AFTER" default:"30s" usage:"Retry-After sent with 503"`
}

// DefaultConfig returns the defaults, with no API keys.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:  DefaultMaxBodyBytes,
		MaxRecipients: DefaultMaxRecipients,
		AcceptTimeout: DefaultAcceptTimeout,
		RetryAfter:    DefaultRetryAfter,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxRecipients == 0 {
		c.MaxRecipients = d.MaxRecipients
	}
	if c.AcceptTimeout == 0 {
		c.AcceptTimeout = d.AcceptTimeout
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = d.RetryAfter
	}
	return c
}

// Validate checks the configuration after defaults are applied; the error joins every problem.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if _, err := parseKeyHashes(c.APIKeySHA256); err != nil {
		errs = append(errs, err)
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("max body bytes must not be negative"))
	}
	if c.MaxRecipients < 0 {
		errs = append(errs, errors.New("max recipients must not be negative"))
	}
	if c.AcceptTimeout < 0 || c.RetryAfter < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	return errors.Join(errs...)
}

func parseKeyHashes(hexes []string) ([][]byte, error) {
	var out [][]byte
	var errs []error
	for i, h := range hexes {
		b, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("api key sha256 #%d is not 64 hex digits", i+1))
			continue
		}
		out = append(out, b)
	}
	return out, errors.Join(errs...)
}

// HashKey returns the hex SHA-256 of an API key, the form [Config].APIKeySHA256 takes
// (`printf %s "$KEY" | sha256sum` gives the same).
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Accepter is what the handler needs from the ingest use case; *ingest.Ingester fits.
type Accepter interface {
	// Accept records one message; see ingest.Ingester.Accept for the error contract.
	Accept(ctx context.Context, env events.Envelope, raw []byte) (ingest.Result, error)
}

type handler struct {
	cfg  Config
	keys [][]byte
	acc  Accepter
	log  *slog.Logger
}

// New returns the handler for POST /v1/messages (it answers 404 for other paths and 405 for
// other methods, so it can be mounted at "/" or at [Path]). It fails on an invalid Config, a nil
// accepter or a nil logger. The handler is safe for concurrent use.
func New(cfg Config, acc Accepter, log *slog.Logger) (http.Handler, error) {
	cfg = cfg.withDefaults()
	var errs []error
	if acc == nil {
		errs = append(errs, errors.New("accepter is required"))
	}
	if log == nil {
		errs = append(errs, errors.New("logger is required"))
	}
	errs = append(errs, cfg.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring http intake: %w", err)
	}
	keys, _ := parseKeyHashes(cfg.APIKeySHA256) // validated above
	return &handler{cfg: cfg, keys: keys, acc: acc, log: log}, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != Path {
		writeProblem(w, http.StatusNotFound, "not-found", "Not found", "the only endpoint is POST "+Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeProblem(w, http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed", "use POST")
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mailpipe"`)
		writeProblem(w, http.StatusUnauthorized, "unauthorized", "Unauthorized", "missing or unknown API key")
		return
	}
	env, err := h.envelope(r)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "bad-envelope", "Bad envelope", err.Error())
		return
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		writeProblem(w, http.StatusRequestEntityTooLarge, "too-large", "Message too large",
			fmt.Sprintf("the message is larger than %d bytes", h.cfg.MaxBodyBytes))
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, http.StatusRequestEntityTooLarge, "too-large", "Message too large",
				fmt.Sprintf("the message is larger than %d bytes", h.cfg.MaxBodyBytes))
			return
		}
		writeProblem(w, http.StatusBadRequest, "bad-body", "Unreadable body", "the request body could not be read")
		return
	}
	if len(raw) == 0 {
		writeProblem(w, http.StatusBadRequest, "empty-message", "Empty message", "the body must be an RFC 5322 message")
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.AcceptTimeout)
	defer cancel()
	res, err := h.acc.Accept(ctx, env, raw)
	switch {
	case err == nil:
		writeJSON(w, http.StatusAccepted, acceptedBody{ID: res.ID, ThreadKey: res.ThreadKey, Duplicate: res.Duplicate})
	case errors.Is(err, ingest.ErrTooLarge):
		writeProblem(w, http.StatusRequestEntityTooLarge, "too-large", "Message too large", err.Error())
	case errors.Is(err, ingest.ErrNoRoute):
		writeProblem(w, http.StatusBadRequest, "no-route", "Unknown recipient", err.Error())
	case errors.Is(err, ingest.ErrInvalid):
		writeProblem(w, http.StatusBadRequest, "invalid-message", "Invalid message", err.Error())
	default:
		if errors.Is(err, ingest.ErrInFlight) {
			// The client retried while its first attempt is still being recorded: not a fault.
			h.log.InfoContext(r.Context(), "deferred http retry of a message still being recorded", slog.String("client_ip", env.ClientIP))
		} else {
			h.log.ErrorContext(r.Context(), "could not record http message, answered 503",
				slog.String("client_ip", env.ClientIP), slog.Int("size", len(raw)), slog.String("error", err.Error()))
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(h.cfg.RetryAfter.Round(time.Second)/time.Second)))
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Not recorded, retry later",
			"the message could not be recorded; nothing was stored, retry the same request")
	}
}

// authorized compares the SHA-256 of the presented key with every configured hash in constant
// time. Hashing first makes the comparison length-independent; checking all entries without an
// early return keeps the time independent of which entry matched.
func (h *handler) authorized(r *http.Request) bool {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(key)))
	match := 0
	for _, k := range h.keys {
		match |= subtle.ConstantTimeCompare(sum[:], k)
	}
	return match == 1
}

// envelope reads mail_from and rcpt_to from the query, falling back to the headers.
func (h *handler) envelope(r *http.Request) (events.Envelope, error) {
	q := r.URL.Query()
	from := q.Get(ParamMailFrom)
	if !q.Has(ParamMailFrom) {
		from = r.Header.Get(HeaderMailFrom)
	}
	rawRcpts := q[ParamRcptTo]
	if len(rawRcpts) == 0 {
		rawRcpts = r.Header.Values(HeaderRcptTo)
	}
	env := events.Envelope{ClientIP: clientIP(r), Source: "http"}
	from = strings.Trim(strings.TrimSpace(from), "<>")
	if from != "" { // empty is the null sender, as in SMTP
		if err := checkAddr(from); err != nil {
			return env, fmt.Errorf("%s: %w", ParamMailFrom, err)
		}
	}
	env.MailFrom = from
	for _, v := range rawRcpts {
		for _, a := range strings.Split(v, ",") {
			a = strings.Trim(strings.TrimSpace(a), "<>")
			if a == "" {
				continue
			}
			if err := checkAddr(a); err != nil {
				return env, fmt.Errorf("%s: %w", ParamRcptTo, err)
			}
			env.RcptTo = append(env.RcptTo, a)
		}
	}
	if len(env.RcptTo) == 0 {
		return env, fmt.Errorf("%s is required", ParamRcptTo)
	}
	if len(env.RcptTo) > h.cfg.MaxRecipients {
		return env, fmt.Errorf("%s: %d recipients, at most %d", ParamRcptTo, len(env.RcptTo), h.cfg.MaxRecipients)
	}
	return env, nil
}

// checkAddr accepts a bare addr-spec (no display name), as an SMTP path would carry.
func checkAddr(a string) error {
	p, err := mail.ParseAddress(a)
	if err != nil || p.Name != "" || p.Address != a {
		return fmt.Errorf("%q is not an email address", a)
	}
	return nil
}

// clientIP is the peer address. Forwarded headers are not trusted: behind a proxy the recorded
// client is the proxy (documented gap until a trusted-proxy list exists).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type acceptedBody struct {
	ID        string `json:"id"`
	ThreadKey string `json:"thread_key"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// Problem is an RFC 9457 problem details object as this endpoint writes it.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// ProblemTypeBase prefixes every problem type this endpoint writes ("urn:mailpipe:problem:too-large").
// The types are identifiers for clients to branch on, not documents to fetch (RFC 9457 3.1.1).
const ProblemTypeBase = "urn:mailpipe:problem:"

func writeProblem(w http.ResponseWriter, status int, typ, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{Type: ProblemTypeBase + typ, Title: title, Status: status, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
