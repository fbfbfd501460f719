package bounce

import (
	"regexp"
	"strings"

	"github.com/jhillyerd/enmime/v2"
	"github.com/jhillyerd/enmime/v2/dsn"
)

// fields is one DSN field group (RFC 3464 section 2.1): per-message or per-recipient fields.
// Names are lower case; a repeated field keeps its first value.
type fields map[string]string

// parseGroups reads a message/delivery-status body. It tries enmime's dsn reader first and
// falls back to a lenient reader when that rejects the body: real MTAs send continuation lines
// without indentation, "Name : value" spellings and stray text between groups, and a bounce
// should still be read.
func parseGroups(body []byte, explanation string) (perMessage fields, perRecipient []fields) {
	root := &enmime.Part{ContentType: "multipart/report"}
	root.FirstChild = &enmime.Part{ContentType: "text/plain", Content: []byte(explanation)}
	root.FirstChild.NextSibling = &enmime.Part{ContentType: "message/delivery-status", Content: body}
	if rep, err := dsn.ParseReport(root); err == nil && rep != nil {
		for _, h := range rep.DeliveryStatus.MessageDSNs {
			if perMessage == nil {
				perMessage = fields{}
			}
			for k, v := range h {
				if len(v) > 0 {
					perMessage.set(strings.ToLower(k), v[0])
				}
			}
		}
		for _, h := range rep.DeliveryStatus.RecipientDSNs {
			f := fields{}
			for k, v := range h {
				if len(v) > 0 {
					f.set(strings.ToLower(k), v[0])
				}
			}
			if f.isRecipient() {
				perRecipient = append(perRecipient, f)
			} else if perMessage == nil && f["reporting-mta"] != "" {
				perMessage = f
			}
		}
		if len(perRecipient) > 0 {
			return perMessage, perRecipient
		}
	}
	return parseGroupsLenient(string(body))
}

func (f fields) set(k, v string) {
	if _, ok := f[k]; !ok {
		f[k] = strings.TrimSpace(v)
	}
}

func (f fields) isRecipient() bool {
	return f["final-recipient"] != "" || f["original-recipient"] != ""
}

var fieldRe = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$`)

// dsnFieldNames are the RFC 3464 fields (and common X- extensions) the lenient reader accepts.
// Restricting the names keeps prose lines such as "Note: …" out of the groups.
var dsnFieldNames = map[string]bool{
	"reporting-mta": true, "received-from-mta": true, "arrival-date": true, "original-envelope-id": true,
	"dsn-gateway": true, "final-recipient": true, "original-recipient": true, "action": true,
	"status": true, "remote-mta": true, "diagnostic-code": true, "last-attempt-date": true,
	"will-retry-until": true, "final-log-id": true, "x-actual-recipient": true,
	"x-postfix-sender": true, "x-postfix-queue-id": true, "x-display-name": true,
}

// parseGroupsLenient reads DSN fields line by line: a new Final-/Original-Recipient starts a new
// recipient group even without a blank line, and lines that are not fields continue the
// previous field only when indented.
func parseGroupsLenient(body string) (perMessage fields, perRecipient []fields) {
	var cur fields
	var last string
	flush := func() {
		if cur == nil {
			return
		}
		if cur.isRecipient() {
			perRecipient = append(perRecipient, cur)
		} else if perMessage == nil && cur["reporting-mta"] != "" {
			perMessage = cur
		}
		cur, last = nil, ""
	}
	for _, line := range strings.Split(normalizeNL(body), "\n") {
		line = strings.TrimPrefix(line, "> ")
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && last != "" {
			cur[last] += " " + strings.TrimSpace(line)
			continue
		}
		sm := fieldRe.FindStringSubmatch(strings.TrimSpace(line))
		if sm == nil {
			last = ""
			continue
		}
		name := strings.ToLower(sm[1])
		if !dsnFieldNames[name] {
			last = ""
			continue
		}
		if (name == "final-recipient" || name == "original-recipient") && cur != nil && cur[name] != "" {
			flush()
		}
		if cur == nil {
			cur = fields{}
		}
		cur.set(name, sm[2])
		last = name
	}
	flush()
	return perMessage, perRecipient
}

// fromDSNParts reads the message/delivery-status parts.
func fromDSNParts(in *input) *Bounce {
	var b *Bounce
	for _, p := range in.parts {
		if !isDeliveryStatus(p.ContentType) {
			continue
		}
		pm, pr := parseGroups(p.Body, in.report)
		b = mergeDSN(b, pm, pr, "rfc3464", "DSN", in)
	}
	return finishDSN(b, in)
}

// fromDSNText reads DSN fields written into the text body: forwarded reports, MTAs that put the
// delivery-status part inline (Amazon WorkMail, some Sun/Oracle Messaging Server and Symantec
// MessageLabs notices), and DSN parts lost to a broken MIME structure.
func fromDSNText(in *input) *Bounce {
	if !strings.Contains(strings.ToLower(in.text), "recipient") {
		return nil
	}
	pm, pr := parseGroupsLenient(in.text)
	return finishDSN(mergeDSN(nil, pm, pr, "rfc3464-text", "DSN (text)", in), in)
}

func mergeDSN(b *Bounce, pm fields, pr []fields, format, label string, in *input) *Bounce {
	for _, f := range pr {
		r, ok := dsnRecipient(f)
		if !ok {
			continue
		}
		if b == nil {
			b = &Bounce{Format: format}
		}
		if b.ReportingMTA == "" && pm != nil {
			b.ReportingMTA = stripType(pm["reporting-mta"])
		}
		b.Recipients = append(b.Recipients, r)
		ev := label + " "
		if r.Status != "" {
			ev += "Status " + r.Status
		} else {
			ev += "Action " + firstNonEmpty(r.Action, "unknown")
		}
		b.Evidence = append(b.Evidence, ev+" for "+r.Address)
	}
	return b
}

// finishDSN keeps the failed recipients when there are any (a report may also list delivered
// or relayed ones), repairs recipients whose address is not a mailbox, and fills severities.
func finishDSN(b *Bounce, in *input) *Bounce {
	if b == nil {
		return nil
	}
	var failed, delayed, other []Recipient
	for _, r := range b.Recipients {
		switch r.Action {
		case "failed", "":
			failed = append(failed, r)
		case "delayed":
			delayed = append(delayed, r)
		default:
			other = append(other, r)
		}
	}
	switch {
	case len(failed) > 0:
		b.Recipients = append(failed, delayed...)
	case len(delayed) > 0:
		b.Recipients = delayed
	default:
		b.Recipients = other
	}
	delay := isDelayNotice(in)
	for i := range b.Recipients {
		r := &b.Recipients[i]
		if !strings.Contains(r.Address, "@") || strings.HasPrefix(r.Address, "@") || strings.Contains(r.Address, " ") {
			// A pipe, file or broken address (Exim "pipe to |…", Sendmail "@host"): the notice's
			// text names the address that generated it.
			if a := textAddressFor(in, r.Address); a != "" {
				b.Evidence = append(b.Evidence, "recipient "+quote(r.Address)+" is not an address; text names "+a)
				r.FinalRecipient, r.Address = r.Address, a
			}
		}
		r.Severity = severity(r.Action, r.Status, r.Diagnostic, delay)
	}
	return b
}

func dsnRecipient(f fields) (Recipient, bool) {
	final := cleanAddr(f["final-recipient"])
	orig := cleanAddr(f["original-recipient"])
	if x := cleanAddr(f["x-actual-recipient"]); final == "" && x != "" {
		final = x
	}
	r := Recipient{
		Address:    firstNonEmpty(orig, final),
		Action:     firstWord(f["action"]),
		Status:     statusCode(f["status"]),
		Diagnostic: oneLine(stripType(f["diagnostic-code"])),
		RemoteMTA:  stripType(f["remote-mta"]),
	}
	if r.Status == "" {
		r.Status = statusCode(r.Diagnostic)
	}
	if final != r.Address {
		r.FinalRecipient = final
	}
	if r.Action == "deliverable" {
		r.Action = "delivered" // sendmail -bv / Postfix verify reports
	}
	return r, r.Address != ""
}

// stripType removes the "type;" prefix of DSN values ("rfc822; a@b", "dns; mx.example",
// "smtp; 550 …"), also written "rfc/822;" by some gateways.
func stripType(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, ';'); i >= 0 && i < 12 && !strings.ContainsAny(v[:i], " @<") {
		v = strings.TrimSpace(v[i+1:])
	}
	return v
}

// cleanAddr turns a recipient field value into a lower-case address.
func cleanAddr(v string) string {
	v = stripType(v)
	v = strings.TrimSpace(strings.Trim(strings.TrimSpace(v), "<>"))
	return strings.ToLower(v)
}

var statusRe = regexp.MustCompile(`\b([245])\.(\d{1,3})\.(\d{1,3})\b`)

// statusCode returns the first RFC 3463 enhanced status code in s.
func statusCode(s string) string {
	return statusRe.FindString(s)
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 500 {
		s = s[:500]
	}
	return s
}

func firstWord(s string) string {
	if f := strings.Fields(strings.ToLower(s)); len(f) > 0 {
		return strings.Trim(f[0], ";,.")
	}
	return ""
}
