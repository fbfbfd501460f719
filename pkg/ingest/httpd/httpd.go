package httpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/mailid"
	"github.com/mailpipe/mailpipe/pkg/webhooksig"
)

// Path is the raw-message endpoint.
const Path = "/v1/messages"

// Request parameters of [Path]. Each is read from the query string first, then from the header
// of the same meaning; rcpt_to may repeat and may hold a comma-separated list.
const (
	ParamMailFrom  = "mail_from"
	ParamRcptTo    = "rcpt_to"
	HeaderMailFrom = "Mail-From"
	HeaderRcptTo   = "Rcpt-To"
)

// Accepter is what the handler needs from the ingest use case; *ingest.Ingester fits.
type Accepter interface {
	// Accept records one message held in memory (the signed and provider endpoints need the
	// whole body anyway); see ingest.Ingester.Accept for the error contract.
	Accept(ctx context.Context, env events.Envelope, raw []byte) (ingest.Result, error)
	// AcceptStream records one message read from r; [Path] with an API key streams the body.
	AcceptStream(ctx context.Context, env events.Envelope, r io.Reader) (ingest.Result, error)
	// Resolve reports the route of a recipient, false for an address not received here. The
	// handler uses it to check the credential's tenant before reading the message.
	Resolve(rcpt string) (ingest.Route, bool)
}

// Option configures optional dependencies of the handler.
type Option interface{ apply(*handler) }

type optionFunc func(*handler)

func (f optionFunc) apply(h *handler) { f(h) }

// WithReplayStore shares the replay store between handlers (redisdedupe for several ingress
// replicas). Default: a dedupe.Memory of this handler, which catches replays to this process
// only.
func WithReplayStore(s ReplayStore) Option { return optionFunc(func(h *handler) { h.replay = s }) }

// WithClock replaces time.Now for signature timestamps (and the default replay store).
func WithClock(now func() time.Time) Option { return optionFunc(func(h *handler) { h.now = now }) }

type handler struct {
	cfg    Config
	creds  credentials
	acc    Accepter
	log    *slog.Logger
	now    func() time.Time
	replay ReplayStore
	hmac   map[string]*webhooksig.Verifier // by tenant
}

// New returns the handler for the endpoints in the package doc; it answers 404 for other paths
// and 405 for other methods, so it can be mounted at "/". It fails on an invalid Config
// (including unreadable credential files), a nil accepter or a nil logger. Credential files are
// read once, here. The handler is safe for concurrent use.
func New(cfg Config, acc Accepter, log *slog.Logger, opts ...Option) (http.Handler, error) {
	cfg = cfg.withDefaults()
	var errs []error
	if acc == nil {
		errs = append(errs, errors.New("accepter is required"))
	}
	if log == nil {
		errs = append(errs, errors.New("logger is required"))
	}
	creds, err := cfg.credentials() // read once: Validate would read the files again
	errs = append(errs, err, cfg.checkLimits())
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring http intake: %w", err)
	}
	h := &handler{cfg: cfg, creds: creds, acc: acc, log: log, now: time.Now}
	for _, o := range opts {
		o.apply(h)
	}
	if h.replay == nil {
		h.replay = dedupe.NewMemory(dedupe.WithClock(h.now))
	}
	h.hmac = make(map[string]*webhooksig.Verifier, len(creds.hmac))
	for tenant, secrets := range creds.hmac {
		v, err := webhooksig.NewVerifier(secrets, webhooksig.WithTolerance(cfg.HMACTolerance), webhooksig.WithClock(h.now))
		if err != nil {
			return nil, fmt.Errorf("configuring http intake: hmac secrets of tenant %s: %w", tenant, err)
		}
		h.hmac[tenant] = v
	}
	return h, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case Path:
		h.postMessage(w, r)
	case PathSendGrid:
		h.postSendGrid(w, r)
	case PathMailgun:
		h.postMailgun(w, r)
	default:
		writeProblem(w, problem{
			http.StatusNotFound, ProblemNotFound, "Not found",
			"the endpoints are POST " + Path + ", " + PathSendGrid + " and " + PathMailgun,
		})
	}
}

// postMessage serves [Path]: with an API key when the request has an Authorization header or no
// Standard Webhooks header, with the HMAC signature otherwise.
func (h *handler) postMessage(w http.ResponseWriter, r *http.Request) {
	if !allowPost(w, r) {
		return
	}
	if r.Header.Get("Authorization") == "" && hasWebhookHeaders(r.Header) {
		h.postSignedMessage(w, r)
		return
	}
	tenants := lookupKey(h.creds.apiKeys, bearerKey(r))
	if len(tenants) == 0 {
		unauthorized(w, `Bearer realm="mailpipe"`, "missing or unknown API key")
		return
	}
	env, err := h.envelope(r)
	if err != nil {
		h.fail(w, problem{http.StatusBadRequest, ProblemBadEnvelope, "Bad envelope", err.Error()})
		return
	}
	if _, p := h.authorize(tenants, env.RcptTo); p != nil {
		h.fail(w, *p)
		return
	}
	limit, p := h.routePolicy(env)
	if p != nil {
		h.fail(w, *p)
		return
	}
	res, p := h.recordStream(w, r, env, limit)
	if p != nil {
		h.fail(w, *p)
		return
	}
	writeAccepted(w, http.StatusAccepted, res)
}

// routePolicy applies the recipients' routes to env: 403 when a route refuses the envelope
// sender (ingest.Route.Senders); otherwise the message size limit, the smallest of
// Config.MaxBodyBytes and the routes' MaxSize.
func (h *handler) routePolicy(env events.Envelope) (int64, *problem) {
	limit := h.cfg.MaxBodyBytes
	for _, rcpt := range env.RcptTo {
		rt, ok := h.acc.Resolve(mailid.Address(rcpt))
		if !ok {
			return 0, &problem{http.StatusBadRequest, ProblemNoRoute, "Unknown recipient", rcpt + " is not an address mail is received for"}
		}
		if rt.Senders != nil && !rt.Senders.AllowsSender(env.MailFrom) {
			return 0, &problem{
				http.StatusForbidden, ProblemForbidden, "Sender not allowed",
				fmt.Sprintf("the route of %s does not accept mail from %q", rcpt, env.MailFrom),
			}
		}
		if rt.MaxSize > 0 && rt.MaxSize < limit {
			limit = rt.MaxSize
		}
	}
	return limit, nil
}

// tooLarge is the answer to a message over limit bytes.
func tooLarge(limit int64) *problem {
	return &problem{
		http.StatusRequestEntityTooLarge, ProblemTooLarge, "Message too large",
		fmt.Sprintf("the message is larger than %d bytes", limit),
	}
}

// recordStream hands the request body to ingest as it arrives, through limit, so a large
// message is never held whole; ingest spools what it does not carry inline.
func (h *handler) recordStream(w http.ResponseWriter, r *http.Request, env events.Envelope, limit int64) (ingest.Result, *problem) {
	if r.ContentLength > limit {
		return ingest.Result{}, tooLarge(limit)
	}
	if r.ContentLength == 0 {
		return ingest.Result{}, &problem{http.StatusBadRequest, ProblemEmptyMessage, "Empty message", "the body must be an RFC 5322 message"}
	}
	// Reading is bounded by the server's timeouts; AcceptTimeout starts once the body is read,
	// as it did when the body was read first.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	body := &bodySource{r: http.MaxBytesReader(w, r.Body, limit), atEOF: func() *time.Timer { return time.AfterFunc(h.cfg.AcceptTimeout, cancel) }}
	defer body.stop()
	res, err := h.acc.AcceptStream(ctx, env, body)
	switch mbe := (*http.MaxBytesError)(nil); {
	case body.err != nil && errors.As(body.err, &mbe):
		return res, tooLarge(limit)
	case body.err != nil:
		return res, &problem{http.StatusBadRequest, ProblemBadBody, "Unreadable body", "the request body could not be read"}
	case err != nil && body.n == 0 && errors.Is(err, ingest.ErrInvalid):
		return res, &problem{http.StatusBadRequest, ProblemEmptyMessage, "Empty message", "the body must be an RFC 5322 message"}
	}
	return res, h.answer(r, env, err, body.n)
}

// bodySource is the request body as ingest reads it. It counts the bytes, keeps the first read
// error (the answer to give, whatever ingest wraps it in), and calls atEOF once at the end of
// the body to start the recording deadline. Ingest reads it from the handler's goroutine.
type bodySource struct {
	r     io.Reader
	atEOF func() *time.Timer
	timer *time.Timer
	n     int64
	err   error
}

func (b *bodySource) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF:
		if b.timer == nil {
			b.timer = b.atEOF()
		}
	case err != nil && b.err == nil:
		b.err = err
	}
	return n, err
}

// stop releases the deadline timer, if one was started.
func (b *bodySource) stop() {
	if b.timer != nil {
		b.timer.Stop()
	}
}

// postSignedMessage serves [Path] for a request signed per Standard Webhooks. The envelope is
// not covered by the signature (only webhook-id, webhook-timestamp and the body are), so it only
// picks the tenant whose secrets may have signed; a replay with another envelope is caught by
// webhook-id.
func (h *handler) postSignedMessage(w http.ResponseWriter, r *http.Request) {
	env, err := h.envelope(r)
	if err != nil {
		h.fail(w, problem{http.StatusBadRequest, ProblemBadEnvelope, "Bad envelope", err.Error()})
		return
	}
	tenants, p := h.signingTenants(env.RcptTo)
	if p != nil {
		h.fail(w, *p)
		return
	}
	raw, p := h.readBody(w, r)
	if p != nil {
		h.fail(w, *p)
		return
	}
	tenant, err := h.verifyHMAC(tenants, r.Header, raw)
	if err != nil {
		unauthorized(w, `Bearer realm="mailpipe"`, err.Error())
		return
	}
	// After verification: the route's policy is no business of an unauthenticated caller.
	limit, p := h.routePolicy(env)
	if p == nil && int64(len(raw)) > limit {
		p = tooLarge(limit)
	}
	if p != nil {
		h.fail(w, *p)
		return
	}
	key := replayKey("hmac", tenant, r.Header.Get(webhooksig.HeaderID))
	h.recordOnce(w, r, key, 2*h.cfg.HMACTolerance, http.StatusAccepted, h.fail, env, raw)
}

// hasWebhookHeaders reports whether any Standard Webhooks header is present.
func hasWebhookHeaders(hd http.Header) bool {
	return hd.Get(webhooksig.HeaderID) != "" || hd.Get(webhooksig.HeaderTimestamp) != "" || hd.Get(webhooksig.HeaderSignature) != ""
}

// signingTenants returns the tenants whose HMAC secrets may sign for rcpts: the one tenant that
// owns the recipients' routes, or every tenant with secrets when all recipients are in the
// domain list fallback. Verifying only these bounds the work an unauthenticated request can
// cause to one tenant's secrets, except in single-tenant (fallback) setups.
func (h *handler) signingTenants(rcpts []string) ([]string, *problem) {
	owner := ""
	for _, rcpt := range rcpts {
		rt, ok := h.acc.Resolve(mailid.Address(rcpt))
		switch {
		case !ok:
			return nil, &problem{http.StatusBadRequest, ProblemNoRoute, "Unknown recipient", rcpt + " is not an address mail is received for"}
		case fallback(rt): // any tenant may sign
		case owner == "":
			owner = rt.Tenant
		case owner != rt.Tenant:
			return nil, &problem{
				http.StatusForbidden, ProblemForbidden, "Recipients of several tenants",
				"one request delivers for one tenant; send one request per tenant",
			}
		}
	}
	if owner != "" {
		return []string{owner}, nil
	}
	return slices.Sorted(maps.Keys(h.hmac)), nil
}

// verifyHMAC returns the tenant among tenants whose secret signed the request. Header and
// timestamp problems are the same for every tenant and end the search.
func (h *handler) verifyHMAC(tenants []string, hd http.Header, body []byte) (string, error) {
	err := errors.New("no HMAC secret is configured for the recipients' tenant")
	for _, t := range tenants {
		v, ok := h.hmac[t]
		if !ok {
			continue
		}
		err = v.VerifyHeader(hd, body)
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, webhooksig.ErrNoMatch) {
			return "", err
		}
	}
	return "", err
}

func allowPost(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	writeProblem(w, problem{http.StatusMethodNotAllowed, ProblemMethodNotAllowed, "Method not allowed", "use POST"})
	return false
}

func unauthorized(w http.ResponseWriter, challenge, detail string) {
	w.Header().Set("WWW-Authenticate", challenge)
	writeProblem(w, problem{http.StatusUnauthorized, ProblemUnauthorized, "Unauthorized", detail})
}

// authorize resolves every recipient and returns the first of tenants (those of the request's
// credential) that may deliver to all of them. Accept resolves again when it records; a route
// changed in between is the route recorded.
func (h *handler) authorize(tenants []string, rcpts []string) (string, *problem) {
	routes := make([]ingest.Route, 0, len(rcpts))
	for _, rcpt := range rcpts {
		rt, ok := h.acc.Resolve(mailid.Address(rcpt))
		if !ok {
			return "", &problem{http.StatusBadRequest, ProblemNoRoute, "Unknown recipient", rcpt + " is not an address mail is received for"}
		}
		routes = append(routes, rt)
	}
	for _, t := range tenants {
		if !slices.ContainsFunc(routes, func(rt ingest.Route) bool { return !permits(t, rt) }) {
			return t, nil
		}
	}
	for i, rt := range routes {
		if !slices.ContainsFunc(tenants, func(t string) bool { return permits(t, rt) }) {
			// The recipient's tenant is not named: the caller has no business knowing it.
			return "", &problem{
				http.StatusForbidden, ProblemForbidden, "Recipient of another tenant",
				fmt.Sprintf("the credential (tenant %s) may not deliver to %s", strings.Join(tenants, ", "), rcpts[i]),
			}
		}
	}
	// Each recipient is some credential tenant's, but no single tenant owns them all.
	return "", &problem{
		http.StatusForbidden, ProblemForbidden, "Recipients of several tenants",
		"one request delivers for one tenant; send one request per tenant",
	}
}

// readBody reads the whole request body through the configured limit.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *problem) {
	tooLarge := &problem{
		http.StatusRequestEntityTooLarge, ProblemTooLarge, "Message too large",
		fmt.Sprintf("the request body is larger than %d bytes", h.cfg.MaxBodyBytes),
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		return nil, tooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, &problem{http.StatusBadRequest, ProblemBadBody, "Unreadable body", "the request body could not be read"}
	}
	if len(b) == 0 {
		return nil, &problem{http.StatusBadRequest, ProblemEmptyMessage, "Empty message", "the body must be an RFC 5322 message"}
	}
	return b, nil
}

// record hands the message to ingest and maps its error to the answer.
func (h *handler) record(r *http.Request, env events.Envelope, raw []byte) (ingest.Result, *problem) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.AcceptTimeout)
	defer cancel()
	res, err := h.acc.Accept(ctx, env, raw)
	return res, h.answer(r, env, err, int64(len(raw)))
}

// answer maps ingest's error for a message of size bytes to the problem to answer; nil on
// success.
func (h *handler) answer(r *http.Request, env events.Envelope, err error, size int64) *problem {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ingest.ErrTooLarge):
		return &problem{http.StatusRequestEntityTooLarge, ProblemTooLarge, "Message too large", err.Error()}
	case errors.Is(err, ingest.ErrNoRoute):
		return &problem{http.StatusBadRequest, ProblemNoRoute, "Unknown recipient", err.Error()}
	case errors.Is(err, ingest.ErrInvalid):
		return &problem{http.StatusBadRequest, ProblemInvalidMessage, "Invalid message", err.Error()}
	}
	if errors.Is(err, ingest.ErrInFlight) {
		// The client retried while its first attempt is still being recorded: not a fault.
		h.log.InfoContext(r.Context(), "deferred http retry of a message still being recorded",
			slog.String("path", r.URL.Path), slog.String("client_ip", env.ClientIP))
	} else {
		h.log.ErrorContext(r.Context(), "could not record http message, answered 503", slog.String("path", r.URL.Path),
			slog.String("client_ip", env.ClientIP), slog.Int64("size", size), slog.String("error", err.Error()))
	}
	return h.unavailable("the message could not be recorded; nothing was stored, retry the same request")
}

// unavailable is the 503 answer; fail adds Retry-After.
func (h *handler) unavailable(detail string) *problem {
	return &problem{http.StatusServiceUnavailable, ProblemUnavailable, "Not recorded, retry later", detail}
}

// fail writes p, with Retry-After on a 503 so clients back off.
func (h *handler) fail(w http.ResponseWriter, p problem) {
	if p.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterSeconds(h.cfg.RetryAfter))
	}
	writeProblem(w, p)
}

// writeAccepted answers a recorded (or duplicate) message.
func writeAccepted(w http.ResponseWriter, status int, res ingest.Result) {
	writeJSON(w, status, acceptedBody{ID: res.ID, ThreadKey: res.ThreadKey, Duplicate: res.Duplicate})
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
	return h.buildEnvelope(r, from, rawRcpts, ParamMailFrom, ParamRcptTo)
}

// buildEnvelope checks the sender and the recipients (each value may be a comma-separated
// list) and returns the envelope; fromName and rcptName name the fields in errors.
func (h *handler) buildEnvelope(r *http.Request, from string, rcptValues []string, fromName, rcptName string) (events.Envelope, error) {
	env := events.Envelope{ClientIP: clientIP(r), Source: "http"}
	from = strings.Trim(strings.TrimSpace(from), "<>")
	if from != "" { // empty is the null sender, as in SMTP
		if err := checkAddr(from); err != nil {
			return env, fmt.Errorf("%s: %w", fromName, err)
		}
	}
	env.MailFrom = from
	for _, v := range rcptValues {
		for a := range strings.SplitSeq(v, ",") {
			a = strings.Trim(strings.TrimSpace(a), "<>")
			if a == "" {
				continue
			}
			if err := checkAddr(a); err != nil {
				return env, fmt.Errorf("%s: %w", rcptName, err)
			}
			env.RcptTo = append(env.RcptTo, a)
		}
	}
	if len(env.RcptTo) == 0 {
		return env, fmt.Errorf("%s is required", rcptName)
	}
	if len(env.RcptTo) > h.cfg.MaxRecipients {
		return env, fmt.Errorf("%s: %d recipients, at most %d", rcptName, len(env.RcptTo), h.cfg.MaxRecipients)
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

// retryAfterSeconds is the Retry-After value for d, at least one second.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
}
