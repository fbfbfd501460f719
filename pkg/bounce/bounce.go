package bounce

import (
	"regexp"
	"strings"
)

// MaxBody is how much of each body (text, HTML, each part) is read. Bounce notices put what
// matters at the top; the rest is usually the returned message.
const MaxBody = 64 << 10

// Header is one header field, unfolded and decoded.
type Header struct {
	Name  string
	Value string
}

// Part is a report part or the header section of an attached message.
type Part struct {
	// ContentType is the media type without parameters, lower case: message/delivery-status,
	// message/global-delivery-status, message/feedback-report, text/rfc822-headers,
	// message/disposition-notification, or message/rfc822 (then Body holds only the attached
	// message's header section).
	ContentType string
	// Body is the decoded content.
	Body []byte
}

// Message is what the detectors read. The zero value is a valid, empty message.
type Message struct {
	// EnvelopeFrom is the SMTP MAIL FROM address: "<>" for the null sender, which is how
	// bounces are sent (RFC 5321 section 4.5.5), and "" when unknown.
	EnvelopeFrom string
	// From is the address of the From header.
	From string
	// Subject is the decoded subject.
	Subject string
	// Headers are the top-level header fields.
	Headers []Header
	// Text is the plain-text body (rendered from HTML when there was none).
	Text string
	// HTML is the HTML body, read only when Text is empty.
	HTML string
	// Parts are the report parts and attached messages' headers, in document order.
	Parts []Part
}

// Header returns the value of the first header field named name (case-insensitive), or "".
func (m *Message) Header(name string) string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// Severity says whether a bounce is permanent.
type Severity string

// The severities.
const (
	// Hard: permanent failure (5.x.x, or a permanent cause such as an unknown user); stop
	// sending to the address.
	Hard Severity = "hard"
	// Soft: temporary failure (4.x.x, or a temporary cause such as a full mailbox, a queue
	// expiry or a delay warning); the address may work later.
	Soft Severity = "soft"
	// NoFailure: the report says the message was delivered, relayed or expanded.
	NoFailure Severity = "none"
)

// Recipient is one recipient a delivery report is about.
type Recipient struct {
	// Address is the recipient as the sender addressed it, lower case: the DSN's
	// Original-Recipient when given, else its Final-Recipient or the address the notice names.
	Address string
	// FinalRecipient is the DSN's Final-Recipient when it differs from Address (after alias
	// expansion or forwarding); "" otherwise.
	FinalRecipient string
	// Action is the DSN action (failed, delayed, delivered, relayed, expanded), or the one
	// implied by a text notice (failed or delayed).
	Action string
	// Status is the RFC 3463 enhanced status code, e.g. "5.1.1"; "" when the report gives none.
	Status string
	// Diagnostic is the remote server's reply or the notice's reason, on one line.
	Diagnostic string
	// RemoteMTA is the DSN's Remote-MTA without its type; "" when not given.
	RemoteMTA string
	// Severity is hard, soft or none; see [Severity].
	Severity Severity
}

// Bounce is a detected delivery report.
type Bounce struct {
	// Format names the rule family that read the recipients: "rfc3464", "rfc3464-text" (DSN
	// fields in the text body), "x-failed-recipients", "amazonses-sns", or a text format
	// ("postfix", "exim", "sendmail", "qmail", "exchange", "gmail", "notes", "dragonfly", …).
	Format string
	// ReportingMTA is the DSN's Reporting-MTA without its type, or the host named by a text
	// notice; "" when unknown.
	ReportingMTA string
	// Recipients are the recipients reported, failed ones first; never empty.
	Recipients []Recipient
	// Evidence lists the signals that decided, in the order found, e.g.
	// "part message/delivery-status", "DSN Status 5.1.1 for user@example.com".
	Evidence []string
}

// Failed reports whether any recipient failed permanently or temporarily (as opposed to a
// success or relay report).
func (b *Bounce) Failed() bool {
	for _, r := range b.Recipients {
		if r.Severity == Hard || r.Severity == Soft {
			return true
		}
	}
	return false
}

// Severity is the most severe recipient severity: hard if any recipient bounced hard, else soft
// if any bounced soft, else none.
func (b *Bounce) Severity() Severity {
	s := NoFailure
	for _, r := range b.Recipients {
		switch r.Severity {
		case Hard:
			return Hard
		case Soft:
			s = Soft
		}
	}
	return s
}

// Detect returns the delivery report in m, or nil when m is not one. A message is a bounce only
// when it looks like a delivery report (a delivery-status part, an X-Failed-Recipients header, an
// Amazon SES notification, or a mailer-daemon sender or bounce subject together with bounce
// wording in the body) and at least one recipient can be read from it. Detect is safe for
// concurrent use.
func Detect(m *Message) *Bounce {
	if m == nil {
		return nil
	}
	in := newInput(m)
	var gate []string
	if in.hasReportPart {
		gate = append(gate, "part "+in.reportType)
	}
	if m.Header("X-Failed-Recipients") != "" {
		gate = append(gate, "header X-Failed-Recipients")
	}
	if b := detectSES(in); b != nil && (len(gate) > 0 || sesSender(m.From)) {
		b.Evidence = append(gate, b.Evidence...)
		return b
	}
	if len(gate) == 0 {
		daemon, dEv := daemonSender(m)
		subj := bounceSubjectRe.FindString(m.Subject)
		if !daemon && subj == "" {
			// Checked before the body phrases: scanning a large body with bounceBodyRe costs
			// far more than the header checks, and ordinary mail fails them.
			return nil
		}
		phrase := bounceBodyRe.FindString(in.report)
		if phrase == "" {
			return nil
		}
		if daemon {
			gate = append(gate, dEv)
		}
		if subj != "" {
			gate = append(gate, "subject "+quote(subj))
		}
		gate = append(gate, "body "+quote(strings.Join(strings.Fields(phrase), " ")))
	}
	b := read(in)
	if b == nil {
		return nil
	}
	b.Evidence = append(gate, b.Evidence...)
	return b
}

// read tries the recipient sources from the most to the least structured and returns the
// first that yields recipients.
func read(in *input) *Bounce {
	if b := fromDSNParts(in); b != nil {
		return b
	}
	if b := fromDSNText(in); b != nil {
		return b
	}
	if b := fromXFailed(in); b != nil {
		return b
	}
	if b := fromText(in); b != nil {
		return b
	}
	return fromOriginal(in)
}

// daemonSender reports whether the message comes from a mail system rather than a person: the
// null envelope sender, or a From of MAILER-DAEMON, postmaster or the like.
func daemonSender(m *Message) (bool, string) {
	env := strings.ToLower(strings.TrimSpace(m.EnvelopeFrom))
	if env == "<>" || env == "mailer-daemon" || strings.HasPrefix(env, "mailer-daemon@") {
		return true, "envelope sender " + m.EnvelopeFrom
	}
	from := strings.ToLower(m.From)
	local, _, _ := strings.Cut(from, "@")
	if from == "" && m.Header("From") != "" {
		// From: MAILER-DAEMON <> reads as an empty address; the header still names the daemon.
		local = strings.ToLower(m.Header("From"))
	}
	if daemonLocalRe.MatchString(local) {
		return true, "sender " + quote(firstNonEmpty(m.From, m.Header("From")))
	}
	return false, ""
}

// sesSender reports the senders of Amazon SES notifications (SNS e-mail subscriptions and SES
// itself); a JSON body from anyone else is not trusted as a report.
func sesSender(from string) bool {
	from = strings.ToLower(from)
	return strings.HasSuffix(from, ".amazonaws.com") || strings.HasSuffix(from, "@amazonaws.com") ||
		strings.HasSuffix(from, ".amazonses.com") || strings.HasSuffix(from, "@amazonses.com")
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

var (
	daemonLocalRe = regexp.MustCompile(`(?i)mailer-?daemon|^post_?master$|^poostmaster$|^mail-?daemon$|mail delivery (sub)?system|^bounces?$|^mdaemon$`)

	// bounceSubjectRe matches the subjects MTAs give their notices (English and the localized
	// Exchange ones seen in the corpus).
	bounceSubjectRe = regexp.MustCompile(`(?i)undeliver|undelivered mail|delivery status notification|` +
		`deliv(ery|ering) (has )?fail|mail delivery fail|failure notice|returned mail|mail system error|` +
		`delivery notification|could not be delivered|non remis|non recapitabile|unzustellbar|` +
		`no entregado|não entregue|onbestelbaar|message .* delayed|delayed mail|delivery failure|` +
		`failed delivery|failure delivery|mail failure|mail failed|notice: mail delivery status|` +
		`error sending your mail|mail delivery status|email delivery failure|` +
		`warning--could not send mail|returned to sender|are not member`)

	// bounceBodyRe matches the wording notices use in their human-readable part.
	bounceBodyRe = regexp.MustCompile(`(?i)could not be delivered|couldn't be delivered|was not delivered|` +
		`wasn't delivered|not be delivered|delivery to the following recipient|following address(\(es\))? failed|` +
		`permanent (error|failure)|did not reach the following recipient|delivery has failed|` +
		`unable to deliver|undeliverable|error delivering your mail|delivery problems|` +
		`transcript of session follows|recipient address rejected|no valid recipients|` +
		`delivery errors|not listed in (the )?domino directory|could not be reached|` +
		`requested action not taken|message delivery has failed|rejected recipient|` +
		`returned (errors|permanent errors)|has been delayed|delivery failed|failed to deliver|` +
		`was unable to deliver|not able to deliver|wasn.t able to deliver|failed permanently|delivery status notification|` +
		`invalid (user|recipient)|user unknown|unknown user|no such user|mailbox (is )?full|` +
		`following recipients?|still being retried|will be retried|failure reasons|not yet been delivered|` +
		`incorrectly constructed|malformed|account is disabled|was rejected|invalid final delivery|` +
		`attempting to deliver|following list of recipients|not a member|temporary failure report|` +
		`送信できませんでした|送信に失敗しました|配信できませんでした|届けることができませんでした`)
)

func quote(s string) string { return `"` + s + `"` }
