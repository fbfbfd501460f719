package hubspottest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm/hubspot/hubspottest"
)

// hubspotError is HubSpot's error JSON.
type hubspotError struct {
	Status        string `json:"status"`
	Message       string `json:"message"`
	CorrelationID string `json:"correlationId"`
	Category      string `json:"category"`
	PolicyName    string `json:"policyName"`
	ErrorType     string `json:"errorType"`
	Errors        []struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	} `json:"errors"`
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) error(t *testing.T) hubspotError {
	t.Helper()
	var e hubspotError
	if err := json.Unmarshal(a.body, &e); err != nil {
		t.Fatalf("error body %s: %v", a.body, err)
	}
	if e.Status == "" || e.Message == "" || e.CorrelationID == "" {
		t.Errorf("error body %s lacks status, message or correlationId", a.body)
	}
	return e
}

func request(t *testing.T, srv *hubspottest.Server, token, method, path string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func contactInputs(n int) map[string]any {
	inputs := make([]map[string]any, n)
	for i := range inputs {
		email := fmt.Sprintf("c%d@example.com", i)
		inputs[i] = map[string]any{"id": email, "idProperty": "email", "properties": map[string]string{"firstname": "C"}}
	}
	return map[string]any{"inputs": inputs}
}

func emailCreate(extra map[string]string) map[string]any {
	props := map[string]string{"hs_timestamp": "2026-11-23T10:30:00Z", "hs_email_subject": "hi"}
	for k, v := range extra {
		props[k] = v
	}
	return map[string]any{"properties": props}
}

func TestEnforcement(t *testing.T) {
	for _, tt := range []struct {
		name         string
		setup        func(*hubspottest.Server)
		method, path string
		body         any
		noAuth       bool
		wantStatus   int
		wantCategory string
		wantCode     string
		wantMessage  string
	}{
		{
			name: "no token", noAuth: true, method: http.MethodPost, path: "/crm/v3/objects/emails", body: emailCreate(nil),
			wantStatus: 401, wantCategory: "INVALID_AUTHENTICATION",
		},
		{
			name: "batch of 101", method: http.MethodPost, path: "/crm/v3/objects/contacts/batch/upsert", body: contactInputs(101),
			wantStatus: 400, wantCategory: "VALIDATION_ERROR", wantMessage: "at most 100",
		},
		{
			name: "duplicate ids in a batch", method: http.MethodPost, path: "/crm/v3/objects/contacts/batch/upsert",
			body: map[string]any{"inputs": []map[string]any{
				{"id": "a@example.com", "idProperty": "email", "properties": map[string]string{}},
				{"id": "A@example.com", "idProperty": "email", "properties": map[string]string{}},
			}},
			wantStatus: 400, wantCategory: "VALIDATION_ERROR", wantMessage: "Duplicate IDs",
		},
		{
			name: "batch upsert by a non-unique property", method: http.MethodPost, path: "/crm/v3/objects/companies/batch/upsert",
			body:       map[string]any{"inputs": []map[string]any{{"id": "example.com", "idProperty": "domain", "properties": map[string]string{}}}},
			wantStatus: 400, wantCategory: "VALIDATION_ERROR", wantMessage: "not a unique value property",
		},
		{
			name: "invalid email", method: http.MethodPost, path: "/crm/v3/objects/contacts/batch/upsert",
			body:       map[string]any{"inputs": []map[string]any{{"id": "nope", "idProperty": "email", "properties": map[string]string{}}}},
			wantStatus: 400, wantCategory: "VALIDATION_ERROR", wantCode: "INVALID_EMAIL", wantMessage: "Property values were not valid",
		},
		{
			name: "hs_timestamp is required", method: http.MethodPost, path: "/crm/v3/objects/emails",
			body: map[string]any{"properties": map[string]string{"hs_email_subject": "hi"}}, wantStatus: 400, wantCode: "REQUIRED_PROPERTY",
		},
		{
			name: "unknown property", method: http.MethodPost, path: "/crm/v3/objects/emails",
			body: emailCreate(map[string]string{hubspottest.ExternalIDProperty: "x"}), wantStatus: 400, wantCode: "PROPERTY_DOESNT_EXIST",
		},
		{
			name: "read-only property", method: http.MethodPost, path: "/crm/v3/objects/emails",
			body: emailCreate(map[string]string{"hs_email_from_email": "a@example.com"}), wantStatus: 400, wantCode: "READ_ONLY_VALUE",
		},
		{
			name: "not an option", method: http.MethodPost, path: "/crm/v3/objects/emails",
			body: emailCreate(map[string]string{"hs_email_direction": "INBOUND"}), wantStatus: 400, wantCode: "INVALID_OPTION",
		},
		{
			name: "text over 65,536 characters", method: http.MethodPost, path: "/crm/v3/objects/emails",
			body: emailCreate(map[string]string{"hs_email_text": strings.Repeat("x", hubspottest.MaxPropertyChars+1)}), wantStatus: 400, wantCode: "INVALID_LENGTH",
		},
		{
			name: "association to a missing record", method: http.MethodPost, path: "/crm/v3/objects/emails",
			body: map[string]any{"properties": map[string]string{"hs_timestamp": "1795429800000"}, "associations": []map[string]any{
				{"to": map[string]any{"id": 999999}, "types": []map[string]any{{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 198}}},
			}}, wantStatus: 400, wantMessage: "associations are invalid",
		},
		{
			name: "unknown association type", method: http.MethodPost, path: "/crm/v3/objects/emails",
			body: map[string]any{"properties": map[string]string{"hs_timestamp": "1795429800000"}, "associations": []map[string]any{
				{"to": map[string]any{"id": "1"}, "types": []map[string]any{{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}}},
			}}, wantStatus: 400, wantMessage: "not a valid association type",
		},
		{
			name: "unique value conflict", setup: func(s *hubspottest.Server) {
				s.DefineProperty(hubspottest.Emails, hubspottest.ExternalIDProperty, true)
				s.Seed(hubspottest.Emails, map[string]string{hubspottest.ExternalIDProperty: "ext-1"})
			}, method: http.MethodPost, path: "/crm/v3/objects/emails", body: emailCreate(map[string]string{hubspottest.ExternalIDProperty: "ext-1"}),
			wantStatus: 409, wantCategory: "CONFLICT", wantMessage: "Existing ID: 101",
		},
		{
			name: "search limit over 200", method: http.MethodPost, path: "/crm/v3/objects/emails/search",
			body: map[string]any{"limit": 201}, wantStatus: 400, wantMessage: "limit",
		},
		{
			name: "search on an unknown property", method: http.MethodPost, path: "/crm/v3/objects/emails/search",
			body:       map[string]any{"filterGroups": []map[string]any{{"filters": []map[string]string{{"propertyName": "nope", "operator": "EQ", "value": "x"}}}}},
			wantStatus: 400, wantMessage: "does not exist",
		},
		{
			name: "hs_ property names are HubSpot's", method: http.MethodPost, path: "/crm/v3/properties/emails",
			body:       map[string]any{"name": "hs_email_subject", "label": "x", "type": "string", "fieldType": "text", "groupName": "emailinformation"},
			wantStatus: 400, wantCode: "INVALID_NAME",
		},
		{
			name: "property exists", setup: func(s *hubspottest.Server) { s.DefineProperty(hubspottest.Emails, "custom", false) },
			method: http.MethodPost, path: "/crm/v3/properties/emails",
			body:       map[string]any{"name": "custom", "label": "x", "type": "string", "fieldType": "text", "groupName": "emailinformation"},
			wantStatus: 409, wantCategory: "OBJECT_ALREADY_EXISTS",
		},
		{
			name: "property group missing", method: http.MethodPost, path: "/crm/v3/properties/emails",
			body:       map[string]any{"name": "custom", "label": "x", "type": "string", "fieldType": "text", "groupName": "nope"},
			wantStatus: 400, wantCode: "INVALID_GROUP",
		},
		{
			name: "update of a missing record", method: http.MethodPatch, path: "/crm/v3/objects/emails/424242",
			body: map[string]any{"properties": map[string]string{}}, wantStatus: 404, wantCategory: "OBJECT_NOT_FOUND",
		},
		{name: "not JSON", method: http.MethodPost, path: "/crm/v3/objects/emails", body: "{", wantStatus: 400, wantCategory: "VALIDATION_ERROR"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := hubspottest.NewServer(t)
			if tt.setup != nil {
				tt.setup(srv)
			}
			tok := srv.Token()
			if tt.noAuth {
				tok = ""
			}
			a := request(t, srv, tok, tt.method, tt.path, tt.body)
			if a.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", a.status, tt.wantStatus, a.body)
			}
			e := a.error(t)
			if tt.wantCategory != "" && e.Category != tt.wantCategory {
				t.Errorf("category %q, want %q", e.Category, tt.wantCategory)
			}
			if tt.wantCode != "" && (len(e.Errors) == 0 || e.Errors[0].Code != tt.wantCode) {
				t.Errorf("errors %+v, want code %s", e.Errors, tt.wantCode)
			}
			if !strings.Contains(e.Message, tt.wantMessage) {
				t.Errorf("message %q, want it to contain %q", e.Message, tt.wantMessage)
			}
		})
	}
}

func TestBatchUpsertAndSearch(t *testing.T) {
	srv := hubspottest.NewServer(t)
	a := request(t, srv, srv.Token(), http.MethodPost, "/crm/v3/objects/contacts/batch/upsert", contactInputs(100))
	if a.status != http.StatusOK {
		t.Fatalf("batch of 100: %d %s", a.status, a.body)
	}
	var resp struct {
		Status  string `json:"status"`
		Results []struct {
			ID  string `json:"id"`
			New bool   `json:"new"`
		} `json:"results"`
	}
	if err := json.Unmarshal(a.body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Status != "COMPLETE" || len(resp.Results) != 100 || !resp.Results[0].New {
		t.Fatalf("answer %s", a.body)
	}
	a = request(t, srv, srv.Token(), http.MethodPost, "/crm/v3/objects/contacts/batch/upsert", contactInputs(1))
	if err := json.Unmarshal(a.body, &resp); err != nil || resp.Results[0].New {
		t.Errorf("upsert of an existing contact: new = %v, want false (%s)", resp.Results[0].New, a.body)
	}

	a = request(t, srv, srv.Token(), http.MethodPost, "/crm/v3/objects/contacts/search", map[string]any{
		"filterGroups": []map[string]any{
			{"filters": []map[string]string{{"propertyName": "email", "operator": "EQ", "value": "C7@EXAMPLE.COM"}}},
			{"filters": []map[string]string{{"propertyName": "email", "operator": "EQ", "value": "c8@example.com"}}},
		},
		"properties": []string{"firstname"}, "limit": 1,
	})
	var found struct {
		Total   int `json:"total"`
		Results []struct {
			Properties map[string]*string `json:"properties"`
		} `json:"results"`
		Paging struct {
			Next struct {
				After string `json:"after"`
			} `json:"next"`
		} `json:"paging"`
	}
	if err := json.Unmarshal(a.body, &found); err != nil {
		t.Fatal(err)
	}
	if found.Total != 2 || len(found.Results) != 1 || found.Paging.Next.After != "1" || *found.Results[0].Properties["email"] != "c7@example.com" {
		t.Errorf("search answer %s", a.body)
	}
}

func TestSearchLag(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	srv := hubspottest.NewServer(t, hubspottest.WithSearchLag(5*time.Second), hubspottest.WithClock(func() time.Time { return now }))
	srv.Seed(hubspottest.Companies, map[string]string{"domain": "example.com"})
	search := func() int {
		a := request(t, srv, srv.Token(), http.MethodPost, "/crm/v3/objects/companies/search", map[string]any{})
		var r struct {
			Total int `json:"total"`
		}
		_ = json.Unmarshal(a.body, &r)
		return r.Total
	}
	if n := search(); n != 0 {
		t.Errorf("found %d right after the write, want 0 (index lag)", n)
	}
	now = now.Add(6 * time.Second)
	if n := search(); n != 1 {
		t.Errorf("found %d after the lag, want 1", n)
	}
}

func TestTokens(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	srv := hubspottest.NewServer(t, hubspottest.WithClock(func() time.Time { return now }))
	id, secret, refresh := srv.OAuth()
	exchange := func(form url.Values, contentType string) answer {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL()+"/oauth/v1/token", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return answer{status: resp.StatusCode, body: b}
	}
	good := url.Values{"grant_type": {"refresh_token"}, "client_id": {id}, "client_secret": {secret}, "refresh_token": {refresh}}
	for _, tt := range []struct {
		name, key, value, wantStatus string
	}{
		{"unknown refresh token", "refresh_token", "nope", "BAD_REFRESH_TOKEN"},
		{"wrong client", "client_id", "nope", "BAD_CLIENT_ID"},
		{"wrong grant", "grant_type", "authorization_code", "BAD_GRANT_TYPE"},
	} {
		form := url.Values{}
		for k, v := range good {
			form[k] = v
		}
		form.Set(tt.key, tt.value)
		a := exchange(form, "application/x-www-form-urlencoded")
		if a.status != 400 || !strings.Contains(string(a.body), tt.wantStatus) {
			t.Errorf("%s: %d %s", tt.name, a.status, a.body)
		}
	}
	if a := exchange(good, "application/json"); a.status != 400 {
		t.Errorf("JSON token request: %d, want 400", a.status)
	}

	a := exchange(good, "application/x-www-form-urlencoded")
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(a.body, &tok); err != nil || tok.AccessToken == "" || tok.ExpiresIn != 1800 || tok.TokenType != "bearer" {
		t.Fatalf("token answer %d %s", a.status, a.body)
	}
	if a := request(t, srv, tok.AccessToken, http.MethodGet, "/crm/v3/properties/emails/hs_timestamp", nil); a.status != 200 {
		t.Fatalf("fresh token: %d %s", a.status, a.body)
	}
	now = now.Add(31 * time.Minute)
	a = request(t, srv, tok.AccessToken, http.MethodGet, "/crm/v3/properties/emails/hs_timestamp", nil)
	if a.status != 401 || a.error(t).Category != "EXPIRED_AUTHENTICATION" {
		t.Errorf("expired token: %d %s", a.status, a.body)
	}
	if a := request(t, srv, srv.Token(), http.MethodGet, "/crm/v3/properties/emails/hs_timestamp", nil); a.status != 200 {
		t.Errorf("the private-app token expired: %d", a.status)
	}
}

func TestRateLimitAndFaults(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	srv := hubspottest.NewServer(t, hubspottest.WithRateLimit(2, 10*time.Second), hubspottest.WithClock(func() time.Time { return now }))
	get := func() answer {
		return request(t, srv, srv.Token(), http.MethodGet, "/crm/v3/properties/emails/hs_timestamp", nil)
	}
	get()
	now = now.Add(3 * time.Second)
	get()
	a := get()
	if a.status != 429 || a.header.Get("Retry-After") != "7" {
		t.Fatalf("third request in the window: %d, Retry-After %q, want 429 and 7", a.status, a.header.Get("Retry-After"))
	}
	if e := a.error(t); e.PolicyName != "TEN_SECONDLY_ROLLING" || e.ErrorType != "RATE_LIMIT" {
		t.Errorf("429 body %s", a.body)
	}
	now = now.Add(8 * time.Second)
	if a := get(); a.status != 200 {
		t.Errorf("after the window: %d", a.status)
	}

	srv.FailNext(1, 503, "4")
	if a := get(); a.status != 503 || a.header.Get("Retry-After") != "4" {
		t.Errorf("injected 503: %d %q", a.status, a.header.Get("Retry-After"))
	}
	srv.FailNext(1, 500, "")
	if a := request(t, srv, "wrong", http.MethodGet, "/crm/v3/properties/emails/hs_timestamp", nil); a.status != 401 {
		t.Errorf("unauthorized request: %d", a.status)
	}
	now = now.Add(time.Minute)
	if a := get(); a.status != 500 {
		t.Errorf("the fault was consumed by an unauthorized request: %d", a.status)
	}
}

func TestUpdateByIDPropertyAndAssociations(t *testing.T) {
	srv := hubspottest.NewServer(t)
	srv.DefineProperty(hubspottest.Emails, hubspottest.ExternalIDProperty, true)
	contact := srv.Seed(hubspottest.Contacts, map[string]string{"email": "a@example.com"})
	company := srv.Seed(hubspottest.Companies, map[string]string{"domain": "example.com"})
	a := request(t, srv, srv.Token(), http.MethodPost, "/crm/v3/objects/emails", map[string]any{
		"properties": map[string]string{
			"hs_timestamp": "1795429800123", hubspottest.ExternalIDProperty: "ext-9",
			"hs_email_headers": `{"from":{"email":"a@example.com","firstName":"Ann"},"to":[{"email":"b@example.com"}]}`,
		},
		"associations": []map[string]any{
			{"to": map[string]any{"id": contact}, "types": []map[string]any{{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 198}}},
			{"to": map[string]any{"id": company}, "types": []map[string]any{{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 186}}},
		},
	})
	if a.status != 201 {
		t.Fatalf("create: %d %s", a.status, a.body)
	}
	a = request(t, srv, srv.Token(), http.MethodPatch, "/crm/v3/objects/emails/ext-9?idProperty="+hubspottest.ExternalIDProperty,
		map[string]any{"properties": map[string]string{"hs_email_subject": "updated"}})
	if a.status != 200 {
		t.Fatalf("update by idProperty: %d %s", a.status, a.body)
	}
	e, _ := srv.Email("ext-9")
	want := map[string]string{
		"hs_email_subject": "updated", "hs_timestamp": "2026-11-23T10:30:00.123Z",
		"hs_email_from_email": "a@example.com", "hs_email_from_firstname": "Ann", "hs_email_to_email": "b@example.com",
	}
	for k, v := range want {
		if e.Properties[k] != v {
			t.Errorf("%s = %q, want %q", k, e.Properties[k], v)
		}
	}
	if e.Associations[hubspottest.Contacts][0] != contact || e.Associations[hubspottest.Companies][0] != company {
		t.Errorf("associations %v", e.Associations)
	}
	a = request(t, srv, srv.Token(), http.MethodPut, "/crm/v4/objects/contact/"+contact+"/associations/default/company/"+company, nil)
	if a.status != 200 {
		t.Fatalf("default association: %d %s", a.status, a.body)
	}
	if c, _ := srv.Record(hubspottest.Contacts, contact); len(c.Associations[hubspottest.Companies]) != 1 {
		t.Errorf("contact associations %v", c.Associations)
	}
}
