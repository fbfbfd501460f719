package mime

import (
	"slices"
	"strings"
)

// bsmtpEnd cuts the end of a batched-SMTP (BSMTP) transcript from b: the lone '.' that ends
// the DATA and the commands after it (QUIT, RSET, ...). preprocess calls it when it skipped a
// BSMTP start (HELO / MAIL FROM / RCPT TO / DATA) before the header, so that the message is the
// DATA alone; the dot and QUIT would otherwise end the body text. A dot line that is followed by
// anything else than SMTP commands is left alone.
func bsmtpEnd(b []byte, skipped []string) []byte {
	if !slices.ContainsFunc(skipped, func(s string) bool { return strings.EqualFold(strings.TrimSpace(s), "DATA") }) {
		return b
	}
	// The last line that is a lone dot ends the DATA.
	dot := -1
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '.' && (i == 0 || b[i-1] == '\n') && (i+1 == len(b) || b[i+1] == '\r' || b[i+1] == '\n') {
			dot = i
			break
		}
	}
	if dot <= 0 {
		return b
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b[dot+1:])), "\n") {
		cmd := strings.ToUpper(strings.TrimSpace(line))
		if cmd != "" && cmd != "QUIT" && cmd != "RSET" && cmd != "NOOP" {
			return b
		}
	}
	return b[:dot] // the line break before the dot ends the message's last line
}
