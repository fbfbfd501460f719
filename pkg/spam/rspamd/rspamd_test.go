package rspamd_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/spam/rspamd"
)

// The client sends the message as the body and the envelope as rspamd's request headers, and
// decodes the verdict.
func TestCheckProtocol(t *testing.T) {
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body = make([]byte, r.ContentLength)
		_, _ = r.Body.Read(body)
		_, _ = w.Write([]byte(`{"is_skipped":false,"score":7.5,"required_score":15,"action":"add header",
			"symbols":{"B":{"name":"B","score":2.5,"description":"b"},"A":{"name":"A","score":5},"Z":{"name":"Z","score":0}}}`))
	}))
	defer srv.Close()
	c, err := rspamd.New(srv.URL, rspamd.WithPassword("secret"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Check(t.Context(), []byte("Subject: x\r\n\r\nhi\r\n"), rspamd.Envelope{
		ClientIP: "192.0.2.1", Helo: "mx.example.com", MailFrom: "a@example.com", RcptTo: []string{"b@x.example", "c@x.example"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/checkv2" || string(body) != "Subject: x\r\n\r\nhi\r\n" {
		t.Fatalf("request %s %s body %q", got.Method, got.URL.Path, body)
	}
	h := got.Header
	if h.Get("Ip") != "192.0.2.1" || h.Get("Helo") != "mx.example.com" || h.Get("From") != "a@example.com" ||
		!slices.Equal(h.Values("Rcpt"), []string{"b@x.example", "c@x.example"}) || h.Get("Password") != "secret" {
		t.Fatalf("headers %v", h)
	}
	if res.Score != 7.5 || res.RequiredScore != 15 || !res.Spam() {
		t.Fatalf("result %+v", res)
	}
	var names []string
	for _, s := range res.Matched() {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"A", "B"}) {
		t.Fatalf("matched %v; want the non-zero symbols, highest first", names)
	}
}

func TestCheckErrors(t *testing.T) {
	for _, tt := range []struct {
		status    int
		retryable bool
	}{{http.StatusServiceUnavailable, true}, {http.StatusTooManyRequests, true}, {http.StatusBadRequest, false}, {http.StatusForbidden, false}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "nope", tt.status)
		}))
		c, err := rspamd.New(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Check(t.Context(), []byte("x"), rspamd.Envelope{})
		srv.Close()
		var re *rspamd.Error
		if !errors.As(err, &re) || re.Status != tt.status || re.Retryable != tt.retryable {
			t.Errorf("status %d: error %v; want retryable %v", tt.status, err, tt.retryable)
		}
	}
	c, err := rspamd.New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Check(t.Context(), []byte("x"), rspamd.Envelope{})
	var re *rspamd.Error
	if !errors.As(err, &re) || !re.Retryable {
		t.Fatalf("connection refused: %v; want a retryable error", err)
	}
	for _, bad := range []string{"", "ftp://x", "http://"} {
		if _, err := rspamd.New(bad); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

// rspamdURL is the real rspamd of the test run (scripts/rspamd-up.sh).
func rspamdURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("MAILPIPE_TEST_RSPAMD_URL")
	if u == "" {
		if testing.Short() {
			t.Skip("needs rspamd; run make test")
		}
		t.Fatal("$MAILPIPE_TEST_RSPAMD_URL is not set: start scripts/rspamd-up.sh and export the URL it prints")
	}
	return u
}

// Against a real rspamd: a message with the marks of bulk junk gets the stock rules' symbols
// and a higher score than a well-formed one.
func TestCheckRealRspamd(t *testing.T) {
	c, err := rspamd.New(rspamdURL(t))
	if err != nil {
		t.Fatal(err)
	}
	env := rspamd.Envelope{ClientIP: "192.0.2.10", Helo: "mx.example.com", MailFrom: "ann@example.com", RcptTo: []string{"support@in.example.com"}}
	good := "From: Ann <ann@example.com>\r\nTo: support@in.example.com\r\nSubject: Invoice question\r\n" +
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <q1@example.com>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nHello, could you resend invoice 42? Thanks, Ann\r\n"
	junk := "From: WINNER <prize@example.com>\r\nTo: support@in.example.com\r\nSubject: YOU HAVE WON!!! CLAIM NOW\r\n" +
		"\r\nCLICK HERE http://192.0.2.55/claim TO GET YOUR $1,000,000 PRIZE NOW!!!\r\n"
	g, err := c.Check(t.Context(), []byte(good), env)
	if err != nil {
		t.Fatal(err)
	}
	j, err := c.Check(t.Context(), []byte(junk), env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("good: score %.2f action %q; junk: score %.2f action %q", g.Score, g.Action, j.Score, j.Action)
	if g.RequiredScore <= 0 || g.Skipped {
		t.Fatalf("verdict %+v; want a scored message with a spam threshold", g)
	}
	for _, sym := range []string{"MISSING_DATE", "MISSING_MID"} {
		if _, ok := j.Symbols[sym]; !ok {
			t.Errorf("junk lacks the stock symbol %s: %v", sym, j.Matched())
		}
		if _, ok := g.Symbols[sym]; ok {
			t.Errorf("good message has %s", sym)
		}
	}
	if j.Score <= g.Score {
		t.Fatalf("junk scores %.2f, not above the good message's %.2f", j.Score, g.Score)
	}
}
