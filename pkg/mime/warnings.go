package mime

import (
	"fmt"
	"strings"

	"github.com/jhillyerd/enmime/v2"
)

// Warning names. They are written to mail.parsed.v1 and counted in metrics, so they are part of
// the wire contract: add new ones, do not rename.
const (
	// Before the header block.
	WarnByteOrderMark = "byte_order_mark"
	WarnLineEndings   = "line_endings_cr"
	WarnLeadingJunk   = "leading_junk"
	WarnMboxFromLine  = "mbox_from_line"

	// Header fields.
	WarnHeaderMalformed    = "header_malformed"
	WarnHeaderNotUTF8      = "header_not_utf8"
	WarnAddressUnparseable = "address_unparseable"
	WarnDateMissing        = "date_missing"
	WarnDateUnparseable    = "date_unparseable"
	WarnMessageIDMissing   = "message_id_missing"

	// MIME structure and content (enmime's problems map to these).
	WarnMIMEUnreadable          = "mime_unreadable"
	WarnBoundaryMissing         = "boundary_missing"
	WarnMultipartNoBoundary     = "multipart_without_boundary"
	WarnContentTypeMissing      = "content_type_missing"
	WarnTransferEncodingUnknown = "transfer_encoding_unknown"
	WarnBase64Malformed         = "base64_malformed"
	WarnPartMalformed           = "part_malformed"
	WarnDataHasBoundary         = "data_has_boundary"
	WarnTextFromHTML            = "text_from_html"
	WarnTextFromHTMLFailed      = "text_from_html_failed"

	// Charsets.
	WarnCharsetUnknown  = "charset_unknown"
	WarnCharsetMismatch = "charset_mismatch"
	WarnCharsetDetected = "charset_detected"
	WarnInvalidUTF8     = "invalid_utf8"

	// Limits (always severe: content was dropped).
	WarnLimitParts        = "limit_parts"
	WarnLimitDepth        = "limit_depth"
	WarnLimitDecodedSize  = "limit_decoded_size"
	WarnLimitHeaderFields = "limit_header_fields"
	WarnLimitHeaderBytes  = "limit_header_bytes"

	// Nested messages (message/rfc822 parts). Not severe: the part itself is kept.
	WarnNestedTooDeep    = "nested_too_deep"
	WarnNestedUnreadable = "nested_unreadable"

	// WarnTruncated replaces the warnings beyond the configured maximum.
	WarnTruncated = "warnings_truncated"
)

// enmimeName maps enmime's error names to ours; unknown names are snake-cased.
func enmimeName(name string) string {
	switch name {
	case enmime.ErrorMalformedBase64:
		return WarnBase64Malformed
	case enmime.ErrorMalformedHeader:
		return WarnHeaderMalformed
	case enmime.ErrorMissingBoundary:
		return WarnBoundaryMissing
	case enmime.ErrorMissingContentType:
		return WarnContentTypeMissing
	case enmime.ErrorCharsetConversion:
		return WarnCharsetUnknown
	case enmime.ErrorContentEncoding:
		return WarnTransferEncodingUnknown
	case enmime.ErrorPlainTextFromHTML:
		return WarnTextFromHTML
	case enmime.ErrorCharsetDeclaration:
		return WarnCharsetMismatch
	case enmime.ErrorMalformedChildPart:
		return WarnPartMalformed
	case enmime.ErrorDataHasBoundary:
		return WarnDataHasBoundary
	default:
		return snake(name)
	}
}

// fromEnmime converts one enmime problem.
func fromEnmime(e *enmime.Error) Warning {
	name := enmimeName(e.Name)
	if name == WarnTextFromHTML && e.Severe {
		name = WarnTextFromHTMLFailed
	}
	severe := e.Severe
	if name == WarnDataHasBoundary {
		// enmime calls it an error, but reads the part's whole content as data: nothing is
		// lost, so it must not make the message partial.
		severe = false
	}
	detail, _ := validUTF8(e.Detail)
	return Warning{Name: name, Detail: detail, Severe: severe}
}

func snake(s string) string {
	var b strings.Builder
	us := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			us = false
			continue
		}
		if !us && b.Len() > 0 {
			b.WriteByte('_')
			us = true
		}
	}
	return strings.TrimSuffix(b.String(), "_")
}

// warnings collects warnings in order, drops exact duplicates and caps their number.
type warnings struct {
	max     int
	list    []Warning
	seen    map[Warning]bool
	dropped int
	severe  bool
}

func (w *warnings) add(ws ...Warning) {
	for _, x := range ws {
		w.severe = w.severe || x.Severe
		if w.seen[x] {
			continue
		}
		if w.seen == nil {
			w.seen = map[Warning]bool{}
		}
		w.seen[x] = true
		if len(w.list) >= w.max {
			w.dropped++
			continue
		}
		w.list = append(w.list, x)
	}
}

func (w *warnings) result() []Warning {
	if w.dropped == 0 {
		return w.list
	}
	return append(w.list, Warning{Name: WarnTruncated, Detail: fmt.Sprintf("%d more warnings not listed", w.dropped)})
}
