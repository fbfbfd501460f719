// Package spam scores how likely a parsed message is unwanted, from built-in rules over the
// mail.parsed.v1 record: authentication failures and the sender domain's DMARC policy,
// suspicious attachments, and header anomalies. Every rule that fires is returned as a flag
// with its points and the evidence, so a score can be explained. An optional external verdict
// (rspamd, package spam/rspamd) is combined by the classifier.
package spam

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// Flag is one rule that fired.
type Flag struct {
	// Name is stable, upper snake case (e.g. DMARC_FAIL): it is written to mail.classified.v1.
	Name string
	// Points added to the score; negative points make spam less likely.
	Points float64
	// Detail is the evidence, human-readable.
	Detail string
}

// String is the flag as written to the record: "NAME(points): detail".
func (f Flag) String() string { return fmt.Sprintf("%s(%+g): %s", f.Name, f.Points, f.Detail) }

// DefaultThreshold is the built-in score from which a message is spam.
const DefaultThreshold = 8

// executable lists file extensions that run code when opened on common desktops: a classic
// malware carrier nobody sends to a support or sales inbox.
var executable = []string{
	".exe", ".scr", ".com", ".pif", ".bat", ".cmd", ".vbs", ".vbe", ".js", ".jse", ".wsf", ".wsh",
	".hta", ".jar", ".msi", ".lnk", ".ps1", ".reg", ".cpl", ".iso", ".img", ".vhd",
}

// documentLike are extensions a lure pretends to be in a double extension ("invoice.pdf.exe").
var documentLike = []string{".pdf", ".doc", ".docx", ".xls", ".xlsx", ".txt", ".jpg", ".png", ".zip"}

// Score applies the built-in rules to msg at time now (for the date check) and returns the
// total and the flags that fired, in rule order.
func Score(msg *events.Parsed, now time.Time) (float64, []Flag) {
	var flags []Flag
	add := func(name string, points float64, format string, args ...any) {
		flags = append(flags, Flag{Name: name, Points: points, Detail: fmt.Sprintf(format, args...)})
	}

	a := msg.Authentication
	switch a.SPF {
	case "fail":
		add("SPF_FAIL", 3, "SPF fails for the envelope sender")
	case "softfail":
		add("SPF_SOFTFAIL", 1, "SPF softfails for the envelope sender")
	}
	if len(a.DKIM) > 0 && !slices.ContainsFunc(a.DKIM, func(d events.DKIMResult) bool { return d.Result == "pass" }) &&
		slices.ContainsFunc(a.DKIM, func(d events.DKIMResult) bool { return d.Result == "fail" }) {
		add("DKIM_FAIL", 2, "every DKIM signature fails or errs")
	}
	if a.DMARC == "fail" {
		switch a.DMARCPolicy {
		case "reject":
			add("DMARC_FAIL_REJECT", 6, "DMARC fails and the From domain asks receivers to reject")
		case "quarantine":
			add("DMARC_FAIL_QUARANTINE", 5, "DMARC fails and the From domain asks receivers to quarantine")
		default:
			add("DMARC_FAIL", 3, "DMARC fails (policy %q)", a.DMARCPolicy)
		}
	}

	for _, att := range msg.Attachments {
		name := strings.ToLower(strings.TrimSpace(att.Filename))
		ext := path.Ext(name)
		switch {
		case slices.Contains(executable, ext) && slices.Contains(documentLike, path.Ext(strings.TrimSuffix(name, ext))):
			add("ATTACHMENT_DOUBLE_EXTENSION", 8, "attachment %q hides an executable behind a document extension", att.Filename)
		case slices.Contains(executable, ext):
			add("ATTACHMENT_EXECUTABLE", 5, "attachment %q is an executable type", att.Filename)
		case att.SniffedType == "application/x-msdownload" || att.SniffedType == "application/vnd.microsoft.portable-executable":
			add("ATTACHMENT_EXECUTABLE_CONTENT", 5, "attachment %q is a Windows executable (declared %s)", att.Filename, att.ContentType)
		}
	}

	if msg.Date == nil {
		add("DATE_MISSING", 1, "no readable Date header")
	} else if msg.Date.After(now.Add(24 * time.Hour)) {
		add("DATE_IN_FUTURE", 2, "Date %s is more than a day ahead", msg.Date.UTC().Format(time.RFC3339))
	}
	if msg.MessageID == "" {
		add("MESSAGE_ID_MISSING", 1, "no Message-ID")
	}
	if msg.From == nil {
		add("FROM_MISSING", 2, "no readable From mailbox")
	} else if spoof := nameSpoof(*msg.From); spoof != "" {
		add("FROM_NAME_SPOOF", 3, "From display name shows the address %s, not the sender's domain %s", spoof, domainOf(msg.From.Address))
	}
	if subj := letters(msg.Subject); len(subj) >= 12 && strings.ToUpper(subj) == subj {
		add("SUBJECT_ALL_CAPS", 1, "subject is all capitals")
	}
	if len(msg.To) == 0 && len(msg.Cc) == 0 && len(msg.Bcc) > 0 {
		add("RECIPIENTS_UNDISCLOSED", 1, "no To or Cc; only blind copies")
	}

	var total float64
	for _, f := range flags {
		total += f.Points
	}
	return total, flags
}

// nameSpoof returns the e-mail address shown in a's display name when its domain differs from
// a's own (the "PayPal <attacker@example.net>"-style display name "service@paypal.com").
func nameSpoof(a events.Address) string {
	for _, w := range strings.FieldsFunc(strings.ToLower(a.Name), func(r rune) bool {
		return r == ' ' || r == '<' || r == '>' || r == '"' || r == '\'' || r == '(' || r == ')' || r == ','
	}) {
		at := strings.LastIndexByte(w, '@')
		if at <= 0 || at == len(w)-1 || !strings.Contains(w[at:], ".") {
			continue
		}
		if d := w[at+1:]; d != domainOf(a.Address) && d != a.DomainASCII {
			return w
		}
	}
	return ""
}

func letters(s string) string {
	return strings.Map(func(r rune) rune {
		if strings.ToUpper(string(r)) != strings.ToLower(string(r)) {
			return r
		}
		return -1
	}, s)
}

// domainOf returns the part of addr after its last '@', or "".
func domainOf(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[at+1:]
	}
	return ""
}
