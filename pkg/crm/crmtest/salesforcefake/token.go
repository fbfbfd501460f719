package salesforcefake

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// serveLogin is the login server: the OAuth 2.0 token endpoint.
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
