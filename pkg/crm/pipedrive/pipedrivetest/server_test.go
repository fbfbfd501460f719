package pipedrivetest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm/pipedrive/pipedrivetest"
)

// call sends a request with the server's API token unless the path already has credentials,
// and returns the status, headers and decoded body.
func call(t *testing.T, srv *pipedrivetest.Server, method, path, contentType string, body io.Reader, h http.Header) (int, http.Header, map[string]any) {
	t.Helper()
	u := srv.URL() + path
	if !strings.Contains(path, "api_token=") && h.Get("Authorization") == "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		u += sep + "api_token=" + url.QueryEscape(srv.APIToken())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header, out
}

func jsonReq(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

func TestServerEnforcesTheContract(t *testing.T) {
	const js = "application/json"
	for _, tt := range []struct {
		name      string
		setup     func(*pipedrivetest.Server)
		method    string
		path      string
		body      any
		header    http.Header
		want      int
		wantError string
	}{
		{name: "bad api token", method: "GET", path: "/v1/persons/search?term=ab&api_token=nope", want: 401, wantError: "unauthorized access"},
		{name: "no credentials", method: "GET", path: "/v1/persons/search?term=ab", header: http.Header{"Authorization": {"Basic eDp5"}}, want: 401, wantError: "unauthorized access"},
		{name: "unknown bearer", method: "GET", path: "/v1/persons/search?term=ab", header: http.Header{"Authorization": {"Bearer at-unknown"}}, want: 401},
		{name: "person needs a name", method: "POST", path: "/v1/persons", body: map[string]any{"email": "a@b.c"}, want: 400, wantError: "Name must be given."},
		{name: "person in a missing organization", method: "POST", path: "/v1/persons", body: map[string]any{"name": "A", "org_id": 99}, want: 400, wantError: "Organization not found."},
		{name: "organization needs a name", method: "POST", path: "/v1/organizations", body: map[string]any{}, want: 400, wantError: "Name must be given."},
		{name: "activity needs a subject", method: "POST", path: "/v1/activities", body: map[string]any{"type": "email"}, want: 400, wantError: "Subject is required."},
		{name: "activity type must exist", method: "POST", path: "/v1/activities", body: map[string]any{"subject": "s", "type": "fax"}, want: 400, wantError: "not valid"},
		{name: "activity due date format", method: "POST", path: "/v1/activities", body: map[string]any{"subject": "s", "due_date": "23.11.2026"}, want: 400, wantError: "YYYY-MM-DD"},
		{name: "activity due time format", method: "POST", path: "/v1/activities", body: map[string]any{"subject": "s", "due_time": "9am"}, want: 400, wantError: "HH:MM"},
		{name: "activity for a missing person", method: "POST", path: "/v1/activities", body: map[string]any{"subject": "s", "person_id": 7}, want: 400, wantError: "Person not found."},
		{name: "activity created", method: "POST", path: "/v1/activities", body: map[string]any{"subject": "s", "type": "email", "due_date": "2026-11-23", "due_time": "10:30"}, want: 201},
		{name: "update of a missing activity", method: "PUT", path: "/v1/activities/5", body: map[string]any{"subject": "s"}, want: 404},
		{name: "search term too short", method: "GET", path: "/v1/persons/search?term=a", want: 400, wantError: "at least 2"},
		{name: "one character is enough with exact_match", method: "GET", path: "/v1/persons/search?term=a&exact_match=true", want: 200},
		{name: "unsearchable field", method: "GET", path: "/v1/organizations/search?term=ab&fields=email", want: 400, wantError: "not searchable"},
		{name: "page size cap", method: "GET", path: "/v1/persons/search?term=ab&limit=501", want: 400, wantError: "must not exceed 500"},
		{name: "invalid JSON", method: "POST", path: "/v1/persons", body: "{", want: 400, wantError: "Invalid JSON"},
		{name: "injected 503 with Retry-After", setup: func(s *pipedrivetest.Server) { s.FailNext(1, 503, "3") }, method: "GET", path: "/v1/persons/search?term=ab", want: 503},
		{name: "unknown route", method: "GET", path: "/v1/deals", want: 404},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pipedrivetest.NewServer(t)
			if tt.setup != nil {
				tt.setup(srv)
			}
			var body io.Reader
			switch b := tt.body.(type) {
			case nil:
			case string:
				body = strings.NewReader(b)
			default:
				body = jsonReq(b)
			}
			status, _, out := call(t, srv, tt.method, tt.path, js, body, tt.header)
			if status != tt.want {
				t.Fatalf("status = %d (%v), want %d", status, out, tt.want)
			}
			if status >= 400 {
				if out["success"] != false {
					t.Errorf("error body %v lacks success:false", out)
				}
				if msg, _ := out["error"].(string); !strings.Contains(msg, tt.wantError) {
					t.Errorf("error = %q, want it to contain %q", msg, tt.wantError)
				}
			}
			if status == 401 && out["errorCode"] != float64(401) {
				t.Errorf("401 body %v lacks errorCode 401", out)
			}
		})
	}
}

func TestServerRateLimit(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	srv := pipedrivetest.NewServer(t, pipedrivetest.WithRateLimit(2, 2*time.Second), pipedrivetest.WithClock(func() time.Time { return now }))
	var h http.Header
	var status int
	var out map[string]any
	for i := range 3 {
		status, h, out = call(t, srv, "GET", "/v1/persons/search?term=ab", "", nil, nil)
		if i < 2 && (status != 200 || h.Get("X-Ratelimit-Remaining") != []string{"1", "0"}[i]) {
			t.Fatalf("request %d: status %d, remaining %q", i+1, status, h.Get("X-Ratelimit-Remaining"))
		}
	}
	if status != 429 || h.Get("Retry-After") != "2" || h.Get("X-Ratelimit-Limit") != "2" || h.Get("X-Ratelimit-Reset") != "2" {
		t.Errorf("third request: status %d, headers %v; want 429 with Retry-After and x-ratelimit-* 2", status, h)
	}
	if out["error"] != "Request over limit" || out["errorCode"] != float64(429) {
		t.Errorf("429 body = %v", out)
	}
}

func TestServerTokenEndpoint(t *testing.T) {
	srv := pipedrivetest.NewServer(t)
	access, refresh := srv.IssueTokens()
	id, secret := srv.ClientCredentials()
	refreshWith := func(rt, user, pass string) (int, map[string]any) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.TokenURL(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(user, pass)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	bearer := func(tok string) int {
		status, _, _ := call(t, srv, "GET", "/v1/persons/search?term=ab", "", nil, http.Header{"Authorization": {"Bearer " + tok}})
		return status
	}
	if bearer(access) != 200 {
		t.Fatal("a fresh access token is refused")
	}
	srv.ExpireAccessTokens()
	if bearer(access) != 401 {
		t.Fatal("an expired access token is accepted")
	}
	if status, _ := refreshWith(refresh, id, "wrong"); status != 401 {
		t.Errorf("wrong client secret: status %d, want 401", status)
	}
	status, out := refreshWith(refresh, id, secret)
	if status != 200 || out["token_type"] != "Bearer" || out["api_domain"] != srv.URL() {
		t.Fatalf("refresh: %d %v", status, out)
	}
	if bearer(out["access_token"].(string)) != 200 {
		t.Error("the refreshed access token is refused")
	}
	if status, out := refreshWith(refresh, id, secret); status != 400 || out["error"] != "invalid_grant" {
		t.Errorf("reusing a rotated refresh token: %d %v, want 400 invalid_grant", status, out)
	}
}

func TestServerFiles(t *testing.T) {
	srv := pipedrivetest.NewServer(t, pipedrivetest.WithMaxUpload(8))
	upload := func(content string, withFile bool) (int, map[string]any) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		_ = mw.WriteField("activity_id", "")
		if withFile {
			fw, _ := mw.CreateFormFile("file", "a.txt")
			_, _ = fw.Write([]byte(content))
		}
		_ = mw.Close()
		status, _, out := call(t, srv, "POST", "/v1/files", mw.FormDataContentType(), &buf, nil)
		return status, out
	}
	if status, out := upload("12345678", true); status != 201 || out["data"].(map[string]any)["file_size"] != float64(8) {
		t.Errorf("upload: %d %v", status, out)
	}
	if status, _ := upload("123456789", true); status != 413 {
		t.Errorf("oversized upload: status %d, want 413", status)
	}
	if status, _ := upload("", false); status != 400 {
		t.Errorf("upload without a file part: status %d, want 400", status)
	}
	if status, _, _ := call(t, srv, "POST", "/v1/files", "application/json", strings.NewReader("{}"), nil); status != 400 {
		t.Errorf("JSON upload: status %d, want 400", status)
	}
}
