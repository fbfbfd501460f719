package crmtest_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
)

// The Standard Webhooks specification's test vector. Its body is not a mailpipe payload, so once
// the signature verifies the payload check answers 400, which still tells a verified request
// (400) from a refused one (401).
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = "1614265330"
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// post sends body and returns the answer's status and headers; the body is closed.
func post(t *testing.T, srv *crmtest.Server, h map[string]string, body string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL()+"/hook", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func TestServerVerifiesSignatures(t *testing.T) {
	at := time.Unix(1614265330, 0)
	for _, tt := range []struct {
		name   string
		header map[string]string
		now    time.Time
		want   int
	}{
		{"spec vector verifies, then the payload check refuses the body", map[string]string{"webhook-id": specID, "webhook-timestamp": specTS, "webhook-signature": specSig}, at, 400},
		{"valid among several signatures", map[string]string{"webhook-id": specID, "webhook-timestamp": specTS, "webhook-signature": "v1,AAAA " + specSig}, at, 400},
		{"tampered id", map[string]string{"webhook-id": specID + "x", "webhook-timestamp": specTS, "webhook-signature": specSig}, at, 401},
		{"wrong version", map[string]string{"webhook-id": specID, "webhook-timestamp": specTS, "webhook-signature": "v2" + specSig[2:]}, at, 401},
		{"stale timestamp", map[string]string{"webhook-id": specID, "webhook-timestamp": specTS, "webhook-signature": specSig}, at.Add(6 * time.Minute), 401},
		{"future timestamp", map[string]string{"webhook-id": specID, "webhook-timestamp": specTS, "webhook-signature": specSig}, at.Add(-6 * time.Minute), 401},
		{"missing signature", map[string]string{"webhook-id": specID, "webhook-timestamp": specTS}, at, 401},
		{"no headers", nil, at, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := crmtest.NewServer(t, crmtest.WithSecrets(specSecret), crmtest.WithClock(func() time.Time { return tt.now }))
			if status, _ := post(t, srv, tt.header, specBody); status != tt.want {
				t.Fatalf("status = %d, want %d", status, tt.want)
			}
			if srv.Rejected() != 1 || len(srv.Deliveries()) != 0 {
				t.Errorf("rejected = %d, deliveries = %d", srv.Rejected(), len(srv.Deliveries()))
			}
		})
	}
}

// signed returns the headers of a valid signature of body by secret at now.
func signed(t *testing.T, secret, id string, now time.Time, body string) map[string]string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + body))
	return map[string]string{
		"webhook-id": id, "webhook-timestamp": ts,
		"webhook-signature": "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)),
	}
}

func TestServerFaultQueueAndRecording(t *testing.T) {
	srv := crmtest.NewServer(t)
	body := `{"type":"message.received","data":{"external_id":"e1"}}`
	good := signed(t, srv.Secret(), "e1", time.Now(), body)
	srv.FailNext(1, http.StatusTooManyRequests, "5")
	srv.FailNext(1, http.StatusServiceUnavailable, "")

	for i, want := range []struct {
		status     int
		retryAfter string
	}{
		{401, ""},  // unsigned: rejected, does not consume the queued 429
		{429, "5"}, // first queued fault
		{503, ""},  // second queued fault
		{204, ""},  // delivered
		{204, ""},  // redelivered under the same webhook-id
	} {
		h := good
		if i == 0 {
			h = nil
		}
		status, header := post(t, srv, h, body)
		if status != want.status || header.Get("Retry-After") != want.retryAfter {
			t.Fatalf("request %d: status %d Retry-After %q, want %d %q", i, status, header.Get("Retry-After"), want.status, want.retryAfter)
		}
	}
	if n := srv.Objects("e1"); n != 1 {
		t.Errorf("Objects = %d, want 1", n)
	}
	d, ok := srv.Delivery("e1")
	if !ok || d.Count != 2 || d.ExternalID != "e1" || d.Type != "message.received" || string(d.Body) != body {
		t.Errorf("delivery = %+v, want two accepted requests of e1", d)
	}
	if srv.Requests() != 5 || srv.Rejected() != 1 {
		t.Errorf("requests = %d, rejected = %d; want 5 and 1", srv.Requests(), srv.Rejected())
	}
}
