package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
)

// Replies the session gives. Enhanced codes follow RFC 3463.
var (
	errNoSuchUser = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	// Recipients of another route go to another transaction: RFC 5321 4.5.3.1.10 tells the
	// client to send the rest later, which is how MTAs split a message per destination.
	errOtherRoute = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients for this transaction, send the rest separately"}
	errTemporary  = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	errTooLarge   = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too large"}
	// The recipient's route refuses the envelope sender (its allow/deny list); RFC 3463 5.7.1.
	errSenderRefused = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender not allowed for this recipient"}
	errRejected      = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message rejected"}
	errLongLine      = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Line too long"}
	errShutdown      = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}
	// RFC 3207 4: the reply to a command refused until STARTTLS.
	errMustStartTLS = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
)

type backend struct{ srv *Server }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	if b.srv.isDraining() {
		return nil, b.srv.inst.refused("connect", errShutdown)
	}
	b.srv.inst.sessions.Add(context.Background(), 1)
	addr := c.Conn().RemoteAddr()
	return &session{srv: b.srv, conn: c, clientIP: hostOf(addr), addr: addrOf(addr), helo: c.Hostname()}, nil
}

// session is one SMTP connection's state. go-smtp calls its methods from the connection's
// goroutine, except Data with BDAT (CHUNKING), which runs in a second goroutine while the
// connection goroutine feeds it; mu guards the fields both touch.
type session struct {
	srv      *Server
	conn     *smtp.Conn
	clientIP string
	addr     netip.Addr // clientIP parsed; invalid for a non-IP transport
	helo     string

	mu       sync.Mutex
	from     string
	body     smtp.BodyType // BODY= of MAIL FROM, "" when not given
	size     int64         // SIZE= of MAIL FROM, 0 when not given
	rcpts    []string
	route    ingest.Route
	inflight bool
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	return s.srv.inst.refused("MAIL", s.mail(from, opts))
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	return s.srv.inst.refused("RCPT", s.rcpt(to, opts))
}

func (s *session) Data(r io.Reader) error {
	return s.srv.inst.refused("DATA", s.data(r))
}

func (s *session) mail(from string, opts *smtp.MailOptions) error {
	if s.srv.isDraining() {
		return errShutdown
	}
	if _, secure := s.conn.TLSConnectionState(); s.srv.cfg.RequireTLS && !secure {
		s.srv.log.Info("refused smtp transaction before STARTTLS", slog.String("client_ip", s.clientIP))
		return errMustStartTLS
	}
	if ok, retry := s.srv.limits.allow(s.srv.base, s.srv.limits.msgs, s.addr); !ok {
		s.srv.log.Info("refused smtp transaction: message rate limit", slog.String("client_ip", s.clientIP),
			slog.String("limit", s.srv.cfg.RateMessages.String()), slog.Duration("retry_after", retry))
		return errTooMuchMail(s.addr, retry)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.from = from
	s.body, s.size = "", 0
	if opts != nil {
		s.body, s.size = opts.Body, opts.Size
	}
	s.rcpts = nil
	return nil
}

func (s *session) rcpt(to string, _ *smtp.RcptOptions) error {
	route, ok := s.srv.acc.Resolve(to)
	if !ok {
		s.srv.log.Info("refused smtp recipient", slog.String("client_ip", s.clientIP), slog.String("rcpt_domain", domainOf(to)))
		return errNoSuchUser
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rcpts) > 0 && route != s.route {
		return errOtherRoute
	}
	// The route's policy is known only now; refusing here keeps the message from being sent.
	if route.Senders != nil && !route.Senders.AllowsSender(s.from) {
		s.srv.log.Info("refused smtp recipient: sender not allowed by the route", slog.String("client_ip", s.clientIP),
			slog.String("route_id", route.ID), slog.String("rcpt_domain", domainOf(to)), slog.String("sender_domain", domainOf(s.from)))
		return errSenderRefused
	}
	if route.MaxSize > 0 && s.size > route.MaxSize {
		return errTooLarge
	}
	s.route = route
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) data(r io.Reader) error {
	if !s.srv.begin() {
		return errShutdown
	}
	s.mu.Lock()
	s.inflight = true
	env := events.Envelope{
		MailFrom: s.from,
		RcptTo:   append([]string(nil), s.rcpts...),
		ClientIP: s.clientIP,
		Helo:     s.conn.Hostname(),
		Source:   "smtp",
	}
	guard := &dataGuard{r: r, allow8bit: s.body == smtp.Body8BitMIME || !s.srv.cfg.Strict8BitMIME}
	var data io.Reader = guard
	if limit := s.route.MaxSize; limit > 0 {
		data = &routeCap{r: guard, left: limit}
	}
	s.mu.Unlock()
	if cs, ok := s.conn.TLSConnectionState(); ok {
		env.TLS = &events.TLSInfo{Version: tlsVersion(cs.Version), Cipher: tls.CipherSuiteName(cs.CipherSuite)}
	}

	// Reading the data is bounded by go-smtp's ReadTimeout, not by AcceptTimeout: a large
	// message on a slow link may take longer than recording is allowed to. The deadline starts
	// when the data has been read.
	ctx, cancel := context.WithCancel(s.srv.base)
	defer cancel()
	src := &dataSource{r: data, atEOF: func() *time.Timer { return time.AfterFunc(s.srv.cfg.AcceptTimeout, cancel) }}
	defer src.stop()

	// The trace header goes in front, as RFC 5321 4.4 requires of every relay. The message is
	// streamed: ingest holds at most its inline limit in memory and spools the rest.
	res, err := s.srv.acc.AcceptStream(ctx, env, io.MultiReader(strings.NewReader(s.received(env)), src))
	if src.err != nil {
		// go-smtp's reader enforces MaxMessageBytes and returns its 552 error past it; the guard
		// refuses bare CR/LF, NUL, empty data and (by policy) undeclared 8-bit data; routeCap
		// refuses data over the route's limit. All fail with an *smtp.SMTPError, which is the
		// reply; go-smtp drains whatever is left of the data. src keeps the error so the reply
		// does not depend on how ingest and the blob store wrap it.
		return s.dataError(src.err)
	}
	if guard.saw8bit && s.body != smtp.Body8BitMIME {
		s.srv.log.Debug("accepting 8-bit data without BODY=8BITMIME", slog.String("client_ip", s.clientIP))
	}
	switch {
	case err == nil && res.Duplicate:
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: already queued"}
	case err == nil:
		// go-smtp answers a nil error with a fixed "OK: queued"; a 250 SMTPError is its way to
		// put the id in the reply, so operators can match the sender's log to ours.
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + res.ID}
	case errors.Is(err, ingest.ErrTooLarge):
		return errTooLarge
	case errors.Is(err, ingest.ErrNoRoute):
		return errNoSuchUser
	case errors.Is(err, ingest.ErrInFlight):
		// The client retried while its first attempt is still being recorded: not a fault.
		s.srv.log.Info("deferred smtp retry of a message still being recorded", slog.String("client_ip", s.clientIP))
		return errTemporary
	case errors.Is(err, ingest.ErrInvalid):
		s.srv.log.Info("rejected smtp message", slog.String("client_ip", s.clientIP), slog.String("error", err.Error()))
		return errRejected
	default:
		s.srv.log.Error("could not record smtp message, answered 451", slog.String("client_ip", s.clientIP),
			slog.Int64("size", src.n), slog.String("error", err.Error()))
		return errTemporary
	}
}

// dataError is the reply to a failure reading the message data.
func (s *session) dataError(err error) error {
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se):
		if se.Code >= 500 && se.Code != errTooLarge.Code {
			s.srv.log.Info("rejected smtp message data", slog.String("client_ip", s.clientIP), slog.String("reason", se.Message))
		}
		return se
	case errors.Is(err, smtp.ErrTooLongLine):
		return errLongLine
	}
	return fmt.Errorf("reading message data: %w", err)
}

// dataSource is the message data as ingest reads it. It counts the bytes, keeps the first read
// error (the reply to give), and calls atEOF once at the end of the data to start the deadline
// of recording. Ingest reads it from the Data goroutine only.
type dataSource struct {
	r     io.Reader
	atEOF func() *time.Timer
	timer *time.Timer
	n     int64
	err   error
}

func (d *dataSource) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.n += int64(n)
	switch {
	case err == io.EOF:
		if d.timer == nil {
			d.timer = d.atEOF()
		}
	case err != nil && d.err == nil:
		d.err = err
	}
	return n, err
}

// stop releases the deadline timer, if one was started.
func (d *dataSource) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
}

// routeCap fails with 552 5.3.4 once more than left bytes were read: the route's MaxSize, which
// may be below the server's MaxMessageBytes that go-smtp enforces.
type routeCap struct {
	r    io.Reader
	left int64
}

func (c *routeCap) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return 0, errTooLarge
	}
	return n, err
}

// Reset runs after the reply to DATA was written (and on RSET/EHLO), so a transaction counts
// as in flight until its client has seen the answer.
func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.from = ""
	s.rcpts = nil
	s.route = ingest.Route{}
	s.done()
}

func (s *session) Logout() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done()
	return nil
}

// done ends the in-flight mark; callers hold mu.
func (s *session) done() {
	if s.inflight {
		s.inflight = false
		s.srv.inflight.Done()
	}
}

// received builds the Received trace header (RFC 5321 4.4, RFC 5322 3.6.7). The recipient is
// named only for a single-recipient message, so one recipient never learns the others.
func (s *session) received(env events.Envelope) string {
	var b strings.Builder
	proto := "ESMTP"
	if env.TLS != nil {
		proto = "ESMTPS" // RFC 3848
	}
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (mailpipe) with %s", headerSafe(env.Helo), env.ClientIP, headerSafe(s.srv.cfg.Hostname), proto)
	if env.TLS != nil {
		fmt.Fprintf(&b, "\r\n\t(version=%s cipher=%s)", env.TLS.Version, env.TLS.Cipher)
	}
	if len(env.RcptTo) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", headerSafe(env.RcptTo[0]))
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", time.Now().UTC().Format(time.RFC1123Z))
	return b.String()
}

// headerSafe keeps client-supplied text (HELO, addresses) from breaking the header: controls
// and parentheses, which would end the comment or the field, become "_".
func headerSafe(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '(' || r == ')' || r == '<' || r == '>' {
			return '_'
		}
		return r
	}, v)
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}
