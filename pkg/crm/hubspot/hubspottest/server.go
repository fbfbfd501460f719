// Package hubspottest is a HubSpot contract server on httptest: an in-memory account that
// answers the CRM v3/v4 endpoints the hubspot connector uses the way HubSpot documents them,
// and enforces what HubSpot enforces, so connector tests fail where HubSpot would refuse.
//
// It serves:
//
//   - POST /oauth/v1/token (grant_type=refresh_token; form-encoded; 400 BAD_REFRESH_TOKEN /
//     BAD_CLIENT_ID), issuing access tokens that expire after the token TTL (default 30 minutes,
//     as HubSpot's do); a private-app token ([Server.Token]) never expires;
//   - POST /crm/v3/objects/{type}/batch/upsert (at most 100 inputs, idProperty must be a
//     unique-value property, no duplicate ids in one batch; 200 with "new" per result);
//   - POST /crm/v3/objects/{type}/search (EQ, NEQ, IN, HAS_PROPERTY, NOT_HAS_PROPERTY; at most
//     5 filter groups, 10 filters per group and 25 in all, limit at most 200; optional index
//     lag and per-second limit);
//   - POST /crm/v3/objects/{type} (required properties, associations with HUBSPOT_DEFINED type
//     ids to existing records, 409 CONFLICT on a unique value that exists), GET and PATCH
//     /crm/v3/objects/{type}/{id} (also by ?idProperty=);
//   - GET /crm/v3/properties/{type}/{name}, POST /crm/v3/properties/{type} (409 when it
//     exists, 400 for an unknown group) and POST /crm/v3/properties/{type}/groups;
//   - PUT /crm/v4/objects/{from}/{id}/associations/default/{to}/{id}.
//
// Every /crm request needs "Authorization: Bearer <token>": 401 INVALID_AUTHENTICATION for an
// unknown token, 401 EXPIRED_AUTHENTICATION for an expired one. Property values are checked
// against the account's property definitions (unknown, read-only, not an email, not an option,
// not a number or date, longer than 65,536 characters: 400 VALIDATION_ERROR with HubSpot's
// error JSON: status, message, correlationId, category, errors[]). A rolling request limit
// ([WithRateLimit]) answers 429 with Retry-After and the TEN_SECONDLY_ROLLING body. FailNext
// injects any status (with HubSpot's body for it) for the next API calls.
//
// The object types are contacts, companies and emails (also by their singular names and the
// ids 0-1, 0-2, 0-49). The email engagement property [ExternalIDProperty] is not defined until
// a client creates it (or [Server.DefineProperty] does), as in a fresh account.
package hubspottest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
)

// Limits HubSpot documents and the server enforces.
const (
	// MaxBatchInputs is the most inputs one batch call accepts.
	MaxBatchInputs = 100
	// MaxSearchLimit is the largest page a search returns.
	MaxSearchLimit = 200
	// MaxPropertyChars is the longest text property value.
	MaxPropertyChars = 65536
	// DefaultTokenTTL is the lifetime of an OAuth access token.
	DefaultTokenTTL = 30 * time.Minute
)

// ExternalIDProperty is the email property the hubspot connector keeps the external id in by
// default; [Server.Objects] counts emails by it.
const ExternalIDProperty = "mailpipe_external_id"

// Object types.
const (
	Contacts  = "contacts"
	Companies = "companies"
	Emails    = "emails"
)

// HubSpot-defined association type ids the server knows, from → type id → to.
var associationTypes = map[string]map[int]string{
	Emails:    {198: Contacts, 186: Companies},
	Contacts:  {279: Companies, 1: Companies, 197: Emails},
	Companies: {280: Contacts, 2: Contacts, 185: Emails},
}

// defaultAssociation is the type id of the default (unlabelled) association, from → to.
var defaultAssociation = map[string]map[string]int{
	Contacts:  {Companies: 279, Emails: 197},
	Companies: {Contacts: 280, Emails: 185},
	Emails:    {Contacts: 198, Companies: 186},
}

// Object is a record the server holds. Values returned by the server's methods are copies.
type Object struct {
	Type       string
	ID         string
	Properties map[string]string
	// Associations are the associated record ids by object type.
	Associations map[string][]string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

func (o *Object) clone() Object {
	c := *o
	c.Properties = maps.Clone(o.Properties)
	c.Associations = map[string][]string{}
	for k, v := range o.Associations {
		c.Associations[k] = slices.Clone(v)
	}
	return c
}

// property is a property definition.
type property struct {
	Name           string   `json:"name"`
	Label          string   `json:"label"`
	Type           string   `json:"type"`
	FieldType      string   `json:"fieldType"`
	GroupName      string   `json:"groupName"`
	Description    string   `json:"description"`
	HasUniqueValue bool     `json:"hasUniqueValue"`
	HubspotDefined bool     `json:"hubspotDefined"`
	Options        []option `json:"options"`
	readOnly       bool
	required       bool
}

type option struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

type fault struct {
	status     int
	retryAfter string
}

// Option configures a [Server].
type Option interface{ apply(*Server) }

type optionFunc func(*Server)

func (f optionFunc) apply(s *Server) { f(s) }

// WithClock sets the server's clock (token expiry, rate windows, search lag, timestamps).
func WithClock(now func() time.Time) Option {
	return optionFunc(func(s *Server) { s.now = now })
}

// WithTokenTTL sets the lifetime of the OAuth access tokens the server issues.
func WithTokenTTL(d time.Duration) Option {
	return optionFunc(func(s *Server) { s.tokenTTL = d })
}

// WithRateLimit answers 429 (TEN_SECONDLY_ROLLING, Retry-After until the oldest request leaves
// the window) once n API requests arrived within the rolling window; HubSpot's private apps get
// 100 to 190 per 10 seconds depending on the plan. Off by default.
func WithRateLimit(n int, window time.Duration) Option {
	return optionFunc(func(s *Server) { s.rate = &rateWindow{n: n, d: window} })
}

// WithSearchRateLimit limits search requests to n per second (HubSpot's search endpoints allow
// a few per second per account). Off by default.
func WithSearchRateLimit(n int) Option {
	return optionFunc(func(s *Server) { s.searchRate = &rateWindow{n: n, d: time.Second} })
}

// WithoutUniqueEmailProperties makes the account refuse (400) custom email properties with
// unique values, for clients that must cope with an account or object type that does not offer
// them.
func WithoutUniqueEmailProperties() Option {
	return optionFunc(func(s *Server) { s.noUniqueEmails = true })
}

// WithSearchLag makes records visible to search only d after they were created, as HubSpot's
// search index lags writes by seconds. Reads by id and unique-value checks see them at once.
func WithSearchLag(d time.Duration) Option {
	return optionFunc(func(s *Server) { s.searchLag = d })
}

// Server is an in-memory HubSpot account behind an httptest server. It is safe for concurrent
// use.
type Server struct {
	srv        *httptest.Server
	now        func() time.Time
	tokenTTL   time.Duration
	searchLag  time.Duration
	rate       *rateWindow
	searchRate *rateWindow

	noUniqueEmails bool

	clientID, clientSecret, refreshToken, static string

	mu          sync.Mutex
	seq         int64
	objects     map[string]map[string]*Object
	order       map[string][]*Object                       // by type, in id order
	index       map[string]map[string]map[string][]*Object // type → property → lower-case value → records
	schema      map[string]map[string]*property
	groups      map[string]map[string]bool
	tokens      map[string]time.Time // access token → expiry; zero never expires
	faults      []fault
	tokenFaults []fault
	calls       map[string]int
	maxBatch    int
}

// NewServer starts a server and closes it when the test ends.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{
		now:          time.Now,
		tokenTTL:     DefaultTokenTTL,
		clientID:     randomID(),
		clientSecret: randomID(),
		refreshToken: randomID(),
		static:       "pat-na1-" + randomID(),
		seq:          100,
		objects:      map[string]map[string]*Object{Contacts: {}, Companies: {}, Emails: {}},
		order:        map[string][]*Object{},
		index:        map[string]map[string]map[string][]*Object{Contacts: {}, Companies: {}, Emails: {}},
		schema:       defaultSchema(),
		groups: map[string]map[string]bool{
			Contacts: {"contactinformation": true}, Companies: {"companyinformation": true}, Emails: {"emailinformation": true},
		},
		tokens: map[string]time.Time{},
		calls:  map[string]int{},
	}
	for _, o := range opts {
		o.apply(s)
	}
	s.tokens[s.static] = time.Time{}
	mux := http.NewServeMux()
	s.handle(mux, "POST /oauth/v1/token", s.token, false)
	s.handle(mux, "POST /crm/v3/objects/{type}/batch/upsert", s.batchUpsert, true)
	s.handle(mux, "POST /crm/v3/objects/{type}/search", s.search, true)
	s.handle(mux, "POST /crm/v3/objects/{type}", s.create, true)
	s.handle(mux, "GET /crm/v3/objects/{type}/{id}", s.read, true)
	s.handle(mux, "PATCH /crm/v3/objects/{type}/{id}", s.update, true)
	s.handle(mux, "GET /crm/v3/properties/{type}/{name}", s.readProperty, true)
	s.handle(mux, "POST /crm/v3/properties/{type}", s.createProperty, true)
	s.handle(mux, "POST /crm/v3/properties/{type}/groups", s.createGroup, true)
	s.handle(mux, "PUT /crm/v4/objects/{from}/{fromId}/associations/default/{to}/{toId}", s.associateDefault, true)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", fmt.Sprintf("Unable to route %s %s", r.Method, r.URL.Path), nil, nil)
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// URL returns the base URL (the connector's BaseURL).
func (s *Server) URL() string { return s.srv.URL }

// Client returns an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Token returns the account's private-app access token, which never expires.
func (s *Server) Token() string { return s.static }

// OAuth returns the OAuth app's client id and secret and the refresh token the token endpoint
// accepts.
func (s *Server) OAuth() (clientID, clientSecret, refreshToken string) {
	return s.clientID, s.clientSecret, s.refreshToken
}

// Target returns the crmtest target of connector c, which must write to s.
func (s *Server) Target(c crm.Connector) crmtest.Target {
	return crmtest.Target{Connector: c, Objects: s.Objects, FailNext: s.FailNext}
}

// FailNext makes the next n authorized API requests (not token requests) fail with status and
// HubSpot's error body for it, with the Retry-After header set to retryAfter unless it is empty.
// Faults queue up behind earlier ones. An unauthorized request does not consume a fault.
func (s *Server) FailNext(n, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, fault{status: status, retryAfter: retryAfter})
	}
}

// FailTokenNext makes the next n token requests fail with status.
func (s *Server) FailTokenNext(n, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.tokenFaults = append(s.tokenFaults, fault{status: status, retryAfter: retryAfter})
	}
}

// ExpireTokens expires every OAuth access token issued so far, as if their 30 minutes had
// passed; the next request with one gets 401 EXPIRED_AUTHENTICATION.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.now().Add(-time.Second)
	for tok, exp := range s.tokens {
		if !exp.IsZero() {
			s.tokens[tok] = past
		}
	}
}

// DefineProperty defines a custom text property on an object type, as an admin would in
// HubSpot's settings (the connector's prerequisite when it may not create properties).
func (s *Server) DefineProperty(objectType, name string, unique bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.schema[objectType][name] = &property{
		Name: name, Label: name, Type: "string", FieldType: "text", GroupName: "emailinformation", HasUniqueValue: unique,
	}
}

// Seed stores a record directly, without validation or uniqueness checks (data that was in the
// account before, duplicates included), and returns its id.
func (s *Server) Seed(objectType string, props map[string]string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store(objectType, maps.Clone(props)).ID
}

// Objects returns how many emails hold externalID in [ExternalIDProperty].
func (s *Server) Objects(externalID string) int {
	return len(s.find(Emails, ExternalIDProperty, externalID))
}

// Email returns the first email holding externalID in [ExternalIDProperty].
func (s *Server) Email(externalID string) (Object, bool) {
	objs := s.find(Emails, ExternalIDProperty, externalID)
	if len(objs) == 0 {
		return Object{}, false
	}
	return objs[0], true
}

// Records returns the records of an object type, in id order.
func (s *Server) Records(objectType string) []Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Object, 0, len(s.objects[objectType]))
	for _, o := range s.sorted(objectType) {
		out = append(out, o.clone())
	}
	return out
}

// Record returns one record by type and id.
func (s *Server) Record(objectType, id string) (Object, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[objectType][id]
	if !ok {
		return Object{}, false
	}
	return o.clone(), true
}

// Calls returns how many requests arrived for a route, named by method and path pattern with
// the object type filled in: "POST /crm/v3/objects/emails/search",
// "PATCH /crm/v3/objects/emails/{id}", "POST /oauth/v1/token",
// "PUT /crm/v4/objects/contacts/{fromId}/associations/default/companies/{toId}". Rejected and
// failed requests count.
func (s *Server) Calls(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[route]
}

// TotalCalls returns how many API and token requests arrived.
func (s *Server) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		n += c
	}
	return n
}

// MaxBatch returns the most inputs a batch call carried (accepted or not).
func (s *Server) MaxBatch() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxBatch
}

func (s *Server) find(objectType, prop, value string) []Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Object
	for _, o := range s.index[objectType][prop][strings.ToLower(value)] {
		if o.Properties[prop] == value {
			out = append(out, o.clone())
		}
	}
	return out
}

// sorted returns the records of a type by ascending id; the caller must not modify the slice.
// s.mu must be held.
func (s *Server) sorted(objectType string) []*Object { return s.order[objectType] }

// reindex moves o in the value index from the old to its current property values. s.mu must
// be held.
func (s *Server) reindex(o *Object, old map[string]string) {
	idx := s.index[o.Type]
	for k, v := range old {
		if nv, ok := o.Properties[k]; ok && nv == v {
			continue
		}
		key := strings.ToLower(v)
		idx[k][key] = slices.DeleteFunc(idx[k][key], func(x *Object) bool { return x == o })
	}
	for k, v := range o.Properties {
		if ov, ok := old[k]; ok && ov == v {
			continue
		}
		if idx[k] == nil {
			idx[k] = map[string][]*Object{}
		}
		key := strings.ToLower(v)
		// Records are indexed in id order: a new record has the highest id, and an updated one
		// is placed by its id.
		at, _ := slices.BinarySearchFunc(idx[k][key], o, byID)
		idx[k][key] = slices.Insert(idx[k][key], at, o)
	}
}

func byID(a, b *Object) int {
	na, _ := strconv.ParseInt(a.ID, 10, 64)
	nb, _ := strconv.ParseInt(b.ID, 10, 64)
	return int(min(max(na-nb, -1), 1))
}

// store adds a record with the next id. s.mu must be held.
func (s *Server) store(objectType string, props map[string]string) *Object {
	s.seq++
	id := strconv.FormatInt(s.seq, 10)
	now := s.now().UTC()
	o := &Object{Type: objectType, ID: id, Properties: props, Associations: map[string][]string{}, CreatedAt: now, UpdatedAt: now}
	o.Properties["hs_object_id"] = id
	created := now.Format(timestampLayout)
	switch objectType {
	case Emails:
		o.Properties["hs_createdate"], o.Properties["hs_lastmodifieddate"] = created, created
		deriveEmailHeaders(o.Properties)
	case Contacts:
		o.Properties["createdate"], o.Properties["lastmodifieddate"] = created, created
	case Companies:
		o.Properties["createdate"], o.Properties["hs_lastmodifieddate"] = created, created
	}
	s.objects[objectType][id] = o
	s.order[objectType] = append(s.order[objectType], o)
	s.reindex(o, nil)
	return o
}

// modify applies props to o. s.mu must be held.
func (s *Server) modify(o *Object, props map[string]string) {
	old := maps.Clone(o.Properties)
	defer s.reindex(o, old)
	maps.Copy(o.Properties, props)
	o.UpdatedAt = s.now().UTC()
	stamp := o.UpdatedAt.Format(timestampLayout)
	switch o.Type {
	case Emails:
		o.Properties["hs_lastmodifieddate"] = stamp
		deriveEmailHeaders(o.Properties)
	case Contacts:
		o.Properties["lastmodifieddate"] = stamp
	case Companies:
		o.Properties["hs_lastmodifieddate"] = stamp
	}
}

// associate links two records both ways. s.mu must be held.
func associate(a, b *Object) {
	if !slices.Contains(a.Associations[b.Type], b.ID) {
		a.Associations[b.Type] = append(a.Associations[b.Type], b.ID)
	}
	if !slices.Contains(b.Associations[a.Type], a.ID) {
		b.Associations[a.Type] = append(b.Associations[a.Type], a.ID)
	}
}

// byUnique returns the record of objectType whose unique property prop holds value. s.mu must
// be held.
func (s *Server) byUnique(objectType, prop, value string) *Object {
	if value == "" {
		return nil
	}
	if objs := s.index[objectType][prop][strings.ToLower(value)]; len(objs) > 0 {
		return objs[0]
	}
	return nil
}

// handle registers an endpoint behind the request pipeline: call counting, and for the API
// (not the token endpoint) authorization, injected faults and rate limits.
func (s *Server) handle(mux *http.ServeMux, pattern string, h func(http.ResponseWriter, *http.Request, []byte), api bool) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		route := pattern
		for _, name := range []string{"type", "from", "to"} {
			if v := r.PathValue(name); v != "" {
				route = strings.Replace(route, "{"+name+"}", canonicalType(v), 1)
			}
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
		_ = r.Body.Close()
		s.mu.Lock()
		s.calls[route]++
		s.mu.Unlock()
		if err != nil {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Unable to read the request body", nil, nil)
			return
		}
		if !api {
			h(w, r, body)
			return
		}
		if !s.authorized(w, r) || s.injected(w) || s.limited(w, strings.HasSuffix(pattern, "/search")) {
			return
		}
		if len(body) > 0 && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			writeError(w, http.StatusUnsupportedMediaType, "VALIDATION_ERROR",
				fmt.Sprintf("Content type '%s' not supported", r.Header.Get("Content-Type")), nil, nil)
			return
		}
		h(w, r, body)
	})
}

func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	exp, known := s.tokens[tok]
	now := s.now()
	s.mu.Unlock()
	switch {
	case !ok || !known:
		writeError(w, http.StatusUnauthorized, "INVALID_AUTHENTICATION",
			"Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview", nil, nil)
		return false
	case !exp.IsZero() && !now.Before(exp):
		writeError(w, http.StatusUnauthorized, "EXPIRED_AUTHENTICATION",
			fmt.Sprintf("The OAuth token used to make this call expired %d second(s) ago.", int(now.Sub(exp).Seconds())), nil, nil)
		return false
	}
	return true
}

// injected answers with the next queued fault, if any.
func (s *Server) injected(w http.ResponseWriter) bool {
	s.mu.Lock()
	if len(s.faults) == 0 {
		s.mu.Unlock()
		return false
	}
	f := s.faults[0]
	s.faults = s.faults[1:]
	s.mu.Unlock()
	writeFault(w, f)
	return true
}

// writeFault writes HubSpot's error body for an injected status.
func writeFault(w http.ResponseWriter, f fault) {
	if f.retryAfter != "" {
		w.Header().Set("Retry-After", f.retryAfter)
	}
	switch {
	case f.status == http.StatusTooManyRequests:
		writeRateLimited(w, "TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.", "")
	case f.status == http.StatusUnauthorized:
		writeError(w, f.status, "EXPIRED_AUTHENTICATION", "The OAuth token used to make this call expired 1 second(s) ago.", nil, nil)
	case f.status == http.StatusForbidden:
		writeError(w, f.status, "MISSING_SCOPES", "This app hasn't been granted all required scopes to make this call.",
			[]errorDetail{{Message: "One or more of the following scopes are required.", Context: map[string][]string{"requiredGranularScopes": {"crm.objects.contacts.write"}}}}, nil)
	case f.status == http.StatusConflict:
		writeError(w, f.status, "CONFLICT", "Conflict", nil, nil)
	case f.status >= 500:
		writeError(w, f.status, "INTERNAL_ERROR", "internal error", nil, nil)
	default:
		writeError(w, f.status, "VALIDATION_ERROR", http.StatusText(f.status), nil, nil)
	}
}

// limited applies the rolling request limit and, for searches, the per-second search limit.
func (s *Server) limited(w http.ResponseWriter, search bool) bool {
	s.mu.Lock()
	now := s.now()
	var wait time.Duration
	policy, msg := "", ""
	if search && s.searchRate != nil {
		if ok, d := s.searchRate.admit(now); !ok {
			wait, policy, msg = d, "SECONDLY", "You have reached your secondly limit."
		}
	}
	if policy == "" && s.rate != nil {
		if ok, d := s.rate.admit(now); !ok {
			wait, policy, msg = d, "TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit."
		}
	}
	s.mu.Unlock()
	if policy == "" {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	writeRateLimited(w, policy, msg, "")
	return true
}

// rateWindow admits at most n events within any window d.
type rateWindow struct {
	n  int
	d  time.Duration
	at []time.Time
}

func (rw *rateWindow) admit(now time.Time) (bool, time.Duration) {
	cut := now.Add(-rw.d)
	i := 0
	for i < len(rw.at) && !rw.at[i].After(cut) {
		i++
	}
	rw.at = rw.at[i:]
	if len(rw.at) >= rw.n {
		return false, max(rw.at[0].Sub(cut), time.Second)
	}
	rw.at = append(rw.at, now)
	return true, 0
}

// token is the OAuth token endpoint (refresh_token grant).
func (s *Server) token(w http.ResponseWriter, r *http.Request, body []byte) {
	s.mu.Lock()
	var f *fault
	if len(s.tokenFaults) > 0 {
		f = &s.tokenFaults[0]
		s.tokenFaults = s.tokenFaults[1:]
	}
	s.mu.Unlock()
	if f != nil {
		writeFault(w, *f)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		writeOAuthError(w, "BAD_REQUEST", "the body must be application/x-www-form-urlencoded")
		return
	}
	form, err := url.ParseQuery(string(body))
	switch {
	case err != nil:
		writeOAuthError(w, "BAD_REQUEST", "unreadable form")
		return
	case form.Get("grant_type") != "refresh_token":
		writeOAuthError(w, "BAD_GRANT_TYPE", "grant_type must be refresh_token")
		return
	case form.Get("client_id") != s.clientID:
		writeOAuthError(w, "BAD_CLIENT_ID", "missing or invalid client_id")
		return
	case form.Get("client_secret") != s.clientSecret:
		writeOAuthError(w, "BAD_CLIENT_SECRET", "missing or invalid client_secret")
		return
	case form.Get("refresh_token") != s.refreshToken:
		writeOAuthError(w, "BAD_REFRESH_TOKEN", "missing or unknown refresh token")
		return
	}
	tok := "CO" + randomID() + randomID()
	s.mu.Lock()
	s.tokens[tok] = s.now().Add(s.tokenTTL)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "bearer", "refresh_token": s.refreshToken, "access_token": tok,
		"expires_in": int(s.tokenTTL.Seconds()),
	})
}

func writeOAuthError(w http.ResponseWriter, status, message string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{"status": status, "message": message, "correlationId": correlationID()})
}

// objectType resolves the {type} path value, answering 400 for an unknown one.
func objectType(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	t := canonicalType(r.PathValue(name))
	if t == "" {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Unable to infer object type from: %s", r.PathValue(name)), nil, nil)
		return "", false
	}
	return t, true
}

func canonicalType(v string) string {
	switch strings.ToLower(v) {
	case "contacts", "contact", "0-1":
		return Contacts
	case "companies", "company", "0-2":
		return Companies
	case "emails", "email", "0-49":
		return Emails
	}
	return ""
}

// decode reads a JSON body, answering HubSpot's 400 for invalid JSON.
func decode(w http.ResponseWriter, body []byte, v any) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON: "+err.Error(), nil, nil)
		return false
	}
	return true
}

type batchInput struct {
	ID         string            `json:"id"`
	IDProperty string            `json:"idProperty"`
	Properties map[string]string `json:"properties"`
}

func (s *Server) batchUpsert(w http.ResponseWriter, r *http.Request, body []byte) {
	typ, ok := objectType(w, r, "type")
	if !ok {
		return
	}
	var req struct {
		Inputs []batchInput `json:"inputs"`
	}
	if !decode(w, body, &req) {
		return
	}
	s.mu.Lock()
	s.maxBatch = max(s.maxBatch, len(req.Inputs))
	s.mu.Unlock()
	switch {
	case len(req.Inputs) == 0:
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "inputs must not be empty", nil, nil)
		return
	case len(req.Inputs) > MaxBatchInputs:
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR",
			fmt.Sprintf("Too many inputs: %d. A batch may have at most %d inputs.", len(req.Inputs), MaxBatchInputs), nil, nil)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var dups []string
	var details []errorDetail
	for _, in := range req.Inputs {
		def := s.schema[typ][in.IDProperty]
		if in.IDProperty == "" || def == nil || !def.HasUniqueValue {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR",
				fmt.Sprintf("idProperty '%s' is not a unique value property of %s", in.IDProperty, typ), nil, nil)
			return
		}
		key := strings.ToLower(in.ID)
		if seen[key] {
			dups = append(dups, in.ID)
		}
		seen[key] = true
		props := maps.Clone(in.Properties)
		if props == nil {
			props = map[string]string{}
		}
		if v, ok := props[in.IDProperty]; ok && !strings.EqualFold(v, in.ID) {
			details = append(details, errorDetail{Message: fmt.Sprintf("%s %q differs from the input id %q", in.IDProperty, v, in.ID), Code: "INVALID_ID"})
		}
		props[in.IDProperty] = in.ID
		details = append(details, s.validate(typ, props, false)...)
	}
	if len(dups) > 0 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Duplicate IDs found in batch input: %v", dups), nil, nil)
		return
	}
	if len(details) > 0 {
		writePropertyErrors(w, details)
		return
	}
	started := s.now().UTC()
	results := make([]map[string]any, 0, len(req.Inputs))
	for _, in := range req.Inputs {
		props := normalize(maps.Clone(in.Properties))
		if props == nil {
			props = map[string]string{}
		}
		props[in.IDProperty] = normalizeValue(in.IDProperty, in.ID)
		o, isNew := s.byUnique(typ, in.IDProperty, in.ID), false
		if o == nil {
			o, isNew = s.store(typ, props), true
		} else {
			s.modify(o, props)
		}
		res := objectJSON(o, nil)
		res["new"] = isNew
		results = append(results, res)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "COMPLETE", "results": results,
		"startedAt": started.Format(time.RFC3339Nano), "completedAt": s.now().UTC().Format(time.RFC3339Nano),
	})
}

// searchGroup is one filter group: its filters all hold (AND); groups are alternatives (OR).
type searchGroup struct {
	Filters []searchFilter `json:"filters"`
}

type searchFilter struct {
	PropertyName string   `json:"propertyName"`
	Operator     string   `json:"operator"`
	Value        *string  `json:"value"`
	Values       []string `json:"values"`
}

func (s *Server) search(w http.ResponseWriter, r *http.Request, body []byte) {
	typ, ok := objectType(w, r, "type")
	if !ok {
		return
	}
	var req struct {
		FilterGroups []searchGroup `json:"filterGroups"`
		Properties   []string      `json:"properties"`
		Limit        *int          `json:"limit"`
		After        string        `json:"after"`
	}
	if !decode(w, body, &req) {
		return
	}
	limit := 10
	if req.Limit != nil {
		limit = *req.Limit
	}
	total := 0
	for _, g := range req.FilterGroups {
		total += len(g.Filters)
		if len(g.Filters) > 10 {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "A filter group may have at most 10 filters", nil, nil)
			return
		}
	}
	switch {
	case len(req.FilterGroups) > 5:
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "A search may have at most 5 filter groups", nil, nil)
		return
	case total > 25:
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "A search may have at most 25 filters", nil, nil)
		return
	case limit < 0 || limit > MaxSearchLimit:
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("limit must be between 0 and %d", MaxSearchLimit), nil, nil)
		return
	}
	after := 0
	if req.After != "" {
		var err error
		if after, err = strconv.Atoi(req.After); err != nil || after < 0 {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "after must be a paging cursor", nil, nil)
			return
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range req.FilterGroups {
		for _, f := range g.Filters {
			if s.schema[typ][f.PropertyName] == nil {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR",
					fmt.Sprintf("There was a problem with the request. Property '%s' does not exist", f.PropertyName), nil, nil)
				return
			}
			switch f.Operator {
			case "EQ", "NEQ", "IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY":
			default:
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Unsupported operator '%s'", f.Operator), nil, nil)
				return
			}
		}
	}
	for _, p := range req.Properties {
		if s.schema[typ][p] == nil {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Property '%s' does not exist", p), nil, nil)
			return
		}
	}
	visibleBefore := s.now().Add(-s.searchLag)
	var matches []*Object
	for _, o := range s.candidates(typ, req.FilterGroups) {
		if o.CreatedAt.After(visibleBefore) {
			continue
		}
		if len(req.FilterGroups) == 0 || slices.ContainsFunc(req.FilterGroups, func(g searchGroup) bool {
			return !slices.ContainsFunc(g.Filters, func(f searchFilter) bool { return !matchFilter(o, f) })
		}) {
			matches = append(matches, o)
		}
	}
	page := matches[min(after, len(matches)):]
	resp := map[string]any{"total": len(matches)}
	if len(page) > limit {
		page = page[:limit]
		resp["paging"] = map[string]any{"next": map[string]any{"after": strconv.Itoa(after + limit)}}
	}
	props := slices.Concat(defaultSearchProperties[typ], req.Properties)
	results := make([]map[string]any, 0, len(page))
	for _, o := range page {
		results = append(results, objectJSON(o, props))
	}
	resp["results"] = results
	writeJSON(w, http.StatusOK, resp)
}

// defaultSearchProperties are returned by every search, as HubSpot does.
var defaultSearchProperties = map[string][]string{
	Contacts:  {"createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"},
	Companies: {"createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"},
	Emails:    {"hs_createdate", "hs_lastmodifieddate", "hs_object_id"},
}

// candidates narrows a search through the value index when every filter group has an EQ
// filter, in id order; otherwise it is every record of the type.
func (s *Server) candidates(typ string, groups []searchGroup) []*Object {
	if len(groups) == 0 {
		return s.sorted(typ)
	}
	var out []*Object
	for _, g := range groups {
		i := slices.IndexFunc(g.Filters, func(f searchFilter) bool { return f.Operator == "EQ" && f.Value != nil })
		if i < 0 {
			return s.sorted(typ)
		}
		f := g.Filters[i]
		out = append(out, s.index[typ][f.PropertyName][strings.ToLower(*f.Value)]...)
	}
	slices.SortFunc(out, byID)
	return slices.Compact(out)
}

func matchFilter(o *Object, f searchFilter) bool {
	v, has := o.Properties[f.PropertyName]
	has = has && v != ""
	want := ""
	if f.Value != nil {
		want = *f.Value
	}
	switch f.Operator {
	case "EQ":
		return has && strings.EqualFold(v, want)
	case "NEQ":
		return !has || !strings.EqualFold(v, want)
	case "IN":
		return has && slices.ContainsFunc(f.Values, func(x string) bool { return strings.EqualFold(v, x) })
	case "HAS_PROPERTY":
		return has
	case "NOT_HAS_PROPERTY":
		return !has
	}
	return false
}

// flexID is an object id given as a JSON string or number.
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*f = flexID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = flexID(n.String())
	return nil
}

type createRequest struct {
	Properties   map[string]string `json:"properties"`
	Associations []struct {
		To struct {
			ID flexID `json:"id"`
		} `json:"to"`
		Types []struct {
			AssociationCategory string `json:"associationCategory"`
			AssociationTypeID   int    `json:"associationTypeId"`
		} `json:"types"`
	} `json:"associations"`
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, body []byte) {
	typ, ok := objectType(w, r, "type")
	if !ok {
		return
	}
	var req createRequest
	if !decode(w, body, &req) {
		return
	}
	if req.Properties == nil {
		req.Properties = map[string]string{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if details := s.validate(typ, req.Properties, true); len(details) > 0 {
		writePropertyErrors(w, details)
		return
	}
	var targets []*Object
	for _, a := range req.Associations {
		if len(a.Types) == 0 {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "an association needs at least one type", nil, nil)
			return
		}
		for _, t := range a.Types {
			to, known := associationTypes[typ][t.AssociationTypeID]
			if !known || t.AssociationCategory != "HUBSPOT_DEFINED" {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR",
					fmt.Sprintf("%s/%d is not a valid association type from %s", t.AssociationCategory, t.AssociationTypeID, typ), nil, nil)
				return
			}
			target, exists := s.objects[to][string(a.To.ID)]
			if !exists {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR",
					fmt.Sprintf("One or more associations are invalid: %s %s does not exist", to, a.To.ID), nil, nil)
				return
			}
			targets = append(targets, target)
		}
	}
	if s.conflict(w, typ, req.Properties, nil) {
		return
	}
	o := s.store(typ, normalize(maps.Clone(req.Properties)))
	for _, t := range targets {
		associate(o, t)
	}
	writeJSON(w, http.StatusCreated, objectJSON(o, nil))
}

// conflict answers 409 when a unique property value of props is held by another record.
func (s *Server) conflict(w http.ResponseWriter, typ string, props map[string]string, self *Object) bool {
	for name, v := range props {
		def := s.schema[typ][name]
		if def == nil || !def.HasUniqueValue || v == "" {
			continue
		}
		if o := s.byUnique(typ, name, v); o != nil && o != self {
			msg := fmt.Sprintf("A record with %s '%s' already exists. Existing ID: %s", name, v, o.ID)
			if typ == Contacts && name == "email" {
				msg = "Contact already exists. Existing ID: " + o.ID
			}
			writeError(w, http.StatusConflict, "CONFLICT", msg, nil, nil)
			return true
		}
	}
	return false
}

// lookup resolves {id}, by object id or by the unique property named in ?idProperty=.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request, typ string) *Object {
	id := r.PathValue("id")
	if p := r.URL.Query().Get("idProperty"); p != "" && p != "hs_object_id" {
		def := s.schema[typ][p]
		if def == nil || !def.HasUniqueValue {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("idProperty '%s' is not a unique value property of %s", p, typ), nil, nil)
			return nil
		}
		if o := s.byUnique(typ, p, id); o != nil {
			return o
		}
	} else if o, ok := s.objects[typ][id]; ok {
		return o
	}
	writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found", nil, nil)
	return nil
}

func (s *Server) read(w http.ResponseWriter, r *http.Request, _ []byte) {
	typ, ok := objectType(w, r, "type")
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.lookup(w, r, typ); o != nil {
		var props []string
		if p := r.URL.Query().Get("properties"); p != "" {
			props = strings.Split(p, ",")
		}
		writeJSON(w, http.StatusOK, objectJSON(o, props))
	}
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, body []byte) {
	typ, ok := objectType(w, r, "type")
	if !ok {
		return
	}
	var req struct {
		Properties map[string]string `json:"properties"`
	}
	if !decode(w, body, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.lookup(w, r, typ)
	if o == nil {
		return
	}
	if details := s.validate(typ, req.Properties, false); len(details) > 0 {
		writePropertyErrors(w, details)
		return
	}
	if s.conflict(w, typ, req.Properties, o) {
		return
	}
	s.modify(o, normalize(maps.Clone(req.Properties)))
	writeJSON(w, http.StatusOK, objectJSON(o, nil))
}

func (s *Server) associateDefault(w http.ResponseWriter, r *http.Request, _ []byte) {
	from, ok := objectType(w, r, "from")
	if !ok {
		return
	}
	to, ok := objectType(w, r, "to")
	if !ok {
		return
	}
	typeID, ok := defaultAssociation[from][to]
	if !ok {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("no default association from %s to %s", from, to), nil, nil)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, okA := s.objects[from][r.PathValue("fromId")]
	b, okB := s.objects[to][r.PathValue("toId")]
	if !okA || !okB {
		writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "One or more of the records to associate do not exist", nil, nil)
		return
	}
	associate(a, b)
	now := s.now().UTC().Format(time.RFC3339Nano)
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "COMPLETE",
		"results": []map[string]any{{
			"from": map[string]string{"id": a.ID}, "to": map[string]string{"id": b.ID},
			"associationSpec": map[string]any{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": typeID},
		}},
		"startedAt": now, "completedAt": now,
	})
}

func (s *Server) readProperty(w http.ResponseWriter, r *http.Request, _ []byte) {
	typ, ok := objectType(w, r, "type")
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.schema[typ][r.PathValue("name")]
	if p == nil {
		writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", fmt.Sprintf("Unable to find property %s for object type %s", r.PathValue("name"), typ), nil, nil)
		return
	}
	writeJSON(w, http.StatusOK, propertyJSON(p))
}

func propertyJSON(p *property) map[string]any {
	opts := p.Options
	if opts == nil {
		opts = []option{}
	}
	return map[string]any{
		"name": p.Name, "label": p.Label, "type": p.Type, "fieldType": p.FieldType, "groupName": p.GroupName,
		"description": p.Description, "hasUniqueValue": p.HasUniqueValue, "hubspotDefined": p.HubspotDefined,
		"options": opts, "modificationMetadata": map[string]bool{"readOnlyValue": p.readOnly, "archivable": !p.HubspotDefined},
	}
}

var internalName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func (s *Server) createProperty(w http.ResponseWriter, r *http.Request, body []byte) {
	typ, ok := objectType(w, r, "type")
	if !ok {
		return
	}
	var p property
	if !decode(w, body, &p) {
		return
	}
	var details []errorDetail
	req := func(field, v string) {
		if v == "" {
			details = append(details, errorDetail{Message: field + " is required", Code: "REQUIRED_FIELD", In: field})
		}
	}
	req("name", p.Name)
	req("label", p.Label)
	req("type", p.Type)
	req("fieldType", p.FieldType)
	req("groupName", p.GroupName)
	if p.Name != "" && (!internalName.MatchString(p.Name) || strings.HasPrefix(p.Name, "hs_")) {
		details = append(details, errorDetail{Message: "name must be lower-case letters, digits and underscores and not start with hs_", Code: "INVALID_NAME", In: "name"})
	}
	if p.Type != "" && !slices.Contains([]string{"string", "number", "date", "datetime", "enumeration", "bool"}, p.Type) {
		details = append(details, errorDetail{Message: "unknown type " + p.Type, Code: "INVALID_TYPE", In: "type"})
	}
	if p.HasUniqueValue && typ == Emails && s.noUniqueEmails {
		details = append(details, errorDetail{Message: "unique values are not supported for this object type", Code: "INVALID_UNIQUE", In: "hasUniqueValue"})
	}
	if p.HasUniqueValue && p.Type != "string" && p.Type != "number" {
		details = append(details, errorDetail{Message: "only string and number properties can require unique values", Code: "INVALID_UNIQUE", In: "hasUniqueValue"})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.GroupName != "" && !s.groups[typ][p.GroupName] {
		details = append(details, errorDetail{Message: fmt.Sprintf("property group %s does not exist", p.GroupName), Code: "INVALID_GROUP", In: "groupName"})
	}
	if len(details) > 0 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid property definition", details, nil)
		return
	}
	if s.schema[typ][p.Name] != nil {
		writeError(w, http.StatusConflict, "OBJECT_ALREADY_EXISTS", fmt.Sprintf("Property named '%s' already exists.", p.Name), nil, nil)
		return
	}
	p.HubspotDefined = false
	s.schema[typ][p.Name] = &p
	writeJSON(w, http.StatusCreated, propertyJSON(&p))
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request, body []byte) {
	typ, ok := objectType(w, r, "type")
	if !ok {
		return
	}
	var g struct {
		Name         string `json:"name"`
		Label        string `json:"label"`
		DisplayOrder int    `json:"displayOrder"`
	}
	if !decode(w, body, &g) {
		return
	}
	if !internalName.MatchString(g.Name) || g.Label == "" {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "a property group needs a lower-case name and a label", nil, nil)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups[typ][g.Name] {
		writeError(w, http.StatusConflict, "OBJECT_ALREADY_EXISTS", fmt.Sprintf("Property group named '%s' already exists.", g.Name), nil, nil)
		return
	}
	s.groups[typ][g.Name] = true
	writeJSON(w, http.StatusCreated, map[string]any{"name": g.Name, "label": g.Label, "displayOrder": g.DisplayOrder, "archived": false})
}

// validate checks property values against the schema. s.mu must be held.
func (s *Server) validate(typ string, props map[string]string, creating bool) []errorDetail {
	var out []errorDetail
	bad := func(name, code, msg string) {
		out = append(out, errorDetail{Message: msg, Code: code, Context: map[string][]string{"propertyName": {name}}})
	}
	names := slices.Sorted(maps.Keys(props))
	for _, name := range names {
		v := props[name]
		def := s.schema[typ][name]
		switch {
		case def == nil:
			bad(name, "PROPERTY_DOESNT_EXIST", fmt.Sprintf("Property \"%s\" does not exist", name))
			continue
		case def.readOnly:
			bad(name, "READ_ONLY_VALUE", fmt.Sprintf("%s is a read only property; its value cannot be set.", name))
			continue
		case v == "":
			continue
		case utf8.RuneCountInString(v) > MaxPropertyChars:
			bad(name, "INVALID_LENGTH", fmt.Sprintf("%s is %d characters long; the limit is %d", name, utf8.RuneCountInString(v), MaxPropertyChars))
			continue
		}
		switch {
		case name == "email" && typ == Contacts:
			if a, err := mail.ParseAddress(v); err != nil || a.Address != v || !strings.Contains(v[strings.LastIndex(v, "@"):], ".") {
				bad(name, "INVALID_EMAIL", fmt.Sprintf("Email address %s is invalid", v))
			}
		case name == "hubspot_owner_id":
			if _, err := strconv.ParseUint(v, 10, 64); err != nil {
				bad(name, "INVALID_OWNER_ID", fmt.Sprintf("%s was not a valid owner id", v))
			}
		case def.Type == "number":
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				bad(name, "INVALID_DECIMAL", fmt.Sprintf("%s was not a valid number", v))
			}
		case def.Type == "datetime" || def.Type == "date":
			if _, err := parseTimestamp(v); err != nil {
				bad(name, "INVALID_DATE", fmt.Sprintf("%s was not a valid date or time; use ISO 8601 or Unix milliseconds", v))
			}
		case def.Type == "enumeration" && len(def.Options) > 0:
			if !slices.ContainsFunc(def.Options, func(o option) bool { return o.Value == v }) {
				bad(name, "INVALID_OPTION", fmt.Sprintf("%s was not one of the allowed options", v))
			}
		}
	}
	if creating {
		for _, def := range s.schema[typ] {
			if def.required && props[def.Name] == "" {
				bad(def.Name, "REQUIRED_PROPERTY", fmt.Sprintf("%s is required", def.Name))
			}
		}
	}
	return out
}

// normalize stores values the way HubSpot returns them: emails lower-case, datetimes as
// ISO 8601 UTC with milliseconds.
func normalize(props map[string]string) map[string]string {
	for k, v := range props {
		props[k] = normalizeValue(k, v)
	}
	return props
}

func normalizeValue(name, v string) string {
	switch name {
	case "email":
		return strings.ToLower(v)
	case "hs_timestamp":
		if t, err := parseTimestamp(v); err == nil {
			return t.UTC().Format(timestampLayout)
		}
	}
	return v
}

const timestampLayout = "2006-01-02T15:04:05.000Z"

func parseTimestamp(v string) (time.Time, error) {
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, v)
}

// deriveEmailHeaders fills the read-only hs_email_from_* and hs_email_to_* properties from
// hs_email_headers, as HubSpot does; an unreadable value leaves them as they are.
func deriveEmailHeaders(props map[string]string) {
	type addr struct {
		Email     string `json:"email"`
		FirstName string `json:"firstName"`
		LastName  string `json:"lastName"`
	}
	var h struct {
		From *addr  `json:"from"`
		To   []addr `json:"to"`
	}
	if err := json.Unmarshal([]byte(props["hs_email_headers"]), &h); err != nil {
		return
	}
	if h.From != nil {
		props["hs_email_from_email"], props["hs_email_from_firstname"], props["hs_email_from_lastname"] = h.From.Email, h.From.FirstName, h.From.LastName
	}
	var emails, firsts, lasts []string
	for _, a := range h.To {
		emails, firsts, lasts = append(emails, a.Email), append(firsts, a.FirstName), append(lasts, a.LastName)
	}
	props["hs_email_to_email"], props["hs_email_to_firstname"], props["hs_email_to_lastname"] = strings.Join(emails, ";"), strings.Join(firsts, ";"), strings.Join(lasts, ";")
}

// objectJSON renders a record; props limits the properties (nil: all set ones). Requested
// properties without a value are null, as in HubSpot's answers.
func objectJSON(o *Object, props []string) map[string]any {
	out := map[string]*string{}
	if props == nil {
		for k, v := range o.Properties {
			out[k] = &v
		}
	} else {
		for _, k := range props {
			if v, ok := o.Properties[k]; ok {
				out[k] = &v
			} else {
				out[k] = nil
			}
		}
	}
	return map[string]any{
		"id": o.ID, "properties": out, "archived": false,
		"createdAt": o.CreatedAt.Format(time.RFC3339Nano), "updatedAt": o.UpdatedAt.Format(time.RFC3339Nano),
	}
}

// errorDetail is one entry of errors[] in HubSpot's error JSON.
type errorDetail struct {
	Message string              `json:"message"`
	Code    string              `json:"code,omitempty"`
	In      string              `json:"in,omitempty"`
	Context map[string][]string `json:"context,omitempty"`
}

// writeError writes HubSpot's error JSON.
func writeError(w http.ResponseWriter, status int, category, message string, details []errorDetail, extra map[string]any) {
	body := map[string]any{"status": "error", "message": message, "correlationId": correlationID(), "category": category}
	if details != nil {
		body["errors"] = details
	}
	maps.Copy(body, extra)
	writeJSON(w, status, body)
}

// writePropertyErrors writes the 400 HubSpot answers for invalid property values: the message
// embeds the per-property results, errors[] lists them.
func writePropertyErrors(w http.ResponseWriter, details []errorDetail) {
	type result struct {
		IsValid bool   `json:"isValid"`
		Message string `json:"message"`
		Error   string `json:"error"`
		Name    string `json:"name"`
	}
	rs := make([]result, 0, len(details))
	for _, d := range details {
		name := ""
		if n := d.Context["propertyName"]; len(n) > 0 {
			name = n[0]
		}
		rs = append(rs, result{Message: d.Message, Error: d.Code, Name: name})
	}
	embedded, _ := json.Marshal(rs)
	writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Property values were not valid: "+string(embedded), details, nil)
}

// writeRateLimited writes HubSpot's 429 body. The caller sets Retry-After.
func writeRateLimited(w http.ResponseWriter, policy, message, group string) {
	body := map[string]any{
		"status": "error", "message": message, "errorType": "RATE_LIMIT", "correlationId": correlationID(),
		"policyName": policy, "requestId": correlationID(),
	}
	if group != "" {
		body["groupName"] = group
	}
	writeJSON(w, http.StatusTooManyRequests, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func correlationID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// defaultSchema returns the property definitions of a fresh account (the ones the server
// checks; HubSpot has many more).
func defaultSchema() map[string]map[string]*property {
	text := func(group string, names ...string) map[string]*property {
		m := map[string]*property{}
		for _, n := range names {
			m[n] = &property{Name: n, Label: n, Type: "string", FieldType: "text", GroupName: group, HubspotDefined: true}
		}
		return m
	}
	ro := func(m map[string]*property, typ string, names ...string) {
		for _, n := range names {
			m[n] = &property{Name: n, Label: n, Type: typ, FieldType: "text", HubspotDefined: true, readOnly: true}
		}
	}
	enum := func(name, group string, values ...string) *property {
		p := &property{Name: name, Label: name, Type: "enumeration", FieldType: "select", GroupName: group, HubspotDefined: true}
		for _, v := range values {
			p.Options = append(p.Options, option{Label: v, Value: v})
		}
		return p
	}

	contacts := text("contactinformation", "email", "firstname", "lastname", "phone", "jobtitle", "company", "website", "city", "country")
	contacts["email"].HasUniqueValue = true
	contacts["hubspot_owner_id"] = enum("hubspot_owner_id", "contactinformation")
	contacts["lifecyclestage"] = enum("lifecyclestage", "contactinformation",
		"subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist", "other")
	ro(contacts, "string", "hs_object_id")
	ro(contacts, "datetime", "createdate", "lastmodifieddate")

	companies := text("companyinformation", "name", "domain", "country", "city", "phone", "website", "description")
	companies["numberofemployees"] = &property{Name: "numberofemployees", Label: "Number of Employees", Type: "number", FieldType: "number", GroupName: "companyinformation", HubspotDefined: true}
	companies["industry"] = enum("industry", "companyinformation", "ACCOUNTING", "COMPUTER_SOFTWARE", "FINANCIAL_SERVICES", "HOSPITAL_HEALTH_CARE", "RETAIL")
	companies["hubspot_owner_id"] = enum("hubspot_owner_id", "companyinformation")
	ro(companies, "string", "hs_object_id")
	ro(companies, "datetime", "createdate", "hs_lastmodifieddate")

	emails := text("emailinformation", "hs_email_subject", "hs_email_text", "hs_email_html", "hs_email_headers", "hs_attachment_ids")
	emails["hs_timestamp"] = &property{Name: "hs_timestamp", Label: "Activity date", Type: "datetime", FieldType: "date", GroupName: "emailinformation", HubspotDefined: true, required: true}
	emails["hs_email_direction"] = enum("hs_email_direction", "emailinformation", "EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL")
	emails["hs_email_status"] = enum("hs_email_status", "emailinformation", "BOUNCED", "FAILED", "SCHEDULED", "SENDING", "SENT")
	emails["hubspot_owner_id"] = enum("hubspot_owner_id", "emailinformation")
	ro(emails, "string", "hs_object_id", "hs_email_from_email", "hs_email_from_firstname", "hs_email_from_lastname",
		"hs_email_to_email", "hs_email_to_firstname", "hs_email_to_lastname")
	ro(emails, "datetime", "hs_createdate", "hs_lastmodifieddate")

	return map[string]map[string]*property{Contacts: contacts, Companies: companies, Emails: emails}
}
