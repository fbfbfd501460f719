package smtpd_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

// smuggled is the second message an attacker hides after a fake end of data: if the server took
// the fake end for the real one, it would run these lines as commands and accept a message "from"
// the sender of the first one's domain.
const smuggled = "MAIL FROM:<ceo@in.example.com>\r\n" +
	"RCPT TO:<support@in.example.com>\r\n" +
	"DATA\r\n" +
	"From: CEO <ceo@in.example.com>\r\nSubject: wire the money\r\n\r\nsmuggled\r\n"

// SMTP smuggling (SEC Consult, December 2023): every fake end-of-data sequence is refused with
// 554 5.6.0 and nothing is recorded; the connection then answers exactly one reply per command
// of the client, so none of the smuggled lines ran as a command.
func TestSmugglingIsRejected(t *testing.T) {
	const head = "From: Ann <ann@example.org>\r\nTo: support@in.example.com\r\nSubject: hi\r\n\r\nhello"
	for _, tt := range []struct {
		name string
		data string // everything after the 354, up to and including the real end of data
	}{
		{name: "LF.LF", data: head + "\n.\n" + smuggled + ".\r\n"},
		{name: "LF.CRLF", data: head + "\n.\r\n" + smuggled + ".\r\n"},
		{name: "CRLF.LF", data: head + "\r\n.\n" + smuggled + ".\r\n"},
		{name: "CR.CR", data: head + "\r.\r" + smuggled + ".\r\n"},
		{name: "CR.CRLF", data: head + "\r.\r\n" + smuggled + ".\r\n"},
		{name: "CRLF NUL . CRLF", data: head + "\r\n\x00.\r\n" + smuggled + ".\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, smtpd.Config{}, &fakeProducer{})
			rc := dialRaw(t, h.addr)
			rc.expect("EHLO client.example.org", 250)
			rc.expect("MAIL FROM:<ann@example.org>", 250)
			rc.expect("RCPT TO:<support@in.example.com>", 250)
			rc.expect("DATA", 354)
			rc.write(tt.data)
			code, text := rc.reply()
			if code != 554 || !strings.HasPrefix(text, "5.6.0 ") {
				t.Fatalf("reply to the data = %d %s, want 554 5.6.0", code, text)
			}
			// The next reply is the QUIT's: the smuggled lines were data, not commands.
			if got := rc.expect("QUIT", 221); !strings.HasPrefix(got, "2.0.0") {
				t.Errorf("QUIT reply %q", got)
			}
			if n := len(h.prod.produced()); n != 0 {
				t.Errorf("produced %d records, want 0", n)
			}
		})
	}
}

// "<CR><LF>.<CR>x" loses its ".<CR>" in go-smtp's dot-unstuffing before the data reaches the
// server, so it cannot be refused as a bare CR. It still cannot smuggle: DATA does not end
// there, and the lines after it stay inside the one message recorded. (A conforming relay
// dot-stuffs "<CR><LF>.x", so an attacker cannot make a sender's server emit it anyway.)
func TestDotCRInsideOneMessage(t *testing.T) {
	h := start(t, smtpd.Config{}, &fakeProducer{})
	rc := dialRaw(t, h.addr)
	rc.expect("EHLO client.example.org", 250)
	rc.expect("MAIL FROM:<ann@example.org>", 250)
	rc.expect("RCPT TO:<support@in.example.com>", 250)
	rc.expect("DATA", 354)
	rc.write("Subject: hi\r\n\r\nhello\r\n.\r" + smuggled + ".\r\n")
	if code, text := rc.reply(); code != 250 {
		t.Fatalf("reply = %d %s, want 250", code, text)
	}
	rc.expect("QUIT", 221)
	recs := h.prod.produced()
	if len(recs) != 1 {
		t.Fatalf("produced %d records, want 1", len(recs))
	}
	var got events.Raw
	if err := h.codec.Decode(t.Context(), kafka.TopicRaw, recs[0].Value, &got); err != nil {
		t.Fatal(err)
	}
	if raw := string(*got.Raw); !strings.HasSuffix(raw, "hello\r\n"+smuggled) {
		t.Errorf("recorded message does not carry the would-be second message as its body:\n%q", raw)
	}
}

// dotStuff applies RFC 5321 4.5.2 transparency to a message sent through rawClient.
func dotStuff(m string) string {
	if strings.HasPrefix(m, ".") {
		m = "." + m
	}
	return strings.ReplaceAll(m, "\r\n.", "\r\n..")
}

// Bad and borderline message data, sent byte for byte (client libraries would fix line endings
// and always declare BODY=8BITMIME). A refused message is answered 554 5.6.0, nothing is
// recorded, and the connection stays usable.
func TestMessageDataRules(t *testing.T) {
	const eightBit = "From: Zo\xc3\xab <zoe@example.org>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nSch\xc3\xb6ne Gr\xc3\xbc\xc3\x9fe\r\n"
	for _, tt := range []struct {
		name     string
		cfg      smtpd.Config
		params   string // after MAIL FROM:<…>
		msg      string // must end with CRLF; ".\r\n" is appended
		wantCode int    // 0: accepted
		wantText string
	}{
		{name: "header-only message", msg: "From: a@example.org\r\nSubject: headers only\r\n"},
		{name: "headers and an empty body", msg: "From: a@example.org\r\nSubject: empty body\r\n\r\n"},
		{name: "dot-stuffed lines", msg: msg},
		{name: "empty message", msg: "", wantCode: 554, wantText: "empty"},
		{
			name: "NUL in a header", msg: "From: a@example.org\r\nSubject: nul\x00here\r\n\r\nbody\r\n",
			wantCode: 554, wantText: "NUL byte",
		},
		{name: "NUL in the body", msg: "Subject: x\r\n\r\nbinary\x00junk\r\n", wantCode: 554, wantText: "NUL byte"},
		{name: "bare LF line endings", msg: "From: a@example.org\nSubject: unix\n\nbody\r\n", wantCode: 554, wantText: "Bare <LF>"},
		{name: "bare CR in a header", msg: "Subject: a\rb\r\n\r\nbody\r\n", wantCode: 554, wantText: "Bare <CR>"},
		{name: "8-bit without BODY=8BITMIME accepted by default", msg: eightBit},
		{name: "8-bit with BODY=8BITMIME, strict", cfg: smtpd.Config{Strict8BitMIME: true}, params: " BODY=8BITMIME", msg: eightBit},
		{
			name: "8-bit without BODY=8BITMIME, strict", cfg: smtpd.Config{Strict8BitMIME: true}, msg: eightBit,
			wantCode: 554, wantText: "without BODY=8BITMIME",
		},
		{
			name: "8-bit with BODY=7BIT, strict", cfg: smtpd.Config{Strict8BitMIME: true}, params: " BODY=7BIT", msg: eightBit,
			wantCode: 554, wantText: "without BODY=8BITMIME",
		},
		{name: "7-bit without BODY, strict", cfg: smtpd.Config{Strict8BitMIME: true}, msg: msg},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, tt.cfg, &fakeProducer{})
			rc := dialRaw(t, h.addr)
			rc.expect("EHLO client.example.org", 250)
			rc.expect("MAIL FROM:<ann@example.org>"+tt.params, 250)
			rc.expect("RCPT TO:<support@in.example.com>", 250)
			rc.expect("DATA", 354)
			rc.write(dotStuff(tt.msg) + ".\r\n")
			code, text := rc.reply()
			recs := h.prod.produced()
			if tt.wantCode == 0 {
				if code != 250 {
					t.Fatalf("reply = %d %s, want 250", code, text)
				}
				if len(recs) != 1 {
					t.Fatalf("produced %d records, want 1", len(recs))
				}
				var got events.Raw
				if err := h.codec.Decode(t.Context(), kafka.TopicRaw, recs[0].Value, &got); err != nil {
					t.Fatal(err)
				}
				if raw := string(*got.Raw); !strings.HasSuffix(raw, "\r\n"+tt.msg) || !strings.HasPrefix(raw, "Received: ") {
					t.Errorf("recorded %q, want Received + the message as sent", raw)
				}
				return
			}
			if code != tt.wantCode || !strings.HasPrefix(text, "5.6.0 ") || !strings.Contains(text, tt.wantText) {
				t.Fatalf("reply = %d %s, want %d 5.6.0 mentioning %q", code, text, tt.wantCode, tt.wantText)
			}
			if len(recs) != 0 {
				t.Errorf("produced %d records, want 0", len(recs))
			}
			// The connection stays usable: the next, clean message goes through.
			rc.expect("MAIL FROM:<ann@example.org>", 250)
			rc.expect("RCPT TO:<support@in.example.com>", 250)
			rc.expect("DATA", 354)
			rc.write(dotStuff(msg) + ".\r\n")
			if code, text := rc.reply(); code != 250 {
				t.Errorf("clean message after a refused one: %d %s", code, text)
			}
		})
	}
}

// BDAT (CHUNKING, which go-smtp advertises) carries the message without dot-stuffing; the same
// rules apply to it.
func TestBDATDataRules(t *testing.T) {
	for _, tt := range []struct {
		name     string
		chunks   []string
		wantCode int
	}{
		{name: "clean, two chunks", chunks: []string{"Subject: chunked\r\n\r\nfirst ", "and last\r\n"}, wantCode: 250},
		{name: "bare LF", chunks: []string{"Subject: chunked\n\nbody\n"}, wantCode: 554},
		{name: "ends on a lone CR", chunks: []string{"Subject: chunked\r\n\r\nbody\r"}, wantCode: 554},
		{name: "NUL in the second chunk", chunks: []string{"Subject: chunked\r\n\r\n", "nul\x00\r\n"}, wantCode: 554},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, smtpd.Config{}, &fakeProducer{})
			rc := dialRaw(t, h.addr)
			rc.expect("EHLO client.example.org", 250)
			rc.expect("MAIL FROM:<ann@example.org>", 250)
			rc.expect("RCPT TO:<support@in.example.com>", 250)
			var code int
			var text string
			for i, c := range tt.chunks {
				last := ""
				if i == len(tt.chunks)-1 {
					last = " LAST"
				}
				rc.write(fmt.Sprintf("BDAT %d%s\r\n%s", len(c), last, c))
				if code, text = rc.reply(); code != 250 {
					break
				}
			}
			if code != tt.wantCode {
				t.Fatalf("reply = %d %s, want %d", code, text, tt.wantCode)
			}
			want := 0
			if tt.wantCode == 250 {
				want = 1
			}
			if n := len(h.prod.produced()); n != want {
				t.Errorf("produced %d records, want %d", n, want)
			}
			rc.expect("QUIT", 221)
		})
	}
}
