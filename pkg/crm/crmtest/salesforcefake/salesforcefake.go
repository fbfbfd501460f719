// Package salesforcefake is a contract server for the parts of the Salesforce REST API and
// OAuth 2.0 token endpoint that crm/salesforce uses, on two httptest servers: a login server
// (POST /services/oauth2/token) and an instance server (/services/data/vXX.X/sobjects/...) whose
// URL the token response names as instance_url, as Salesforce does.
//
// It enforces what the real API enforces, from the public documentation:
//
//   - token endpoint: the JWT bearer grant (RS256 assertion verified against the configured
//     public key; iss = client id, sub = a known username, aud = the login URL, exp in the next
//     three minutes) and the refresh-token grant; failures are 400 with an OAuth error body
//     ({"error":"invalid_grant","error_description":…}).
//   - API auth: a bearer token the token endpoint issued; anything else, or a session ended by
//     [Server.ExpireSessions], is 401 [{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}].
//   - upsert by external id (PATCH sobjects/Type/Field/Value): 201 and created:true for a new
//     record, 200 and created:false for an existing one (204 and no body before API 46.0), 300
//     with the matching record URLs when a non-unique lookup field (Contact.Email) matches
//     several; 404 NOT_FOUND for a field that is not an External ID.
//   - create (POST sobjects/Type), update by id (PATCH sobjects/Type/Id, 204), get by external
//     id or id (GET), with the field rules of describe: unknown fields (INVALID_FIELD),
//     read-only and create-only fields (INVALID_FIELD_FOR_INSERT_UPDATE), required fields
//     (REQUIRED_FIELD_MISSING, e.g. Contact LastName), lengths (STRING_TOO_LONG), e-mail syntax
//     (INVALID_EMAIL_ADDRESS), restricted picklists, lookups (MALFORMED_ID,
//     FIELD_INTEGRITY_EXCEPTION, INVALID_CROSS_REFERENCE_KEY) and unique External ID fields
//     (DUPLICATE_VALUE).
//   - the org's API request allocation ([WithRequestLimit]): 403 REQUEST_LIMIT_EXCEEDED once it
//     is used up, and the Sforce-Limit-Info header on every answer.
//
// Errors are JSON arrays of {message, errorCode, fields}. Faults — 429 with Retry-After, 5xx
// storms, any status, before or after the write commits — are injected with [Server.Inject] and
// [Server.FailNext]; token endpoint faults with [Server.FailTokenNext]. State is in memory; the
// server is safe for concurrent use and serializes writes, so an upsert is atomic.
package salesforcefake

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
)

// Defaults of the org the server plays.
const (
	DefaultClientID = "3MVG9fakeMailpipeConsumerKey"
	DefaultUsername = "integration@mailpipe.test"
	// JWTBearerGrant is the grant_type of the JWT bearer flow (RFC 7523).
	JWTBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// MaxAssertionLifetime is how far in the future a JWT's exp may be.
	MaxAssertionLifetime = 3 * time.Minute
	// clockSkew is the leeway on exp either side.
	clockSkew = 30 * time.Second
	maxBody   = 8 << 20
)

// Option configures a [Server].
type Option interface{ apply(*Server) }

type optionFunc func(*Server)

func (f optionFunc) apply(s *Server) { f(s) }

// WithJWTBearer sets the connected app's consumer key, the user a JWT's sub must name, and the
// certificate's public key assertions are verified with. Without it the server generates a
// 2048-bit key (see [Server.PrivateKey]); tests that start many servers pass one key here to save
// the generation time.
func WithJWTBearer(clientID, username string, pub *rsa.PublicKey) Option {
	return optionFunc(func(s *Server) { s.clientID, s.username, s.pub = clientID, username, pub })
}

// WithRefreshToken sets the refresh token and client secret the refresh-token grant accepts
// (the client id is the one of WithJWTBearer, or DefaultClientID). An empty secret accepts
// requests without one. Without it the server makes a random token and secret.
func WithRefreshToken(clientSecret, refreshToken string) Option {
	return optionFunc(func(s *Server) { s.clientSecret, s.refreshToken = clientSecret, refreshToken })
}

// WithAudience sets the aud a JWT must carry; the default is the login server's URL, standing
// in for https://login.salesforce.com.
func WithAudience(aud string) Option { return optionFunc(func(s *Server) { s.audience = aud }) }

// WithClock sets the clock exp is checked against.
func WithClock(now func() time.Time) Option { return optionFunc(func(s *Server) { s.now = now }) }

// WithRequestLimit sets the org's API request allocation: API request number limit+1 and later
// are answered 403 REQUEST_LIMIT_EXCEEDED ("TotalRequests Limit exceeded."), as Salesforce does
// when the rolling 24-hour allocation is used up. Zero, the default, is unlimited. Token
// requests do not count.
func WithRequestLimit(limit int) Option {
	return optionFunc(func(s *Server) { s.requestLimit = limit })
}

// Fault is an answer [Server.Inject] makes the server give to an API request instead of the
// normal one.
type Fault struct {
	// Status is the HTTP status.
	Status int
	// RetryAfter is the Retry-After header value; empty for none.
	RetryAfter string
	// ErrorCode and Message make the error body; empty picks what Salesforce sends with Status
	// (401 INVALID_SESSION_ID, 403 API_DISABLED_FOR_ORG, 429 REQUEST_LIMIT_EXCEEDED,
	// 500 UNKNOWN_EXCEPTION, 503 SERVER_UNAVAILABLE, …).
	ErrorCode, Message string
	// AfterCommit makes the server carry the request out before it answers with the fault, as
	// when a write committed and its response was lost (a gateway 502, a timeout).
	AfterCommit bool
	// Method, when set, holds the fault for the next request with this method (e.g. PATCH for
	// an upsert race's DUPLICATE_VALUE, which a GET never gets); requests with other methods
	// pass, and the faults queued behind it wait.
	Method string
}

type tokenFault struct {
	status   int
	oauthErr string
}

// Record is a copy of one stored record.
type Record struct {
	// Type is the sObject type, e.g. "Contact".
	Type string
	// ID is the 18-character record id.
	ID string
	// Fields holds the field values by API name (strings, bools, nil); Id is not repeated.
	Fields map[string]any
}

type record struct {
	obj    *sobject
	id     string
	fields map[string]any
}

// Server is a Salesforce contract server. It is safe for concurrent use.
type Server struct {
	login, instance *httptest.Server

	clientID, username         string
	pub                        *rsa.PublicKey
	priv                       *rsa.PrivateKey
	clientSecret, refreshToken string
	audience                   string
	now                        func() time.Time
	requestLimit               int
	objects                    map[string]*sobject
	userID                     string

	mu            sync.Mutex
	sessions      map[string]bool
	seq           int
	faults        []*Fault // nil entries pass a request through
	tokenFaults   []tokenFault
	records       map[string][]*record // by lower-case sObject name, in creation order
	byID          map[string]*record
	index         map[*field]map[string][]*record // External ID and idLookup fields: lower-case value → records
	apiRequests   int
	tokenRequests int
	grants        int
}

// New starts a server and closes it when the test ends.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{
		now:      time.Now,
		objects:  schema(),
		sessions: map[string]bool{},
		records:  map[string][]*record{},
		byID:     map[string]*record{},
		index:    map[*field]map[string][]*record{},
	}
	for _, o := range opts {
		o.apply(s)
	}
	if s.clientID == "" {
		s.clientID = DefaultClientID
	}
	if s.username == "" {
		s.username = DefaultUsername
	}
	if s.pub == nil {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatalf("salesforcefake: generating key: %v", err)
		}
		s.priv, s.pub = key, &key.PublicKey
	}
	if s.refreshToken == "" && s.clientSecret == "" {
		s.clientSecret, s.refreshToken = randomString(24), "5Aep861"+randomString(48)
	}
	s.login = httptest.NewServer(http.HandlerFunc(s.serveLogin))
	s.instance = httptest.NewServer(http.HandlerFunc(s.serveAPI))
	t.Cleanup(s.instance.Close)
	t.Cleanup(s.login.Close)
	if s.audience == "" {
		s.audience = s.login.URL
	}
	s.mu.Lock()
	s.userID = s.insert(s.objects["user"], map[string]any{"Username": s.username}).id
	s.mu.Unlock()
	return s
}

// LoginURL is the login server's base URL (the token endpoint is LoginURL/services/oauth2/token).
func (s *Server) LoginURL() string { return s.login.URL }

// InstanceURL is the instance server's base URL, the instance_url of every token.
func (s *Server) InstanceURL() string { return s.instance.URL }

// ClientID is the consumer key the server accepts.
func (s *Server) ClientID() string { return s.clientID }

// Username is the user a JWT's sub must name.
func (s *Server) Username() string { return s.username }

// UserID is the id of that user (a User record), a valid OwnerId.
func (s *Server) UserID() string { return s.userID }

// PrivateKey returns the key New generated, or nil when WithJWTBearer set the public key.
func (s *Server) PrivateKey() *rsa.PrivateKey { return s.priv }

// ClientSecret and RefreshToken are what the refresh-token grant accepts.
func (s *Server) ClientSecret() string { return s.clientSecret }

// RefreshToken is the refresh token the refresh-token grant accepts.
func (s *Server) RefreshToken() string { return s.refreshToken }

// Inject makes the next n authenticated API requests answer with f. Faults queue up behind
// earlier ones. A request rejected for its token, or over the request limit, consumes none.
// A 401 fault also ends the session the request used, as a real 401 means.
func (s *Server) Inject(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, &f)
	}
}

// InjectAt makes the k-th next authenticated API request (k from 1) answer with f, after the
// k-1 before it are handled normally; a fault after a connector's first writes, for tests of
// partial failure. It queues like Inject.
func (s *Server) InjectAt(k int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range k - 1 {
		s.faults = append(s.faults, nil)
	}
	s.faults = append(s.faults, &f)
}

// Pending returns how many injected faults (pass-through places of InjectAt included) wait for
// a request.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.faults)
}

// FailNext makes the next n authenticated API requests fail with status and, unless it is
// empty, the Retry-After header retryAfter; the body is the error Salesforce sends with that
// status.
func (s *Server) FailNext(n, status int, retryAfter string) {
	s.Inject(n, Fault{Status: status, RetryAfter: retryAfter})
}

// FailTokenNext makes the next n token requests fail with status and the OAuth error code
// oauthErr (e.g. 400 "invalid_grant", as when the user's access was revoked).
func (s *Server) FailTokenNext(n, status int, oauthErr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.tokenFaults = append(s.tokenFaults, tokenFault{status: status, oauthErr: oauthErr})
	}
}

// ExpireSessions ends every session, as a session timeout or a revoked token does: the next API
// request with any earlier access token is 401 INVALID_SESSION_ID.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.sessions)
}

// Requests returns how many API requests carried a valid session (token requests excluded).
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apiRequests
}

// TokenRequests returns how many requests reached the token endpoint.
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenRequests
}

// Grants returns how many access tokens the token endpoint issued.
func (s *Server) Grants() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants
}

// Objects returns how many Task records carry externalID in Mailpipe_External_Id__c: the
// number of activities the org holds for the message. An idempotent connector keeps it at 1.
func (s *Server) Objects(externalID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.find(s.objects["task"], s.objects["task"].field(ExternalIDField), externalID))
}

// Records returns copies of the records of sobject (e.g. "Contact") in creation order.
func (s *Server) Records(sobject string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, r := range s.records[strings.ToLower(sobject)] {
		out = append(out, Record{Type: r.obj.name, ID: r.id, Fields: maps.Clone(r.fields)})
	}
	return out
}

// Record returns a copy of the record with id.
func (s *Server) Record(id string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byID[id]
	if !ok {
		return Record{}, false
	}
	return Record{Type: r.obj.name, ID: r.id, Fields: maps.Clone(r.fields)}, true
}

// Count returns how many records of sobject the org holds.
func (s *Server) Count(sobject string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.records[strings.ToLower(sobject)])
}

// Seed creates a record with the API's validation and returns its id, for tests that need data
// the connector did not write (e.g. two Contacts with one Email, which an upsert keyed by
// Email answers with 300).
func (s *Server) Seed(sobject string, fields map[string]any) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[strings.ToLower(sobject)]
	if !ok {
		return "", fmt.Errorf("salesforcefake: no sObject %q", sobject)
	}
	vals, aerr := s.validate(o, fields, nil)
	if aerr != nil {
		return "", fmt.Errorf("salesforcefake: %s: %s", aerr.ErrorCode, aerr.Message)
	}
	return s.insert(o, vals).id, nil
}

// Target returns the conformance-suite target of connector c, which must write to s. Its
// FailNext maps 401 to a failure one token refresh cannot cure — the next n API requests are
// 401 and the next n token grants are 400 invalid_grant, as when an admin revoked the
// integration user's access — because a connector that refreshes once on 401 (as Salesforce
// clients must) would otherwise recover from a single 401 within the call. Other statuses are
// passed to [Server.FailNext].
func (s *Server) Target(c crm.Connector) crmtest.Target {
	return crmtest.Target{
		Connector: c,
		Objects:   s.Objects,
		FailNext: func(n, status int, retryAfter string) {
			if status == http.StatusUnauthorized {
				s.FailTokenNext(n, http.StatusBadRequest, "invalid_grant")
			}
			s.FailNext(n, status, retryAfter)
		},
	}
}
