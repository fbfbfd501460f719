package bounce

import (
	"regexp"
	"strings"
)

// Feedback is a complaint or feedback report about a message the receiver got.
type Feedback struct {
	// Type is the RFC 5965 Feedback-Type, lower case: abuse, fraud, virus, auth-failure,
	// not-spam, other; "opt-out" for an Apple Mail unsubscribe request.
	Type string
	// UserAgent is the reporter's software (Feedback-Type's companion User-Agent field).
	UserAgent string
	// SourceIP is the IP address the complained-about message came from; "" when not given.
	SourceIP string
	// OriginalMailFrom is the complained-about message's envelope sender; "" when not given.
	OriginalMailFrom string
	// OriginalRcptTo are the envelope or reported recipients of the complained-about message,
	// lower case.
	OriginalRcptTo []string
	// ArrivalDate is the Arrival-Date field as written.
	ArrivalDate string
	// ReportedDomain is the Reported-Domain field.
	ReportedDomain string
	// MessageID, From and Subject come from the header of the complained-about message
	// (its attached copy or text/rfc822-headers part); Message-ID without angle brackets.
	MessageID string
	From      string
	Subject   string
	// Evidence lists the signals that decided, e.g. "part message/feedback-report",
	// "Feedback-Type abuse".
	Evidence []string
}

// DetectFeedback returns the feedback report in m, or nil when m is not one: an RFC 5965 ARF
// report (a message/feedback-report part), a Microsoft JMRP complaint (staff@hotmail.com with
// the complained-about message attached) or an Apple Mail unsubscribe request. It is safe for
// concurrent use.
func DetectFeedback(m *Message) *Feedback {
	if m == nil {
		return nil
	}
	in := newInput(m)
	var f *Feedback
	for _, p := range in.parts {
		if p.ContentType == "message/feedback-report" {
			f = arf(p.Body)
			break
		}
	}
	switch {
	case f != nil:
	case strings.EqualFold(m.From, "staff@hotmail.com") && jmrpSubjectRe.MatchString(m.Subject):
		f = &Feedback{Type: "abuse", Evidence: []string{"sender staff@hotmail.com", "subject " + quote(m.Subject)}}
		if sm := jmrpSubjectRe.FindStringSubmatch(m.Subject); sm != nil {
			f.SourceIP = sm[1]
		}
	case strings.EqualFold(strings.TrimSpace(m.Header("X-Apple-Unsubscribe")), "true"):
		return &Feedback{Type: "opt-out", Evidence: []string{"header X-Apple-Unsubscribe: true"}}
	default:
		return nil
	}
	f.original(in)
	return f
}

var jmrpSubjectRe = regexp.MustCompile(`(?i)^\s*complaint about message from ([0-9a-f.:]+)`)

// arf reads the machine-readable part of an ARF report (RFC 5965 section 3.1). The fields
// share the header syntax, so the lenient field reader is reused with the ARF names.
func arf(body []byte) *Feedback {
	f := &Feedback{Evidence: []string{"part message/feedback-report"}}
	for _, line := range strings.Split(normalizeNL(string(body)), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.ContainsAny(k, " \t") {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "feedback-type":
			if f.Type == "" {
				f.Type = strings.ToLower(v)
			}
		case "user-agent":
			f.UserAgent = v
		case "source-ip":
			f.SourceIP = strings.Trim(v, "[]")
		case "original-mail-from":
			f.OriginalMailFrom = strings.ToLower(cleanAddr(v))
		case "original-rcpt-to", "removal-recipient":
			if a := cleanAddr(v); a != "" {
				f.OriginalRcptTo = append(f.OriginalRcptTo, a)
			}
		case "arrival-date", "received-date":
			f.ArrivalDate = v
		case "reported-domain":
			f.ReportedDomain = strings.ToLower(v)
		}
	}
	if f.Type == "" {
		f.Type = "other" // RFC 5965 requires the field; "other" is its catch-all
	}
	f.Evidence = append(f.Evidence, "Feedback-Type "+f.Type)
	return f
}

// original fills the complained-about message's identity from its attached header section.
func (f *Feedback) original(in *input) {
	for _, p := range in.parts {
		if p.ContentType != "message/rfc822" && p.ContentType != "text/rfc822-headers" {
			continue
		}
		h := string(p.Body)
		if f.MessageID == "" {
			f.MessageID = strings.Trim(headerValue(h, "message-id"), "<> ")
		}
		if f.From == "" {
			if a := headerAddrs(h, "from"); len(a) > 0 {
				f.From = a[0]
			}
		}
		if f.Subject == "" {
			f.Subject = headerValue(h, "subject")
		}
		if len(f.OriginalRcptTo) == 0 {
			for _, name := range []string{"x-hmxmroriginalrecipient", "to"} {
				if a := headerAddrs(h, name); len(a) > 0 {
					f.OriginalRcptTo = a
					break
				}
			}
		}
	}
	if f.MessageID != "" {
		f.Evidence = append(f.Evidence, "complained-about Message-ID "+f.MessageID)
	}
}

// headerValue returns the unfolded value of the first field called name in a header block.
func headerValue(block, name string) string {
	lines := strings.Split(normalizeNL(block), "\n")
	for i, line := range lines {
		if line == "" {
			return "" // end of the header section
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(k, name) {
			continue
		}
		for j := i + 1; j < len(lines) && len(lines[j]) > 0 && (lines[j][0] == ' ' || lines[j][0] == '\t'); j++ {
			v += " " + strings.TrimSpace(lines[j])
		}
		return strings.TrimSpace(v)
	}
	return ""
}
