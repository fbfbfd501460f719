package smtpd_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// fakeProducer acknowledges or fails every record; it can hold produces until released.
type fakeProducer struct {
	mu      sync.Mutex
	err     error
	hold    chan struct{} // when set, ProduceSync waits for it to close
	entered chan struct{} // closed on the first ProduceSync
	once    sync.Once
	records []*kgo.Record
}

func (p *fakeProducer) ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	if p.entered != nil {
		p.once.Do(func() { close(p.entered) })
	}
	if p.hold != nil {
		select {
		case <-p.hold:
		case <-ctx.Done():
			return kgo.ProduceResults{{Record: rs[0], Err: ctx.Err()}}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var out kgo.ProduceResults
	for _, r := range rs {
		if p.err == nil {
			p.records = append(p.records, r)
		}
		out = append(out, kgo.ProduceResult{Record: r, Err: p.err})
	}
	return out
}

func (p *fakeProducer) produced() []*kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.records)
}

var newCodec = sync.OnceValues(func() (*serde.Codec, error) { return serde.New(context.Background()) })

type harness struct {
	srv   *smtpd.Server
	addr  string
	prod  *fakeProducer
	codec *serde.Codec
}

// start runs a server on a loopback port, backed by a real Ingester over prod, accepting mail
// for in.example.com.
func start(t *testing.T, cfg smtpd.Config, prod *fakeProducer, opts ...smtpd.Option) *harness {
	t.Helper()
	c, err := newCodec()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	in, err := ingest.New(ingest.Config{Domains: []string{"in.example.com"}}, ingest.Options{Producer: prod, Codec: c, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.test"
	}
	srv, err := smtpd.New(cfg, in, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 5*time.Second)
		defer cancel()
		// A test that shut down with a short deadline already saw (and checked) its error.
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &harness{srv: srv, addr: l.Addr().String(), prod: prod, codec: c}
}

func (h *harness) dial(t *testing.T) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	return c
}

// send runs one transaction and returns the reply to DATA (text or error).
func send(c *smtp.Client, from string, rcpts []string, msg string) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

const msg = "From: Ann <ann@example.org>\r\n" +
	"To: support@in.example.com\r\n" +
	"Subject: Hello\r\n" +
	"Message-ID: <root-1@example.org>\r\n" +
	"\r\n" +
	"Line one\r\n" +
	".leading dot survives dot-stuffing\r\n" +
	"\r\n"

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestAcceptedMessageIsRecordedAsSent(t *testing.T) {
	h := start(t, smtpd.Config{}, &fakeProducer{})
	c := h.dial(t)

	reply, err := send(c, "ann@example.org", []string{"support@in.example.com", "Sales@IN.example.com"}, msg)
	if err != nil {
		t.Fatalf("send: %v", err)
	}

	recs := h.prod.produced()
	if len(recs) != 1 {
		t.Fatalf("produced %d records, want 1", len(recs))
	}
	var got events.Raw
	if err := h.codec.Decode(t.Context(), kafka.TopicRaw, recs[0].Value, &got); err != nil {
		t.Fatal(err)
	}
	if want := "2.0.0 OK: queued as " + got.ID; reply != want {
		t.Errorf("reply = %q, want %q", reply, want)
	}
	if got.Raw == nil {
		t.Fatal("raw is not inline")
	}
	raw := string(*got.Raw)
	received, rest, ok := strings.Cut(raw, "\r\nFrom: ")
	if !ok || "From: "+rest != msg {
		t.Errorf("recorded raw does not end with the message as sent:\n%q", raw)
	}
	if !regexp.MustCompile(`^Received: from client\.example\.org \(\[127\.0\.0\.1\]\)\r\n\tby mx\.test \(mailpipe\) with ESMTP;\r\n\t\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$`).MatchString(received) {
		t.Errorf("Received header = %q", received)
	}
	wantEnv := events.Envelope{
		MailFrom: "ann@example.org", RcptTo: []string{"support@in.example.com", "sales@in.example.com"},
		ClientIP: "127.0.0.1", Helo: "client.example.org", Source: "smtp",
	}
	if got.Envelope.MailFrom != wantEnv.MailFrom || !slices.Equal(got.Envelope.RcptTo, wantEnv.RcptTo) ||
		got.Envelope.ClientIP != wantEnv.ClientIP || got.Envelope.Helo != wantEnv.Helo ||
		got.Envelope.Source != wantEnv.Source || got.Envelope.TLS != nil {
		t.Errorf("envelope = %+v, want %+v", got.Envelope, wantEnv)
	}
	if got.ThreadKey != "root-1@example.org" || string(recs[0].Key) != got.ThreadKey {
		t.Errorf("thread key = %q, record key %q; want root-1@example.org", got.ThreadKey, recs[0].Key)
	}
	if got.Size != int64(len(raw)) {
		t.Errorf("size = %d, want %d", got.Size, len(raw))
	}

	// The connection stays usable for another transaction, with the null sender.
	if _, err := send(c, "", []string{"support@in.example.com"}, msg); err != nil {
		t.Errorf("second transaction: %v", err)
	}
	if n := len(h.prod.produced()); n != 2 {
		t.Errorf("produced %d records, want 2", n)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

func TestRejections(t *testing.T) {
	for _, tt := range []struct {
		name     string
		cfg      smtpd.Config
		prodErr  error
		rcpts    []string
		msg      string
		wantCode int
		wantEnh  smtp.EnhancedCode
	}{
		{
			name: "produce failure is temporary", prodErr: errors.New("NOT_ENOUGH_REPLICAS"),
			rcpts: []string{"support@in.example.com"}, msg: msg, wantCode: 451, wantEnh: smtp.EnhancedCode{4, 3, 0},
		},
		{
			name:  "unknown domain is refused at RCPT (no relay)",
			rcpts: []string{"someone@elsewhere.example"}, msg: msg, wantCode: 550, wantEnh: smtp.EnhancedCode{5, 1, 1},
		},
		{
			name:  "subdomain is not the domain",
			rcpts: []string{"someone@sub.in.example.com"}, msg: msg, wantCode: 550, wantEnh: smtp.EnhancedCode{5, 1, 1},
		},
		{
			name: "message above the size limit", cfg: smtpd.Config{MaxMessageBytes: 64},
			rcpts: []string{"support@in.example.com"}, msg: msg, wantCode: 552, wantEnh: smtp.EnhancedCode{5, 3, 4},
		},
		{
			name: "too many recipients", cfg: smtpd.Config{MaxRecipients: 1},
			rcpts: []string{"a@in.example.com", "b@in.example.com"}, msg: msg, wantCode: 452, wantEnh: smtp.EnhancedCode{4, 5, 3},
		},
		{
			name: "line too long", cfg: smtpd.Config{MaxLineLength: 1000},
			rcpts: []string{"support@in.example.com"}, msg: "Subject: x\r\n\r\n" + strings.Repeat("y", 1200) + "\r\n",
			wantCode: 500, wantEnh: smtp.EnhancedCode{5, 6, 0},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, tt.cfg, &fakeProducer{err: tt.prodErr})
			c := h.dial(t)
			_, err := send(c, "ann@example.org", tt.rcpts, tt.msg)
			if code := smtpCode(err); code != tt.wantCode {
				t.Fatalf("error = %v (code %d), want code %d", err, code, tt.wantCode)
			}
			var se *smtp.SMTPError
			if errors.As(err, &se) && tt.wantEnh != (smtp.EnhancedCode{}) && se.EnhancedCode != tt.wantEnh {
				t.Errorf("enhanced code = %v, want %v", se.EnhancedCode, tt.wantEnh)
			}
			if tt.prodErr == nil {
				if n := len(h.prod.produced()); n != 0 {
					t.Errorf("produced %d records, want 0", n)
				}
			}
		})
	}
}

func TestSizeDeclaredInMailFrom(t *testing.T) {
	h := start(t, smtpd.Config{MaxMessageBytes: 1000}, &fakeProducer{})
	c := h.dial(t)
	if size, ok := c.MaxMessageSize(); !ok || size != 1000 {
		t.Errorf("advertised SIZE = %d, %v; want 1000", size, ok)
	}
	err := c.Mail("ann@example.org", &smtp.MailOptions{Size: 5000})
	if code := smtpCode(err); code != 552 {
		t.Errorf("MAIL FROM SIZE=5000: error = %v, want 552", err)
	}
}

// multiRouteAccepter routes two domains to two routes, to check the per-transaction split.
type multiRouteAccepter struct{ calls int }

func (a *multiRouteAccepter) AcceptStream(_ context.Context, _ events.Envelope, r io.Reader) (ingest.Result, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return ingest.Result{}, err
	}
	a.calls++
	return ingest.Result{ID: "id", ThreadKey: "k"}, nil
}

func (a *multiRouteAccepter) Resolve(rcpt string) (ingest.Route, bool) {
	switch {
	case strings.HasSuffix(rcpt, "@a.example.com"):
		return ingest.Route{ID: "a", Tenant: "acme"}, true
	case strings.HasSuffix(rcpt, "@b.example.com"):
		return ingest.Route{ID: "b", Tenant: "beta"}, true
	}
	return ingest.Route{}, false
}

func TestRecipientsOfAnotherRouteAreDeferred(t *testing.T) {
	srv, err := smtpd.New(smtpd.Config{}, &multiRouteAccepter{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srv)
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("ann@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("x@a.example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("y@a.example.com", nil); err != nil {
		t.Errorf("same route: %v", err)
	}
	if err := c.Rcpt("z@b.example.com", nil); smtpCode(err) != 452 {
		t.Errorf("other route: error = %v, want 452", err)
	}
}

func serve(t *testing.T, srv *smtpd.Server) string {
	t.Helper()
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

func TestConnectionLimit(t *testing.T) {
	h := start(t, smtpd.Config{MaxConnections: 1}, &fakeProducer{})
	first := h.dial(t) // holds the only slot

	// given a second connection over the limit
	var d net.Dialer
	conn, err := d.DialContext(t.Context(), "tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	greeting, _ := io.ReadAll(conn)
	// then it is told to come back later
	if !strings.HasPrefix(string(greeting), "421 4.7.0 ") {
		t.Errorf("over the limit got %q, want 421 4.7.0", greeting)
	}

	// and the slot is free again once the first client leaves
	if err := first.Quit(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := smtp.Dial(h.addr)
		if err == nil {
			err = c.Hello("client.example.org")
			_ = c.Close()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after the first client quit: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestShutdownLetsRunningTransactionFinish(t *testing.T) {
	// given a transaction whose produce is in progress
	prod := &fakeProducer{hold: make(chan struct{}), entered: make(chan struct{})}
	h := start(t, smtpd.Config{}, prod)
	c := h.dial(t)
	idle := h.dial(t) // an idle client must not hold up shutdown
	replied := make(chan error, 1)
	go func() {
		_, err := send(c, "ann@example.org", []string{"support@in.example.com"}, msg)
		replied <- err
	}()
	<-prod.entered

	// when the server shuts down
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		stopped <- h.srv.Shutdown(ctx)
	}()
	// then no new connection is served
	waitUntil(t, func() bool {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(t.Context(), "tcp", h.addr)
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	})
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned %v while a transaction was running", err)
	default:
	}

	// and the running transaction still gets its 250 once the record is acknowledged
	close(prod.hold)
	if err := <-replied; err != nil {
		t.Errorf("running transaction: %v, want 250", err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := idle.Noop(); err == nil {
		t.Error("idle connection still open after Shutdown")
	}
}

func TestShutdownDeadlineAbortsWith451(t *testing.T) {
	prod := &fakeProducer{hold: make(chan struct{}), entered: make(chan struct{})}
	defer close(prod.hold)
	h := start(t, smtpd.Config{}, prod)
	c := h.dial(t)
	replied := make(chan error, 1)
	go func() {
		_, err := send(c, "ann@example.org", []string{"support@in.example.com"}, msg)
		replied <- err
	}()
	<-prod.entered

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	// The client either saw 451 (the abort won the race with the close) or lost the
	// connection; either way it keeps the message and retries. It never sees 250.
	if err := <-replied; err == nil {
		t.Error("aborted transaction was answered 250")
	}
	if n := len(prod.produced()); n != 0 {
		t.Errorf("produced %d records, want 0", n)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartTLSIsRecorded(t *testing.T) {
	serverTLS, clientTLS := selfSigned(t, "mx.test")
	h := start(t, smtpd.Config{TLS: serverTLS}, &fakeProducer{})
	c, err := smtp.DialStartTLS(h.addr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := send(c, "ann@example.org", []string{"support@in.example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	var got events.Raw
	if err := h.codec.Decode(t.Context(), kafka.TopicRaw, h.prod.produced()[0].Value, &got); err != nil {
		t.Fatal(err)
	}
	if got.Envelope.TLS == nil || got.Envelope.TLS.Version != "TLS1.3" || !strings.HasPrefix(got.Envelope.TLS.Cipher, "TLS_") {
		t.Errorf("tls = %+v, want TLS1.3 with a cipher name", got.Envelope.TLS)
	}
	if !bytes.Contains(*got.Raw, []byte("with ESMTPS\r\n\t(version=TLS1.3 cipher=")) {
		t.Errorf("Received header does not record TLS: %q", (*got.Raw)[:200])
	}
}

func selfSigned(t *testing.T, host string) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
}

func TestNewValidates(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tt := range []struct {
		name string
		cfg  smtpd.Config
		want string
	}{
		{name: "cert without key", cfg: smtpd.Config{TLSCertFile: "cert.pem"}, want: "set together"},
		{name: "short lines", cfg: smtpd.Config{MaxLineLength: 200}, want: "below RFC 5321"},
		{name: "negative size", cfg: smtpd.Config{MaxMessageBytes: -1}, want: "must not be negative"},
		{name: "unknown tls version", cfg: smtpd.Config{TLSMinVersion: "1.4"}, want: `tls min version "1.4"`},
		{name: "insecure cipher suite", cfg: smtpd.Config{TLSCipherSuites: []string{"TLS_RSA_WITH_RC4_128_SHA"}}, want: "insecure"},
		{name: "tls 1.3 cipher suite", cfg: smtpd.Config{TLSCipherSuites: []string{"TLS_AES_128_GCM_SHA256"}}, want: "TLS 1.3 suite"},
		{name: "unknown cipher suite", cfg: smtpd.Config{TLSCipherSuites: []string{"TLS_FAST_AND_LOOSE"}}, want: "unknown"},
		{name: "suites with tls 1.3 only", cfg: smtpd.Config{TLSMinVersion: "1.3", TLSCipherSuites: []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}}, want: "no effect"},
		{name: "require tls without a certificate", cfg: smtpd.Config{RequireTLS: true}, want: "require tls needs a certificate"},
		{name: "invalid rate", cfg: smtpd.Config{RateMessages: ratelimit.Limit{Rate: 5}}, want: "rate messages: "},
		{name: "invalid exempt network", cfg: smtpd.Config{RateExempt: []string{"10.0.0.0/33"}}, want: "rate exempt: "},
		{name: "rate limit without a backend", cfg: smtpd.Config{RateConnections: ratelimit.PerMinute(60)}, want: "needs Redis"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := smtpd.New(tt.cfg, &multiRouteAccepter{}, log)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
