package mime

import (
	"net/http" //nolint:depguard // only http.DetectContentType, a pure function (WHATWG MIME sniffing); no HTTP is done here
	"strings"
)

// sniff returns the media type detected from the first 512 bytes of b, without parameters, or
// "" for empty content (nothing to detect).
func sniff(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	t := http.DetectContentType(b)
	if i := strings.IndexByte(t, ';'); i >= 0 {
		t = t[:i]
	}
	return strings.TrimSpace(t)
}
