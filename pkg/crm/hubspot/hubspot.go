// Package hubspot is the crm connector that writes enriched messages to HubSpot through the
// CRM v3 API (https://developers.hubspot.com/docs/api/crm/understanding-the-crm):
//
//   - the sender becomes a contact, upserted by email with POST
//     /crm/v3/objects/contacts/batch/upsert (idProperty=email); concurrent upserts share one
//     batch of at most 100 inputs;
//   - the sender's company is found by domain (POST /crm/v3/objects/companies/search) or created
//     (POST /crm/v3/objects/companies), and associated with the contact (PUT
//     /crm/v4/objects/contact/{id}/associations/default/company/{id});
//   - the message becomes an email engagement (/crm/v3/objects/emails) associated with the
//     contact (type 198) and the company (type 186); its attachments are listed in the email
//     text as links to their blob-store copies, nothing is uploaded.
//
// Idempotency: the message's external id is stored in a custom email property
// (Config.ExternalIDProperty, created on first use with unique values unless
// Config.CreateProperty is off). An upsert searches for it first (POST
// /crm/v3/objects/emails/search): a replay finds the engagement and updates it, or reports
// deduped when it already holds the same values. Because HubSpot's search index lags writes by
// seconds, the connector also remembers the ids (and a digest of the values) it wrote
// (Config.IDCacheTTL), serializes upserts of one message and of one company domain within the
// process, and treats a 409 on create (the unique property already holds the id) as "update
// that one".
//
// Errors are classified with crm.ClassifyHTTP and crm.ClassifyTransport: 429 is rate_limited
// with HubSpot's Retry-After, 5xx crm_5xx, other 4xx crm_4xx, 401/403 auth. With an OAuth
// refresh token a 401 first refreshes the access token and resends the request once.
package hubspot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// Keys of Result.ObjectIDs.
const (
	ObjectContact = "contact"
	ObjectCompany = "company"
	ObjectEmail   = "email"
)

// PropertyGroup is the email property group the connector creates for its property.
const PropertyGroup = "mailpipe"

// Option configures a [Connector].
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	client *http.Client
	now    func() time.Time
}

// WithHTTPClient sets the HTTP client (transport, proxies, TLS). The connector copies it and
// turns redirect following off; the per-request timeout comes from Config.Timeout. The default
// is Go's default transport keeping up to 32 idle connections.
func WithHTTPClient(c *http.Client) Option {
	return optionFunc(func(o *options) { o.client = c })
}

// WithClock sets the clock for token expiry and the id cache, for tests.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(o *options) { o.now = now })
}

// Connector writes to HubSpot. It is safe for concurrent use.
type Connector struct {
	name           string
	base           string
	prop           string
	timeout        time.Duration
	createProperty bool
	associate      bool
	client         *http.Client
	auth           tokenSource
	log            *slog.Logger

	contacts *contactBatcher
	messages keyedMutex // by external id
	domains  keyedMutex // by company domain

	companyIDs *idCache // domain → company id
	emailIDs   *idCache // external id → email id and digest of the properties written
	pairs      *idCache // contact id/company id → associated

	propReady atomic.Bool
	propSem   chan struct{}
}

var _ crm.Connector = (*Connector)(nil)

// New validates cfg and returns a connector. It does not contact HubSpot: the token exchange
// and the property check happen on the first Upsert.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuring HubSpot connector: %w", err)
	}
	if log == nil {
		return nil, errors.New("configuring HubSpot connector: logger is required")
	}
	o := options{client: &http.Client{Transport: defaultTransport()}, now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	client := *o.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &Connector{
		name:           cmpOr(cfg.Name, DefaultName),
		base:           strings.TrimRight(cmpOr(cfg.BaseURL, DefaultBaseURL), "/"),
		prop:           cmpOr(cfg.ExternalIDProperty, DefaultExternalIDProperty),
		timeout:        cfg.Timeout,
		createProperty: cfg.CreateProperty,
		associate:      cfg.AssociateContactCompany,
		client:         &client,
		companyIDs:     newIDCache(cfg.IDCacheTTL, o.now),
		emailIDs:       newIDCache(cfg.IDCacheTTL, o.now),
		pairs:          newIDCache(cfg.IDCacheTTL, o.now),
		propSem:        make(chan struct{}, 1),
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if cfg.oauth() {
		c.auth = &oauthToken{
			endpoint: c.base + TokenPath, clientID: cfg.ClientID, clientSecret: cfg.ClientSecret,
			refreshToken: cfg.RefreshToken, client: c.client, timeout: c.timeout, now: o.now,
		}
	} else {
		c.auth = staticToken(cfg.Token)
	}
	batch := cfg.BatchSize
	if batch == 0 {
		batch = MaxBatchSize
	}
	c.contacts = &contactBatcher{max: batch, flush: c.flushContacts}
	c.log = log.With(slog.String("target", c.name))
	return c, nil
}

// maxIdleConnsPerHost keeps connections to HubSpot for the sink's concurrent upserts; Go's
// default of 2 would open and close a connection for most requests under concurrency.
const maxIdleConnsPerHost = 32

func defaultTransport() http.RoundTripper {
	t, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return http.DefaultTransport
	}
	t = t.Clone()
	t.MaxIdleConnsPerHost = maxIdleConnsPerHost
	return t
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Name returns the target name.
func (c *Connector) Name() string { return c.name }

// Upsert writes rec's contact, company and email engagement (see the package doc). The outcome
// is created when the engagement was created, updated when an engagement with the external id
// existed and was changed (or a contact or company was created for it), and deduped when it
// already held the same values (as read back from HubSpot, or as this process wrote them within
// Config.IDCacheTTL). ObjectIDs holds the "contact", "company" and "email" ids written
// (contact and company only when the message has them). Attempts is 1 plus the requests resent
// after a token refresh.
func (c *Connector) Upsert(ctx context.Context, rec *events.Enriched) (crm.Result, error) {
	extID := rec.Message.ExternalID
	if extID == "" {
		return crm.Result{}, failure.New(failure.Schema, "writing message to HubSpot: message has no external id")
	}
	cl := &call{}
	res, err := c.upsert(ctx, cl, rec)
	res.Attempts = 1 + cl.resent
	if err != nil {
		return crm.Result{Attempts: res.Attempts}, fmt.Errorf("writing message %s to HubSpot: %w", extID, err)
	}
	return res, nil
}

func (c *Connector) upsert(ctx context.Context, cl *call, rec *events.Enriched) (crm.Result, error) {
	if err := ctx.Err(); err != nil {
		return crm.Result{}, crm.ClassifyTransport(err)
	}
	if err := c.ensureProperty(ctx, cl); err != nil {
		return crm.Result{}, err
	}
	unlock, err := c.messages.lock(ctx, rec.Message.ExternalID)
	if err != nil {
		return crm.Result{}, crm.ClassifyTransport(fmt.Errorf("waiting for another upsert of the message: %w", err))
	}
	defer unlock()

	ids := map[string]string{}
	created := false
	var contactID, companyID string
	if in, ok := mapContact(rec); ok {
		r := c.contacts.upsert(ctx, cl, in)
		if r.err != nil {
			return crm.Result{}, r.err
		}
		contactID, created = r.id, r.created
		ids[ObjectContact] = contactID
	}
	if in, ok := mapCompany(rec); ok {
		id, isNew, err := c.company(ctx, cl, in)
		if err != nil {
			return crm.Result{}, err
		}
		companyID, created = id, created || isNew
		ids[ObjectCompany] = companyID
	}
	if c.associate && contactID != "" && companyID != "" {
		if err := c.associateContactCompany(ctx, cl, contactID, companyID); err != nil {
			return crm.Result{}, err
		}
	}
	emailID, outcome, err := c.email(ctx, cl, rec, contactID, companyID)
	if err != nil {
		return crm.Result{}, err
	}
	ids[ObjectEmail] = emailID
	if outcome == crm.OutcomeUnchanged && created {
		outcome = crm.OutcomeUpdated
	}
	return crm.Result{Outcome: outcome, ObjectIDs: ids}, nil
}

// object is a CRM record as the v3 API returns it.
type object struct {
	ID         string             `json:"id"`
	Properties map[string]*string `json:"properties"`
}

type searchRequest struct {
	FilterGroups []filterGroup `json:"filterGroups"`
	Properties   []string      `json:"properties,omitempty"`
	Limit        int           `json:"limit"`
}

type filterGroup struct {
	Filters []filter `json:"filters"`
}

type filter struct {
	PropertyName string `json:"propertyName"`
	Operator     string `json:"operator"`
	Value        string `json:"value"`
}

type searchResponse struct {
	Total   int      `json:"total"`
	Results []object `json:"results"`
}

// searchLimit is how many matches a search asks for; more than one means duplicates exist.
const searchLimit = 10

func searchEQ(prop, value string, props []string) searchRequest {
	return searchRequest{
		FilterGroups: []filterGroup{{Filters: []filter{{PropertyName: prop, Operator: "EQ", Value: value}}}},
		Properties:   props,
		Limit:        searchLimit,
	}
}

// oldest returns the record with the lowest id: HubSpot ids grow, so that is the first one
// written, and every upsert picks the same one when duplicates exist.
func oldest(objs []object) object {
	return slices.MinFunc(objs, func(a, b object) int {
		na, errA := strconv.ParseInt(a.ID, 10, 64)
		nb, errB := strconv.ParseInt(b.ID, 10, 64)
		if errA == nil && errB == nil {
			return int(min(max(na-nb, -1), 1))
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// company returns the id of the company with in's domain, creating it when HubSpot has none.
// HubSpot does not keep domains unique, so the lookup and the create run under a per-domain
// lock and the id is remembered: a second message from a new company must not create it again
// while the search index has not caught up.
func (c *Connector) company(ctx context.Context, cl *call, in companyInput) (string, bool, error) {
	unlock, err := c.domains.lock(ctx, in.domain)
	if err != nil {
		return "", false, crm.ClassifyTransport(fmt.Errorf("waiting for another upsert of the company: %w", err))
	}
	defer unlock()
	if id, ok := c.companyIDs.get(in.domain); ok {
		return id, false, nil
	}
	var found searchResponse
	if err := c.do(ctx, cl, "searching the company by domain", http.MethodPost, "/crm/v3/objects/companies/search",
		searchEQ("domain", in.domain, []string{"domain", "name"}), &found); err != nil {
		return "", false, err
	}
	if len(found.Results) > 0 {
		id := oldest(found.Results).ID
		c.companyIDs.put(in.domain, id)
		return id, false, nil
	}
	var obj object
	if err := c.do(ctx, cl, "creating the company", http.MethodPost, "/crm/v3/objects/companies",
		map[string]any{"properties": in.props}, &obj); err != nil {
		return "", false, err
	}
	c.companyIDs.put(in.domain, obj.ID)
	return obj.ID, true, nil
}

// associateContactCompany gives the contact HubSpot's default association with the company.
// The call is idempotent; the pair is remembered to save it for repeat senders.
func (c *Connector) associateContactCompany(ctx context.Context, cl *call, contactID, companyID string) error {
	key := contactID + "/" + companyID
	if _, ok := c.pairs.get(key); ok {
		return nil
	}
	path := "/crm/v4/objects/contact/" + url.PathEscape(contactID) + "/associations/default/company/" + url.PathEscape(companyID)
	if err := c.do(ctx, cl, "associating the contact with the company", http.MethodPut, path, nil, nil); err != nil {
		return err
	}
	c.pairs.put(key, companyID)
	return nil
}

type associationSpec struct {
	AssociationCategory string `json:"associationCategory"`
	AssociationTypeID   int    `json:"associationTypeId"`
}

type association struct {
	To struct {
		ID string `json:"id"`
	} `json:"to"`
	Types []associationSpec `json:"types"`
}

func newAssociation(id string, typeID int) association {
	a := association{Types: []associationSpec{{AssociationCategory: "HUBSPOT_DEFINED", AssociationTypeID: typeID}}}
	a.To.ID = id
	return a
}

// email creates or updates rec's email engagement and returns its id and the outcome.
func (c *Connector) email(ctx context.Context, cl *call, rec *events.Enriched, contactID, companyID string) (string, string, error) {
	extID := rec.Message.ExternalID
	props := emailProperties(rec, c.prop)
	update := map[string]any{"properties": props}
	sum := digest(props)
	remember := func(id string) { c.emailIDs.put(extID, id+" "+sum) }

	if entry, ok := c.emailIDs.get(extID); ok {
		id, written, _ := strings.Cut(entry, " ")
		if written == sum {
			// This process wrote these very values a moment ago (a stage retry after a later
			// failure, a quick replay): nothing to write.
			return id, crm.OutcomeUnchanged, nil
		}
		err := c.do(ctx, cl, "updating the email", http.MethodPatch, "/crm/v3/objects/emails/"+url.PathEscape(id), update, nil)
		if err == nil {
			remember(id)
			return id, crm.OutcomeUpdated, nil
		}
		if statusOf(err) != http.StatusNotFound {
			return "", "", err
		}
		// Deleted in HubSpot since: look it up again, or create it anew.
		c.emailIDs.forget(extID)
	}

	var found searchResponse
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	slices.Sort(names)
	if err := c.do(ctx, cl, "searching the email by external id", http.MethodPost, "/crm/v3/objects/emails/search",
		searchEQ(c.prop, extID, names), &found); err != nil {
		return "", "", err
	}
	if len(found.Results) > 0 {
		obj := oldest(found.Results)
		if len(found.Results) > 1 {
			c.log.LogAttrs(ctx, slog.LevelWarn, "HubSpot holds several emails for one external id; updating the oldest",
				slog.String("external_id", extID), slog.Int("count", found.Total))
		}
		if sameProperties(obj.Properties, props) {
			remember(obj.ID)
			return obj.ID, crm.OutcomeUnchanged, nil
		}
		if err := c.do(ctx, cl, "updating the email", http.MethodPatch, "/crm/v3/objects/emails/"+url.PathEscape(obj.ID), update, nil); err != nil {
			return "", "", err
		}
		remember(obj.ID)
		return obj.ID, crm.OutcomeUpdated, nil
	}

	var assocs []association
	if contactID != "" {
		assocs = append(assocs, newAssociation(contactID, AssocEmailToContact))
	}
	if companyID != "" {
		assocs = append(assocs, newAssociation(companyID, AssocEmailToCompany))
	}
	var obj object
	err := c.do(ctx, cl, "creating the email", http.MethodPost, "/crm/v3/objects/emails",
		map[string]any{"properties": props, "associations": assocs}, &obj)
	if statusOf(err) == http.StatusConflict {
		// The unique property already holds the id: an engagement was written by another
		// process, or by an attempt whose answer was lost, and search has not indexed it yet.
		path := "/crm/v3/objects/emails/" + url.PathEscape(extID) + "?idProperty=" + url.QueryEscape(c.prop)
		if err := c.do(ctx, cl, "updating the email by external id", http.MethodPatch, path, update, &obj); err != nil {
			return "", "", err
		}
		remember(obj.ID)
		return obj.ID, crm.OutcomeUpdated, nil
	}
	if err != nil {
		return "", "", err
	}
	remember(obj.ID)
	return obj.ID, crm.OutcomeCreated, nil
}

// propertyDefinition is the part of a property definition the connector reads and writes.
type propertyDefinition struct {
	Name           string `json:"name"`
	Label          string `json:"label,omitempty"`
	Description    string `json:"description,omitempty"`
	Type           string `json:"type,omitempty"`
	FieldType      string `json:"fieldType,omitempty"`
	GroupName      string `json:"groupName,omitempty"`
	HasUniqueValue bool   `json:"hasUniqueValue"`
	FormField      bool   `json:"formField"`
}

// ensureProperty makes sure the external id property exists on emails, once per connector:
// it reads the definition and, on 404, creates the "mailpipe" group and the property with
// unique values (a 409 means another process was faster; a 400 for the unique flag creates it
// without). A property without unique values is used, with a warning: replays stay idempotent
// through search and the in-process memory, but two processes writing one message within the
// search-index lag could both create it.
func (c *Connector) ensureProperty(ctx context.Context, cl *call) error {
	if !c.createProperty || c.propReady.Load() {
		return nil
	}
	select {
	case c.propSem <- struct{}{}:
		defer func() { <-c.propSem }()
	case <-ctx.Done():
		return crm.ClassifyTransport(fmt.Errorf("waiting for the external id property check: %w", ctx.Err()))
	}
	if c.propReady.Load() {
		return nil
	}
	var def propertyDefinition
	err := c.do(ctx, cl, "reading the external id property", http.MethodGet,
		"/crm/v3/properties/emails/"+url.PathEscape(c.prop), nil, &def)
	switch {
	case err == nil:
		if !def.HasUniqueValue {
			c.log.LogAttrs(ctx, slog.LevelWarn, "the external id property does not require unique values; concurrent writers may duplicate an email",
				slog.String("property", c.prop))
		}
	case statusOf(err) == http.StatusNotFound:
		group := map[string]any{"name": PropertyGroup, "label": "Mailpipe", "displayOrder": -1}
		if err := c.do(ctx, cl, "creating the mailpipe property group", http.MethodPost,
			"/crm/v3/properties/emails/groups", group, nil); err != nil && statusOf(err) != http.StatusConflict {
			return err
		}
		def = propertyDefinition{
			Name: c.prop, Label: "Mailpipe external id", Type: "string", FieldType: "text", GroupName: PropertyGroup,
			Description:    "Idempotency key of the message mailpipe logged (sha256 of Message-ID and sender). Do not edit.",
			HasUniqueValue: true,
		}
		err := c.do(ctx, cl, "creating the external id property", http.MethodPost, "/crm/v3/properties/emails", def, nil)
		if statusOf(err) == http.StatusBadRequest {
			// HubSpot documents unique-value properties for contacts, companies, deals, tickets
			// and custom objects; an account that refuses one on emails still gets a usable
			// property: search keeps replays idempotent (see the warning above).
			c.log.LogAttrs(ctx, slog.LevelWarn, "HubSpot refused a unique-value email property; creating it without",
				slog.String("property", c.prop), slog.Any("error", err))
			def.HasUniqueValue = false
			err = c.do(ctx, cl, "creating the external id property", http.MethodPost, "/crm/v3/properties/emails", def, nil)
		}
		if err != nil && statusOf(err) != http.StatusConflict {
			return err
		}
		c.log.LogAttrs(ctx, slog.LevelInfo, "created the external id property on emails",
			slog.String("property", c.prop), slog.Bool("unique", def.HasUniqueValue))
	default:
		return err
	}
	c.propReady.Store(true)
	return nil
}
