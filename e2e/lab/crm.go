package lab

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
)

// RefuseMarker in a subject makes the CRM answer 422 while refusing is on: a record the sink
// cannot deliver (class crm_4xx, dead-lettered at once), fixed later and replayed.
const RefuseMarker = "[lab-refuse]"

// Write is one effective CRM write as the lab saw it: the first accepted request for a message.
type Write struct {
	ExternalID string
	MessageID  string
	At         time.Time
}

// CRM is the webhook contract server (pkg/crm/crmtest: signature checks, dedupe by webhook-id,
// Objects per external id) behind the lab's own front that injects faults: a 429/503 storm for a
// time window and 422 for messages carrying RefuseMarker. The front records the order and time
// of the first accepted write of every message (for order inversions and latency) and counts
// raw calls.
type CRM struct {
	Server *crmtest.Server
	front  *httptest.Server

	refuse     atomic.Bool
	stormUntil atomic.Int64 // unix nanos
	calls      atomic.Int64
	faulted    atomic.Int64

	mu     sync.Mutex
	writes []Write
	seen   map[string]bool
}

// NewCRM starts the contract server and its front; both close when the test ends.
func NewCRM(t testing.TB) *CRM {
	c := &CRM{Server: crmtest.NewServer(t), seen: map[string]bool{}}
	upstream := c.Server.URL()
	client := c.Server.Client()
	c.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.calls.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		var p struct {
			Data struct {
				ExternalID string `json:"external_id"`
				MessageID  string `json:"message_id"`
				Subject    string `json:"subject"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &p)
		if until := c.stormUntil.Load(); until != 0 && time.Now().UnixNano() < until {
			n := c.faulted.Add(1)
			if n%3 == 0 {
				w.Header().Set("Retry-After", "1")
				http.Error(w, `{"error":"rate limited (lab storm)"}`, http.StatusTooManyRequests)
				return
			}
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":"unavailable (lab storm)"}`, http.StatusServiceUnavailable)
			return
		}
		if c.refuse.Load() && strings.Contains(p.Data.Subject, RefuseMarker) {
			c.faulted.Add(1)
			http.Error(w, `{"error":"validation failed (lab poison)"}`, http.StatusUnprocessableEntity)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, upstream+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer func() { _ = resp.Body.Close() }()
		rb, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 == 2 && p.Data.ExternalID != "" {
			c.mu.Lock()
			if !c.seen[p.Data.ExternalID] {
				c.seen[p.Data.ExternalID] = true
				c.writes = append(c.writes, Write{ExternalID: p.Data.ExternalID, MessageID: p.Data.MessageID, At: time.Now()})
			}
			c.mu.Unlock()
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(rb)
	}))
	t.Cleanup(c.front.Close)
	return c
}

// URL is the address the sink posts to (the front).
func (c *CRM) URL() string { return c.front.URL }

// Secret is the signing secret the contract server accepts.
func (c *CRM) Secret() string { return c.Server.Secret() }

// SetRefuse turns the poison refusal on or off.
func (c *CRM) SetRefuse(on bool) { c.refuse.Store(on) }

// Storm answers every call with 503 (two in three) or 429 (one in three), both with
// Retry-After: 1, for d from now.
func (c *CRM) Storm(d time.Duration) { c.stormUntil.Store(time.Now().Add(d).UnixNano()) }

// Writes returns the first accepted write of every message, in the order they happened.
func (c *CRM) Writes() []Write {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Write(nil), c.writes...)
}

// Calls is the number of raw requests the CRM received, injected faults included.
func (c *CRM) Calls() int64 { return c.calls.Load() }

// Faulted is the number of requests answered with an injected fault.
func (c *CRM) Faulted() int64 { return c.faulted.Load() }
