// Package pipedrive is the crm connector that writes enriched messages to Pipedrive through its
// REST API v1 (https://developers.pipedrive.com/docs/api/v1): the sender becomes a person
// (found by e-mail with /v1/persons/search, else created), the sender's company an organization
// (found by domain, else created), and the message an activity with an HTML note, linked to both.
// Attachments are listed in the note, with links when a link template is configured, or
// uploaded with the files API when that is turned on.
//
// # Idempotency
//
// Pipedrive activities have no custom fields and no upsert, and the search API does not index
// them, so the note of every activity ends with a marker line holding the message's external
// id ([NoteMarker]). Before writing, the connector lists the person's activities
// (GET /v1/persons/{id}/activities, which reads the database, not the search index) and looks
// for the marker: a replay finds the activity it wrote before and updates it (PUT, outcome
// updated) instead of adding a second one. Persons and organizations are found by e-mail and
// domain the same way, so a replay creates nothing new.
//
// Within one connector, upserts of one message, of one sender and of one company are
// serialized, so concurrent calls cannot both miss and both create; and persons and
// organizations created in the last minutes are remembered, because Pipedrive's search index
// lags behind writes by seconds. Across processes the crm-sink's partitioning by thread key
// keeps one message on one consumer.
//
// # Errors
//
// Responses are classified with crm.ClassifyHTTP: 401/403 are auth (with OAuth the connector
// first refreshes the access token once and repeats the request), 429 is rate_limited with the
// Retry-After wait (or, when a 429 carries none, Pipedrive's x-ratelimit-reset), other 4xx are
// crm_4xx and 5xx are crm_5xx. A message without a sender address cannot be tied to a person,
// through whom its activity is found again, and fails as crm_4xx.
package pipedrive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// Defaults of [Config].
const (
	DefaultName         = "pipedrive"
	DefaultBaseURL      = "https://api.pipedrive.com"
	DefaultTokenURL     = "https://oauth.pipedrive.com/oauth/token"
	DefaultActivityType = "email"
	DefaultTimeout      = 10 * time.Second
	// DefaultMaxFileSize bounds the attachments uploaded with the files API; larger ones are
	// listed in the note only.
	DefaultMaxFileSize = 50 << 20
)

// Keys of Result.ObjectIDs.
const (
	ObjectPerson       = "person"
	ObjectOrganization = "organization"
	ObjectActivity     = "activity"
	// ObjectFiles holds the comma-separated ids of the files attached to the activity.
	ObjectFiles = "files"
)

// Config configures one Pipedrive target. Load it with envconf under a section such as
// `env:"CRM_PIPEDRIVE"` (MAILPIPE_CRM_PIPEDRIVE_API_TOKEN, …).
//
// Authentication is either a personal API token (APIToken, sent as the api_token query
// parameter) or OAuth 2.0 (AccessToken and/or RefreshToken with ClientID and ClientSecret, sent
// as a bearer token and refreshed at TokenURL when it expires or is refused), not both.
type Config struct {
	// Name is the target name (dedupe namespace, mail.crm.v1 target, and the prefix of the
	// enrichment's known CRM ids, e.g. "pipedrive.person"); default "pipedrive".
	Name string `env:"NAME" default:"pipedrive" usage:"target name of the Pipedrive connector"`
	// BaseURL is the API origin without /v1: https://api.pipedrive.com or the company domain
	// (https://<company>.pipedrive.com, the api_domain of an OAuth token).
	BaseURL string `env:"BASE_URL" default:"https://api.pipedrive.com" usage:"Pipedrive API origin, without /v1"`
	// APIToken is a personal API token. It travels in the query string, so the connector keeps
	// request URLs out of its errors and logs.
	APIToken string `env:"API_TOKEN" usage:"Pipedrive personal API token (api_token); or configure OAuth"`
	// AccessToken is an OAuth access token. Optional when RefreshToken is set: the connector
	// then fetches one before its first request.
	AccessToken string `env:"ACCESS_TOKEN" usage:"Pipedrive OAuth access token"`
	// RefreshToken, ClientID and ClientSecret refresh the access token at TokenURL. The newest
	// refresh token Pipedrive returns is kept in memory only.
	RefreshToken string `env:"REFRESH_TOKEN" usage:"Pipedrive OAuth refresh token"`
	ClientID     string `env:"CLIENT_ID" usage:"Pipedrive OAuth client id (for refreshing tokens)"`
	ClientSecret string `env:"CLIENT_SECRET" usage:"Pipedrive OAuth client secret (for refreshing tokens)"`
	// TokenURL is the OAuth token endpoint; default https://oauth.pipedrive.com/oauth/token.
	TokenURL string `env:"TOKEN_URL" default:"https://oauth.pipedrive.com/oauth/token" usage:"Pipedrive OAuth token endpoint"`
	// ActivityType is the key_string of the activity type written; default "email".
	ActivityType string `env:"ACTIVITY_TYPE" default:"email" usage:"activity type key of the activities written"`
	// ActivityDone writes activities as done (a record of the e-mail). By default they are
	// open, due when the queue's response SLA runs out, so they land in the owner's to-do list.
	ActivityDone bool `env:"ACTIVITY_DONE" usage:"write activities as done instead of as open to-dos"`
	// OrgDomainField is the key (the 40-hex hash) of an organization custom text field that
	// holds the company domain: organizations are then found by domain and created with it.
	// Empty finds organizations by exact name (the company name, else the domain).
	OrgDomainField string `env:"ORG_DOMAIN_FIELD" usage:"key of the organization custom field holding the company domain"`
	// UploadFiles uploads attachments with the files API (POST /v1/files), linked to the
	// activity; it needs the blob store (WithBlobs). Inline parts and attachments above
	// MaxFileSize or without a blob are only listed in the note.
	UploadFiles bool `env:"UPLOAD_FILES" usage:"upload attachments to Pipedrive with the files API"`
	// MaxFileSize bounds an uploaded attachment in bytes; default 50 MiB.
	MaxFileSize int64 `env:"MAX_FILE_SIZE" default:"52428800" usage:"largest attachment uploaded, in bytes"`
	// AttachmentURL is a link template for the attachments listed in the note, with
	// placeholders {sha256}, {filename} and {message_id} (e.g. a download gateway in front of
	// the blob store). Empty lists attachments without links: blob refs are internal.
	AttachmentURL string `env:"ATTACHMENT_URL" usage:"link template for attachments in the note: {sha256} {filename} {message_id}"`
	// Timeout bounds one HTTP request, response included; default 10s.
	Timeout time.Duration `env:"TIMEOUT" default:"10s" usage:"timeout of one Pipedrive request"`
}

// oauth reports whether c configures OAuth.
func (c Config) oauth() bool { return c.AccessToken != "" || c.RefreshToken != "" }

// Validate reports every problem of c, one per line.
func (c Config) Validate() error {
	var errs []error
	if c.BaseURL != "" && !httpURL(c.BaseURL) {
		errs = append(errs, errors.New("base_url must be an absolute http or https URL"))
	}
	switch {
	case c.APIToken == "" && !c.oauth():
		errs = append(errs, errors.New("api_token or an OAuth access_token/refresh_token is required"))
	case c.APIToken != "" && c.oauth():
		errs = append(errs, errors.New("api_token and OAuth tokens are exclusive: configure one"))
	}
	if c.RefreshToken != "" && (c.ClientID == "" || c.ClientSecret == "") {
		errs = append(errs, errors.New("refresh_token needs client_id and client_secret"))
	}
	if c.TokenURL != "" && !httpURL(c.TokenURL) {
		errs = append(errs, errors.New("token_url must be an absolute http or https URL"))
	}
	if c.MaxFileSize < 0 {
		errs = append(errs, errors.New("max_file_size must not be negative"))
	}
	if c.AttachmentURL != "" && !httpURL(expandLink(c.AttachmentURL, "0", "a", "m")) {
		errs = append(errs, errors.New("attachment_url must be an absolute http or https URL template"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout must not be negative"))
	}
	return errors.Join(errs...)
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Option configures a [Connector].
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	client *http.Client
	blobs  BlobGetter
	now    func() time.Time
}

// WithHTTPClient sets the HTTP client (transport, proxies, TLS). The connector copies it and
// turns redirect following off, so a token never leaves for another host; the per-request
// timeout comes from Config.Timeout.
func WithHTTPClient(c *http.Client) Option {
	return optionFunc(func(o *options) { o.client = c })
}

// BlobGetter opens attachment bytes by blob ref; blob.Store satisfies it.
type BlobGetter interface {
	Get(ctx context.Context, ref string) (io.ReadCloser, error)
}

// WithBlobs sets where uploaded attachments are read from; required with Config.UploadFiles.
func WithBlobs(b BlobGetter) Option {
	return optionFunc(func(o *options) { o.blobs = b })
}

// WithClock sets the clock used for token expiry and the memory of recent creations, for tests.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(o *options) { o.now = now })
}

// Connector writes messages to Pipedrive. It is safe for concurrent use.
type Connector struct {
	name   string
	cfg    Config
	api    *client
	blobs  BlobGetter
	locks  keyLocks
	recent *memo
	log    *slog.Logger
	// activityPage is the page size of activity listings; tests lower it.
	activityPage int
}

var _ crm.Connector = (*Connector)(nil)

// New validates cfg and returns a connector. It does not contact Pipedrive.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuring pipedrive connector: %w", err)
	}
	if log == nil {
		return nil, errors.New("configuring pipedrive connector: logger is required")
	}
	o := options{client: &http.Client{}, now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if cfg.UploadFiles && o.blobs == nil {
		return nil, errors.New("configuring pipedrive connector: upload_files needs the blob store (WithBlobs)")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = DefaultTokenURL
	}
	if cfg.ActivityType == "" {
		cfg.ActivityType = DefaultActivityType
	}
	if cfg.MaxFileSize == 0 {
		cfg.MaxFileSize = DefaultMaxFileSize
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	httpClient := *o.client
	httpClient.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	log = log.With(slog.String("target", cfg.Name))
	c := &Connector{
		name:   cfg.Name,
		cfg:    cfg,
		blobs:  o.blobs,
		recent: newMemo(recentTTL, recentMax, o.now),
		log:    log,

		activityPage: defaultActivityPage,
	}
	c.api = newClient(cfg, &httpClient, o.now, log)
	return c, nil
}

// Name returns the target name.
func (c *Connector) Name() string { return c.name }

// Upsert writes rec as an activity linked to the sender's person and organization, creating
// those when Pipedrive does not know them yet. The first write of a message gives
// OutcomeCreated, later ones find the activity by its note marker and give OutcomeUpdated.
// ObjectIDs holds the person, organization (when the sender has a company that is not a
// free-mail provider), activity and uploaded files. Attempts is 1, plus one per token refresh
// that repeated a request. Errors are classified (see the package doc).
func (c *Connector) Upsert(ctx context.Context, rec *events.Enriched) (crm.Result, error) {
	id := rec.Message.ExternalID
	if id == "" {
		return crm.Result{}, failure.New(failure.Schema, "writing to pipedrive: message has no external id")
	}
	if err := ctx.Err(); err != nil {
		return crm.Result{}, crm.ClassifyTransport(fmt.Errorf("writing message %s to pipedrive: %w", id, err))
	}
	sender := senderOf(rec)
	if sender.email == "" {
		return crm.Result{}, failure.New(failure.CRM4xx, fmt.Sprintf(
			"writing message %s to pipedrive: no sender address to find its person by", id))
	}
	unlock, err := c.locks.lock(ctx, "message:"+id)
	if err != nil {
		return crm.Result{}, crm.ClassifyTransport(fmt.Errorf("waiting for another upsert of message %s: %w", id, err))
	}
	defer unlock()

	s := &session{c: c, attempts: 1}
	res, err := s.upsert(ctx, rec, sender)
	res.Attempts = s.attempts
	if err != nil {
		return res, fmt.Errorf("writing message %s to pipedrive: %w", id, err)
	}
	return res, nil
}

// session is one Upsert: it counts the requests a token refresh repeated.
type session struct {
	c        *Connector
	attempts int
}

func (s *session) upsert(ctx context.Context, rec *events.Enriched, sender sender) (crm.Result, error) {
	c := s.c
	ids := map[string]string{}
	var orgID int64
	if org, ok := organizationOf(rec); ok {
		var err error
		if orgID, err = s.organization(ctx, rec, org); err != nil {
			return crm.Result{}, err
		}
		ids[ObjectOrganization] = strconv.FormatInt(orgID, 10)
	}
	personID, err := s.person(ctx, rec, sender, orgID)
	if err != nil {
		return crm.Result{}, err
	}
	ids[ObjectPerson] = strconv.FormatInt(personID, 10)

	act := newActivity(rec, c.cfg, personID, orgID)
	existing, err := s.findActivity(ctx, personID, rec.Message.ExternalID)
	if err != nil {
		return crm.Result{}, err
	}
	outcome := crm.OutcomeCreated
	var activityID int64
	if existing != 0 {
		outcome = crm.OutcomeUpdated
		activityID = existing
		if err := s.call(ctx, http.MethodPut, "/v1/activities/"+strconv.FormatInt(existing, 10), nil, jsonBody(act), nil); err != nil {
			return crm.Result{}, fmt.Errorf("updating activity %d: %w", existing, err)
		}
	} else {
		var created struct {
			ID int64 `json:"id"`
		}
		if err := s.call(ctx, http.MethodPost, "/v1/activities", nil, jsonBody(act), &created); err != nil {
			return crm.Result{}, fmt.Errorf("adding activity: %w", err)
		}
		if created.ID == 0 {
			return crm.Result{}, failure.New(failure.CRM5xx, "adding activity: response has no activity id")
		}
		activityID = created.ID
		c.log.LogAttrs(ctx, slog.LevelDebug, "added pipedrive activity",
			slog.Int64("activity_id", activityID), slog.Int64("person_id", personID))
	}
	ids[ObjectActivity] = strconv.FormatInt(activityID, 10)

	if c.cfg.UploadFiles {
		files, err := s.uploadFiles(ctx, rec, activityID, personID, orgID, existing != 0)
		if err != nil {
			return crm.Result{}, err
		}
		if len(files) > 0 {
			ids[ObjectFiles] = strings.Join(files, ",")
		}
	}
	return crm.Result{Outcome: outcome, ObjectIDs: ids}, nil
}

// call sends one API request through the session, counting repeats after a token refresh.
func (s *session) call(ctx context.Context, method, path string, query url.Values, body requestBody, out any) error {
	_, err := s.callPage(ctx, method, path, query, body, out)
	return err
}

func (s *session) callPage(ctx context.Context, method, path string, query url.Values, body requestBody, out any) (pagination, error) {
	page, repeats, err := s.c.api.do(ctx, method, path, query, body, out)
	s.attempts += repeats
	return page, err
}
