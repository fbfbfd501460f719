package bounce

import (
	"regexp"
	"strings"
)

// addrPat is a pragmatic mailbox pattern: dot-atom local parts (with the %, + and = that
// source-routed and VERP addresses use, and UTF-8 as RFC 6531 allows) and a domain of at least
// two labels, internationalized or not.
const addrPat = `[A-Za-z0-9!#$%&'*+/=?^_{|}~.\x{80}-\x{10FFFF}-]+@[A-Za-z0-9\x{80}-\x{10FFFF}](?:[A-Za-z0-9\x{80}-\x{10FFFF}-]*[A-Za-z0-9\x{80}-\x{10FFFF}])?(?:\.[A-Za-z0-9\x{80}-\x{10FFFF}](?:[A-Za-z0-9\x{80}-\x{10FFFF}-]*[A-Za-z0-9\x{80}-\x{10FFFF}])?)+`

var addrRe = regexp.MustCompile(addrPat)

// textRule reads recipients from a text notice. re's first group is the address; the text after
// the match, up to the next recipient or a blank line, is the diagnostic unless diag names a
// group to take instead.
type textRule struct {
	format string
	re     *regexp.Regexp
	// block extends the diagnostic over the following lines until a blank line.
	block bool
	// wholeLine makes the whole matched line part of the diagnostic, for rules whose reply
	// code or reason comes before the address ("554 <a@b>... reason").
	wholeLine bool
}

// textRules are tried in order; the first rule that yields recipients wins, so specific
// formats come before the generic "address alone on a line" rule.
var textRules = []textRule{
	// Postfix and its derivatives: "<a@b> (expanded from <c@d>): host … said: 550 …".
	{"postfix", regexp.MustCompile(`(?m)^[ \t]*<(` + addrPat + `)>[ \t]*\(expanded from <?(` + addrPat + `)>?\):[ \t]*(.*)$`), true, false},
	// DragonFly Mail Agent.
	{"dragonfly", regexp.MustCompile(`(?m)There was an error delivering your mail to <(` + addrPat + `)>\.?(.*)$`), true, false},
	// Sendmail transcripts and V5 sendmail: "554 <a@b>... reason", "550 5.1.1 <a@b>... User unknown".
	{"sendmail", regexp.MustCompile(`(?m)^[ \t>]*(?:[45]\d\d[ -])?(?:[45]\.\d{1,3}\.\d{1,3} )?<(` + addrPat + `)>\.\.\.[ \t]*(.*)$`), false, true},
	// Exim's malformed-address notice: "a@b <c@d>: malformed address: …".
	{"exim", regexp.MustCompile(`(?m)^[ \t]*(` + addrPat + `)[^\n]*?: (malformed address.*)$`), false, false},
	// qmail, Yahoo, X2/X4, GMX, 1&1, MXLogic, Postfix without DSN: "<a@b>:" then the reason.
	{"qmail", regexp.MustCompile(`(?m)^[ \t]*"?<?(` + addrPat + `)>?"?:[ \t]*(.*)$`), true, false},
	// Exchange 2003 and older: "a@b on <date>" under "did not reach the following recipient(s)".
	{"exchange", regexp.MustCompile(`(?m)^[ \t]*(` + addrPat + `) on [A-Za-z0-9, /:+-]+(?:\s[AP]M)?[ \t]*$`), true, false},
	// One-line notices that name the recipient after a fixed phrase.
	{"notice", regexp.MustCompile(`(?im)(?:Recipient address:|Recipient:|RCPT TO:|Unable to deliver message to:?|` +
		`Could not be delivered to:|Unknown user:|Invalid final delivery userid:|` +
		`Delivery failed \d+ attempts:|undeliverable to|Did not reach the following recipient:|` +
		`Delivery failed:|permanent errors:|rejected recipient|Address:|not a member of this mailing list|` +
		`failed permanently:|^[ \t]*>>>|^[ \t]*\*|^[ \t]*--)[ \t]*<?(` + addrPat + `)>?(.*)$`), true, true},
	// Lotus Domino: "User Name (a@b) not listed in Domino Directory".
	{"domino", regexp.MustCompile(`(?m)\((` + addrPat + `)\) (not listed.*)$`), false, false},
	// Bracketed or trailing reasons: "a@b [User unknown]", "a@b Invalid Address, …",
	// "a@b ... unknown host", "a@b: reason" without angle brackets.
	{"inline", regexp.MustCompile(`(?m)^[ \t]*(` + addrPat + `)(?: \[(.+)\]| (Invalid Address.*)| \.\.\. (.+))[ \t]*$`), false, false},
	// Exim, Gmail, Notes, X1/X3 and others: the address alone on its line, the reason below.
	{"list", regexp.MustCompile(`(?m)^[ \t]*"?<?(` + addrPat + `)>?"?:?[ \t]*$`), true, false},
}

// fromText applies the text rules to the notice part of the body.
func fromText(in *input) *Bounce {
	report := in.report
	if strings.TrimSpace(report) == "" {
		return nil
	}
	for _, rule := range textRules {
		var recips []Recipient
		seen := map[string]bool{}
		for _, m := range rule.re.FindAllStringSubmatchIndex(report, -1) {
			addr := strings.ToLower(report[m[2]:m[3]])
			// The notice's own To may also be the failed address (a sender bouncing to itself,
			// or anonymised samples), so it is excluded only where a rule could pick up any
			// address on a line.
			if (in.own[addr] && (rule.format == "list" || rule.format == "notice")) || seen[addr] || boilerplateAddr(report, m[0], addr) {
				continue
			}
			seen[addr] = true
			r := Recipient{Address: addr, Action: "failed"}
			if rule.format == "postfix" {
				// "<final> (expanded from <original>)": the address the sender used is the second.
				r.FinalRecipient, r.Address = addr, strings.ToLower(report[m[4]:m[5]])
				if seen[r.Address] {
					continue
				}
				seen[r.Address] = true
			}
			r.Diagnostic = diagnosticAfter(report, m, rule)
			recips = append(recips, r)
		}
		if len(recips) == 0 {
			continue
		}
		b := &Bounce{Format: formatName(in, rule.format), ReportingMTA: reportingHost(in)}
		delay := isDelayNotice(in)
		for i := range recips {
			r := &recips[i]
			r.Status = statusCode(r.Diagnostic)
			if delay {
				r.Action = "delayed"
			}
			r.Severity = severity(r.Action, r.Status, r.Diagnostic, delay)
			ev := "text (" + rule.format + ") recipient " + r.Address
			if r.Status != "" {
				ev += " status " + r.Status
			}
			b.Evidence = append(b.Evidence, ev)
		}
		b.Recipients = recips
		return b
	}
	return nil
}

// boilerplateAddr reports addresses that notices mention but that are not recipients: contact
// addresses ("please contact <postmaster@…>") and the sender quoted in a transcript line.
func boilerplateAddr(report string, at int, addr string) bool {
	start := strings.LastIndexByte(report[:at], '\n') + 1
	end := strings.IndexByte(report[at:], '\n')
	if end < 0 {
		end = len(report) - at
	}
	line := strings.ToLower(report[start : at+end])
	for _, w := range []string{"contact", "assistance", "mail from", "from:", "sender", "envelope-from", "send mail to", "reply-to"} {
		if strings.Contains(line, w) && !strings.Contains(line, "rcpt") {
			return true
		}
	}
	return false
}

// diagnosticAfter returns the reason that follows a recipient: the rest of its line (or the
// rule's own reason groups) and, for block rules, the indented lines below it.
func diagnosticAfter(report string, m []int, rule textRule) string {
	var parts []string
	if rule.wholeLine {
		start := strings.LastIndexByte(report[:m[0]], '\n') + 1
		end := strings.IndexByte(report[m[1]:], '\n')
		if end < 0 {
			end = len(report) - m[1]
		}
		parts = append(parts, strings.TrimSpace(report[start:m[1]+end]))
	} else {
		for g := 2; 2*g+1 < len(m); g++ {
			if m[2*g] >= 0 && (rule.format != "postfix" || g != 2) {
				parts = append(parts, report[m[2*g]:m[2*g+1]])
			}
		}
	}
	if rule.block {
		parts = append(parts, linesBelow(report[m[1]:], rule.re, strings.TrimSpace(strings.Join(parts, "")) != "")...)
	}
	return oneLine(strings.Join(parts, " "))
}

// linesBelow returns the reason lines under a recipient line: up to the next recipient, a
// blank line after some reason, or a separator after some reason (a separator or blank line
// right under the address only introduces the reason, as in "----- Non-delivered
// information -----").
func linesBelow(rest string, next *regexp.Regexp, have bool) []string {
	var out []string
	for _, line := range strings.Split(rest, "\n")[1:] {
		t := strings.TrimSpace(line)
		sep := t == "" || strings.HasPrefix(t, "---") || strings.HasPrefix(t, "***")
		if sep {
			if have || len(out) > 0 {
				break
			}
			continue
		}
		if next.MatchString(line) {
			break
		}
		out = append(out, t)
		if len(out) >= 8 {
			break
		}
	}
	return out
}

// textAddressFor finds the address a non-mailbox DSN recipient (a pipe, a file, "@host") stands
// for: Exim's "generated by a@b" line, or the one address the notice's text names.
func textAddressFor(in *input, raw string) string {
	if m := generatedByRe.FindStringSubmatch(in.report); m != nil {
		return strings.ToLower(m[1])
	}
	var found string
	for _, a := range addrRe.FindAllString(in.report, -1) {
		a = strings.ToLower(a)
		if in.own[a] || strings.HasPrefix(a, "postmaster@") {
			continue
		}
		if found != "" && found != a {
			return ""
		}
		found = a
	}
	_ = raw
	return found
}

var failedListRe = regexp.MustCompile(`(?i)following address(?:\(es\))?\s+failed:`)

var addrLineRe = regexp.MustCompile(`^[ \t]*"?<?` + addrPat + `>?"?:?[ \t]*$`)

var generatedByRe = regexp.MustCompile(`(?m)^\s*generated by (` + addrPat + `)`)

// fromXFailed reads Exim's X-Failed-Recipients header (also set by Gmail and mail.ru), taking
// the reasons from the Exim text when it has them.
func fromXFailed(in *input) *Bounce {
	v := in.m.Header("X-Failed-Recipients")
	if v == "" {
		return nil
	}
	b := &Bounce{Format: "x-failed-recipients", ReportingMTA: reportingHost(in)}
	var textRecips map[string]Recipient
	if tb := fromText(in); tb != nil {
		textRecips = map[string]Recipient{}
		for _, r := range tb.Recipients {
			textRecips[r.Address] = r
		}
		b.Format = tb.Format
	}
	delay := isDelayNotice(in)
	for _, a := range addrRe.FindAllString(v, -1) {
		a = strings.ToLower(a)
		r := Recipient{Address: a, Action: "failed"}
		if tr, ok := textRecips[a]; ok {
			r.Diagnostic = tr.Diagnostic
		} else if i := strings.Index(strings.ToLower(in.report), a); i >= 0 {
			r.Diagnostic = oneLine(strings.Join(linesBelow(in.report[i:], addrLineRe, false), " "))
		} else if loc := failedListRe.FindStringIndex(in.report); loc != nil && len(addrRe.FindAllString(v, -1)) == 1 {
			// The text names the recipient differently (an alias, an anonymised sample): with a
			// single failed recipient the reason under the list is still its reason.
			r.Diagnostic = oneLine(strings.Join(linesBelow(in.report[loc[0]:], failedListRe, false), " "))
		}
		if delay {
			r.Action = "delayed"
		}
		r.Status = statusCode(r.Diagnostic)
		r.Severity = severity(r.Action, r.Status, r.Diagnostic, delay)
		b.Recipients = append(b.Recipients, r)
		b.Evidence = append(b.Evidence, "header X-Failed-Recipients names "+a)
	}
	if len(b.Recipients) == 0 {
		return nil
	}
	return b
}

// fromOriginal is the last resort for notices that name no recipient at all (Postfix's
// "Delivery report unavailable", Verizon's "No valid recipients", V5 sendmail's deferral):
// the single To address of the returned message.
func fromOriginal(in *input) *Bounce {
	var tos []string
	for _, p := range in.parts {
		if p.ContentType == "message/rfc822" || p.ContentType == "text/rfc822-headers" {
			tos = append(tos, headerAddrs(string(p.Body), "to")...)
		}
	}
	if len(tos) == 0 && in.returned != "" {
		tos = headerAddrs(in.returned, "to")
	}
	if len(tos) != 1 || in.own[tos[0]] {
		return nil
	}
	delay := isDelayNotice(in)
	r := Recipient{Address: tos[0], Action: "failed", Diagnostic: oneLine(firstLines(in.report, 400))}
	if delay {
		r.Action = "delayed"
	}
	r.Status = statusCode(r.Diagnostic)
	r.Severity = severity(r.Action, r.Status, r.Diagnostic, delay)
	return &Bounce{
		Format:       formatName(in, "returned-message"),
		ReportingMTA: reportingHost(in),
		Recipients:   []Recipient{r},
		Evidence:     []string{"no recipient in the notice; returned message To: " + r.Address},
	}
}

// headerAddrs returns the addresses of the first header field called name in a header block.
func headerAddrs(block, name string) []string {
	lines := strings.Split(normalizeNL(block), "\n")
	for i, line := range lines {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), name) || strings.ContainsAny(k, " \t") {
			continue
		}
		for j := i + 1; j < len(lines) && len(lines[j]) > 0 && (lines[j][0] == ' ' || lines[j][0] == '\t'); j++ {
			v += " " + lines[j]
		}
		var out []string
		for _, a := range addrRe.FindAllString(v, -1) {
			out = append(out, strings.ToLower(a))
		}
		return out
	}
	return nil
}

func firstLines(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n]
	}
	return s
}

var hostRe = regexp.MustCompile(`(?i)(?:mail system at host|the mail system at|This is the [A-Za-z0-9 ./]+ at|message from)\s+([A-Za-z0-9.-]+[A-Za-z0-9])`)

// reportingHost names the MTA that wrote a text notice: the host it says it is, else the
// domain of the sender.
func reportingHost(in *input) string {
	if m := hostRe.FindStringSubmatch(in.report); m != nil {
		return strings.ToLower(m[1])
	}
	if _, d, ok := strings.Cut(in.m.From, "@"); ok {
		return strings.ToLower(d)
	}
	return ""
}

// formatName refines the rule family with the MTA the notice identifies itself as, so the
// evidence says "exim" rather than "list".
func formatName(in *input, rule string) string {
	t := in.report
	switch {
	case strings.Contains(t, "This is the qmail-send program"), strings.Contains(t, "qmail"):
		return "qmail"
	case strings.Contains(t, "This message was created automatically by mail delivery software"):
		return "exim"
	case strings.Contains(t, "This is the mail system at host"):
		return "postfix"
	case strings.Contains(t, "Transcript of session follows"):
		return "sendmail"
	case strings.Contains(t, "Delivery to the following recipient"):
		return "gmail"
	case strings.Contains(t, "did not reach the following recipient"), strings.Contains(t, "could not be reached"):
		return "exchange"
	case strings.Contains(t, "DragonFly Mail Agent"):
		return "dragonfly"
	case strings.Contains(t, "Sorry, we were unable to deliver your message"):
		return "yahoo"
	}
	return rule
}
