package smtpd_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

// recordedTLS sends one message over c and returns the TLS facts recorded in its envelope.
func recordedTLS(t *testing.T, h *harness, c *smtp.Client) *events.TLSInfo {
	t.Helper()
	if _, err := send(c, "ann@example.org", []string{"support@in.example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	recs := h.prod.produced()
	var got events.Raw
	if err := h.codec.Decode(t.Context(), kafka.TopicRaw, recs[len(recs)-1].Value, &got); err != nil {
		t.Fatal(err)
	}
	return got.Envelope.TLS
}

func TestTLSPolicy(t *testing.T) {
	serverTLS, clientTLS := selfSigned(t, "mx.test")
	const suite = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
	for _, tt := range []struct {
		name       string
		cfg        smtpd.Config
		client     func(*tls.Config)
		wantErr    bool // the handshake fails
		wantTLS    events.TLSInfo
		wantCipher bool // check wantTLS.Cipher exactly
	}{
		{
			name:    "default floor accepts a TLS 1.2 client",
			client:  func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 },
			wantTLS: events.TLSInfo{Version: "TLS1.2"},
		},
		{
			name: "default floor refuses a TLS 1.1 client, even when the ready config allows it",
			cfg: smtpd.Config{TLS: func() *tls.Config {
				c := serverTLS.Clone()
				c.MinVersion = tls.VersionTLS10
				return c
			}()},
			client:  func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 },
			wantErr: true,
		},
		{
			name:    "min version 1.3 refuses a TLS 1.2 client",
			cfg:     smtpd.Config{TLSMinVersion: "1.3"},
			client:  func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 },
			wantErr: true,
		},
		{
			name:    "min version 1.3",
			cfg:     smtpd.Config{TLSMinVersion: "1.3"},
			wantTLS: events.TLSInfo{Version: "TLS1.3"},
		},
		{
			name:       "cipher suites restrict TLS 1.2",
			cfg:        smtpd.Config{TLSCipherSuites: []string{suite}},
			client:     func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 },
			wantTLS:    events.TLSInfo{Version: "TLS1.2", Cipher: suite},
			wantCipher: true,
		},
		{
			name: "a client without an allowed suite is refused",
			cfg:  smtpd.Config{TLSCipherSuites: []string{suite}},
			client: func(c *tls.Config) {
				c.MaxVersion = tls.VersionTLS12
				c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
			},
			wantErr: true,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.TLS == nil {
				cfg.TLS = serverTLS
			}
			h := start(t, cfg, &fakeProducer{})
			cc := clientTLS.Clone()
			if tt.client != nil {
				tt.client(cc)
			}
			c, err := smtp.DialStartTLS(h.addr, cc)
			if tt.wantErr {
				// go-smtp's client shakes hands lazily, on the first command after STARTTLS.
				if err == nil {
					_, err = send(c, "ann@example.org", []string{"support@in.example.com"}, msg)
					_ = c.Close()
				}
				if err == nil {
					t.Fatal("message sent over TLS, want a failed handshake")
				}
				if !strings.Contains(err.Error(), "tls:") {
					t.Errorf("error = %v, want a TLS handshake error", err)
				}
				if n := len(h.prod.produced()); n != 0 {
					t.Errorf("produced %d records, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			got := recordedTLS(t, h, c)
			if got == nil || got.Version != tt.wantTLS.Version || !strings.HasPrefix(got.Cipher, "TLS_") ||
				(tt.wantCipher && got.Cipher != tt.wantTLS.Cipher) {
				t.Errorf("recorded tls = %+v, want %+v", got, tt.wantTLS)
			}
		})
	}
}

func TestRequireTLS(t *testing.T) {
	serverTLS, clientTLS := selfSigned(t, "mx.test")
	h := start(t, smtpd.Config{TLS: serverTLS, RequireTLS: true}, &fakeProducer{})

	// given a plain session
	rc := dialRaw(t, h.addr)
	rc.expect("EHLO client.example.org", 250)
	// when it starts a transaction, then it is told to STARTTLS first
	if code, text := rc.cmd("MAIL FROM:<ann@example.org>"); code != 530 || text != "5.7.0 Must issue a STARTTLS command first" {
		t.Fatalf("MAIL before STARTTLS: %d %s, want 530 5.7.0 Must issue a STARTTLS command first", code, text)
	}
	if code, _ := rc.cmd("RCPT TO:<support@in.example.com>"); code/100 != 5 {
		t.Errorf("RCPT after the refused MAIL: %d, want 5xx", code)
	}
	rc.expect("QUIT", 221)

	// and after STARTTLS the same message goes through
	c, err := smtp.DialStartTLS(h.addr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if got := recordedTLS(t, h, c); got == nil {
		t.Error("no tls recorded")
	}
	if n := len(h.prod.produced()); n != 1 {
		t.Errorf("produced %d records, want 1", n)
	}
}

// STARTTLS is offered only with a certificate, and it is read from PEM files.
func TestStartTLSFromFiles(t *testing.T) {
	serverTLS, clientTLS := selfSigned(t, "mx.test")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	keyDER, err := x509.MarshalPKCS8PrivateKey(serverTLS.Certificates[0].PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, certFile, "CERTIFICATE", serverTLS.Certificates[0].Certificate[0])
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)

	h := start(t, smtpd.Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, &fakeProducer{})
	c, err := smtp.DialStartTLS(h.addr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if got := recordedTLS(t, h, c); got == nil || got.Version != "TLS1.3" {
		t.Errorf("recorded tls = %+v", got)
	}

	// A missing file fails New, not the first handshake.
	_, err = smtpd.New(smtpd.Config{TLSCertFile: filepath.Join(dir, "missing.crt"), TLSKeyFile: keyFile},
		&multiRouteAccepter{}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "loading smtp tls certificate") {
		t.Errorf("New with a missing certificate: %v", err)
	}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
