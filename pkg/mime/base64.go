package mime

import (
	"bytes"

	"github.com/jhillyerd/enmime/v2"
)

// keepCorruptBase64 is the read-part error policy given to enmime: a part whose base64 cannot
// be decoded to the end (truncated, a stray character count) keeps what was decoded before the
// error, whatever its type, and enmime records a warning. enmime's own
// AllowCorruptTextPartErrorPolicy does that for text parts only, so a truncated image lost all
// of its bytes while the peer parsers keep them.
func keepCorruptBase64(_ *enmime.Part, err error) bool {
	return enmime.IsBase64CorruptInputError(err)
}

// base64Junk finds text after the end of the base64 data of a part body: after the padding
// ('=') comes a mailing-list footer appended to a base64 body, or a word on the padding's line.
// enmime's decoder skips the padding and decodes such text as more base64, which turns a text
// part into mojibake. It returns the range to blank (from the end of the padding to the end of
// the body) and false when there is nothing after the padding, or when what follows is itself
// well-formed base64 (groups of four), as some encoders pad every line.
func base64Junk(body []byte) (from, to int, ok bool) {
	i := bytes.IndexByte(body, '=')
	if i < 0 {
		return 0, 0, false
	}
	for i < len(body) && body[i] == '=' {
		i++
	}
	n, clean := 0, true
	for _, c := range body[i:] {
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
			n++
		default:
			n++
			clean = false
		}
	}
	if n == 0 || clean && n%4 == 0 {
		return 0, 0, false
	}
	return i, len(body), true
}

// blank replaces b[from:to] with spaces, line breaks kept, so that offsets stay valid and
// enmime's base64 reader skips the range silently.
func blank(b []byte, from, to int) {
	for i := from; i < to && i < len(b); i++ {
		if b[i] != '\r' && b[i] != '\n' {
			b[i] = ' '
		}
	}
}
