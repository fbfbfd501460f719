package smtpd

import (
	"io"

	"github.com/emersion/go-smtp"
)

// Replies to message data that breaks RFC 5321 2.3.8 / RFC 5322 2.3: 554 5.6.0, permanent,
// since the same bytes fail the same way on every retry.
var (
	errBareLF = &smtp.SMTPError{
		Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Bare <LF> in message data: lines must end with <CR><LF>",
	}
	errBareCR = &smtp.SMTPError{
		Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Bare <CR> in message data: lines must end with <CR><LF>",
	}
	errNUL = &smtp.SMTPError{
		Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "NUL byte in message data",
	}
	errUndeclared8Bit = &smtp.SMTPError{
		Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "8-bit message data without BODY=8BITMIME",
	}
	// An empty DATA would otherwise be recorded as a message made of our Received header.
	errEmpty = &smtp.SMTPError{
		Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message is empty",
	}
)

// dataGuard checks message data as it is read and fails with one of the replies above at the
// first byte that breaks a rule. It sits between go-smtp's DATA (or BDAT) reader and whatever
// consumes the message, and it is the whole defence against SMTP smuggling on our side:
//
//   - go-smtp (since v0.20, emersion/go-smtp#244 and #246) ends DATA only at <CR><LF>.<CR><LF>,
//     so "<LF>.<LF>", "<LF>.<CR><LF>", "<CR><LF>.<LF>" and "<CR>.<CR>" never end a message
//     here; the text after them stays inside the one message. The guard then refuses that
//     message, because every such sequence carries a bare LF or CR, which RFC 5322 2.3 forbids
//     ("CR and LF MUST only occur together as CRLF"). A smuggled second message is therefore
//     neither accepted on its own nor carried inside the first. Refusing also protects anyone
//     who later relays the raw message we recorded.
//   - The data seen here is already dot-unstuffed, and go-smtp drops a "." followed by a lone
//     <CR> at the start of a line. So "<CR><LF>.<CR>x" reaches the guard as "<CR><LF>x" and is
//     accepted as one message. It cannot smuggle: DATA does not end there, and a conforming
//     relay dot-stuffs "<CR><LF>.<non-CRLF>" to "<CR><LF>..", so an attacker cannot make a
//     sender's outbound server emit it (Postfix's analysis of the smuggling reports).
//   - A NUL byte is refused: RFC 5322 allows none, and C-string consumers truncate at it.
//   - Empty data is refused; a message of headers only is fine.
//
// When the error comes back, go-smtp keeps reading (and discarding) the data up to the real
// end of data before it writes the reply, so the rest of the data is never taken for commands.
type dataGuard struct {
	r io.Reader
	// allow8bit accepts bytes above 0x7f: BODY=8BITMIME was declared, or the 8-bit policy is
	// lenient (Config.Strict8BitMIME false).
	allow8bit bool
	// saw8bit records that the data held 8-bit bytes, for the log.
	saw8bit bool
	n       int64
	prev    byte
	err     error
}

func (g *dataGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	for i, c := range p[:n] {
		switch {
		case c == 0:
			g.err = errNUL
		case c == '\n' && g.prev != '\r':
			g.err = errBareLF
		case g.prev == '\r' && c != '\n':
			g.err = errBareCR
		case c >= 0x80:
			g.saw8bit = true
			if !g.allow8bit {
				g.err = errUndeclared8Bit
			}
		}
		if g.err != nil {
			return i, g.err
		}
		g.prev = c
	}
	g.n += int64(n)
	switch {
	case err == io.EOF && g.n == 0:
		g.err = errEmpty
		return 0, g.err
	case err == io.EOF && g.prev == '\r':
		// Only BDAT can end on a lone CR; DATA always ends after <CR><LF>.
		g.err = errBareCR
		return n, g.err
	}
	return n, err
}
