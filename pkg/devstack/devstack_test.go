package devstack_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/devstack"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// `mailpipe dev` end to end in one process: a message sent over SMTP reaches the local CRM
// store, dev logs one line for it, and a graceful stop ends Run without error.
func TestDevStackDeliversToLocalStore(t *testing.T) {
	// given
	cfg := devstack.DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.KafkaAddr, cfg.RedisAddr = freeAddr(t), freeAddr(t)
	cfg.SMTPAddr, cfg.HTTPAddr, cfg.AdminAddr = freeAddr(t), freeAddr(t), freeAddr(t)
	var out, logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- devstack.Run(ctx, cfg, &out, log) }()
	waitFor(t, 30*time.Second, func() bool { return strings.Contains(out.String(), "mailpipe dev is running") })

	// when
	msg := "From: Ann <ann@example.com>\r\nTo: support@in.example.com\r\nSubject: dev smoke\r\n" +
		"Message-ID: <dev-smoke-1@example.com>\r\n\r\nhello\r\n"
	// over STARTTLS, verifying the generated self-signed certificate as a client that trusts it
	pemBytes, err := os.ReadFile(filepath.Join(cfg.Dir, devstack.TLSCertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in the dev certificate file")
	}
	waitFor(t, 30*time.Second, func() bool {
		return sendTLS(cfg.SMTPAddr, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12},
			"ann@example.com", "support@in.example.com", msg) == nil
	})

	// then
	store := filepath.Join(cfg.Dir, "crm.jsonl")
	waitFor(t, 60*time.Second, func() bool {
		b, _ := os.ReadFile(store)
		return bytes.Contains(b, []byte("dev smoke"))
	})
	b, _ := os.ReadFile(store)
	var entry map[string]any
	if err := json.Unmarshal(bytes.SplitN(b, []byte("\n"), 2)[0], &entry); err != nil {
		t.Fatalf("store line: %v: %s", err, b)
	}
	if entry["subject"] != "dev smoke" {
		t.Fatalf("entry = %v", entry)
	}
	if !strings.Contains(logs.String(), "message reached the CRM store") {
		t.Fatalf("no delivery log line in:\n%s", logs.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("dev stack did not stop")
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sendTLS delivers msg over SMTP after a verified STARTTLS; net/smtp.SendMail would verify
// against the system roots, which do not hold the dev certificate.
func sendTLS(addr string, cfg *tls.Config, from, to, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	if err := c.StartTLS(cfg); err != nil {
		return err
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
