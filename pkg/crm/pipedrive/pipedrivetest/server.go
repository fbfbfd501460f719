// Package pipedrivetest is a contract server for the part of Pipedrive's REST API v1 the
// pipedrive connector uses, on httptest, with its state in memory. It enforces what the real
// API enforces and answers in Pipedrive's shapes ({"success": …, "data": …,
// "additional_data": …}):
//
//   - auth: the api_token query parameter or an OAuth bearer token; anything else is 401
//     {"success":false,"error":"unauthorized access","errorCode":401}. OAuth access tokens
//     expire (WithTokenTTL, ExpireAccessTokens) and are refreshed at /oauth/token with HTTP
//     Basic client credentials and a refresh token, which rotates on every use;
//   - validation (400): a person or organization needs a name, an activity a subject, a known
//     activity type, due_date YYYY-MM-DD and due_time HH:MM; linked persons, organizations
//     and activities must exist; a search term needs 2 characters unless exact_match, and its
//     fields must be searchable ones; list pages are at most 500 items (100 for files);
//   - uploads: multipart/form-data with a "file" part, at most WithMaxUpload bytes (413);
//   - rate limits (WithRateLimit): x-ratelimit-limit, -remaining and -reset on every answer,
//     and 429 {"success":false,"error":"Request over limit","errorCode":429} with Retry-After
//     once the window's budget is spent;
//   - injected faults (FailNext, Inject): the next authenticated requests answer with any
//     status, Retry-After and headers, for 429s and 5xx storms;
//   - search index lag (WithSearchLag): new persons and organizations are invisible to search
//     for a while, as in Pipedrive, where the index trails writes by seconds.
package pipedrivetest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/crm/pipedrive"
)

// Defaults of the server.
const (
	DefaultTokenTTL  = time.Hour
	DefaultMaxUpload = 50 << 20
	errorInfo        = "Please check developers.pipedrive.com for more information about Pipedrive API."
)

// ActivityTypes are the activity type keys the server accepts unless WithActivityTypes says
// otherwise: Pipedrive's defaults.
var defaultActivityTypes = []string{"call", "meeting", "task", "deadline", "email", "lunch"}

// Person is a stored person.
type Person struct {
	ID      int64
	Name    string
	Emails  []string
	OrgID   int64
	AddTime time.Time
}

// Organization is a stored organization; Fields holds its custom field values by key.
type Organization struct {
	ID      int64
	Name    string
	Fields  map[string]string
	AddTime time.Time
}

// Activity is a stored activity. Updates counts the PUTs it received.
type Activity struct {
	ID       int64
	Subject  string
	Type     string
	Done     bool
	DueDate  string
	DueTime  string
	PersonID int64
	OrgID    int64
	UserID   int64
	Note     string
	Updates  int
}

// File is a stored file.
type File struct {
	ID         int64
	Name       string
	Size       int64
	Sha256     string
	ActivityID int64
	PersonID   int64
	OrgID      int64
}

// Fault is an injected answer.
type Fault struct {
	// Status is the HTTP status.
	Status int
	// RetryAfter is the Retry-After header value; "" for none.
	RetryAfter string
	// Header holds further headers (e.g. x-ratelimit-reset).
	Header http.Header
}

// Option configures a [Server].
type Option interface{ apply(*Server) }

type optionFunc func(*Server)

func (f optionFunc) apply(s *Server) { f(s) }

// WithAPIToken sets the accepted API token; the default is random (see APIToken).
func WithAPIToken(token string) Option { return optionFunc(func(s *Server) { s.apiToken = token }) }

// WithTokenTTL sets the lifetime of issued OAuth access tokens (expires_in); default 1h.
func WithTokenTTL(d time.Duration) Option { return optionFunc(func(s *Server) { s.tokenTTL = d }) }

// WithRateLimit allows limit requests per window and token, reports the budget in
// x-ratelimit-* headers and answers 429 with Retry-After beyond it. Default: no limit, no
// headers.
func WithRateLimit(limit int, window time.Duration) Option {
	return optionFunc(func(s *Server) { s.rateLimit, s.rateWindow = limit, window })
}

// WithSearchLag hides persons and organizations from search for d after they are added.
func WithSearchLag(d time.Duration) Option { return optionFunc(func(s *Server) { s.searchLag = d }) }

// WithMaxUpload sets the largest accepted upload; default 50 MiB.
func WithMaxUpload(n int64) Option { return optionFunc(func(s *Server) { s.maxUpload = n }) }

// WithActivityTypes sets the accepted activity type keys.
func WithActivityTypes(keys ...string) Option {
	return optionFunc(func(s *Server) { s.activityTypes = keys })
}

// WithClock sets the server's clock (token expiry, search lag, rate-limit windows).
func WithClock(now func() time.Time) Option { return optionFunc(func(s *Server) { s.now = now }) }

// Server is a Pipedrive contract server. It is safe for concurrent use.
type Server struct {
	srv           *httptest.Server
	mux           *http.ServeMux
	apiToken      string
	clientID      string
	clientSecret  string
	tokenTTL      time.Duration
	rateLimit     int
	rateWindow    time.Duration
	searchLag     time.Duration
	maxUpload     int64
	activityTypes []string
	now           func() time.Time

	mu         sync.Mutex
	nextID     int64
	persons    map[int64]*Person
	orgs       map[int64]*Organization
	activities map[int64]*Activity
	files      map[int64]*File
	// Indexes, so exact searches and per-person listings do not scan everything.
	personsByEmail map[string][]int64   // lower-case address → person ids
	orgsByValue    map[string][]int64   // lower-case name or custom field value → org ids
	actsByPerson   map[int64][]int64    // person id → activity ids, ascending
	filesByPerson  map[int64][]int64    // person id → file ids, ascending
	access         map[string]time.Time // access token → expiry
	refresh        map[string]bool
	faults         []Fault
	windows        map[string]*window
	calls          map[string]int
	rejected       int
	refreshes      int
}

type window struct {
	start time.Time
	used  int
}

// NewServer starts a server and closes it when the test ends.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{
		apiToken:       "api-" + randomHex(16),
		clientID:       "client-" + randomHex(4),
		clientSecret:   "secret-" + randomHex(16),
		tokenTTL:       DefaultTokenTTL,
		maxUpload:      DefaultMaxUpload,
		activityTypes:  defaultActivityTypes,
		now:            time.Now,
		persons:        map[int64]*Person{},
		orgs:           map[int64]*Organization{},
		activities:     map[int64]*Activity{},
		files:          map[int64]*File{},
		personsByEmail: map[string][]int64{},
		orgsByValue:    map[string][]int64{},
		actsByPerson:   map[int64][]int64{},
		filesByPerson:  map[int64][]int64{},
		access:         map[string]time.Time{},
		refresh:        map[string]bool{},
		windows:        map[string]*window{},
		calls:          map[string]int{},
	}
	for _, o := range opts {
		o.apply(s)
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /oauth/token", s.token)
	s.mux.HandleFunc("GET /v1/persons/search", s.searchPersons)
	s.mux.HandleFunc("POST /v1/persons", s.addPerson)
	s.mux.HandleFunc("GET /v1/persons/{id}/activities", s.personActivities)
	s.mux.HandleFunc("GET /v1/persons/{id}/files", s.personFiles)
	s.mux.HandleFunc("GET /v1/organizations/search", s.searchOrganizations)
	s.mux.HandleFunc("POST /v1/organizations", s.addOrganization)
	s.mux.HandleFunc("POST /v1/activities", s.addActivity)
	s.mux.HandleFunc("GET /v1/activities/{id}", s.getActivity)
	s.mux.HandleFunc("PUT /v1/activities/{id}", s.updateActivity)
	s.mux.HandleFunc("POST /v1/files", s.addFile)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// URL returns the API origin (Config.BaseURL).
func (s *Server) URL() string { return s.srv.URL }

// TokenURL returns the OAuth token endpoint (Config.TokenURL).
func (s *Server) TokenURL() string { return s.srv.URL + "/oauth/token" }

// Client returns an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// APIToken returns the accepted API token.
func (s *Server) APIToken() string { return s.apiToken }

// ClientCredentials returns the OAuth client id and secret the token endpoint accepts.
func (s *Server) ClientCredentials() (id, secret string) { return s.clientID, s.clientSecret }

// IssueTokens returns a fresh OAuth access token and refresh token, as the authorization-code
// exchange would.
func (s *Server) IssueTokens() (access, refresh string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	access, refresh = "at-"+randomHex(16), "rt-"+randomHex(16)
	s.access[access] = s.now().Add(s.tokenTTL)
	s.refresh[refresh] = true
	return access, refresh
}

// ExpireAccessTokens makes every access token issued so far expired.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok := range s.access {
		s.access[tok] = time.Time{}
	}
}

// Refreshes returns how many token refreshes succeeded.
func (s *Server) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

// FailNext makes the next n authenticated API requests answer status, with Retry-After set to
// retryAfter unless it is empty. Faults queue behind earlier ones; the token endpoint and
// unauthenticated requests do not consume them.
func (s *Server) FailNext(n, status int, retryAfter string) {
	s.Inject(n, Fault{Status: status, RetryAfter: retryAfter})
}

// Inject queues f for the next n authenticated API requests.
func (s *Server) Inject(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, f)
	}
}

// Target returns the conformance-suite target of connector c, which must write to s.
func (s *Server) Target(c crm.Connector) crmtest.Target {
	return crmtest.Target{Connector: c, Objects: s.Objects, FailNext: s.FailNext}
}

// Objects returns how many activities carry the note marker of externalID.
func (s *Server) Objects(externalID string) int {
	marker := pipedrive.NoteMarker(externalID)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.activities {
		if strings.Contains(a.Note, marker) {
			n++
		}
	}
	return n
}

// Persons returns copies of the stored persons by id.
func (s *Server) Persons() []Person {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedCopies(s.persons, func(p *Person) Person {
		c := *p
		c.Emails = slices.Clone(p.Emails)
		return c
	})
}

// Organizations returns copies of the stored organizations by id.
func (s *Server) Organizations() []Organization {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedCopies(s.orgs, func(o *Organization) Organization {
		c := *o
		c.Fields = map[string]string{}
		for k, v := range o.Fields {
			c.Fields[k] = v
		}
		return c
	})
}

// Activities returns copies of the stored activities by id.
func (s *Server) Activities() []Activity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedCopies(s.activities, func(a *Activity) Activity { return *a })
}

// Files returns copies of the stored files by id.
func (s *Server) Files() []File {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedCopies(s.files, func(f *File) File { return *f })
}

// Calls returns how many requests matched route, a pattern such as "GET /v1/persons/search"
// or "POST /oauth/token"; rejected and faulted requests count too.
func (s *Server) Calls(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[route]
}

// Rejected returns how many requests were answered 401 for their credentials.
func (s *Server) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

func sortedCopies[T any](m map[int64]*T, clone func(*T) T) []T {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]T, 0, len(ids))
	for _, id := range ids {
		out = append(out, clone(m[id]))
	}
	return out
}

// serve authenticates, applies faults and rate limits, then routes.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	// Handler only names the route; ServeHTTP dispatches, which also sets the path values.
	_, pattern := s.mux.Handler(r)
	s.mu.Lock()
	s.calls[pattern]++
	s.mu.Unlock()
	if pattern == "POST /oauth/token" {
		s.mux.ServeHTTP(w, r)
		return
	}
	principal, ok := s.authenticate(r)
	if !ok {
		s.mu.Lock()
		s.rejected++
		s.mu.Unlock()
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"success": false, "error": "unauthorized access", "errorCode": 401, "error_info": errorInfo,
		})
		return
	}
	s.mu.Lock()
	var f *Fault
	if len(s.faults) > 0 {
		f = &s.faults[0]
		s.faults = s.faults[1:]
	}
	s.mu.Unlock()
	if f != nil {
		for k, v := range f.Header {
			w.Header()[k] = v
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		writeJSON(w, f.Status, map[string]any{
			"success": false, "error": "injected fault: " + http.StatusText(f.Status), "errorCode": f.Status, "error_info": errorInfo,
		})
		return
	}
	if !s.admit(w, principal) {
		return
	}
	if pattern == "" {
		writeError(w, http.StatusNotFound, "Unknown method .")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// authenticate returns the token the request authenticated with.
func (s *Server) authenticate(r *http.Request) (string, bool) {
	if tok := r.URL.Query().Get("api_token"); tok != "" {
		return tok, tok == s.apiToken
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, known := s.access[tok]
	return tok, known && s.now().Before(exp)
}

// admit applies the rate limit of principal's token, writing the headers and, beyond the
// budget, the 429.
func (s *Server) admit(w http.ResponseWriter, principal string) bool {
	if s.rateLimit <= 0 {
		return true
	}
	s.mu.Lock()
	now := s.now()
	win := s.windows[principal]
	if win == nil || !now.Before(win.start.Add(s.rateWindow)) {
		win = &window{start: now}
		s.windows[principal] = win
	}
	win.used++
	remaining := s.rateLimit - win.used
	reset := int(math.Ceil(win.start.Add(s.rateWindow).Sub(now).Seconds()))
	s.mu.Unlock()
	w.Header().Set("X-Ratelimit-Limit", strconv.Itoa(s.rateLimit))
	w.Header().Set("X-Ratelimit-Remaining", strconv.Itoa(max(remaining, 0)))
	w.Header().Set("X-Ratelimit-Reset", strconv.Itoa(reset))
	if remaining >= 0 {
		return true
	}
	w.Header().Set("Retry-After", strconv.Itoa(reset))
	writeJSON(w, http.StatusTooManyRequests, map[string]any{
		"success": false, "error": "Request over limit", "errorCode": 429, "error_info": errorInfo,
	})
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes Pipedrive's error shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{
		"success": false, "error": msg, "error_info": errorInfo, "data": nil, "additional_data": nil,
	})
}

func writeData(w http.ResponseWriter, status int, data, additional any) {
	writeJSON(w, status, map[string]any{"success": true, "data": data, "additional_data": additional})
}

// token is the OAuth token endpoint: refresh_token grant with client credentials in HTTP
// Basic. The used refresh token is replaced by a new one.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok || id != s.clientID || secret != s.clientSecret {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"success": false, "message": "Invalid client credentials", "error": "invalid_client"})
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": "body must be application/x-www-form-urlencoded"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": err.Error()})
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "refresh_token" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "unsupported_grant_type", "error_description": "grant_type " + g})
		return
	}
	rt := r.PostForm.Get("refresh_token")
	s.mu.Lock()
	if !s.refresh[rt] {
		s.mu.Unlock()
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_grant", "error_description": "Invalid refresh token"})
		return
	}
	delete(s.refresh, rt)
	access, next := "at-"+randomHex(16), "rt-"+randomHex(16)
	s.access[access] = s.now().Add(s.tokenTTL)
	s.refresh[next] = true
	s.refreshes++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access, "token_type": "Bearer", "refresh_token": next,
		"scope": "base,activities:full,contacts:full", "expires_in": int(s.tokenTTL.Seconds()), "api_domain": s.srv.URL,
	})
}

// paging reads start and limit, enforcing the page size cap.
func paging(w http.ResponseWriter, r *http.Request, maxLimit int) (start, limit int, ok bool) {
	q := r.URL.Query()
	start, limit = 0, 100
	var err error
	if v := q.Get("start"); v != "" {
		if start, err = strconv.Atoi(v); err != nil || start < 0 {
			writeError(w, http.StatusBadRequest, "start must be a non-negative integer")
			return 0, 0, false
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			writeError(w, http.StatusBadRequest, "limit must be a positive integer")
			return 0, 0, false
		}
	}
	if limit > maxLimit {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must not exceed %d", maxLimit))
		return 0, 0, false
	}
	return start, limit, true
}

// page slices items and writes them with Pipedrive's pagination; an empty page's data is
// null, as Pipedrive answers.
func page[T any](w http.ResponseWriter, items []T, start, limit int) {
	p := map[string]any{"start": start, "limit": limit, "more_items_in_collection": false}
	var data []T
	if start < len(items) {
		end := min(start+limit, len(items))
		data = items[start:end]
		if end < len(items) {
			p["more_items_in_collection"] = true
			p["next_start"] = end
		}
	}
	var out any = data
	if len(data) == 0 {
		out = nil
	}
	writeData(w, http.StatusOK, out, map[string]any{"pagination": p})
}

// searchParams validates a search request's term and fields.
func searchParams(w http.ResponseWriter, r *http.Request, searchable []string) (term string, fields []string, exact bool, ok bool) {
	q := r.URL.Query()
	term = q.Get("term")
	exact = q.Get("exact_match") == "true" || q.Get("exact_match") == "1"
	if n := len([]rune(term)); n == 0 || (n < 2 && !exact) {
		writeError(w, http.StatusBadRequest, "term must be at least 2 characters long (1 with exact_match)")
		return "", nil, false, false
	}
	fields = searchable
	if v := q.Get("fields"); v != "" {
		fields = strings.Split(v, ",")
		for _, f := range fields {
			if !slices.Contains(searchable, f) {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("fields: %q is not searchable; use %s", f, strings.Join(searchable, ",")))
				return "", nil, false, false
			}
		}
	}
	if _, _, ok := paging(w, r, 500); !ok {
		return "", nil, false, false
	}
	return term, fields, exact, true
}

func matches(value, term string, exact bool) bool {
	if exact {
		return strings.EqualFold(value, term)
	}
	return strings.Contains(strings.ToLower(value), strings.ToLower(term))
}

// indexed reports whether an item added at t is visible to search yet.
func (s *Server) indexed(t time.Time) bool { return !s.now().Before(t.Add(s.searchLag)) }

func (s *Server) searchPersons(w http.ResponseWriter, r *http.Request) {
	term, fields, exact, ok := searchParams(w, r, []string{"name", "email", "phone", "notes", "custom_fields"})
	if !ok {
		return
	}
	s.mu.Lock()
	var items []map[string]any
	for _, p := range candidates(s.persons, s.personsByEmail, term, exact && !slices.Contains(fields, "name")) {
		if !s.indexed(p.AddTime) {
			continue
		}
		hit := slices.Contains(fields, "name") && matches(p.Name, term, exact)
		for _, e := range p.Emails {
			hit = hit || (slices.Contains(fields, "email") && matches(e, term, exact))
		}
		if !hit {
			continue
		}
		var org any
		if o := s.orgs[p.OrgID]; o != nil {
			org = map[string]any{"id": o.ID, "name": o.Name, "address": nil}
		}
		items = append(items, map[string]any{"result_score": 1, "item": map[string]any{
			"id": p.ID, "type": "person", "name": p.Name, "phones": []string{}, "emails": p.Emails,
			"visible_to": 3, "owner": map[string]any{"id": 1}, "organization": org,
			"custom_fields": []string{}, "notes": []string{},
		}})
	}
	s.mu.Unlock()
	writeSearch(w, items)
}

func (s *Server) searchOrganizations(w http.ResponseWriter, r *http.Request) {
	term, fields, exact, ok := searchParams(w, r, []string{"name", "address", "notes", "custom_fields"})
	if !ok {
		return
	}
	s.mu.Lock()
	var items []map[string]any
	for _, o := range candidates(s.orgs, s.orgsByValue, term, exact) {
		if !s.indexed(o.AddTime) {
			continue
		}
		hit := slices.Contains(fields, "name") && matches(o.Name, term, exact)
		custom := []string{}
		for _, v := range o.Fields {
			if slices.Contains(fields, "custom_fields") && matches(v, term, exact) {
				hit = true
				custom = append(custom, v)
			}
		}
		if !hit {
			continue
		}
		items = append(items, map[string]any{"result_score": 1, "item": map[string]any{
			"id": o.ID, "type": "organization", "name": o.Name, "address": nil, "visible_to": 3,
			"owner": map[string]any{"id": 1}, "custom_fields": custom, "notes": []string{},
		}})
	}
	s.mu.Unlock()
	writeSearch(w, items)
}

// candidates returns the items a search must check (under the server's lock), by id: through
// the index for an exact term, else all of them.
func candidates[T any](all map[int64]*T, index map[string][]int64, term string, exact bool) []*T {
	var ids []int64
	if exact {
		ids = slices.Clone(index[strings.ToLower(term)])
	} else {
		for id := range all {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := make([]*T, 0, len(ids))
	for _, id := range slices.Compact(ids) {
		out = append(out, all[id])
	}
	return out
}

func writeSearch(w http.ResponseWriter, items []map[string]any) {
	if items == nil {
		items = []map[string]any{}
	}
	writeData(w, http.StatusOK, map[string]any{"items": items},
		map[string]any{"pagination": map[string]any{"start": 0, "limit": 100, "more_items_in_collection": false}})
}

// decode reads a JSON object body.
func decode(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, bool) {
	var body map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "Invalid JSON body: "+err.Error())
		return nil, false
	}
	return body, true
}

func str(body map[string]json.RawMessage, key string) (string, bool) {
	raw, ok := body[key]
	if !ok {
		return "", false
	}
	var v string
	if json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	return v, true
}

// num reads an id-like number, also given as a string as Pipedrive accepts.
func num(body map[string]json.RawMessage, key string) (int64, bool) {
	raw, ok := body[key]
	if !ok || string(raw) == "null" {
		return 0, false
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil {
		return int64(f), true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// emails reads a person's email field: a string, strings, or {value, primary, label} objects.
func emails(raw json.RawMessage) ([]string, bool) {
	if raw == nil {
		return nil, true
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, true
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many, true
	}
	var objs []struct {
		Value string `json:"value"`
	}
	if json.Unmarshal(raw, &objs) != nil {
		return nil, false
	}
	many = nil // a failed Unmarshal may have filled it partly
	for _, o := range objs {
		many = append(many, o.Value)
	}
	return many, true
}

func (s *Server) addPerson(w http.ResponseWriter, r *http.Request) {
	body, ok := decode(w, r)
	if !ok {
		return
	}
	name, _ := str(body, "name")
	if strings.TrimSpace(name) == "" {
		writeError(w, http.StatusBadRequest, "Name must be given.")
		return
	}
	mails, ok := emails(body["email"])
	if !ok {
		writeError(w, http.StatusBadRequest, "email must be a string or a list of email objects")
		return
	}
	orgID, _ := num(body, "org_id")
	s.mu.Lock()
	if orgID != 0 && s.orgs[orgID] == nil {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Organization not found.")
		return
	}
	s.nextID++
	p := &Person{ID: s.nextID, Name: name, Emails: mails, OrgID: orgID, AddTime: s.now()}
	s.persons[p.ID] = p
	for _, m := range mails {
		k := strings.ToLower(m)
		s.personsByEmail[k] = append(s.personsByEmail[k], p.ID)
	}
	s.mu.Unlock()
	list := make([]map[string]any, 0, len(mails))
	for i, m := range mails {
		list = append(list, map[string]any{"value": m, "primary": i == 0, "label": "work"})
	}
	var org any
	if orgID != 0 {
		org = orgID
	}
	writeData(w, http.StatusCreated, map[string]any{
		"id": p.ID, "name": p.Name, "email": list, "org_id": org, "add_time": p.AddTime.UTC().Format(time.DateTime),
	}, nil)
}

// customFieldKey matches Pipedrive's custom field keys (40 hex digits).
var customFieldKey = regexp.MustCompile(`^[0-9a-f]{40}$`)

func (s *Server) addOrganization(w http.ResponseWriter, r *http.Request) {
	body, ok := decode(w, r)
	if !ok {
		return
	}
	name, _ := str(body, "name")
	if strings.TrimSpace(name) == "" {
		writeError(w, http.StatusBadRequest, "Name must be given.")
		return
	}
	fields := map[string]string{}
	for k := range body {
		if customFieldKey.MatchString(k) {
			v, ok := str(body, k)
			if !ok {
				writeError(w, http.StatusBadRequest, "Custom field "+k+" must be a text value.")
				return
			}
			fields[k] = v
		}
	}
	s.mu.Lock()
	s.nextID++
	o := &Organization{ID: s.nextID, Name: name, Fields: fields, AddTime: s.now()}
	s.orgs[o.ID] = o
	for _, v := range append([]string{name}, mapValues(fields)...) {
		k := strings.ToLower(v)
		s.orgsByValue[k] = append(s.orgsByValue[k], o.ID)
	}
	s.mu.Unlock()
	data := map[string]any{"id": o.ID, "name": o.Name, "add_time": o.AddTime.UTC().Format(time.DateTime)}
	for k, v := range fields {
		data[k] = v
	}
	writeData(w, http.StatusCreated, data, nil)
}

var (
	dueDate = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	dueTime = regexp.MustCompile(`^\d{2}:\d{2}$`)
)

// applyActivity validates body and writes its fields into a (under s.mu). create requires a
// subject.
func (s *Server) applyActivity(a *Activity, body map[string]json.RawMessage, create bool) string {
	if v, ok := str(body, "subject"); ok || create {
		if strings.TrimSpace(v) == "" {
			return "Subject is required."
		}
		a.Subject = v
	}
	if v, ok := str(body, "type"); ok {
		if !slices.Contains(s.activityTypes, v) {
			return "Activity type " + strconv.Quote(v) + " is not valid."
		}
		a.Type = v
	} else if create {
		a.Type = "call"
	}
	if v, ok := str(body, "due_date"); ok {
		if _, err := time.Parse(time.DateOnly, v); err != nil || !dueDate.MatchString(v) {
			return "due_date must be in the format YYYY-MM-DD."
		}
		a.DueDate = v
	}
	if v, ok := str(body, "due_time"); ok && v != "" {
		if _, err := time.Parse("15:04", v); err != nil || !dueTime.MatchString(v) {
			return "due_time must be in the format HH:MM."
		}
		a.DueTime = v
	}
	if v, ok := num(body, "done"); ok {
		if v != 0 && v != 1 {
			return "done must be 0 or 1."
		}
		a.Done = v == 1
	}
	if id, ok := num(body, "person_id"); ok {
		if id != 0 && s.persons[id] == nil {
			return "Person not found."
		}
		a.PersonID = id
	}
	if id, ok := num(body, "org_id"); ok {
		if id != 0 && s.orgs[id] == nil {
			return "Organization not found."
		}
		a.OrgID = id
	}
	if id, ok := num(body, "user_id"); ok {
		a.UserID = id
	}
	if v, ok := str(body, "note"); ok {
		a.Note = v
	}
	return ""
}

func activityData(a *Activity) map[string]any {
	done := 0
	if a.Done {
		done = 1
	}
	return map[string]any{
		"id": a.ID, "subject": a.Subject, "type": a.Type, "done": done == 1, "due_date": a.DueDate,
		"due_time": a.DueTime, "person_id": a.PersonID, "org_id": nullable(a.OrgID), "user_id": a.UserID,
		"note": a.Note, "active_flag": true,
	}
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func nullable(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func (s *Server) addActivity(w http.ResponseWriter, r *http.Request) {
	body, ok := decode(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	a := &Activity{}
	if msg := s.applyActivity(a, body, true); msg != "" {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	s.nextID++
	a.ID = s.nextID
	s.activities[a.ID] = a
	s.actsByPerson[a.PersonID] = append(s.actsByPerson[a.PersonID], a.ID)
	data := activityData(a)
	s.mu.Unlock()
	writeData(w, http.StatusCreated, data, map[string]any{"more_activities_scheduled_in_context": false})
}

// pathID reads the {id} path value; it answers 404 for ids that are not positive integers.
func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusNotFound, "Not found.")
		return 0, false
	}
	return id, true
}

func (s *Server) getActivity(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	a := s.activities[id]
	var data map[string]any
	if a != nil {
		data = activityData(a)
	}
	s.mu.Unlock()
	if a == nil {
		writeError(w, http.StatusNotFound, "Activity not found.")
		return
	}
	writeData(w, http.StatusOK, data, nil)
}

func (s *Server) updateActivity(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	body, ok := decode(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	a := s.activities[id]
	if a == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Activity not found.")
		return
	}
	next := *a
	if msg := s.applyActivity(&next, body, false); msg != "" {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	next.Updates++
	if next.PersonID != a.PersonID {
		s.actsByPerson[a.PersonID] = slices.DeleteFunc(s.actsByPerson[a.PersonID], func(id int64) bool { return id == a.ID })
		s.actsByPerson[next.PersonID] = append(s.actsByPerson[next.PersonID], a.ID)
		slices.Sort(s.actsByPerson[next.PersonID])
	}
	*a = next
	data := activityData(a)
	s.mu.Unlock()
	writeData(w, http.StatusOK, data, nil)
}

func (s *Server) personActivities(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	start, limit, ok := paging(w, r, 500)
	if !ok {
		return
	}
	s.mu.Lock()
	if s.persons[id] == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Person not found.")
		return
	}
	var items []map[string]any
	for _, aid := range s.actsByPerson[id] {
		items = append(items, activityData(s.activities[aid]))
	}
	s.mu.Unlock()
	page(w, items, start, limit)
}

func (s *Server) personFiles(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	start, limit, ok := paging(w, r, 100)
	if !ok {
		return
	}
	s.mu.Lock()
	if s.persons[id] == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Person not found.")
		return
	}
	var items []map[string]any
	for _, fid := range s.filesByPerson[id] {
		items = append(items, fileData(s.files[fid]))
	}
	s.mu.Unlock()
	page(w, items, start, limit)
}

func fileData(f *File) map[string]any {
	return map[string]any{
		"id": f.ID, "file_name": f.Name, "file_size": f.Size, "activity_id": nullable(f.ActivityID),
		"person_id": nullable(f.PersonID), "org_id": nullable(f.OrgID), "active_flag": true,
	}
}

func (s *Server) addFile(w http.ResponseWriter, r *http.Request) {
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "multipart/form-data" || params["boundary"] == "" {
		writeError(w, http.StatusBadRequest, "Request must be multipart/form-data.")
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, "Reading multipart body: "+err.Error())
		return
	}
	f := &File{}
	ids := map[string]int64{}
	seenFile := false
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "Reading multipart body: "+err.Error())
			return
		}
		if part.FormName() == "file" {
			seenFile = true
			f.Name = part.FileName()
			h := sha256.New()
			n, err := io.Copy(h, io.LimitReader(part, s.maxUpload+1))
			if err != nil {
				writeError(w, http.StatusBadRequest, "Reading file: "+err.Error())
				return
			}
			if n > s.maxUpload {
				writeError(w, http.StatusRequestEntityTooLarge, "File is too large.")
				return
			}
			f.Size, f.Sha256 = n, hex.EncodeToString(h.Sum(nil))
			continue
		}
		v, _ := io.ReadAll(io.LimitReader(part, 64))
		if id, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			ids[part.FormName()] = id
		}
	}
	if !seenFile || f.Name == "" {
		writeError(w, http.StatusBadRequest, "No file was uploaded (the file part is required).")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id := ids["activity_id"]; id != 0 && s.activities[id] == nil {
		writeError(w, http.StatusBadRequest, "Activity not found.")
		return
	}
	if id := ids["person_id"]; id != 0 && s.persons[id] == nil {
		writeError(w, http.StatusBadRequest, "Person not found.")
		return
	}
	if id := ids["org_id"]; id != 0 && s.orgs[id] == nil {
		writeError(w, http.StatusBadRequest, "Organization not found.")
		return
	}
	f.ActivityID, f.PersonID, f.OrgID = ids["activity_id"], ids["person_id"], ids["org_id"]
	s.nextID++
	f.ID = s.nextID
	s.files[f.ID] = f
	if f.PersonID != 0 {
		s.filesByPerson[f.PersonID] = append(s.filesByPerson[f.PersonID], f.ID)
	}
	writeData(w, http.StatusCreated, fileData(f), nil)
}
