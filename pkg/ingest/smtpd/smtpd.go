// Package smtpd is the SMTP front-end of ingress: an emersion/go-smtp server that accepts mail
// for provisioned addresses only and hands each message to the ingest use case.
//
// The server answers 250 to the end of DATA only after ingest recorded the message on
// mail.raw.v1 (ingest.Ingester.AcceptStream returned nil), and 451 4.3.0 when it could not, so the
// sending MTA keeps the message and retries. Recipients are checked at RCPT time against the
// ingest router; unknown ones get 550 5.1.1, so the server is never an open relay. Every limit
// (size, recipients, line length, timeouts, connections) is explicit in [Config].
//
// Replies a sender can meet, besides the ones above:
//
//   - 552 5.3.4 message larger than MaxMessageBytes (declared with SIZE= or sent);
//     452 4.5.3 more than MaxRecipients recipients, or recipients of another route (the client
//     sends them in another transaction).
//   - 421 4.7.0 in place of the greeting, then close: over MaxConnections, or over the client's
//     connection rate (RateConnections). 450 4.7.1 to MAIL FROM over the client's message rate
//     (RateMessages). Rate limits fail open: when the limiter (Redis) cannot answer, clients are
//     let through and the failure is logged.
//   - 530 5.7.0 to MAIL FROM before STARTTLS when RequireTLS is set.
//   - 550 5.7.1 to RCPT TO when the recipient's route does not accept the envelope sender
//     (ingest.Route.Senders); 552 5.3.4 to RCPT TO when a declared SIZE exceeds the route's
//     MaxSize, and to the data when it does.
//   - 554 5.6.0 to message data with a bare CR or LF (which is how SMTP smuggling's fake
//     end-of-data sequences look once go-smtp has read them, see dataGuard), a NUL byte, no
//     bytes at all, or, with Strict8BitMIME, 8-bit bytes without BODY=8BITMIME.
//   - 500/501/502 for malformed or out-of-sequence commands (go-smtp's replies); they leave the
//     transaction in progress untouched, and after several go-smtp closes the connection.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ratelimit"
)

// Environment variable names of [Config], relative to the prefix the service gives the section
// (the ingress service reads them as MAILPIPE_SMTP_<NAME>).
const (
	EnvAddr            = "ADDR"
	EnvHostname        = "HOSTNAME"
	EnvMaxMessageBytes = "MAX_MESSAGE_BYTES"
	EnvMaxRecipients   = "MAX_RECIPIENTS"
	EnvMaxLineLength   = "MAX_LINE_LENGTH"
	EnvReadTimeout     = "READ_TIMEOUT"
	EnvWriteTimeout    = "WRITE_TIMEOUT"
	EnvAcceptTimeout   = "ACCEPT_TIMEOUT"
	EnvMaxConnections  = "MAX_CONNECTIONS"
	EnvTLSCertFile     = "TLS_CERT_FILE"
	EnvTLSKeyFile      = "TLS_KEY_FILE"
	EnvTLSMinVersion   = "TLS_MIN_VERSION"
	EnvTLSCipherSuites = "TLS_CIPHER_SUITES"
	EnvRequireTLS      = "REQUIRE_TLS"
	EnvStrict8BitMIME  = "STRICT_8BITMIME"
	EnvRateConnections = "RATE_CONNECTIONS"
	EnvRateMessages    = "RATE_MESSAGES"
	EnvRateExempt      = "RATE_EXEMPT"
)

// Defaults of [Config].
const (
	DefaultAddr            = ":2525"
	DefaultHostname        = "localhost"
	DefaultMaxMessageBytes = 25 << 20 // 25 MiB, the common MTA default; advertised as SIZE
	DefaultMaxRecipients   = 100      // RFC 5321 4.5.3.1.8: servers must accept at least 100
	DefaultMaxLineLength   = 2000     // twice RFC 5321's 1000, as go-smtp and most MTAs allow
	DefaultReadTimeout     = 5 * time.Minute
	DefaultWriteTimeout    = time.Minute
	DefaultAcceptTimeout   = 30 * time.Second
	DefaultMaxConnections  = 256
	DefaultTLSMinVersion   = "1.2"
)

// Config configures the SMTP server. Zero fields take the defaults above.
type Config struct {
	// Addr is the TCP address ListenAndServe listens on. Default ":2525".
	Addr string `env:"ADDR" default:":2525" usage:"SMTP listen address"`
	// Hostname is the name in the greeting and in the Received header. Default "localhost".
	Hostname string `env:"HOSTNAME" default:"localhost" usage:"SMTP host name in greeting and Received header"`
	// MaxMessageBytes bounds a message (as sent, before the Received header is added);
	// larger ones get 552 5.3.4. It is advertised in EHLO as SIZE. Default 25 MiB. Messages
	// above ingest's inline limit need a blob store (see ingest.Config).
	MaxMessageBytes int64 `env:"MAX_MESSAGE_BYTES" default:"26214400" usage:"largest message accepted, bytes"`
	// MaxRecipients per transaction; further RCPTs get 452 4.5.3 and the client sends them in
	// another transaction. Default 100.
	MaxRecipients int `env:"MAX_RECIPIENTS" default:"100" usage:"recipients per SMTP transaction"`
	// MaxLineLength bounds a command or data line; a longer line closes the connection with
	// 500 5.4.0. Default 2000.
	MaxLineLength int `env:"MAX_LINE_LENGTH" default:"2000" usage:"longest SMTP line, bytes"`
	// ReadTimeout bounds the wait for each command line, and the whole DATA transfer after the
	// DATA command (go-smtp sets the deadline per command). Default 5m (RFC 5321 4.5.3.2.7).
	ReadTimeout time.Duration `env:"READ_TIMEOUT" default:"5m" usage:"per-command read deadline, also bounds DATA"`
	// WriteTimeout bounds each reply write. Default 1m.
	WriteTimeout time.Duration `env:"WRITE_TIMEOUT" default:"1m" usage:"per-reply write deadline"`
	// AcceptTimeout bounds ingest.Accept for one message (claim check plus produce); when it
	// passes the client gets 451 and retries. Keep it well under the 10 minutes RFC 5321 gives
	// a client to wait for the reply to DATA. Default 30s.
	AcceptTimeout time.Duration `env:"ACCEPT_TIMEOUT" default:"30s" usage:"deadline for recording one message"`
	// MaxConnections bounds concurrent connections; a connection over the limit gets
	// 421 4.7.0 and is closed. Default 256.
	MaxConnections int `env:"MAX_CONNECTIONS" default:"256" usage:"concurrent SMTP connections"`
	// TLSCertFile and TLSKeyFile (PEM) enable STARTTLS. Both or neither. They are read at New
	// (a bad pair fails it) and again when they change, so a renewed certificate is served
	// without a restart (checked at most every 30s, on a handshake).
	TLSCertFile string `env:"TLS_CERT_FILE" usage:"PEM certificate for STARTTLS"`
	TLSKeyFile  string `env:"TLS_KEY_FILE" usage:"PEM private key for STARTTLS"`
	// TLSMinVersion is the lowest TLS version STARTTLS negotiates: "1.0", "1.1", "1.2" or
	// "1.3". Default "1.2". SMTP's TLS is opportunistic: a sender that cannot meet the floor
	// usually retries in plain text, so raising it trades old senders' encryption for strength,
	// and lowering it below 1.2 only helps very old MTAs.
	TLSMinVersion string `env:"TLS_MIN_VERSION" default:"1.2" usage:"lowest TLS version for STARTTLS: 1.0, 1.1, 1.2 or 1.3"`
	// TLSCipherSuites restricts the TLS 1.0–1.2 cipher suites (IANA names such as
	// TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256). Empty means Go's defaults, which contain no
	// insecure suite. Insecure suites (tls.InsecureCipherSuites) are refused; TLS 1.3 suites are
	// not configurable in Go and are always on, so naming one, or setting suites together with
	// min version 1.3, is a configuration error.
	TLSCipherSuites []string `env:"TLS_CIPHER_SUITES" usage:"TLS 1.2 cipher suites allowed, IANA names; empty: Go's secure defaults"`
	// RequireTLS refuses MAIL FROM before STARTTLS with 530 5.7.0, so no message travels in
	// plain text. Needs a certificate. Default false: RFC 3207 4 says a publicly referenced
	// server must not require STARTTLS, since senders that cannot do TLS would bounce rather
	// than deliver; set it for a private intake whose senders you know.
	RequireTLS bool `env:"REQUIRE_TLS" usage:"refuse MAIL FROM before STARTTLS (530 5.7.0)"`
	// Strict8BitMIME refuses 8-bit message data (bytes above 0x7f) unless MAIL FROM declared
	// BODY=8BITMIME, with 554 5.6.0. Default false: such data is accepted as sent, as Postfix,
	// Exim and the large providers do, because UTF-8 headers without the declaration are common
	// and the parser decodes them anyway (RFC 6532); refusing would bounce real mail.
	Strict8BitMIME bool `env:"STRICT_8BITMIME" usage:"refuse 8-bit data unless BODY=8BITMIME was declared (554 5.6.0)"`
	// RateConnections limits new connections per client IP (IPv6: per /64). Over it the client
	// gets 421 4.7.0 and the connection is closed before the greeting. The zero Limit (empty
	// variable) does not limit. Needs a limiter backend ([WithRateLimiter]; the ingress service
	// uses Redis, so every replica shares the buckets). Off by default: behind a load balancer
	// that hides client addresses every client shares one IP, and Postfix does the same.
	RateConnections ratelimit.Limit `env:"RATE_CONNECTIONS" usage:"new connections per client IP, e.g. 60/m (421 4.7.0 beyond); empty: no limit; needs Redis"`
	// RateMessages limits MAIL FROM commands (transactions) per client IP (IPv6: per /64); over
	// it MAIL gets 450 4.7.1 and the client retries later. Same backend and default as
	// RateConnections.
	RateMessages ratelimit.Limit `env:"RATE_MESSAGES" usage:"messages (MAIL FROM) per client IP, e.g. 120/m (450 4.7.1 beyond); empty: no limit; needs Redis"`
	// RateExempt lists client networks (CIDR, or a single address) the rate limits skip: your own
	// relays, monitoring, a load tester.
	RateExempt []string `env:"RATE_EXEMPT" usage:"client networks (CIDR) exempt from the rate limits"`
	// TLS enables STARTTLS with a ready configuration (tests, or certificates from elsewhere).
	// It conflicts with TLSCertFile/TLSKeyFile. TLSMinVersion (as a floor) and TLSCipherSuites
	// apply to a copy of it.
	TLS *tls.Config
}

// DefaultConfig returns the defaults (no STARTTLS).
func DefaultConfig() Config {
	return Config{
		Addr:            DefaultAddr,
		Hostname:        DefaultHostname,
		MaxMessageBytes: DefaultMaxMessageBytes,
		MaxRecipients:   DefaultMaxRecipients,
		MaxLineLength:   DefaultMaxLineLength,
		ReadTimeout:     DefaultReadTimeout,
		WriteTimeout:    DefaultWriteTimeout,
		AcceptTimeout:   DefaultAcceptTimeout,
		MaxConnections:  DefaultMaxConnections,
		TLSMinVersion:   DefaultTLSMinVersion,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	if c.Hostname == "" {
		c.Hostname = d.Hostname
	}
	if c.TLSMinVersion == "" {
		c.TLSMinVersion = d.TLSMinVersion
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	set(&c.MaxRecipients, d.MaxRecipients)
	set(&c.MaxLineLength, d.MaxLineLength)
	set(&c.MaxConnections, d.MaxConnections)
	setDur(&c.ReadTimeout, d.ReadTimeout)
	setDur(&c.WriteTimeout, d.WriteTimeout)
	setDur(&c.AcceptTimeout, d.AcceptTimeout)
	return c
}

// Validate checks the configuration after defaults are applied; the error joins every problem.
// It does not read the certificate files.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.MaxMessageBytes < 0 {
		errs = append(errs, errors.New("max message bytes must not be negative"))
	}
	for name, v := range map[string]int{"max recipients": c.MaxRecipients, "max line length": c.MaxLineLength, "max connections": c.MaxConnections} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	if c.MaxLineLength > 0 && c.MaxLineLength < 1000 {
		errs = append(errs, fmt.Errorf("max line length %d is below RFC 5321's 1000", c.MaxLineLength))
	}
	for name, v := range map[string]time.Duration{"read timeout": c.ReadTimeout, "write timeout": c.WriteTimeout, "accept timeout": c.AcceptTimeout} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls cert file and tls key file must be set together"))
	}
	if c.TLS != nil && c.TLSCertFile != "" {
		errs = append(errs, errors.New("tls config conflicts with tls cert file"))
	}
	errs = append(errs, c.validateTLS())
	if c.RequireTLS && c.TLS == nil && c.TLSCertFile == "" {
		errs = append(errs, errors.New("require tls needs a certificate (tls cert file and tls key file)"))
	}
	if err := c.RateConnections.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("rate connections: %w", err))
	}
	if err := c.RateMessages.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("rate messages: %w", err))
	}
	if _, err := parseNetworks(c.RateExempt); err != nil {
		errs = append(errs, fmt.Errorf("rate exempt: %w", err))
	}
	return errors.Join(errs...)
}

// Accepter is what the server needs from the ingest use case; *ingest.Ingester fits.
type Accepter interface {
	// AcceptStream records one message read from r; see ingest.Ingester.AcceptStream for the
	// error contract. The server hands it the DATA stream, so a message is never held whole.
	AcceptStream(ctx context.Context, env events.Envelope, r io.Reader) (ingest.Result, error)
	// Resolve reports the route of a recipient, false for an address not received here. The
	// route's Senders and MaxSize are enforced at RCPT time (550 5.7.1, 552 5.3.4 against a
	// declared SIZE) and during DATA (552 5.3.4).
	Resolve(rcpt string) (ingest.Route, bool)
}

// Server is the SMTP server. Create it with [New]; serve with [Server.Serve] or
// [Server.ListenAndServe] (once), stop with [Server.Shutdown].
type Server struct {
	cfg    Config
	acc    Accepter
	log    *slog.Logger
	smtp   *smtp.Server
	limits *limits
	inst   *instruments

	// base is the parent of every Accept context. go-smtp's session callbacks carry no
	// context, so the server owns one for its lifetime; Shutdown cancels it only when its own
	// deadline passes, aborting Accepts that are still running (their clients get 451).
	base   context.Context //nolint:containedctx // server lifetime root, see comment above
	cancel context.CancelFunc

	// inflight counts transactions between the start of DATA and the reply to it, so that
	// Shutdown can let them finish before it closes connections.
	inflight sync.WaitGroup

	mu       sync.Mutex
	listener net.Listener
	draining bool
	served   bool
	shutdown sync.Once
	stopErr  error
}

// New returns a server for cfg (zero fields take defaults) that hands messages to acc and logs
// to log. It reads the STARTTLS certificate files when set, and builds the rate limiters with the
// factory of [WithRateLimiter] when limits are configured.
func New(cfg Config, acc Accepter, log *slog.Logger, opts ...Option) (*Server, error) {
	cfg = cfg.withDefaults()
	var errs []error
	if acc == nil {
		errs = append(errs, errors.New("accepter is required"))
	}
	if log == nil {
		errs = append(errs, errors.New("logger is required"))
	}
	errs = append(errs, cfg.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring smtp server: %w", err)
	}
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	tlsCfg, err := serverTLS(cfg, log)
	if err != nil {
		return nil, err
	}
	lim, err := newLimits(cfg, o.limiters, log)
	if err != nil {
		return nil, fmt.Errorf("configuring smtp server: %w", err)
	}

	inst, err := newInstruments(o.meters)
	if err != nil {
		return nil, fmt.Errorf("configuring smtp server metrics: %w", err)
	}
	s := &Server{cfg: cfg, acc: acc, log: log, limits: lim, inst: inst}
	s.base, s.cancel = context.WithCancel(context.Background())
	srv := smtp.NewServer(&backend{srv: s})
	srv.Addr = cfg.Addr
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.TLSConfig = tlsCfg
	srv.ErrorLog = errorLog{log: log}
	s.smtp = srv
	return s, nil
}

// ListenAndServe listens on Config.Addr and serves until Shutdown; see [Server.Serve].
func (s *Server) ListenAndServe() error {
	var lc net.ListenConfig
	l, err := lc.Listen(s.base, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening for smtp on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(l)
}

// Serve accepts connections on l until Shutdown and returns nil then; any other return is an
// accept error. l is closed when Serve returns. Serve may be called once.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.served || s.draining {
		s.mu.Unlock()
		_ = l.Close()
		return errors.New("smtp server already served or shut down")
	}
	s.served = true
	ll := &limitListener{Listener: l, sem: make(chan struct{}, s.cfg.MaxConnections), hostname: s.cfg.Hostname, log: s.log, inst: s.inst}
	if s.limits.conns != nil {
		ll.admit = s.admit
	}
	s.listener = ll
	s.mu.Unlock()

	s.log.Info("serving smtp", slog.String("addr", l.Addr().String()), slog.Bool("starttls", s.smtp.TLSConfig != nil),
		slog.Bool("require_tls", s.cfg.RequireTLS), slog.String("rate_connections", s.cfg.RateConnections.String()),
		slog.String("rate_messages", s.cfg.RateMessages.String()))
	err := s.smtp.Serve(ll)
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		return nil
	}
	if err != nil {
		return fmt.Errorf("serving smtp: %w", err)
	}
	return nil
}

// Addr returns the address Serve listens on, or nil before Serve was called.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return nil
	}
	return s.listener.Addr()
}

// Shutdown stops intake and lets running transactions finish: it closes the listener, waits
// until every message between DATA and its reply has been answered, then closes all
// connections (idle clients see the connection drop, which SMTP clients treat as "retry
// later"). When ctx ends first, it cancels the running Accepts (their clients get 451 and
// retry), closes everything and returns ctx's error. It is idempotent; later calls return the
// first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Do(func() {
		s.mu.Lock()
		s.draining = true
		l := s.listener
		s.mu.Unlock()
		if l != nil {
			_ = l.Close() // Serve notices draining and returns nil
		}
		done := make(chan struct{})
		go func() {
			s.inflight.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			s.stopErr = fmt.Errorf("waiting for smtp transactions: %w", ctx.Err())
			s.cancel()
		}
		// Close, not go-smtp's Shutdown: that waits for idle clients to hang up, which can take
		// a whole ReadTimeout. Nothing is lost by closing now: no transaction is open.
		_ = s.smtp.Close() // errors are the listener's, already closed above
		s.cancel()
	})
	return s.stopErr
}

// begin marks a transaction in flight unless the server is draining. Checking and adding under
// mu keeps Add from racing with Shutdown's Wait (sync.WaitGroup forbids an Add from zero that is
// concurrent with Wait).
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.inflight.Add(1)
	return true
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Actor returns the server as an app actor listening on Config.Addr.
func (s *Server) Actor() app.Actor {
	return app.Actor{
		Name: "smtp",
		Run:  func(context.Context) error { return s.ListenAndServe() },
		Stop: s.Shutdown,
	}
}

// errorLog adapts go-smtp's Printf logger to slog. go-smtp reports connection-level problems
// there (accept errors, TLS handshakes, panics in callbacks).
type errorLog struct{ log *slog.Logger }

func (e errorLog) Printf(format string, v ...any) {
	e.log.Warn("smtp server", slog.String("detail", fmt.Sprintf(format, v...)))
}

func (e errorLog) Println(v ...any) {
	e.log.Warn("smtp server", slog.String("detail", fmt.Sprint(v...)))
}

// admit takes a connection token for the client of c. Refused, it answers 421 4.7.0 in place of
// the greeting and closes c.
func (s *Server) admit(c net.Conn) bool {
	ip := addrOf(c.RemoteAddr())
	ok, retry := s.limits.allow(s.base, s.limits.conns, ip)
	if ok {
		return true
	}
	s.log.Info("refused smtp connection: connection rate limit", slog.String("client_ip", ip.String()),
		slog.String("limit", s.cfg.RateConnections.String()), slog.Duration("retry_after", retry))
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	// 421 4.7.0 and close, as Postfix answers its connection rate limit (RFC 5321 3.8).
	s.inst.refusal("connect", 421, smtp.EnhancedCode{4, 7, 0})
	_, _ = fmt.Fprintf(c, "421 4.7.0 %s Too many connections from %s, try again in %s\r\n", s.cfg.Hostname, ip, retryIn(retry))
	_ = c.Close()
	return false
}

// limitListener bounds concurrent connections. Over the limit it answers 421 right away instead
// of blocking Accept: a blocked accept leaves clients hanging in the kernel backlog with no
// answer, while 421 makes them retry later or try another MX.
type limitListener struct {
	net.Listener
	sem      chan struct{}
	hostname string
	log      *slog.Logger
	inst     *instruments
	// admit, when set, decides whether a connection may be served (the per-client connection
	// rate). It runs on the connection's own goroutine, see limitConn.Write, so a slow limiter
	// never holds up Accept for other clients.
	admit func(net.Conn) bool
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.sem }, admit: l.admit}, nil
		default:
			l.log.Warn("refused smtp connection: too many connections",
				slog.String("client_ip", hostOf(c.RemoteAddr())), slog.Int("max_connections", cap(l.sem)))
			l.inst.refusal("connect", 421, smtp.EnhancedCode{4, 7, 0})
			go reject(c, l.hostname)
		}
	}
}

// reject writes 421 to a connection over the limit and closes it, bounded in time so that a
// client that does not read cannot hold the goroutine.
func reject(c net.Conn, hostname string) {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = fmt.Fprintf(c, "421 4.7.0 %s Too many connections, try again later\r\n", hostname)
	_ = c.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()

	// admit runs once, before the first byte is written. The server speaks first in SMTP
	// (RFC 5321 3.1), so the first write is the 220 greeting: running the admission check there
	// puts it on the connection's goroutine, before the client has been told anything, without
	// an extra goroutine per connection. Refused, admit has already answered 421 and closed the
	// connection; go-smtp's greeting write then fails, its next read sees the closed connection
	// and it ends the session quietly.
	admit     func(net.Conn) bool
	admitOnce sync.Once
	refused   bool
}

// errRefused is what the greeting write of a connection refused by admit returns.
var errRefused = errors.New("smtp connection refused by the connection rate limit")

func (c *limitConn) Write(p []byte) (int, error) {
	if c.admit != nil {
		c.admitOnce.Do(func() { c.refused = !c.admit(c.Conn) })
		if c.refused {
			return 0, errRefused
		}
	}
	return c.Conn.Write(p)
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
