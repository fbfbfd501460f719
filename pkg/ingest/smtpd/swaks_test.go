package smtpd_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
)

// Functional tests with swaks, an SMTP client nobody here wrote, against a real listener. The
// server hands messages to recordingAccepter, so what swaks sent is checked as the server saw it.

// recordingAccepter accepts every message and records it. Its router knows in.example.com:
// support, sales, and support+<tag> as the tagged route of support, as the route table does
// for plus addressing; any other address is unknown.
type recordingAccepter struct {
	mu       sync.Mutex
	accepted []accepted
	resolved []string
}

type accepted struct {
	env events.Envelope
	raw string
}

func (a *recordingAccepter) AcceptStream(_ context.Context, env events.Envelope, r io.Reader) (ingest.Result, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return ingest.Result{}, fmt.Errorf("reading message: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.accepted = append(a.accepted, accepted{env: env, raw: string(raw)})
	return ingest.Result{ID: "msg-" + strconv.Itoa(len(a.accepted)), ThreadKey: "k"}, nil
}

func (a *recordingAccepter) Resolve(rcpt string) (ingest.Route, bool) {
	a.mu.Lock()
	a.resolved = append(a.resolved, rcpt)
	a.mu.Unlock()
	local, domain, ok := strings.Cut(strings.ToLower(rcpt), "@")
	if !ok || domain != "in.example.com" {
		return ingest.Route{}, false
	}
	base, tag, _ := strings.Cut(local, "+")
	switch base {
	case "support", "sales":
		return ingest.Route{ID: "route-" + base, Tenant: "acme", Tag: tag}, true
	}
	return ingest.Route{}, false
}

func (a *recordingAccepter) messages() []accepted {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.accepted)
}

// requireSwaks returns the swaks binary. Under -short the test is skipped; otherwise a missing
// swaks fails it, so a CI image without it cannot pass by skipping.
func requireSwaks(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs swaks; skipped under -short")
	}
	path, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatalf("swaks is not installed (apt-get install swaks, or scripts/deps.sh): %v", err)
	}
	return path
}

// serveSwaks starts a server for cfg over a fresh recordingAccepter.
func serveSwaks(t *testing.T, cfg smtpd.Config, opts ...smtpd.Option) (string, *recordingAccepter) {
	t.Helper()
	requireSwaks(t) // before serving, so a skip does not race the server's start
	acc := &recordingAccepter{}
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.test"
	}
	srv, err := smtpd.New(cfg, acc, slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, srv), acc
}

// swaks runs swaks against addr as ann@example.org from client.example.org with extra args,
// and returns its exit code and transcript.
func swaks(t *testing.T, addr string, args ...string) (int, string) {
	t.Helper()
	bin := requireSwaks(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	base := []string{"--server", addr, "--ehlo", "client.example.org", "--from", "ann@example.org", "--timeout", "10s"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("running swaks: %v\n%s", err, out)
	return 0, ""
}

func wantExit(t *testing.T, code int, out string, want int) {
	t.Helper()
	if code != want {
		t.Fatalf("swaks exited %d, want %d; transcript:\n%s", code, want, out)
	}
}

func TestSwaksDelivers(t *testing.T) {
	addr, acc := serveSwaks(t, smtpd.Config{})
	code, out := swaks(t, addr, "--to", "support@in.example.com", "--header", "Subject: hello from swaks")
	wantExit(t, code, out, 0)
	if !strings.Contains(out, "<-  250 2.0.0 OK: queued as msg-1") {
		t.Errorf("no 250 with the message id in:\n%s", out)
	}
	msgs := acc.messages()
	if len(msgs) != 1 {
		t.Fatalf("accepted %d messages, want 1", len(msgs))
	}
	env := msgs[0].env
	if env.MailFrom != "ann@example.org" || !slices.Equal(env.RcptTo, []string{"support@in.example.com"}) ||
		env.Helo != "client.example.org" || env.ClientIP != "127.0.0.1" || env.Source != "smtp" || env.TLS != nil {
		t.Errorf("envelope = %+v", env)
	}
	if !strings.HasPrefix(msgs[0].raw, "Received: from client.example.org ([127.0.0.1])\r\n\tby mx.test (mailpipe) with ESMTP\r\n") ||
		!strings.Contains(msgs[0].raw, "\r\nSubject: hello from swaks\r\n") {
		t.Errorf("raw = %q", msgs[0].raw)
	}
}

func TestSwaksStartTLS(t *testing.T) {
	// given a server whose certificate the client trusts as its own root
	serverTLS, _ := selfSigned(t, "mx.test")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	keyDER, err := x509.MarshalPKCS8PrivateKey(serverTLS.Certificates[0].PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, certFile, "CERTIFICATE", serverTLS.Certificates[0].Certificate[0])
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)

	for _, tt := range []struct {
		name     string
		cfg      smtpd.Config
		args     []string
		wantExit int
		wantVer  string
	}{
		{name: "TLS 1.3", args: []string{"--tls"}, wantVer: "TLS1.3"},
		{name: "TLS 1.2 client", args: []string{"--tls", "--tls-protocol", "tlsv1_2"}, wantVer: "TLS1.2"},
		{
			name: "TLS 1.2 client below a 1.3 floor", cfg: smtpd.Config{TLSMinVersion: "1.3"},
			args: []string{"--tls", "--tls-protocol", "tlsv1_2"}, wantExit: 29,
		},
		{name: "plain client with RequireTLS", cfg: smtpd.Config{RequireTLS: true}, wantExit: 23},
		{name: "TLS client with RequireTLS", cfg: smtpd.Config{RequireTLS: true}, args: []string{"--tls"}, wantVer: "TLS1.3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
			addr, acc := serveSwaks(t, cfg)
			code, out := swaks(t, addr, append([]string{"--to", "support@in.example.com"}, tt.args...)...)
			wantExit(t, code, out, tt.wantExit)
			msgs := acc.messages()
			if tt.wantExit != 0 {
				if tt.cfg.RequireTLS && !strings.Contains(out, "<** 530 5.7.0 Must issue a STARTTLS command first") {
					t.Errorf("no 530 5.7.0 in:\n%s", out)
				}
				if len(msgs) != 0 {
					t.Errorf("accepted %d messages, want 0", len(msgs))
				}
				return
			}
			if len(msgs) != 1 {
				t.Fatalf("accepted %d messages, want 1", len(msgs))
			}
			// The version and cipher recorded are the ones swaks negotiated (OpenSSL names the
			// TLS 1.3 suites as IANA does; for 1.2 it has its own names, so only the version is
			// compared there).
			got := msgs[0].env.TLS
			if got == nil || got.Version != tt.wantVer {
				t.Fatalf("recorded tls = %+v, want version %s", got, tt.wantVer)
			}
			m := regexp.MustCompile(`=== TLS started with cipher (\S+):(\S+):\d+`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("swaks did not report its cipher:\n%s", out)
			}
			if wantProto := map[string]string{"TLS1.3": "TLSv1.3", "TLS1.2": "TLSv1.2"}[tt.wantVer]; m[1] != wantProto {
				t.Errorf("swaks negotiated %s, want %s", m[1], wantProto)
			}
			if tt.wantVer == "TLS1.3" && got.Cipher != m[2] {
				t.Errorf("recorded cipher %s, swaks negotiated %s", got.Cipher, m[2])
			}
			if !strings.Contains(msgs[0].raw, "with ESMTPS\r\n\t(version="+got.Version+" cipher="+got.Cipher+")") {
				t.Errorf("Received header does not record TLS: %q", msgs[0].raw[:200])
			}
		})
	}
}

func TestSwaksSizeLimit(t *testing.T) {
	addr, acc := serveSwaks(t, smtpd.Config{MaxMessageBytes: 4096})
	body := filepath.Join(t.TempDir(), "body.txt")
	if err := os.WriteFile(body, []byte(strings.Repeat("0123456789 abcdefghij klmnopqrst uvwxyz\r\n", 200)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := swaks(t, addr, "--to", "support@in.example.com", "--body", "@"+body)
	wantExit(t, code, out, 26) // server did not accept mail following data
	if !strings.Contains(out, "<** 552 5.3.4 ") {
		t.Errorf("no 552 5.3.4 in:\n%s", out)
	}
	if n := len(acc.messages()); n != 0 {
		t.Errorf("accepted %d messages, want 0", n)
	}
	// A message within the limit still goes through.
	code, out = swaks(t, addr, "--to", "support@in.example.com")
	wantExit(t, code, out, 0)
}

func TestSwaksRecipients(t *testing.T) {
	for _, tt := range []struct {
		name      string
		to        string
		pipeline  bool
		wantExit  int
		wantRcpts []string
		wantReply string
	}{
		{name: "unknown domain", to: "someone@elsewhere.example", wantExit: 24, wantReply: "550 5.1.1"},
		{name: "unknown local part", to: "nobody@in.example.com", wantExit: 24, wantReply: "550 5.1.1"},
		{name: "plus address of a route", to: "support+acme-42@in.example.com", wantRcpts: []string{"support+acme-42@in.example.com"}},
		{name: "plus address of no route", to: "nobody+acme@in.example.com", wantExit: 24, wantReply: "550 5.1.1"},
		{
			name: "one known, one unknown", to: "sales@in.example.com,someone@elsewhere.example",
			wantRcpts: []string{"sales@in.example.com"}, wantReply: "550 5.1.1",
		},
		{name: "pipelined", to: "support@in.example.com", pipeline: true, wantRcpts: []string{"support@in.example.com"}},
		{
			name: "pipelined with an unknown recipient", to: "support@in.example.com,someone@elsewhere.example", pipeline: true,
			wantRcpts: []string{"support@in.example.com"}, wantReply: "550 5.1.1",
		},
		{name: "pipelined, no known recipient", to: "someone@elsewhere.example", pipeline: true, wantExit: 24, wantReply: "550 5.1.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, acc := serveSwaks(t, smtpd.Config{})
			args := []string{"--to", tt.to}
			if tt.pipeline {
				args = append(args, "--pipeline")
			}
			code, out := swaks(t, addr, args...)
			wantExit(t, code, out, tt.wantExit)
			if tt.wantReply != "" && !strings.Contains(out, "<** "+tt.wantReply+" ") {
				t.Errorf("no %s in:\n%s", tt.wantReply, out)
			}
			if tt.pipeline {
				assertPipelined(t, out)
			}
			msgs := acc.messages()
			if len(tt.wantRcpts) == 0 {
				if len(msgs) != 0 {
					t.Errorf("accepted %d messages, want 0", len(msgs))
				}
				return
			}
			if len(msgs) != 1 || !slices.Equal(msgs[0].env.RcptTo, tt.wantRcpts) {
				t.Fatalf("accepted %+v, want one message to %v", msgs, tt.wantRcpts)
			}
		})
	}
}

// assertPipelined checks that swaks really pipelined: the server advertised PIPELINING, and
// swaks sent MAIL, RCPT and DATA before it read the reply to MAIL.
func assertPipelined(t *testing.T, out string) {
	t.Helper()
	if !strings.Contains(out, "250-PIPELINING") {
		t.Errorf("PIPELINING not advertised:\n%s", out)
	}
	mailReply := strings.Index(out, "Roger, accepting mail from")
	data := strings.Index(out, " -> DATA")
	if mailReply < 0 || data < 0 || data > mailReply {
		t.Errorf("DATA was not sent before the reply to MAIL arrived:\n%s", out)
	}
}

func TestSwaksRateLimits(t *testing.T) {
	addr, acc := serveSwaks(t, smtpd.Config{RateConnections: ratelimit.PerMinute(2), RateMessages: ratelimit.PerMinute(1)},
		smtpd.WithRateLimiter(ratelimit.MemoryFactory()))
	// the first message goes through
	code, out := swaks(t, addr, "--to", "support@in.example.com")
	wantExit(t, code, out, 0)
	// the second connection is admitted, but its message is deferred
	code, out = swaks(t, addr, "--to", "support@in.example.com")
	wantExit(t, code, out, 23)
	if !strings.Contains(out, "<** 450 4.7.1 Too much mail from 127.0.0.1, try again in ") {
		t.Errorf("no 450 4.7.1 in:\n%s", out)
	}
	// and the third connection is refused before the greeting
	code, out = swaks(t, addr, "--to", "support@in.example.com")
	wantExit(t, code, out, 21)
	if !strings.Contains(out, "<** 421 4.7.0 mx.test Too many connections from 127.0.0.1, try again in ") {
		t.Errorf("no 421 4.7.0 in:\n%s", out)
	}
	if n := len(acc.messages()); n != 1 {
		t.Errorf("accepted %d messages, want 1", n)
	}
}
