package httpd

import (
	"encoding/json"
	"net/http"
)

// Problem is an RFC 9457 problem details object as this package writes it.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// ProblemTypeBase prefixes every problem type this package writes ("urn:mailpipe:problem:too-large").
// The types are identifiers for clients to branch on, not documents to fetch (RFC 9457 3.1.1).
const ProblemTypeBase = "urn:mailpipe:problem:"

// Problem type suffixes (after [ProblemTypeBase]) clients may branch on.
const (
	ProblemUnauthorized     = "unauthorized"       // 401: missing, unknown or badly signed credential
	ProblemForbidden        = "forbidden"          // 403: a recipient belongs to another tenant
	ProblemBadEnvelope      = "bad-envelope"       // 400: mail_from / rcpt_to missing or malformed
	ProblemNoRoute          = "no-route"           // 400: a recipient is not received here
	ProblemInvalidMessage   = "invalid-message"    // 400: ingest refused the message as given
	ProblemEmptyMessage     = "empty-message"      // 400: no message in the request
	ProblemBadBody          = "bad-body"           // 400: the body could not be read
	ProblemTooLarge         = "too-large"          // 413: larger than the configured limit
	ProblemUnavailable      = "unavailable"        // 503: not recorded, retry
	ProblemNotFound         = "not-found"          // 404
	ProblemMethodNotAllowed = "method-not-allowed" // 405
)

// problem is an error answer before it is written.
type problem struct {
	status int
	typ    string
	title  string
	detail string
}

func writeProblem(w http.ResponseWriter, p problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.status)
	_ = json.NewEncoder(w).Encode(Problem{Type: ProblemTypeBase + p.typ, Title: p.title, Status: p.status, Detail: p.detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
