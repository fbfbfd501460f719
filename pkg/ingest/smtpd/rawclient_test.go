package smtpd_test

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawClient speaks SMTP byte for byte, for input no well-behaved client library would send.
type rawClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dialRaw connects and reads the greeting, which must be 220.
func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	var d net.Dialer
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	rc := &rawClient{t: t, c: c, r: bufio.NewReader(c)}
	if code, text := rc.reply(); code != 220 {
		t.Fatalf("greeting = %d %s", code, text)
	}
	return rc
}

// write sends s as is.
func (rc *rawClient) write(s string) {
	rc.t.Helper()
	_ = rc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("writing %q: %v", s, err)
	}
}

// reply reads one (possibly multi-line) reply and returns its code and last line's text. On
// EOF or a timeout it returns code 0.
func (rc *rawClient) reply() (int, string) {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := rc.r.ReadString('\n')
		if err != nil {
			return 0, err.Error()
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 {
			rc.t.Fatalf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			rc.t.Fatalf("malformed reply line %q", line)
		}
		if line[3] == ' ' {
			return code, line[4:]
		}
	}
}

// cmd sends one command line and returns the reply.
func (rc *rawClient) cmd(line string) (int, string) {
	rc.t.Helper()
	rc.write(line + "\r\n")
	return rc.reply()
}

// expect sends a command and fails unless the reply has the code.
func (rc *rawClient) expect(line string, want int) string {
	rc.t.Helper()
	code, text := rc.cmd(line)
	if code != want {
		rc.t.Fatalf("%q: reply %d %s, want %d", line, code, text, want)
	}
	return text
}

// rest reads until the server closes the connection and returns everything it sent.
func (rc *rawClient) rest() string {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(rc.r)
	return string(b)
}

// dialRawNoGreeting connects without reading the greeting.
func dialRawNoGreeting(t *testing.T, addr string) *rawClient {
	t.Helper()
	var d net.Dialer
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{t: t, c: c, r: bufio.NewReader(c)}
}
