// Package salesforce is the crm connector for Salesforce, over the REST API (sObject rows by
// External ID) with OAuth 2.0 (JWT bearer or refresh token).
//
// One message becomes, in this order (see docs/crm/salesforce.md):
//
//   - an Account keyed by company domain (External ID field Mailpipe_Domain__c), unless the
//     sender has no company or a free-mail domain;
//   - a Contact keyed by the sender's normalized address (Mailpipe_Email__c), linked to the
//     Account when it creates one;
//   - a Task keyed by the message's external id (Mailpipe_External_Id__c): subject, reply text,
//     date, Status, linked to the Contact (WhoId) and the Account (WhatId);
//   - one ContentVersion link per stored attachment (ContentUrl = blob ref), keyed by
//     "<external id>-<n>" and published to the Task.
//
// Accounts and Contacts are created when absent and otherwise left alone, because people edit
// them in Salesforce (a Contact from before mailpipe, found by Email, only gets the key field
// set); the Task is upserted (PATCH …/sobjects/Task/<field>/<external id>), so a
// redelivery updates the one Task instead of adding one. Outcome is created when the Task was
// created (201) and updated when it existed (200). Every write is keyed, so retries, rebalances
// and DLQ replays leave one record of each kind.
//
// Errors are classified with crm.ClassifyHTTP and crm.ClassifyTransport, refined by the
// Salesforce error code: 403 REQUEST_LIMIT_EXCEEDED is rate_limited and 400 UNABLE_TO_LOCK_ROW
// crm_5xx (both retryable); a 401 renews the session once and sends the request again.
package salesforce

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// Object types, the keys of Result.ObjectIDs. Attachment links are ObjectFile + "." + n,
// n counting from 1 as in their External ID.
const (
	ObjectAccount = "account"
	ObjectContact = "contact"
	ObjectTask    = "task"
	ObjectFile    = "content_version"
)

// Option configures a [Connector].
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	client *http.Client
	now    func() time.Time
}

// WithHTTPClient sets the HTTP client (transport, proxies, TLS) for the token endpoint and the
// API. The connector copies it and turns redirect following off, so the bearer token goes to
// the instance only; per-request timeouts come from Config.Timeout. The default client keeps up
// to 32 idle connections per host.
func WithHTTPClient(c *http.Client) Option {
	return optionFunc(func(o *options) { o.client = c })
}

// WithClock sets the clock for the JWT's exp, for tests.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(o *options) { o.now = now })
}

// Connector writes messages to one Salesforce org. It is safe for concurrent use; concurrent
// Upserts share one session and one renewal of it.
type Connector struct {
	cfg     Config
	mapping mapping
	client  *http.Client
	tokens  *tokenSource
	log     *slog.Logger
}

// New validates cfg, reads the private key of the JWT bearer flow, and returns a connector. It
// does not contact Salesforce: the first Upsert requests the first access token.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuring Salesforce connector: %w", err)
	}
	if log == nil {
		return nil, errors.New("configuring Salesforce connector: logger is required")
	}
	cfg = cfg.withDefaults()
	o := options{now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.client == nil {
		tr, ok := http.DefaultTransport.(*http.Transport)
		if !ok {
			return nil, errors.New("configuring Salesforce connector: http.DefaultTransport is not an *http.Transport; pass WithHTTPClient")
		}
		tr = tr.Clone()
		// The stage runs several upserts per target at once; the default of 2 idle
		// connections per host would make most of them dial.
		tr.MaxIdleConnsPerHost = 32
		o.client = &http.Client{Transport: tr}
	}
	client := *o.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	var key *rsa.PrivateKey
	if cfg.PrivateKeyFile != "" {
		pemBytes, err := os.ReadFile(cfg.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("configuring Salesforce connector: reading private_key_file: %w", err)
		}
		k, err := ParsePrivateKey(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("configuring Salesforce connector: parsing private_key_file: %w", err)
		}
		key = k
	}
	return &Connector{
		cfg:     cfg,
		mapping: mapping{taskStatus: cfg.TaskStatus, files: !cfg.SkipFiles},
		client:  &client,
		tokens:  newTokenSource(cfg, &client, key, o.now),
		log:     log.With(slog.String("target", cfg.Name)),
	}, nil
}

// Name returns the target name.
func (c *Connector) Name() string { return c.cfg.Name }

// Upsert writes rec's Account, Contact, Task and attachment links (see the package doc) and
// returns Outcome created or updated by what happened to the Task, ObjectIDs by object type
// (ObjectAccount, ObjectContact, ObjectTask, ObjectFile+".n"), and Attempts = the number of API
// requests made (token requests not counted). On error nothing is rolled back: records written
// before the failing request stay, and the retry finds them by their keys.
func (c *Connector) Upsert(ctx context.Context, rec *events.Enriched) (crm.Result, error) {
	extID := rec.Message.ExternalID
	if extID == "" {
		return crm.Result{}, failure.New(failure.Schema, "writing to Salesforce: message has no external id")
	}
	if len(extID)+4 > maxExternalID {
		return crm.Result{}, failure.New(failure.Schema, "writing to Salesforce: external id is longer than an External ID field holds")
	}
	p := c.mapping.build(rec)
	cl := &call{}
	res := crm.Result{ObjectIDs: map[string]string{}}
	fail := func(err error) (crm.Result, error) {
		res.Attempts = cl.requests
		return res, fmt.Errorf("writing message %s to Salesforce: %w", rec.Message.ID, err)
	}

	var accountID, contactID string
	if p.account != nil {
		id, err := c.ensure(ctx, cl, "Account", c.cfg.AccountIDField, p.account.key, p.account.fields)
		if err != nil {
			return fail(err)
		}
		accountID, res.ObjectIDs[ObjectAccount] = id, id
	}
	if p.contact != nil {
		if accountID != "" {
			p.contact.fields["AccountId"] = accountID
		}
		id, err := c.ensureContact(ctx, cl, p.contact)
		if err != nil {
			return fail(err)
		}
		contactID, res.ObjectIDs[ObjectContact] = id, id
	}
	if contactID != "" {
		p.task.fields["WhoId"] = contactID
	}
	if accountID != "" {
		p.task.fields["WhatId"] = accountID
	}
	taskID, created, err := c.upsert(ctx, cl, "Task", c.cfg.TaskIDField, p.task.key, p.task.fields)
	if err != nil {
		return fail(err)
	}
	res.ObjectIDs[ObjectTask] = taskID
	for i, f := range p.files {
		f.fields["FirstPublishLocationId"] = taskID
		id, err := c.insertOnce(ctx, cl, "ContentVersion", c.cfg.FileIDField, f.key, f.fields)
		if err != nil {
			return fail(err)
		}
		res.ObjectIDs[ObjectFile+"."+strconv.Itoa(i+1)] = id
	}

	res.Outcome = crm.OutcomeUpdated
	if created {
		res.Outcome = crm.OutcomeCreated
	}
	res.Attempts = cl.requests
	return res, nil
}

// ensureContact is ensure for the sender's Contact, with one step between the read by key and
// the create: a Contact that has the sender's Email but no key yet (it was in the CRM before
// mailpipe) is adopted, by setting the key field on it and nothing else, instead of getting a
// second Contact beside it. Several Contacts with that Email, or one already keyed to another
// address, are not adopted: the connector creates its own. Adoption is off when the key field
// is Email itself.
func (c *Connector) ensureContact(ctx context.Context, cl *call, w *write) (string, error) {
	field := c.cfg.ContactIDField
	id, found, err := c.lookup(ctx, cl, "Contact", field, w.key)
	if err != nil || found {
		return id, err
	}
	if email, ok := w.fields["Email"].(string); ok && !strings.EqualFold(field, "Email") {
		id, err := c.adoptContact(ctx, cl, field, w.key, email)
		if err != nil || id != "" {
			return id, err
		}
	}
	id, _, err = c.upsert(ctx, cl, "Contact", field, w.key, w.fields)
	return id, err
}

// adoptContact returns the id of the Contact it keyed with key, or "" when there is none to
// adopt.
func (c *Connector) adoptContact(ctx context.Context, cl *call, field, key, email string) (string, error) {
	what := "read of Contact by Email"
	a, err := c.do(ctx, cl, http.MethodGet, c.keyPath("Contact", "Email", email)+"?fields=Id,"+field, what, nil)
	if err != nil {
		return "", err
	}
	switch a.status {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusMultipleChoices:
		return "", nil
	default:
		return "", a.fail(what)
	}
	var rec map[string]any
	if err := json.Unmarshal(a.body, &rec); err != nil {
		return "", failure.New(failure.CRM5xx, what+": the answer is not a record")
	}
	id, _ := rec["Id"].(string)
	if held, _ := rec[field].(string); id == "" || held != "" {
		return "", nil
	}
	code, err := c.update(ctx, cl, "Contact", id, map[string]any{field: key})
	if code == "DUPLICATE_VALUE" {
		// A concurrent delivery keyed a Contact first (this one or a new one); use it.
		id, found, lerr := c.lookup(ctx, cl, "Contact", field, key)
		if lerr != nil || found {
			return id, lerr
		}
	}
	if err != nil {
		return "", err
	}
	return id, nil
}
