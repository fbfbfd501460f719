package mime

import (
	"bytes"
	"fmt"
	"regexp"
)

// closeFinalDelimiter repairs a message whose last line is a delimiter of one of its multiparts
// ("--boundary") instead of the close delimiter ("--boundary--"): the message was cut, or the
// sender forgot the two dashes. enmime would read that line as text of the last part (a
// "--boundary" line at the end of the body); the peer parsers take it for the end of the
// multipart, and so does mailpipe: the two dashes are added (in a copy) and a boundary_missing
// warning says so.
func closeFinalDelimiter(b []byte) ([]byte, *Warning) {
	end := len(bytes.TrimRight(b, " \t\r\n"))
	start := bytes.LastIndexByte(b[:end], '\n') + 1
	line := b[start:end]
	if !bytes.HasPrefix(line, []byte("--")) || bytes.HasSuffix(line, []byte("--")) || len(line) < 3 {
		return b, nil
	}
	boundary := line[2:]
	re, err := regexp.Compile(`(?i)boundary\s*=\s*"?` + regexp.QuoteMeta(string(boundary)) + `("|\s|;|$)`)
	if err != nil || !re.Match(b[:start]) {
		return b, nil
	}
	out := make([]byte, 0, len(b)+2)
	out = append(append(append(out, b[:end]...), "--"...), b[end:]...)
	return out, &Warning{Name: WarnBoundaryMissing, Detail: fmt.Sprintf("the message ends with the delimiter %q instead of the close delimiter; read as closed", truncate(line, 80))}
}
