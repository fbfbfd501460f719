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
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
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

// ---- token endpoint ----

func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/services/oauth2/token" {
		writeErrors(w, http.StatusNotFound, &apiError{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"})
		return
	}
	if r.Method != http.MethodPost {
		writeOAuth(w, http.StatusBadRequest, "invalid_request", "must use HTTP POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		writeOAuth(w, http.StatusBadRequest, "invalid_request", "malformed request body")
		return
	}
	s.mu.Lock()
	s.tokenRequests++
	var tf *tokenFault
	if len(s.tokenFaults) > 0 {
		tf = &s.tokenFaults[0]
		s.tokenFaults = s.tokenFaults[1:]
	}
	s.mu.Unlock()
	if tf != nil {
		writeOAuth(w, tf.status, tf.oauthErr, "injected fault")
		return
	}

	switch grant := r.PostForm.Get("grant_type"); grant {
	case JWTBearerGrant:
		if code, desc := s.verifyAssertion(r.PostForm.Get("assertion")); code != "" {
			writeOAuth(w, http.StatusBadRequest, code, desc)
			return
		}
	case "refresh_token":
		switch {
		case r.PostForm.Get("client_id") != s.clientID:
			writeOAuth(w, http.StatusBadRequest, "invalid_client_id", "client identifier invalid")
			return
		case s.clientSecret != "" && r.PostForm.Get("client_secret") != s.clientSecret:
			writeOAuth(w, http.StatusBadRequest, "invalid_client", "invalid client credentials")
			return
		case r.PostForm.Get("refresh_token") != s.refreshToken:
			writeOAuth(w, http.StatusBadRequest, "invalid_grant", "expired access/refresh token")
			return
		}
	case "":
		writeOAuth(w, http.StatusBadRequest, "unsupported_grant_type", "grant type not supported")
		return
	default:
		writeOAuth(w, http.StatusBadRequest, "unsupported_grant_type", "grant type not supported")
		return
	}

	token := "00D5g000004fakeAAA!" + randomString(72)
	s.mu.Lock()
	s.sessions[token] = true
	s.grants++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token": token,
		"instance_url": s.instance.URL,
		"id":           s.login.URL + "/id/00D5g000004fakeAAA/" + s.userID,
		"token_type":   "Bearer",
		"scope":        "api",
		"issued_at":    strconv.FormatInt(s.now().UnixMilli(), 10),
		"signature":    randomString(32),
	})
}

// verifyAssertion checks a JWT bearer assertion as Salesforce does and returns the OAuth error
// code and description, or "" when it is good.
func (s *Server) verifyAssertion(assertion string) (code, desc string) {
	const bad = "invalid assertion"
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return "invalid_grant", bad
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil || hdr.Alg != "RS256" {
		return "invalid_grant", bad
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "invalid_grant", bad
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(s.pub, crypto.SHA256, digest[:], sig); err != nil {
		return "invalid_grant", bad
	}
	var claims struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp json.Number     `json:"exp"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return "invalid_grant", bad
	}
	if claims.Iss != s.clientID {
		return "invalid_client_id", "client identifier invalid"
	}
	var auds []string
	var one string
	if json.Unmarshal(claims.Aud, &one) == nil {
		auds = []string{one}
	} else if json.Unmarshal(claims.Aud, &auds) != nil {
		return "invalid_grant", "audience is invalid"
	}
	if !slices.Contains(auds, s.audience) {
		return "invalid_grant", "audience is invalid"
	}
	exp, err := claims.Exp.Int64()
	now := s.now()
	if err != nil || time.Unix(exp, 0).Before(now.Add(-clockSkew)) || time.Unix(exp, 0).After(now.Add(MaxAssertionLifetime+clockSkew)) {
		return "invalid_grant", bad
	}
	if claims.Sub != s.username {
		return "invalid_grant", "user hasn't approved this consumer"
	}
	return "", ""
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// ---- REST API ----

type apiError struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields,omitempty"`
}

var notFound = &apiError{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"}

// reply is a handler's answer.
type reply struct {
	status int
	body   any // nil for no body
}

func errReply(status int, e *apiError) reply { return reply{status: status, body: []*apiError{e}} }

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	_ = r.Body.Close()
	if err != nil {
		writeErrors(w, http.StatusBadRequest, &apiError{Message: "reading request body", ErrorCode: "JSON_PARSER_ERROR"})
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")

	s.mu.Lock()
	if !ok || !s.sessions[token] {
		s.mu.Unlock()
		writeErrors(w, http.StatusUnauthorized, &apiError{Message: "Session expired or invalid", ErrorCode: "INVALID_SESSION_ID"})
		return
	}
	s.apiRequests++
	used := s.apiRequests
	over := s.requestLimit > 0 && used > s.requestLimit
	var f *Fault
	if !over && len(s.faults) > 0 && (s.faults[0] == nil || s.faults[0].Method == "" || s.faults[0].Method == r.Method) {
		f, s.faults = s.faults[0], s.faults[1:]
		if f != nil && f.Status == http.StatusUnauthorized {
			delete(s.sessions, token)
		}
	}
	s.mu.Unlock()

	if s.requestLimit > 0 {
		w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", min(used, s.requestLimit), s.requestLimit))
	}
	if over {
		writeErrors(w, http.StatusForbidden, &apiError{Message: "TotalRequests Limit exceeded.", ErrorCode: "REQUEST_LIMIT_EXCEEDED"})
		return
	}
	if f != nil && !f.AfterCommit {
		writeFault(w, f)
		return
	}
	rep := s.route(r, body)
	if f != nil {
		writeFault(w, f)
		return
	}
	if rep.body == nil {
		w.WriteHeader(rep.status)
		return
	}
	writeJSON(w, rep.status, rep.body)
}

// route dispatches /services/data/vXX.X/sobjects/Type[/Field/Value | /Id].
func (s *Server) route(r *http.Request, body []byte) reply {
	segs, ok := segments(r.URL.EscapedPath())
	if !ok || len(segs) < 5 || segs[0] != "services" || segs[1] != "data" || segs[3] != "sobjects" {
		return errReply(http.StatusNotFound, notFound)
	}
	version, ok := parseVersion(segs[2])
	if !ok {
		return errReply(http.StatusNotFound, notFound)
	}
	o, ok := s.objects[strings.ToLower(segs[4])]
	if !ok {
		return errReply(http.StatusNotFound, &apiError{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"})
	}
	rest := segs[5:]
	if (r.Method == http.MethodPatch || r.Method == http.MethodPost) && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return errReply(http.StatusUnsupportedMediaType, &apiError{
			Message: fmt.Sprintf("Content type '%s' not supported", r.Header.Get("Content-Type")), ErrorCode: "UNSUPPORTED_MEDIA_TYPE",
		})
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && len(rest) == 0:
		return s.create(o, body, version)
	case r.Method == http.MethodPatch && len(rest) == 2:
		return s.upsert(o, rest[0], rest[1], body, version)
	case r.Method == http.MethodPatch && len(rest) == 1:
		return s.update(o, rest[0], body)
	case r.Method == http.MethodGet && len(rest) == 2:
		return s.getByExternalID(o, rest[0], rest[1], r.URL.Query().Get("fields"), version)
	case r.Method == http.MethodGet && len(rest) == 1:
		rec, ok := s.byID[rest[0]]
		if !ok || rec.obj != o {
			return errReply(http.StatusNotFound, notFound)
		}
		return reply{status: http.StatusOK, body: s.view(rec, r.URL.Query().Get("fields"), version)}
	default:
		return errReply(http.StatusMethodNotAllowed, &apiError{
			Message:   fmt.Sprintf("HTTP Method '%s' not allowed. Allowed are GET,PATCH,POST", r.Method),
			ErrorCode: "METHOD_NOT_ALLOWED",
		})
	}
}

func (s *Server) create(o *sobject, body []byte, version float64) reply {
	in, aerr := decodeBody(body)
	if aerr != nil {
		return errReply(http.StatusBadRequest, aerr)
	}
	vals, aerr := s.validate(o, in, nil)
	if aerr != nil {
		return errReply(http.StatusBadRequest, aerr)
	}
	rec := s.insert(o, vals)
	return reply{status: http.StatusCreated, body: saveResult(rec.id, true, version, false)}
}

func (s *Server) upsert(o *sobject, fieldName, value string, body []byte, version float64) reply {
	f := o.field(fieldName)
	if f == nil || (!f.extID && !f.idLookup) {
		return errReply(http.StatusNotFound, &apiError{
			Message:   "Provided external ID field does not exist or is not accessible: " + fieldName,
			ErrorCode: "NOT_FOUND",
		})
	}
	in, aerr := decodeBody(body)
	if aerr != nil {
		return errReply(http.StatusBadRequest, aerr)
	}
	matches := s.find(o, f, value)
	switch len(matches) {
	case 0:
		// The URL's value is the key of the new record; a different value in the body would
		// make the record unreachable by the key it was upserted with.
		in[f.name] = value
		vals, aerr := s.validate(o, in, nil)
		if aerr != nil {
			return errReply(http.StatusBadRequest, aerr)
		}
		rec := s.insert(o, vals)
		return reply{status: http.StatusCreated, body: saveResult(rec.id, true, version, true)}
	case 1:
		rec := matches[0]
		vals, aerr := s.validate(o, in, rec)
		if aerr != nil {
			return errReply(http.StatusBadRequest, aerr)
		}
		s.setFields(rec, vals)
		if version < 46 {
			return reply{status: http.StatusNoContent}
		}
		return reply{status: http.StatusOK, body: saveResult(rec.id, false, version, true)}
	default:
		urls := make([]string, 0, len(matches))
		for _, m := range matches {
			urls = append(urls, recordURL(m, version))
		}
		return reply{status: http.StatusMultipleChoices, body: urls}
	}
}

// update changes the record with id (PATCH sobjects/Type/Id): 204 without a body.
func (s *Server) update(o *sobject, id string, body []byte) reply {
	rec := s.lookupID(id)
	if rec == nil || rec.obj != o {
		return errReply(http.StatusNotFound, notFound)
	}
	in, aerr := decodeBody(body)
	if aerr != nil {
		return errReply(http.StatusBadRequest, aerr)
	}
	vals, aerr := s.validate(o, in, rec)
	if aerr != nil {
		return errReply(http.StatusBadRequest, aerr)
	}
	s.setFields(rec, vals)
	return reply{status: http.StatusNoContent}
}

func (s *Server) getByExternalID(o *sobject, fieldName, value, fields string, version float64) reply {
	f := o.field(fieldName)
	if f == nil || (!f.extID && !f.idLookup) {
		return errReply(http.StatusNotFound, &apiError{
			Message:   "Provided external ID field does not exist or is not accessible: " + fieldName,
			ErrorCode: "NOT_FOUND",
		})
	}
	matches := s.find(o, f, value)
	switch len(matches) {
	case 0:
		return errReply(http.StatusNotFound, notFound)
	case 1:
		return reply{status: http.StatusOK, body: s.view(matches[0], fields, version)}
	default:
		urls := make([]string, 0, len(matches))
		for _, m := range matches {
			urls = append(urls, recordURL(m, version))
		}
		return reply{status: http.StatusMultipleChoices, body: urls}
	}
}

// saveResult is the SaveResult / UpsertResult body; created appears in upsert results from API
// 46.0 on.
func saveResult(id string, created bool, version float64, upsert bool) map[string]any {
	out := map[string]any{"id": id, "success": true, "errors": []any{}}
	if upsert && version >= 46 {
		out["created"] = created
	}
	return out
}

func (s *Server) view(rec *record, fields string, version float64) map[string]any {
	out := map[string]any{
		"attributes": map[string]string{"type": rec.obj.name, "url": recordURL(rec, version)},
		"Id":         rec.id,
	}
	if fields == "" {
		for k, v := range rec.fields {
			out[k] = v
		}
		return out
	}
	for name := range strings.SplitSeq(fields, ",") {
		if f := rec.obj.field(strings.TrimSpace(name)); f != nil && f.name != "Id" {
			out[f.name] = rec.fields[f.name]
		}
	}
	return out
}

func recordURL(rec *record, version float64) string {
	return fmt.Sprintf("/services/data/v%.1f/sobjects/%s/%s", version, rec.obj.name, rec.id)
}

// find returns the records of o whose field f equals value, case-insensitively as External ID
// matching is. Key fields are looked up in the index; others are scanned.
func (s *Server) find(o *sobject, f *field, value string) []*record {
	if f.extID || f.idLookup {
		return slices.Clone(s.index[f][strings.ToLower(value)])
	}
	var out []*record
	for _, r := range s.records[strings.ToLower(o.name)] {
		if v, ok := r.fields[f.name].(string); ok && strings.EqualFold(v, value) {
			out = append(out, r)
		}
	}
	return out
}

func (s *Server) insert(o *sobject, vals map[string]any) *record {
	s.seq++
	rec := &record{obj: o, id: newID(o.prefix, s.seq)}
	if o.name == "ContentVersion" {
		s.seq++
		vals["ContentDocumentId"] = newID("069", s.seq)
	}
	s.setFields(rec, vals)
	key := strings.ToLower(o.name)
	s.records[key] = append(s.records[key], rec)
	s.byID[rec.id] = rec
	return rec
}

// setFields replaces rec's field values and keeps the index of its key fields current.
func (s *Server) setFields(rec *record, vals map[string]any) {
	for _, f := range rec.obj.fields {
		if !f.extID && !f.idLookup {
			continue
		}
		if old, ok := rec.fields[f.name].(string); ok {
			k := strings.ToLower(old)
			s.index[f][k] = slices.DeleteFunc(s.index[f][k], func(r *record) bool { return r == rec })
		}
		if v, ok := vals[f.name].(string); ok {
			if s.index[f] == nil {
				s.index[f] = map[string][]*record{}
			}
			k := strings.ToLower(v)
			s.index[f][k] = append(s.index[f][k], rec)
		}
	}
	rec.fields = vals
}

func decodeBody(body []byte) (map[string]any, *apiError) {
	var in map[string]any
	if err := json.Unmarshal(body, &in); err != nil || in == nil {
		return nil, &apiError{Message: "The request body must be a JSON object", ErrorCode: "JSON_PARSER_ERROR"}
	}
	delete(in, "attributes")
	return in, nil
}

// validate checks the fields of a create (existing nil) or an update and returns the record's
// field values as they would be stored.
func (s *Server) validate(o *sobject, in map[string]any, existing *record) (map[string]any, *apiError) {
	create := existing == nil
	out := map[string]any{}
	if !create {
		out = maps.Clone(existing.fields)
	}
	names := make([]string, 0, len(in))
	for name := range in {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v := in[name]
		f := o.field(name)
		if f == nil {
			return nil, &apiError{Message: fmt.Sprintf("No such column '%s' on sobject of type %s", name, o.name), ErrorCode: "INVALID_FIELD"}
		}
		if f.readOnly || (!create && f.createOnly) {
			return nil, &apiError{
				Message:   fmt.Sprintf("Unable to create/update fields: %s. Please check the security settings of this field and verify that it is read/write for your profile or permission set.", f.name),
				ErrorCode: "INVALID_FIELD_FOR_INSERT_UPDATE", Fields: []string{f.name},
			}
		}
		if v == nil {
			delete(out, f.name)
			continue
		}
		if aerr := s.checkValue(o, f, v); aerr != nil {
			return nil, aerr
		}
		out[f.name] = v
	}
	var missing []string
	for _, f := range sortedFields(o) {
		if _, set := out[f.name]; set {
			continue
		}
		if create && f.def != nil {
			out[f.name] = f.def
			continue
		}
		if f.required {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, &apiError{Message: "Required fields are missing: [" + strings.Join(missing, ", ") + "]", ErrorCode: "REQUIRED_FIELD_MISSING", Fields: missing}
	}
	for _, f := range sortedFields(o) {
		v, ok := out[f.name].(string)
		if !f.unique || !ok || v == "" {
			continue
		}
		for _, other := range s.find(o, f, v) {
			if other != existing {
				return nil, &apiError{
					Message:   fmt.Sprintf("duplicate value found: %s duplicates value on record with id: %s", f.name, other.id),
					ErrorCode: "DUPLICATE_VALUE", Fields: []string{},
				}
			}
		}
	}
	if o.check != nil {
		if aerr := o.check(out); aerr != nil {
			return nil, aerr
		}
	}
	return out, nil
}

func (s *Server) checkValue(o *sobject, f *field, v any) *apiError {
	if f.kind == kBool {
		if _, ok := v.(bool); !ok {
			return &apiError{Message: fmt.Sprintf("Cannot deserialize instance of boolean from %T value", v), ErrorCode: "JSON_PARSER_ERROR"}
		}
		return nil
	}
	str, ok := v.(string)
	if !ok {
		return &apiError{Message: fmt.Sprintf("Cannot deserialize instance of %s from %T value", strings.ToLower(f.name), v), ErrorCode: "JSON_PARSER_ERROR"}
	}
	if f.maxLen > 0 && utf8.RuneCountInString(str) > f.maxLen {
		return &apiError{
			Message:   fmt.Sprintf("%s: data value too large: %s (max length=%d)", f.name, truncate(str, 40), f.maxLen),
			ErrorCode: "STRING_TOO_LONG", Fields: []string{f.name},
		}
	}
	switch f.kind {
	case kEmail:
		if !validEmail(str) {
			return &apiError{Message: fmt.Sprintf("%s: invalid email address: %s", f.name, truncate(str, 80)), ErrorCode: "INVALID_EMAIL_ADDRESS", Fields: []string{f.name}}
		}
	case kPicklist:
		if !slices.Contains(f.values, str) {
			return &apiError{Message: fmt.Sprintf("%s: bad value for restricted picklist field: %s", f.name, str), ErrorCode: "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", Fields: []string{f.name}}
		}
	case kDate:
		if _, err := time.Parse(time.DateOnly, str); err != nil {
			return &apiError{Message: fmt.Sprintf("Cannot deserialize instance of date from VALUE_STRING value %s", str), ErrorCode: "JSON_PARSER_ERROR"}
		}
	case kRef:
		if !validID(str) {
			return &apiError{Message: fmt.Sprintf("%s: id value of incorrect type: %s", f.name, str), ErrorCode: "MALFORMED_ID", Fields: []string{f.name}}
		}
		target := s.lookupID(str)
		if target == nil {
			if !slices.ContainsFunc(f.refTo, func(name string) bool { return s.objects[strings.ToLower(name)].prefix == str[:3] }) {
				return &apiError{Message: fmt.Sprintf("%s: id value of incorrect type: %s", f.name, str), ErrorCode: "FIELD_INTEGRITY_EXCEPTION", Fields: []string{f.name}}
			}
			return &apiError{Message: "invalid cross reference id", ErrorCode: "INVALID_CROSS_REFERENCE_KEY", Fields: []string{f.name}}
		}
		if !slices.Contains(f.refTo, target.obj.name) {
			return &apiError{Message: fmt.Sprintf("%s: id value of incorrect type: %s", f.name, str), ErrorCode: "FIELD_INTEGRITY_EXCEPTION", Fields: []string{f.name}}
		}
	}
	return nil
}

// lookupID finds a record by its 18- or 15-character id.
func (s *Server) lookupID(id string) *record {
	if r, ok := s.byID[id]; ok {
		return r
	}
	if len(id) == 15 {
		return s.byID[id+checksum(id)]
	}
	return nil
}

func sortedFields(o *sobject) []*field {
	out := make([]*field, 0, len(o.fields))
	for _, f := range o.fields {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *field) int { return strings.Compare(a.name, b.name) })
	return out
}

// validEmail approximates Salesforce's e-mail check: ASCII, one @, a local part of the RFC 5322
// atom characters and dots, and a dotted host name.
func validEmail(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || !strings.Contains(domain, ".") {
		return false
	}
	for _, r := range local {
		if r > 127 || (!isAlnum(r) && !strings.ContainsRune(".!#$%&'*+/=?^_`{|}~-", r)) {
			return false
		}
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, r := range label {
			if r > 127 || (!isAlnum(r) && r != '-') {
				return false
			}
		}
	}
	return true
}

func isAlnum(r rune) bool {
	return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

func validID(s string) bool {
	if len(s) != 15 && len(s) != 18 {
		return false
	}
	for _, r := range s {
		if !isAlnum(r) {
			return false
		}
	}
	return true
}

// newID builds an 18-character id: key prefix, a base-62 sequence, and the case-checksum
// suffix Salesforce appends to 15-character ids.
func newID(prefix string, n int) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	body := []byte(strings.Repeat("0", 10))
	for i := len(body) - 1; i >= 0 && n > 0; i-- {
		body[i] = digits[n%62]
		n /= 62
	}
	id := prefix + "5g" + string(body)
	return id + checksum(id)
}

// checksum is the 3-character suffix of an 18-character id: one character per 5-character
// chunk, encoding which of its characters are upper-case.
func checksum(id15 string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	out := make([]byte, 3)
	for i := range 3 {
		flags := 0
		for j := range 5 {
			if c := id15[i*5+j]; c >= 'A' && c <= 'Z' {
				flags |= 1 << j
			}
		}
		out[i] = alphabet[flags]
	}
	return string(out)
}

func parseVersion(seg string) (float64, bool) {
	v, ok := strings.CutPrefix(seg, "v")
	if !ok || !strings.Contains(v, ".") {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 20 {
		return 0, false
	}
	return f, true
}

// segments splits an escaped path into unescaped segments, so an external id value may carry
// any character the client escaped.
func segments(escaped string) ([]string, bool) {
	parts := strings.Split(strings.Trim(escaped, "/"), "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, false
		}
		parts[i] = u
	}
	return parts, true
}

// ---- writing answers ----

func writeFault(w http.ResponseWriter, f *Fault) {
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	code, msg := f.ErrorCode, f.Message
	if code == "" {
		code, msg = cannedError(f.Status)
	}
	if msg == "" {
		msg = "injected fault"
	}
	writeErrors(w, f.Status, &apiError{Message: msg, ErrorCode: code})
}

// cannedError is the error Salesforce sends with status.
func cannedError(status int) (code, msg string) {
	switch status {
	case http.StatusBadRequest:
		return "INVALID_FIELD", "injected fault"
	case http.StatusUnauthorized:
		return "INVALID_SESSION_ID", "Session expired or invalid"
	case http.StatusForbidden:
		return "API_DISABLED_FOR_ORG", "The REST API is not enabled for this Organization."
	case http.StatusNotFound:
		return "NOT_FOUND", "The requested resource does not exist"
	case http.StatusTooManyRequests:
		return "REQUEST_LIMIT_EXCEEDED", "Too many requests. Retry later."
	case http.StatusInternalServerError:
		return "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)"
	case http.StatusServiceUnavailable:
		return "SERVER_UNAVAILABLE", "Server is temporarily unavailable. Retry later."
	}
	return strings.ToUpper(strings.ReplaceAll(http.StatusText(status), " ", "_")), "injected fault"
}

func writeErrors(w http.ResponseWriter, status int, errs ...*apiError) { writeJSON(w, status, errs) }

func writeOAuth(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "..."
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}
