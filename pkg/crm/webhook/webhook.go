// Package webhook is the crm connector that POSTs each enriched message as JSON to a configured
// URL, signed with Standard Webhooks (https://www.standardwebhooks.com/): headers webhook-id,
// webhook-timestamp and webhook-signature ("v1,<base64 HMAC-SHA256>"), secrets "whsec_<base64>".
//
// The webhook-id is the message's external id, so a receiver dedupes redeliveries (stage
// retries, DLQ replays) by it; the body is the same bytes every time (see [Payload]). Any 2xx
// answer counts as delivered (outcome created); other answers and transport errors are
// classified with crm.ClassifyHTTP and crm.ClassifyTransport, so the stage retries 429 (honouring
// Retry-After), 408, 5xx and timeouts, and dead-letters 4xx and 401/403.
//
// The URL is configured, so it may point anywhere the process can reach. Unless a client is
// given with [WithHTTPClient], every connection goes through a [netguard.Policy] checked at
// dial time, on the resolved address: loopback, private, link-local (cloud metadata) and other
// non-public addresses are refused unless Config.AllowPrivate or Config.AllowNetworks permit
// them. A refused destination is dead-lettered as crm_4xx, never retried (see [Connector.Upsert]).
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/envconf"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/netguard"
	"github.com/mailpipe/mailpipe/pkg/webhooksig"
)

// Defaults of [Config].
const (
	DefaultName    = "webhook"
	DefaultTimeout = 10 * time.Second
)

// maxResponseBody bounds how much of a response the connector reads; only an error excerpt is
// kept, and draining a little lets the connection be reused.
const maxResponseBody = 64 << 10

// ObjectType is the key of the delivered webhook-id in Result.ObjectIDs.
const ObjectType = "webhook"

// Config configures one webhook target. Load it with envconf under a section such as
// `env:"CRM_WEBHOOK"` (MAILPIPE_CRM_WEBHOOK_URL, …).
type Config struct {
	// Name is the target name (dedupe namespace, mail.crm.v1 target); default "webhook". Give
	// each webhook target its own name when there are several.
	Name string `env:"NAME" default:"webhook" usage:"target name of the webhook connector"`
	// URL receives the POST requests; http or https. Required. Redirects are not followed, so a
	// signed request never goes anywhere but here.
	URL string `env:"URL" usage:"URL the signed webhook is POSTed to"`
	// Secrets sign every request, each "whsec_<base64>" of a 24 to 64 byte key (see
	// webhooksig.ParseSecret). Every secret signs (one signature each), so during a rotation
	// list the new and the old secret until every receiver has the new one. At least one is
	// required.
	Secrets []string `env:"SECRETS" usage:"signing secrets, whsec_<base64>, comma-separated; all sign"`
	// Timeout bounds one request, response included; default 10s.
	Timeout time.Duration `env:"TIMEOUT" default:"10s" usage:"timeout of one webhook request"`
	// AllowPrivate lets the connector connect to any address: loopback, private networks and
	// link-local (cloud metadata) included. By default those are refused when the connection
	// is made, after name resolution, so a URL (or a DNS answer) cannot point the signed POST at
	// an internal service. Prefer AllowNetworks when the receiver is in one known network.
	AllowPrivate bool `env:"ALLOW_PRIVATE" default:"false" usage:"allow webhook URLs that resolve to loopback, private or link-local addresses"`
	// AllowNetworks lists CIDR prefixes (10.20.0.0/16, fd00:1::/64) the connector may connect
	// to although they are not public, for a receiver inside the operator's network.
	AllowNetworks []string `env:"ALLOW_NETWORKS" usage:"CIDR networks the webhook may reach although private, comma-separated"`
}

// Validate reports every problem of c, one per line.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("url is required"))
	} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, errors.New("url must be an absolute http or https URL"))
	}
	if len(c.Secrets) == 0 {
		errs = append(errs, errors.New("secrets: at least one signing secret is required"))
	} else if _, err := webhooksig.ParseSecrets(c.Secrets); err != nil {
		errs = append(errs, envconf.Prefix("secrets", err))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout must not be negative"))
	}
	if _, err := parseNetworks(c.AllowNetworks); err != nil {
		errs = append(errs, envconf.Prefix("allow_networks", err))
	}
	return errors.Join(errs...)
}

// parseNetworks reads AllowNetworks, reporting every bad entry.
func parseNetworks(list []string) ([]netip.Prefix, error) {
	var (
		out  []netip.Prefix
		errs []error
	)
	for i, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			errs = append(errs, fmt.Errorf("entry %d %q is not a CIDR prefix such as 10.20.0.0/16: %w", i+1, s, err))
			continue
		}
		out = append(out, p.Masked())
	}
	return out, errors.Join(errs...)
}

// Option configures a [Connector].
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	client *http.Client
	now    func() time.Time
}

// WithHTTPClient sets the HTTP client (transport, proxies, TLS). The connector copies it and
// turns redirect following off; the per-request timeout comes from Config.Timeout.
//
// The client's transport is used as it is: Config.AllowPrivate and Config.AllowNetworks do not
// apply, and guarding it against private destinations is the caller's responsibility (build
// it with netguard.Policy.Transport, for instance).
func WithHTTPClient(c *http.Client) Option {
	return optionFunc(func(o *options) { o.client = c })
}

// WithClock sets the clock for the webhook-timestamp header, for tests.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(o *options) { o.now = now })
}

// Connector posts signed webhooks. It is safe for concurrent use.
type Connector struct {
	name    string
	url     string
	safeURL string // URL without userinfo and query, for error texts and logs
	secrets []webhooksig.Secret
	timeout time.Duration
	client  *http.Client
	now     func() time.Time
	log     *slog.Logger
}

var _ crm.Connector = (*Connector)(nil)

// New validates cfg and returns a connector. It does not contact the URL.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuring webhook connector: %w", err)
	}
	if log == nil {
		return nil, errors.New("configuring webhook connector: logger is required")
	}
	o := options{now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.client == nil {
		allow, _ := parseNetworks(cfg.AllowNetworks) // validated above
		guard := netguard.Policy{AllowPrivate: cfg.AllowPrivate, Allow: allow}
		o.client = &http.Client{Transport: guard.Transport()}
	}
	client := *o.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &Connector{
		name:    cfg.Name,
		url:     cfg.URL,
		timeout: cfg.Timeout,
		client:  &client,
		now:     o.now,
	}
	if c.name == "" {
		c.name = DefaultName
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	u, _ := url.Parse(cfg.URL) // validated above
	c.safeURL = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	c.secrets, _ = webhooksig.ParseSecrets(cfg.Secrets) // validated above
	c.log = log.With(slog.String("target", c.name))
	return c, nil
}

// Name returns the target name.
func (c *Connector) Name() string { return c.name }

// Upsert POSTs rec's payload. A 2xx answer gives OutcomeCreated with ObjectIDs {"webhook":
// external id} and Attempts 1; the connector cannot tell a receiver's dedupe from a first
// delivery. Errors are classified (see the package doc); a destination refused by the SSRF
// guard is crm_4xx and wraps netguard.ErrRefused.
func (c *Connector) Upsert(ctx context.Context, rec *events.Enriched) (crm.Result, error) {
	id := rec.Message.ExternalID
	if id == "" {
		return crm.Result{}, failure.New(failure.Schema, "delivering webhook: message has no external id")
	}
	body, err := json.Marshal(NewPayload(rec))
	if err != nil {
		return crm.Result{}, failure.Wrap(failure.Internal, fmt.Errorf("encoding webhook payload: %w", err))
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return crm.Result{}, failure.Wrap(failure.Internal, fmt.Errorf("building webhook request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mailpipe-crm-sink")
	if err := webhooksig.SetHeaders(req.Header, id, c.now(), body, c.secrets...); err != nil {
		// The secrets were validated, so only an unusable id (dots, spaces) gets here; the
		// same record would fail the same way.
		return crm.Result{}, failure.Wrap(failure.Schema, fmt.Errorf("signing webhook %s: %w", id, err))
	}

	result := crm.Result{Attempts: 1}
	resp, err := c.client.Do(req)
	if err != nil {
		// The client's *url.Error repeats the full URL, query tokens included; keep them out of
		// logs and DLQ headers.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = c.safeURL
		}
		if errors.Is(err, netguard.ErrRefused) {
			// The guard refused the resolved address. Retrying cannot help: the same URL
			// resolves the same way, and a retry loop against an internal address is what the
			// guard is there to stop. failure has no configuration class; crm_4xx ("the
			// destination will not take this request") is the permanent class that fits, so
			// the record is dead-lettered and can be replayed once the URL or the allow
			// settings are fixed.
			return result, failure.Wrap(failure.CRM4xx, fmt.Errorf(
				"posting webhook %s: %w (the ALLOW_PRIVATE or ALLOW_NETWORKS setting can permit it)", id, err))
		}
		return result, crm.ClassifyTransport(fmt.Errorf("posting webhook %s: %w", id, err))
	}
	defer func() { _ = resp.Body.Close() }()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil && resp.StatusCode/100 != 2 {
		// A 2xx whose body broke off still confirmed the delivery; for other answers the body
		// is only an excerpt, so the status decides.
		c.log.LogAttrs(ctx, slog.LevelDebug, "reading webhook error response", slog.Any("error", err))
	}
	if err := crm.ClassifyHTTP(resp, respBody); err != nil {
		return result, fmt.Errorf("delivering webhook %s: %w", id, err)
	}
	result.Outcome = crm.OutcomeCreated
	result.ObjectIDs = map[string]string{ObjectType: id}
	return result, nil
}
