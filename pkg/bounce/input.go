package bounce

import (
	"html"
	"regexp"
	"strings"
)

// input is a Message prepared once for every rule: bodies bounded, line endings normalized, and
// the notice's own text separated from the returned message that follows it.
type input struct {
	m *Message
	// text is the bounded plain-text body (or the HTML with tags removed).
	text string
	// report is the part of text before the returned message begins.
	report string
	// returned is the part of text from the returned-message marker on ("" when none).
	returned string
	// parts are the bounded report parts.
	parts []Part
	// hasReportPart is set when a delivery-status part is present; reportType names it.
	hasReportPart bool
	reportType    string
	// own holds the addresses of the notice itself (From, To): never a bounced recipient.
	own map[string]bool
}

func newInput(m *Message) *input {
	in := &input{m: m, own: map[string]bool{}}
	t := m.Text
	if strings.TrimSpace(t) == "" && m.HTML != "" {
		t = stripTags(bound(m.HTML))
	}
	in.text = normalizeNL(bound(t))
	in.report, in.returned = splitReturned(in.text)
	for _, p := range m.Parts {
		ct := strings.ToLower(p.ContentType)
		body := p.Body
		if len(body) > MaxBody {
			body = body[:MaxBody]
		}
		in.parts = append(in.parts, Part{ContentType: ct, Body: body})
		if isDeliveryStatus(ct) && !in.hasReportPart {
			in.hasReportPart, in.reportType = true, ct
		}
	}
	for _, a := range addrRe.FindAllString(m.From+" "+m.Header("To")+" "+m.Header("From"), -1) {
		in.own[strings.ToLower(a)] = true
	}
	return in
}

func isDeliveryStatus(ct string) bool {
	return ct == "message/delivery-status" || ct == "message/global-delivery-status"
}

func bound(s string) string {
	if len(s) > MaxBody {
		return s[:MaxBody]
	}
	return s
}

func normalizeNL(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

var (
	tagRe   = regexp.MustCompile(`(?s)<(script|style)[^>]*>.*?</(script|style)>|<br\s*/?>|</(p|div|tr|li|h\d)>|<[^>]+>`)
	blankRe = regexp.MustCompile(`\n[ \t]*\n(?:[ \t]*\n)+`)
)

// stripTags renders HTML as rough text: enough for the address and reason patterns.
func stripTags(h string) string {
	t := tagRe.ReplaceAllStringFunc(h, func(tag string) string {
		if strings.HasPrefix(tag, "<br") || strings.HasPrefix(tag, "</") {
			return "\n"
		}
		return " "
	})
	return blankRe.ReplaceAllString(html.UnescapeString(t), "\n\n")
}

// returnedRe matches the lines MTAs put between their notice and the returned message (or its
// headers). Everything after it is the original message, whose addresses are not recipients of
// this report.
var returnedRe = regexp.MustCompile(`(?im)^[ \t>]*(?:` +
	`-+ ?This is a copy of (?:the|your) message|-+ ?Original message|-+ ?Below this line is a copy|` +
	`-+ ?Unsent message follows|-+ ?Returned Message|Message headers follow|` +
	`-+ ?The header of the original message|-+ ?Original message follows|` +
	`-+ ?Returned mail follows|Original message follows|Below is a copy of the original message|-+ ?Original Message Header|` +
	`-+ ?(?:Original )?message (?:text|headers?) follows|-+ ?Included is a copy|` +
	`-+ ?Message text follows|Original Message:\s*$|-+ ?Forwarded message|` +
	`-+ ?The following is a copy|-+ ?Headers of the original message|` +
	`-+ ?Rejected message|Return-Path: ?<[^>\n]*>\s*$)`)

func splitReturned(t string) (report, returned string) {
	loc := returnedRe.FindStringIndex(t)
	if loc == nil {
		return t, ""
	}
	return t[:loc[0]], t[loc[0]:]
}
