// Package crmtest holds contract servers that behave like the systems crm connectors write to,
// and a conformance suite ([Run]) every connector passes, fakes and real implementations alike.
//
// [Server] is a Standard Webhooks receiver on httptest: it verifies signatures (401 on a bad or
// missing one, or a stale timestamp), validates the payload (400), records deliveries by
// webhook-id the way a deduping receiver would, and can be told to answer the next requests with
// 429 + Retry-After, 5xx or any other status, or to stall.
package crmtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/webhooksig"
)

// DefaultTolerance is how far a webhook-timestamp may be from the server's clock, as the
// Standard Webhooks reference verifiers allow.
const DefaultTolerance = 5 * time.Minute

// Delivery is what the server recorded for one webhook-id.
type Delivery struct {
	// ID is the webhook-id header.
	ID string
	// ExternalID is data.external_id of the payload.
	ExternalID string
	// Type is the payload's type.
	Type string
	// Count is how many accepted requests carried this webhook-id (redeliveries included).
	Count int
	// Body and Header are those of the last accepted request; the slice and map are copies.
	Body   []byte
	Header http.Header
}

// ServerOption configures a [Server].
type ServerOption interface{ apply(*Server) }

type serverOptionFunc func(*Server)

func (f serverOptionFunc) apply(s *Server) { f(s) }

// WithSecrets sets the secrets ("whsec_<base64>", 24 to 64 byte keys) the server accepts
// signatures from; a request verifies when any of its signatures matches any secret. The default
// is one random secret, returned by Secret. Verification is pkg/webhooksig's.
func WithSecrets(secrets ...string) ServerOption {
	return serverOptionFunc(func(s *Server) { s.secrets = secrets })
}

// WithTolerance sets the accepted clock distance of webhook-timestamp, default 5 minutes.
func WithTolerance(d time.Duration) ServerOption {
	return serverOptionFunc(func(s *Server) { s.tolerance = d })
}

// WithClock sets the server's clock for timestamp checks.
func WithClock(now func() time.Time) ServerOption {
	return serverOptionFunc(func(s *Server) { s.now = now })
}

type fault struct {
	status     int
	retryAfter string
	stall      time.Duration
}

// Server is a Standard Webhooks contract server. It is safe for concurrent use.
type Server struct {
	srv       *httptest.Server
	secrets   []string
	verifier  *webhooksig.Verifier
	tolerance time.Duration
	now       func() time.Time

	mu         sync.Mutex
	faults     []fault
	deliveries map[string]*Delivery
	order      []string
	requests   int
	rejected   int
}

// NewServer starts a server and closes it when the test ends. It fails the test on an invalid
// secret.
func NewServer(t testing.TB, opts ...ServerOption) *Server {
	t.Helper()
	s := &Server{tolerance: DefaultTolerance, now: time.Now, deliveries: map[string]*Delivery{}}
	for _, o := range opts {
		o.apply(s)
	}
	if len(s.secrets) == 0 {
		s.secrets = []string{NewSecret()}
	}
	secrets, err := webhooksig.ParseSecrets(s.secrets)
	if err != nil {
		t.Fatalf("crmtest: %v", err)
	}
	s.verifier, err = webhooksig.NewVerifier(secrets, webhooksig.WithTolerance(s.tolerance), webhooksig.WithClock(s.now))
	if err != nil {
		t.Fatalf("crmtest: %v", err)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// NewSecret returns a random 32-byte secret as "whsec_<base64>".
func NewSecret() string {
	sec, err := webhooksig.GenerateSecret()
	if err != nil {
		// crypto/rand does not fail on supported platforms (Go 1.24+ panics inside it instead).
		panic(err)
	}
	return sec.Encode()
}

// URL returns the server's base URL; every path is accepted.
func (s *Server) URL() string { return s.srv.URL }

// Secret returns the first accepted secret.
func (s *Server) Secret() string { return s.secrets[0] }

// Client returns an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// FailNext makes the next n verified requests fail with status, and with the Retry-After header
// set to retryAfter unless it is empty. Faults queue up behind earlier ones. A request that fails
// signature verification does not consume a fault.
func (s *Server) FailNext(n, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, fault{status: status, retryAfter: retryAfter})
	}
}

// StallNext makes the next n verified requests wait d before they are handled normally (and
// recorded), whether or not the client is still waiting: like a receiver that commits a
// delivery its caller already gave up on, which is the case receiver-side dedupe exists for.
func (s *Server) StallNext(n int, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, fault{stall: d})
	}
}

// Deliveries returns the recorded deliveries in first-delivery order.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delivery, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.deliveries[id].clone())
	}
	return out
}

// Delivery returns the delivery recorded under webhook-id id.
func (s *Server) Delivery(id string) (Delivery, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deliveries[id]
	if !ok {
		return Delivery{}, false
	}
	return d.clone(), true
}

// Objects returns how many distinct objects a receiver deduping on webhook-id would hold for
// the message with externalID: the number of distinct webhook-ids whose payload carried it. A
// connector that reuses one webhook-id per message keeps this at 1 however often it redelivers.
func (s *Server) Objects(externalID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, d := range s.deliveries {
		if d.ExternalID == externalID {
			n++
		}
	}
	return n
}

// Requests returns how many requests arrived, rejected and failed ones included.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Rejected returns how many requests were answered 401 (signature) or 400 (payload).
func (s *Server) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

func (d *Delivery) clone() Delivery {
	c := *d
	c.Body = append([]byte(nil), d.Body...)
	c.Header = d.Header.Clone()
	return c
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	body, err := readBody(r)
	if err != nil {
		s.reject(w, http.StatusBadRequest, "reading body")
		return
	}
	if r.Method != http.MethodPost {
		s.reject(w, http.StatusMethodNotAllowed, "POST only")
		return
	}
	id := r.Header.Get(webhooksig.HeaderID)
	if err := s.verifier.VerifyHeader(r.Header, body); err != nil {
		s.reject(w, http.StatusUnauthorized, err.Error())
		return
	}
	var payload struct {
		Type string `json:"type"`
		Data struct {
			ExternalID string `json:"external_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &payload); err != nil || payload.Type == "" || payload.Data.ExternalID == "" {
		s.reject(w, http.StatusBadRequest, "payload must be JSON with type and data.external_id")
		return
	}

	s.mu.Lock()
	var f fault
	if len(s.faults) > 0 {
		f, s.faults = s.faults[0], s.faults[1:]
	}
	s.mu.Unlock()
	if f.status != 0 {
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		http.Error(w, `{"error":"injected fault"}`, f.status)
		return
	}
	if f.stall > 0 {
		time.Sleep(f.stall)
	}

	s.mu.Lock()
	d, ok := s.deliveries[id]
	if !ok {
		d = &Delivery{ID: id, ExternalID: payload.Data.ExternalID, Type: payload.Type}
		s.deliveries[id] = d
		s.order = append(s.order, id)
	}
	d.Count++
	d.Body, d.Header = body, r.Header.Clone()
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) reject(w http.ResponseWriter, status int, reason string) {
	s.mu.Lock()
	s.rejected++
	s.mu.Unlock()
	http.Error(w, reason, status)
}

// maxBody bounds a request body; the connector's payloads are far smaller.
const maxBody = 8 << 20

func readBody(r *http.Request) ([]byte, error) {
	defer func() { _ = r.Body.Close() }()
	return io.ReadAll(io.LimitReader(r.Body, maxBody))
}
