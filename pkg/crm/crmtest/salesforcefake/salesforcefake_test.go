package salesforcefake_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm/crmtest/salesforcefake"
)

// testKey is generated once per test function that needs it; 2048-bit generation is slow
// under -race.
func testKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type claims struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Aud any    `json:"aud"`
	Exp int64  `json:"exp"`
}

func sign(t *testing.T, key *rsa.PrivateKey, alg string, c claims) string {
	t.Helper()
	enc := base64.RawURLEncoding
	hdr, _ := json.Marshal(map[string]string{"alg": alg})
	body, _ := json.Marshal(c)
	in := enc.EncodeToString(hdr) + "." + enc.EncodeToString(body)
	d := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + enc.EncodeToString(sig)
}

type answer struct {
	status int
	body   string
	header http.Header
}

func call(t *testing.T, method, u, token, contentType, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

func grant(t *testing.T, s *salesforcefake.Server, form url.Values) answer {
	t.Helper()
	return call(t, http.MethodPost, s.LoginURL()+"/services/oauth2/token", "", "application/x-www-form-urlencoded", form.Encode())
}

// login returns an access token from the JWT bearer grant.
func login(t *testing.T, s *salesforcefake.Server, key *rsa.PrivateKey) string {
	t.Helper()
	a := grant(t, s, url.Values{"grant_type": {salesforcefake.JWTBearerGrant}, "assertion": {sign(t, key, "RS256", claims{
		Iss: s.ClientID(), Sub: s.Username(), Aud: s.LoginURL(), Exp: time.Now().Add(2 * time.Minute).Unix(),
	})}})
	if a.status != http.StatusOK {
		t.Fatalf("token: %d %s", a.status, a.body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		InstanceURL string `json:"instance_url"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal([]byte(a.body), &tok); err != nil {
		t.Fatal(err)
	}
	if tok.InstanceURL != s.InstanceURL() || tok.TokenType != "Bearer" || tok.AccessToken == "" {
		t.Fatalf("token response %s", a.body)
	}
	return tok.AccessToken
}

func newServer(t *testing.T, key *rsa.PrivateKey, opts ...salesforcefake.Option) *salesforcefake.Server {
	t.Helper()
	return salesforcefake.New(t, append([]salesforcefake.Option{
		salesforcefake.WithJWTBearer(salesforcefake.DefaultClientID, salesforcefake.DefaultUsername, &key.PublicKey),
	}, opts...)...)
}

func TestTokenEndpoint(t *testing.T) {
	key, other := testKey(t), testKey(t)
	s := newServer(t, key, salesforcefake.WithRefreshToken("sekret", "5Aep-refresh"))
	now := time.Now()
	good := claims{Iss: s.ClientID(), Sub: s.Username(), Aud: s.LoginURL(), Exp: now.Add(2 * time.Minute).Unix()}
	with := func(f func(*claims)) claims {
		c := good
		f(&c)
		return c
	}
	jwt := func(k *rsa.PrivateKey, alg string, c claims) url.Values {
		return url.Values{"grant_type": {salesforcefake.JWTBearerGrant}, "assertion": {sign(t, k, alg, c)}}
	}
	for _, tt := range []struct {
		name     string
		form     url.Values
		status   int
		wantBody string
	}{
		{"jwt ok", jwt(key, "RS256", good), 200, `"instance_url":"` + s.InstanceURL()},
		{"jwt aud as array", jwt(key, "RS256", with(func(c *claims) { c.Aud = []string{s.LoginURL()} })), 200, "access_token"},
		{"jwt signed by another key", jwt(other, "RS256", good), 400, `{"error":"invalid_grant","error_description":"invalid assertion"}`},
		{"jwt alg none", jwt(key, "none", good), 400, "invalid assertion"},
		{"jwt tampered", url.Values{"grant_type": {salesforcefake.JWTBearerGrant}, "assertion": {strings.Replace(sign(t, key, "RS256", good), ".", ".e30", 1)}}, 400, "invalid assertion"},
		{"jwt not three parts", url.Values{"grant_type": {salesforcefake.JWTBearerGrant}, "assertion": {"abc"}}, 400, "invalid assertion"},
		{"jwt wrong iss", jwt(key, "RS256", with(func(c *claims) { c.Iss = "someone" })), 400, `"invalid_client_id"`},
		{"jwt wrong aud", jwt(key, "RS256", with(func(c *claims) { c.Aud = "https://login.salesforce.com" })), 400, "audience is invalid"},
		{"jwt expired", jwt(key, "RS256", with(func(c *claims) { c.Exp = now.Add(-time.Minute).Unix() })), 400, "invalid assertion"},
		{"jwt exp too far", jwt(key, "RS256", with(func(c *claims) { c.Exp = now.Add(10 * time.Minute).Unix() })), 400, "invalid assertion"},
		{"jwt unknown user", jwt(key, "RS256", with(func(c *claims) { c.Sub = "nobody@x" })), 400, "user hasn't approved this consumer"},
		{"refresh ok", url.Values{"grant_type": {"refresh_token"}, "client_id": {s.ClientID()}, "client_secret": {"sekret"}, "refresh_token": {"5Aep-refresh"}}, 200, "access_token"},
		{"refresh bad token", url.Values{"grant_type": {"refresh_token"}, "client_id": {s.ClientID()}, "client_secret": {"sekret"}, "refresh_token": {"old"}}, 400, "expired access/refresh token"},
		{"refresh bad secret", url.Values{"grant_type": {"refresh_token"}, "client_id": {s.ClientID()}, "client_secret": {"nope"}, "refresh_token": {"5Aep-refresh"}}, 400, `"invalid_client"`},
		{"refresh bad client", url.Values{"grant_type": {"refresh_token"}, "client_id": {"x"}, "refresh_token": {"5Aep-refresh"}}, 400, "invalid_client_id"},
		{"password grant", url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := grant(t, s, tt.form)
			if a.status != tt.status || !strings.Contains(a.body, tt.wantBody) {
				t.Errorf("got %d %s, want %d containing %s", a.status, a.body, tt.status, tt.wantBody)
			}
		})
	}
	if a := call(t, http.MethodGet, s.LoginURL()+"/services/oauth2/token", "", "", ""); a.status != 400 {
		t.Errorf("GET token endpoint: %d", a.status)
	}
	if got := s.Grants(); got != 3 {
		t.Errorf("Grants = %d, want 3", got)
	}
}

func TestTokenFaults(t *testing.T) {
	key := testKey(t)
	s := newServer(t, key)
	s.FailTokenNext(1, 503, "server_unavailable")
	a := grant(t, s, url.Values{"grant_type": {salesforcefake.JWTBearerGrant}, "assertion": {"x"}})
	if a.status != 503 || !strings.Contains(a.body, "server_unavailable") {
		t.Fatalf("got %d %s", a.status, a.body)
	}
	login(t, s, key)
	if s.TokenRequests() != 2 || s.Grants() != 1 {
		t.Errorf("TokenRequests = %d, Grants = %d", s.TokenRequests(), s.Grants())
	}
}

func TestSessionAuth(t *testing.T) {
	key := testKey(t)
	s := newServer(t, key)
	u := s.InstanceURL() + "/services/data/v62.0/sobjects/Contact/" + salesforcefake.ContactEmailField + "/a@example.com"
	const invalid = `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`
	for _, token := range []string{"", "forged"} {
		if a := call(t, http.MethodGet, u, token, "", ""); a.status != 401 || a.body != invalid {
			t.Errorf("token %q: %d %s", token, a.status, a.body)
		}
	}
	tok := login(t, s, key)
	if a := call(t, http.MethodGet, u, tok, "", ""); a.status != 404 {
		t.Errorf("valid session: %d %s, want 404 for a missing record", a.status, a.body)
	}
	s.ExpireSessions()
	if a := call(t, http.MethodGet, u, tok, "", ""); a.status != 401 || a.body != invalid {
		t.Errorf("expired session: %d %s", a.status, a.body)
	}
	if s.Requests() != 1 {
		t.Errorf("Requests = %d, want 1 (rejected requests do not count)", s.Requests())
	}
}

func TestUpsertSemantics(t *testing.T) {
	key := testKey(t)
	s := newServer(t, key)
	tok := login(t, s, key)
	base := s.InstanceURL() + "/services/data/v62.0/sobjects/"
	contact := base + "Contact/" + salesforcefake.ContactEmailField + "/" + url.PathEscape("a+tag@example.com")
	patch := func(u, body string) answer { return call(t, http.MethodPatch, u, tok, "application/json", body) }

	a := patch(contact, `{"FirstName":"Ann"}`)
	if a.status != 400 || !strings.Contains(a.body, `"errorCode":"REQUIRED_FIELD_MISSING"`) || !strings.Contains(a.body, `"fields":["LastName"]`) {
		t.Fatalf("missing LastName: %d %s", a.status, a.body)
	}
	a = patch(contact, `{"LastName":"Example","Email":"a+tag@example.com"}`)
	if a.status != 201 || !strings.Contains(a.body, `"created":true`) || !strings.Contains(a.body, `"success":true`) {
		t.Fatalf("create: %d %s", a.status, a.body)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(a.body), &created)
	if len(created.ID) != 18 || !strings.HasPrefix(created.ID, "003") {
		t.Errorf("id %q, want an 18-character Contact id", created.ID)
	}
	a = patch(strings.Replace(contact, "a+tag", "A+TAG", 1), `{"LastName":"Changed"}`)
	if a.status != 200 || !strings.Contains(a.body, `"created":false`) || !strings.Contains(a.body, created.ID) {
		t.Fatalf("update (case-insensitive key): %d %s", a.status, a.body)
	}
	if a = patch(strings.Replace(contact, "v62.0", "v45.0", 1), `{"LastName":"Old API"}`); a.status != 204 || a.body != "" {
		t.Fatalf("update on API 45.0: %d %q, want 204 without body", a.status, a.body)
	}
	if r, _ := s.Record(created.ID); r.Fields["LastName"] != "Old API" || r.Fields[salesforcefake.ContactEmailField] != "a+tag@example.com" {
		t.Errorf("record = %v", r.Fields)
	}
	if a = call(t, http.MethodGet, contact+"?fields=Id,LastName", tok, "", ""); a.status != 200 || !strings.Contains(a.body, `"LastName":"Old API"`) || strings.Contains(a.body, "Email") {
		t.Errorf("GET by external id: %d %s", a.status, a.body)
	}
	if a = patch(base+"Contact/Nope__c/x", `{"LastName":"X"}`); a.status != 404 || !strings.Contains(a.body, "NOT_FOUND") {
		t.Errorf("unknown external id field: %d %s", a.status, a.body)
	}
	if a = patch(base+"Contact/LastName/x", `{"LastName":"X"}`); a.status != 404 {
		t.Errorf("non-External ID field: %d %s", a.status, a.body)
	}
	if a = call(t, http.MethodPatch, contact, tok, "text/plain", `{}`); a.status != 415 {
		t.Errorf("text/plain body: %d", a.status)
	}

	// Email is an idLookup field, not unique: two Contacts with one address make it ambiguous.
	for _, last := range []string{"One", "Two"} {
		if _, err := s.Seed("Contact", map[string]any{"LastName": last, "Email": "dup@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	a = patch(base+"Contact/Email/dup@example.com", `{"LastName":"Three"}`)
	var urls []string
	if a.status != 300 || json.Unmarshal([]byte(a.body), &urls) != nil || len(urls) != 2 || !strings.HasPrefix(urls[0], "/services/data/v62.0/sobjects/Contact/003") {
		t.Errorf("ambiguous upsert: %d %s, want 300 with two record URLs", a.status, a.body)
	}
	if n := s.Count("Contact"); n != 3 {
		t.Errorf("Count(Contact) = %d, want 3", n)
	}
}

func TestFieldValidation(t *testing.T) {
	key := testKey(t)
	s := newServer(t, key)
	tok := login(t, s, key)
	base := s.InstanceURL() + "/services/data/v62.0/sobjects/"
	acc, err := s.Seed("Account", map[string]any{"Name": "Example"})
	if err != nil {
		t.Fatal(err)
	}
	task := func(k string) string { return base + "Task/" + salesforcefake.ExternalIDField + "/" + k }
	for _, tt := range []struct {
		name, url, body, code string
	}{
		{"unknown field", task("t1"), `{"Color__c":"red"}`, "INVALID_FIELD"},
		{"read-only field", task("t1"), `{"Id":"00T000000000001AAA"}`, "INVALID_FIELD_FOR_INSERT_UPDATE"},
		{"too long", task("t1"), `{"Subject":"` + strings.Repeat("x", 256) + `"}`, "STRING_TOO_LONG"},
		{"restricted picklist", task("t1"), `{"Status":"Done"}`, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"},
		{"bad date", task("t1"), `{"ActivityDate":"23.11.2026"}`, "JSON_PARSER_ERROR"},
		{"wrong type", task("t1"), `{"Subject":42}`, "JSON_PARSER_ERROR"},
		{"malformed id", task("t1"), `{"WhoId":"nope"}`, "MALFORMED_ID"},
		{"id of the wrong object", task("t1"), `{"WhoId":"` + acc + `"}`, "FIELD_INTEGRITY_EXCEPTION"},
		{"missing record", task("t1"), `{"WhoId":"003000000000000AAA"}`, "INVALID_CROSS_REFERENCE_KEY"},
		{"bad email", base + "Contact/" + salesforcefake.ContactEmailField + "/x", `{"LastName":"X","Email":"ann@bücher.example"}`, "INVALID_EMAIL_ADDRESS"},
		{"account name required", base + "Account/" + salesforcefake.AccountDomainField + "/example.com", `{"Website":"example.com"}`, "REQUIRED_FIELD_MISSING"},
		{"not JSON", task("t1"), `[1]`, "JSON_PARSER_ERROR"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, http.MethodPatch, tt.url, tok, "application/json", tt.body)
			if a.status != 400 || !strings.Contains(a.body, `"errorCode":"`+tt.code+`"`) {
				t.Errorf("got %d %s, want 400 %s", a.status, a.body, tt.code)
			}
		})
	}
	if n := s.Count("Task"); n != 0 {
		t.Errorf("Count(Task) = %d after rejected writes", n)
	}
	// Defaults apply on create, and a 15-character id is accepted for an 18-character one.
	a := call(t, http.MethodPatch, task("t2"), tok, "application/json", `{"WhatId":"`+acc[:15]+`"}`)
	if a.status != 201 {
		t.Fatalf("create task: %d %s", a.status, a.body)
	}
	recs := s.Records("Task")
	if len(recs) != 1 || recs[0].Fields["Status"] != "Not Started" || recs[0].Fields["Priority"] != "Normal" {
		t.Errorf("task = %+v", recs)
	}
	if s.Objects("T2") != 1 {
		t.Errorf("Objects(T2) = %d, want 1 (case-insensitive)", s.Objects("T2"))
	}
	// TaskSubtype is createable, not updateable.
	if a := call(t, http.MethodPatch, task("t2"), tok, "application/json", `{"TaskSubtype":"Email"}`); a.status != 400 || !strings.Contains(a.body, "INVALID_FIELD_FOR_INSERT_UPDATE") {
		t.Errorf("update of a create-only field: %d %s", a.status, a.body)
	}
}

func TestContentVersion(t *testing.T) {
	key := testKey(t)
	s := newServer(t, key)
	tok := login(t, s, key)
	base := s.InstanceURL() + "/services/data/v62.0/sobjects/"
	a := call(t, http.MethodPatch, base+"Task/"+salesforcefake.ExternalIDField+"/m1", tok, "application/json", `{"Subject":"x"}`)
	var task struct{ ID string }
	_ = json.Unmarshal([]byte(a.body), &task)
	post := func(body string) answer {
		return call(t, http.MethodPost, base+"ContentVersion", tok, "application/json", body)
	}
	link := `{"Title":"a.pdf","ContentUrl":"file:///blobs/1","FirstPublishLocationId":"` + task.ID + `","Mailpipe_External_Id__c":"m1-1"}`
	if a = post(link); a.status != 201 || strings.Contains(a.body, "created") {
		t.Fatalf("create link: %d %s", a.status, a.body)
	}
	if a = post(link); a.status != 400 || !strings.Contains(a.body, "DUPLICATE_VALUE") {
		t.Errorf("second link with the same key: %d %s", a.status, a.body)
	}
	if a = post(`{"ContentUrl":"file:///blobs/2"}`); a.status != 400 || !strings.Contains(a.body, "Title") {
		t.Errorf("link without title: %d %s", a.status, a.body)
	}
	if a = post(`{"Title":"x"}`); a.status != 400 || !strings.Contains(a.body, "REQUIRED_FIELD_MISSING") {
		t.Errorf("neither ContentUrl nor PathOnClient: %d %s", a.status, a.body)
	}
	a = call(t, http.MethodPatch, base+"ContentVersion/"+salesforcefake.ExternalIDField+"/m1-1", tok, "application/json", `{"FirstPublishLocationId":"`+task.ID+`"}`)
	if a.status != 400 || !strings.Contains(a.body, "INVALID_FIELD_FOR_INSERT_UPDATE") {
		t.Errorf("upsert that sets FirstPublishLocationId on an existing version: %d %s", a.status, a.body)
	}
	recs := s.Records("ContentVersion")
	if len(recs) != 1 || !strings.HasPrefix(recs[0].Fields["ContentDocumentId"].(string), "069") {
		t.Errorf("versions = %+v", recs)
	}
}

func TestFaults(t *testing.T) {
	key := testKey(t)
	s := newServer(t, key)
	tok := login(t, s, key)
	u := s.InstanceURL() + "/services/data/v62.0/sobjects/Task/" + salesforcefake.ExternalIDField + "/m1"
	patch := func() answer { return call(t, http.MethodPatch, u, tok, "application/json", `{"Subject":"x"}`) }

	s.FailNext(1, 429, "7")
	if a := patch(); a.status != 429 || a.header.Get("Retry-After") != "7" || !strings.Contains(a.body, "REQUEST_LIMIT_EXCEEDED") {
		t.Errorf("429: %d %q %s", a.status, a.header.Get("Retry-After"), a.body)
	}
	s.FailNext(3, 503, "")
	for range 3 {
		if a := patch(); a.status != 503 || !strings.Contains(a.body, "SERVER_UNAVAILABLE") {
			t.Errorf("storm: %d %s", a.status, a.body)
		}
	}
	if s.Objects("m1") != 0 {
		t.Fatal("a failed request wrote")
	}
	s.Inject(1, salesforcefake.Fault{Status: 502, AfterCommit: true})
	if a := patch(); a.status != 502 || s.Objects("m1") != 1 {
		t.Errorf("after-commit fault: %d, objects %d; want 502 and the write done", a.status, s.Objects("m1"))
	}
	s.Inject(1, salesforcefake.Fault{Status: 400, ErrorCode: "UNABLE_TO_LOCK_ROW", Message: "unable to obtain exclusive access to this record"})
	if a := patch(); a.status != 400 || !strings.Contains(a.body, `"errorCode":"UNABLE_TO_LOCK_ROW"`) {
		t.Errorf("custom fault: %d %s", a.status, a.body)
	}
	s.FailNext(1, 401, "")
	if a := patch(); a.status != 401 || !strings.Contains(a.body, "INVALID_SESSION_ID") {
		t.Errorf("401 fault: %d %s", a.status, a.body)
	}
	if a := patch(); a.status != 401 {
		t.Errorf("the session survived a 401 fault: %d", a.status)
	}
	if a := patch(); a.status != 401 {
		t.Errorf("a request with a dead session: %d", a.status)
	}
}

func TestRequestLimit(t *testing.T) {
	key := testKey(t)
	s := newServer(t, key, salesforcefake.WithRequestLimit(2))
	tok := login(t, s, key)
	u := s.InstanceURL() + "/services/data/v62.0/sobjects/Task/" + salesforcefake.ExternalIDField + "/m1"
	var last answer
	for i := range 3 {
		last = call(t, http.MethodGet, u, tok, "", "")
		if i == 0 && last.header.Get("Sforce-Limit-Info") != "api-usage=1/2" {
			t.Errorf("Sforce-Limit-Info = %q", last.header.Get("Sforce-Limit-Info"))
		}
	}
	if last.status != 403 || last.body != `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]` {
		t.Errorf("third request: %d %s", last.status, last.body)
	}
}

func TestDefaultCredentials(t *testing.T) {
	s := salesforcefake.New(t)
	if s.PrivateKey() == nil || s.ClientSecret() == "" || s.RefreshToken() == "" {
		t.Fatal("New without options should generate a key, secret and refresh token")
	}
	login(t, s, s.PrivateKey())
	a := grant(t, s, url.Values{"grant_type": {"refresh_token"}, "client_id": {s.ClientID()}, "client_secret": {s.ClientSecret()}, "refresh_token": {s.RefreshToken()}})
	if a.status != 200 {
		t.Errorf("refresh grant: %d %s", a.status, a.body)
	}
	if r, ok := s.Record(s.UserID()); !ok || r.Type != "User" {
		t.Errorf("UserID %s is not a User record", s.UserID())
	}
}
