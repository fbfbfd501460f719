package smtpd_test

import (
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
)

// Malformed and out-of-sequence commands get a 5xx syntax or sequence reply (go-smtp answers
// sequence errors with 502 rather than RFC 5321's 503), and they never disturb the transaction
// in progress: the message still goes through afterwards.
func TestMalformedCommands(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup []string // commands answered 250 first
		line  string
		want  int
	}{
		{name: "unknown verb", line: "FROB nicate", want: 500},
		{name: "empty line", line: "", want: 500},
		{name: "HELO without a domain", line: "HELO", want: 501},
		{name: "MAIL before EHLO", line: "MAIL FROM:<ann@example.org>", want: 502},
		{name: "MAIL without a colon", setup: []string{"EHLO c.example"}, line: "MAIL FROM <ann@example.org>", want: 501},
		{name: "MAIL with an unclosed path", setup: []string{"EHLO c.example"}, line: "MAIL FROM:<ann@example.org", want: 501},
		{name: "MAIL with an unknown parameter", setup: []string{"EHLO c.example"}, line: "MAIL FROM:<ann@example.org> FROB=1", want: 500},
		{name: "MAIL with a non-numeric SIZE", setup: []string{"EHLO c.example"}, line: "MAIL FROM:<ann@example.org> SIZE=big", want: 501},
		{name: "MAIL with an unknown BODY", setup: []string{"EHLO c.example"}, line: "MAIL FROM:<ann@example.org> BODY=9BIT", want: 501},
		{name: "RCPT before MAIL", setup: []string{"EHLO c.example"}, line: "RCPT TO:<support@in.example.com>", want: 502},
		{name: "RCPT without a path", setup: []string{"EHLO c.example", "MAIL FROM:<ann@example.org>"}, line: "RCPT TO:", want: 501},
		{name: "DATA before RCPT", setup: []string{"EHLO c.example", "MAIL FROM:<ann@example.org>"}, line: "DATA", want: 502},
		{name: "DATA with an argument", setup: []string{"EHLO c.example", "MAIL FROM:<ann@example.org>", "RCPT TO:<support@in.example.com>"}, line: "DATA now", want: 501},
		{name: "BDAT without a size", setup: []string{"EHLO c.example", "MAIL FROM:<ann@example.org>", "RCPT TO:<support@in.example.com>"}, line: "BDAT", want: 501},
		{name: "BDAT with a negative size", setup: []string{"EHLO c.example", "MAIL FROM:<ann@example.org>", "RCPT TO:<support@in.example.com>"}, line: "BDAT -1 LAST", want: 501},
		{name: "STARTTLS without a certificate", setup: []string{"EHLO c.example"}, line: "STARTTLS", want: 502},
		{name: "AUTH is not offered", setup: []string{"EHLO c.example"}, line: "AUTH PLAIN AGFubgBzZWNyZXQ=", want: 523},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, smtpd.Config{}, &fakeProducer{})
			rc := dialRaw(t, h.addr)
			for _, c := range tt.setup {
				rc.expect(c, 250)
			}
			if code, text := rc.cmd(tt.line); code != tt.want {
				t.Fatalf("%q: reply %d %s, want %d", tt.line, code, text, tt.want)
			}
			// then a complete transaction still works on the same connection
			if len(tt.setup) == 0 {
				rc.expect("EHLO c.example", 250)
			}
			if len(tt.setup) < 2 {
				rc.expect("MAIL FROM:<ann@example.org>", 250)
			}
			if len(tt.setup) < 3 {
				rc.expect("RCPT TO:<support@in.example.com>", 250)
			}
			rc.expect("DATA", 354)
			rc.write(dotStuff(msg) + ".\r\n")
			if code, text := rc.reply(); code != 250 {
				t.Fatalf("message after %q: %d %s", tt.line, code, text)
			}
			if n := len(h.prod.produced()); n != 1 {
				t.Errorf("produced %d records, want 1", n)
			}
		})
	}
}

// A client that keeps sending garbage is disconnected after a few errors; the message it had
// delivered before stays recorded, and a new connection is served normally.
func TestGarbageAfterAcceptedMessage(t *testing.T) {
	h := start(t, smtpd.Config{}, &fakeProducer{})
	rc := dialRaw(t, h.addr)
	rc.expect("EHLO c.example", 250)
	rc.expect("MAIL FROM:<ann@example.org>", 250)
	rc.expect("RCPT TO:<support@in.example.com>", 250)
	rc.expect("DATA", 354)
	rc.write(dotStuff(msg) + ".\r\n")
	if code, text := rc.reply(); code != 250 {
		t.Fatalf("first message: %d %s", code, text)
	}

	// when the client sends garbage
	rc.write("\x16\x03\x01\x02\x00\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nFOO\r\nBAR\r\n")
	// then it is told off and disconnected
	rest := rc.rest()
	if !strings.Contains(rest, "500 5.5.2 ") || !strings.Contains(rest, "Too many errors") {
		t.Errorf("server said %q, want 500s and a disconnect", rest)
	}
	// and the message accepted before is still the one recorded
	if n := len(h.prod.produced()); n != 1 {
		t.Errorf("produced %d records, want 1", n)
	}
	rc2 := dialRaw(t, h.addr)
	rc2.expect("EHLO c.example", 250)
	rc2.expect("QUIT", 221)
}
