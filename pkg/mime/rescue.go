package mime

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jhillyerd/enmime/v2"
)

// keepUnsplitBody keeps the body of a multipart message whose declared boundary never appears
// in it. enmime then finds no part and no content, and the message would come out empty with
// status ok, although its whole body is there (seen in real bounces: a multipart/report whose
// MTA wrote the report as plain lines). The body becomes the text, as a reader would see it,
// and a severe warning says the structure was lost.
func keepUnsplitBody(m *Message, root *enmime.Part, input []byte, w *warnings) {
	if root.FirstChild != nil || !strings.HasPrefix(root.ContentType, "multipart/") || root.Boundary == "" ||
		len(root.Content) != 0 || m.Text != "" || m.HTML != "" {
		return
	}
	_, off, _ := scanHeaders(input)
	body := bytes.TrimSpace(input[off:])
	if len(body) == 0 {
		return
	}
	text := string(body)
	if !utf8.Valid(body) {
		text, _ = rescue(body, false)
	}
	m.Text = strings.ReplaceAll(text, "\r\n", "\n")
	w.add(Warning{
		Name: WarnBoundaryMissing, Severe: true,
		Detail: fmt.Sprintf("%s declares boundary %q, which never appears; the body is kept as plain text", root.ContentType, truncate([]byte(root.Boundary), 70)),
	})
}
