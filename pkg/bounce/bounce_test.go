package bounce_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/bounce"
)

const dsnPostfix = `Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4ABC

Final-Recipient: rfc822; alias@example.net
Original-Recipient: rfc822;user@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.1 <user@example.org>: Recipient address rejected:
    User unknown in local recipient table
`

func daemon(subject, text string, headers ...string) *bounce.Message {
	m := &bounce.Message{
		EnvelopeFrom: "<>", From: "mailer-daemon@mx.example.net", Subject: subject, Text: text,
		Headers: []bounce.Header{{Name: "To", Value: "sender@example.com"}},
	}
	for i := 0; i+1 < len(headers); i += 2 {
		m.Headers = append(m.Headers, bounce.Header{Name: headers[i], Value: headers[i+1]})
	}
	return m
}

func TestDetectFormats(t *testing.T) {
	for _, tt := range []struct {
		name     string
		msg      *bounce.Message
		format   string
		rcpt     string
		status   string
		severity bounce.Severity
		evidence string
	}{
		{
			name: "rfc3464 part",
			msg: func() *bounce.Message {
				m := daemon("Undelivered Mail Returned to Sender", "This is the mail system at host mx.example.net.")
				m.Parts = []bounce.Part{{ContentType: "message/delivery-status", Body: []byte(dsnPostfix)}}
				return m
			}(),
			format: "rfc3464", rcpt: "user@example.org", status: "5.1.1", severity: bounce.Hard,
			evidence: "DSN Status 5.1.1 for user@example.org",
		},
		{
			name: "rfc3464 fields in the text (Amazon WorkMail)",
			msg: daemon("Delivery Status Notification (Failure)", "An error occurred while trying to deliver the mail to the following recipients:\n"+
				"user@example.org\n\nReporting-MTA: dns; a1.example.com\n\nFinal-Recipient: rfc822; user@example.org\nAction: failed\n"+
				"Status: 5.2.2\nDiagnostic-Code: smtp; 550 5.2.2 <user@example.org>... Mailbox Full\n"),
			format: "rfc3464-text", rcpt: "user@example.org", status: "5.2.2", severity: bounce.Hard,
		},
		{
			name: "exim with X-Failed-Recipients",
			msg: daemon("Mail delivery failed: returning message to sender", "This message was created automatically by mail delivery software.\n\n"+
				"A message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n"+
				"  user@example.org\n    SMTP error from remote mail server after RCPT TO:<user@example.org>:\n    host mx.example.org [192.0.2.1]: 550 5.1.1 User unknown\n\n"+
				"------ This is a copy of the message, including all the headers. ------\nTo: other@example.org\n", "X-Failed-Recipients", "user@example.org"),
			format: "exim", rcpt: "user@example.org", status: "5.1.1", severity: bounce.Hard, evidence: "header X-Failed-Recipients",
		},
		{
			name: "exim mailbox full without a code is soft",
			msg: daemon("Mail delivery failed: returning message to sender", "This message was created automatically by mail delivery software.\n\n"+
				"A message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n"+
				"  user@example.org\n    mailbox is full: retry timeout exceeded\n", "X-Failed-Recipients", "user@example.org"),
			format: "exim", rcpt: "user@example.org", severity: bounce.Soft,
		},
		{
			name: "postfix without DSN, expanded alias",
			msg: daemon("Undelivered Mail Returned to Sender", "This is the mail system at host mx.example.net.\n\nI'm sorry to have to inform you that your message could not\n"+
				"be delivered to one or more recipients.\n\n<alias@example.net> (expanded from <user@example.org>): host\n    mx.example.org[192.0.2.1] said: 550 5.1.1 User unknown (in reply to RCPT TO command)\n"),
			format: "postfix", rcpt: "user@example.org", status: "5.1.1", severity: bounce.Hard,
		},
		{
			name: "sendmail transcript",
			msg: daemon("Returned mail: see transcript for details", "The original message was received at Thu, 29 Apr 2010\n\n   ----- Transcript of session follows -----\n"+
				"... while talking to mx.example.org.:\n>>> RCPT To:<user@example.org>\n<<< 550 5.1.1 <user@example.org>... User unknown\n550 5.1.1 <user@example.org>... User unknown\n"),
			format: "sendmail", rcpt: "user@example.org", status: "5.1.1", severity: bounce.Hard,
		},
		{
			name: "qmail",
			msg: &bounce.Message{
				EnvelopeFrom: "<>", From: "mailer-daemon@mx.example.net", Subject: "failure notice",
				Text: "Hi. This is the qmail-send program at mx.example.net.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n" +
					"This is a permanent error; I've given up. Sorry it didn't work out.\n\n<user@example.org>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n--- Below this line is a copy of the message.\n",
			},
			format: "qmail", rcpt: "user@example.org", status: "5.1.1", severity: bounce.Hard,
		},
		{
			name: "qmail temporary",
			msg: &bounce.Message{
				EnvelopeFrom: "<>", From: "mailer-daemon@mx.example.net", Subject: "failure notice",
				Text: "Hi. This is the qmail-send program at mx.example.net.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n\n" +
					"<user@example.org>:\nSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\nI'm not going to try again; this message has been in the queue too long.\n",
			},
			format: "qmail", rcpt: "user@example.org", status: "4.4.1", severity: bounce.Soft,
		},
		{
			name: "exchange 2003",
			msg: &bounce.Message{
				From: "postmaster@example.com", Subject: "Undeliverable: Quarterly report",
				Text: "Your message\n\n  To:      user@example.org\n  Subject: Quarterly report\n\ndid not reach the following recipient(s):\n\n" +
					"user@example.org on Thu, 29 Apr 2010 00:00:00 -0000\n    The recipient name is not recognized\n",
			},
			format: "exchange", rcpt: "user@example.org", severity: bounce.Hard,
		},
		{
			name: "gmail delay warning",
			msg: daemon("Delivery Status Notification (Delay)", "This is an automatically generated Delivery Status Notification\n\nTHIS IS A WARNING MESSAGE ONLY.\n\n"+
				"Delivery to the following recipient has been delayed:\n\n     user@example.org\n\nMessage will be retried for 2 more day(s)\n"),
			format: "gmail", rcpt: "user@example.org", severity: bounce.Soft,
		},
		{
			name: "gmail, UTF-8 local part",
			msg: daemon("Delivery Status Notification (Failure)", "Delivery to the following recipient failed permanently:\n\n     \U0001F408@example.org\n\n"+
				"Technical details of permanent failure:\n local-part of envelope contains utf8 but remote server did not offer SMTPUTF8\n"),
			format: "gmail", rcpt: "\U0001F408@example.org", severity: bounce.Hard,
		},
		{
			name: "yahoo",
			msg: daemon("Failure Notice", "Sorry, we were unable to deliver your message to the following address.\n\n<user@example.org>:\n"+
				"Remote host said: 550 5.2.2 <user@example.org>... Mailbox Full [RCPT_TO]\n\n--- Below this line is a copy of the message.\n"),
			format: "yahoo", rcpt: "user@example.org", status: "5.2.2", severity: bounce.Hard,
		},
		{
			name: "dragonfly",
			msg: daemon("Mail delivery failed", "This is the DragonFly Mail Agent v0.13 at df.example.net.\n\nThere was an error delivering your mail to <user@example.org>.\n\n"+
				"552 5.2.2 <user@example.org>: Recipient address rejected: Mailbox full\n\nMessage headers follow.\n"),
			format: "dragonfly", rcpt: "user@example.org", status: "5.2.2", severity: bounce.Hard,
		},
		{
			name: "lotus domino",
			msg: &bounce.Message{
				From: "postmaster@example.jp", Subject: "DELIVERY FAILURE: User Cat (user@example.org) not listed in Domino Directory",
				Text: "Your message\n\n  Subject: Nyaan\n\nwas not delivered to:\n\n  user@example.org\n\nbecause:\n\n  User cat (user@example.org) not listed in Domino Directory\n",
			},
			rcpt: "user@example.org", severity: bounce.Hard,
		},
		{
			name: "amazon ses sns",
			msg: &bounce.Message{
				From: "no-reply@sns.amazonaws.com", Subject: "AWS Notification Message",
				Text: `{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"user@example.org","action":"failed",` +
					"\n" + ` "status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],"reportingMTA":"dsn; a27.smtp-out.amazonses.com"}}`,
			},
			format: "amazonses-sns", rcpt: "user@example.org", status: "5.1.1", severity: bounce.Hard, evidence: "SES Permanent bounce",
		},
		{
			name: "returned message only",
			msg: func() *bounce.Message {
				m := daemon("Undelivered Mail Returned to Sender", "This is the mail system at host mx.example.net.\n\nyour message could not be delivered.\n\n\t--- Delivery report unavailable ---\n")
				m.Parts = []bounce.Part{{ContentType: "message/rfc822", Body: []byte("From: sender@example.com\nTo: user@example.org\nSubject: hi\n")}}
				return m
			}(),
			rcpt: "user@example.org", severity: bounce.Hard, evidence: "returned message To: user@example.org",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := bounce.Detect(tt.msg)
			if b == nil {
				t.Fatal("Detect = nil, want a bounce")
			}
			r := b.Recipients[0]
			if r.Address != tt.rcpt {
				t.Errorf("recipient %q, want %q (evidence %q)", r.Address, tt.rcpt, b.Evidence)
			}
			if tt.format != "" && b.Format != tt.format {
				t.Errorf("format %q, want %q", b.Format, tt.format)
			}
			if r.Status != tt.status {
				t.Errorf("status %q, want %q", r.Status, tt.status)
			}
			if r.Severity != tt.severity {
				t.Errorf("severity %q, want %q (diagnostic %q)", r.Severity, tt.severity, r.Diagnostic)
			}
			if tt.evidence != "" && !strings.Contains(strings.Join(b.Evidence, "\n"), tt.evidence) {
				t.Errorf("evidence %q does not mention %q", b.Evidence, tt.evidence)
			}
		})
	}
}

func TestDetectNotBounces(t *testing.T) {
	for _, tt := range []struct {
		name string
		msg  *bounce.Message
	}{
		{"nil", nil},
		{"empty", &bounce.Message{}},
		{"human mentions delivery", &bounce.Message{
			From: "alice@example.com", Subject: "Re: order",
			Text: "The parcel could not be delivered yesterday; the courier will retry. Contact bob@example.com.",
		}},
		{"daemon without bounce wording", &bounce.Message{
			EnvelopeFrom: "<>", From: "mailer-daemon@example.net", Subject: "Daily report",
			Text: "All queues are empty.\nadmin@example.net\n",
		}},
		{"bounce words but no recipient", daemon("Undelivered Mail Returned to Sender", "Your message could not be delivered.")},
		{"SES JSON from a stranger", &bounce.Message{
			From: "alice@example.com", Subject: "look",
			Text: `{"notificationType":"Bounce","bounce":{"bouncedRecipients":[{"emailAddress":"user@example.org"}]}}`,
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if b := bounce.Detect(tt.msg); b != nil {
				t.Errorf("Detect = %+v, want nil", b)
			}
		})
	}
}

func TestSeverityFromDiagnostic(t *testing.T) {
	for _, tt := range []struct {
		diag string
		want bounce.Severity
	}{
		{"550 Requested action not taken: mailbox unavailable", bounce.Hard},
		{"452 Insufficient system storage", bounce.Soft},
		{"Mailbox is full", bounce.Soft},
		{"account is over quota", bounce.Soft},
		{"retry timeout exceeded", bounce.Soft},
		{"User unknown", bounce.Hard},
		{"Host unknown (Name server: example.org: host not found)", bounce.Hard},
		{"Unrouteable address", bounce.Hard},
		{"Could not deliver for the last 432000 seconds. Giving up.", bounce.Soft},
	} {
		t.Run(tt.diag, func(t *testing.T) {
			m := daemon("Undelivered Mail Returned to Sender", "Your message could not be delivered to the following recipients:\n\n<user@example.org>:\n"+tt.diag+"\n")
			b := bounce.Detect(m)
			if b == nil {
				t.Fatal("Detect = nil")
			}
			if got := b.Recipients[0].Severity; got != tt.want {
				t.Errorf("severity %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDetectFeedback(t *testing.T) {
	arfReport := "Feedback-Type: abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1\nOriginal-Mail-From: <sender@example.com>\n" +
		"Original-Rcpt-To: <user@example.org>\nArrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\nSource-IP: 192.0.2.1\nReported-Domain: example.com\n"
	for _, tt := range []struct {
		name  string
		msg   *bounce.Message
		want  *bounce.Feedback // nil: not feedback
		msgID string
	}{
		{
			name: "arf abuse",
			msg: &bounce.Message{From: "abuse@isp.example", Subject: "FW: offer", Parts: []bounce.Part{
				{ContentType: "message/feedback-report", Body: []byte(arfReport)},
				{ContentType: "message/rfc822", Body: []byte("From: <sender@example.com>\nTo: <user@example.org>\nSubject: offer\nMessage-ID: <abc@example.com>\n")},
			}},
			want: &bounce.Feedback{
				Type: "abuse", UserAgent: "SomeGenerator/1.0", SourceIP: "192.0.2.1", OriginalMailFrom: "sender@example.com",
				OriginalRcptTo: []string{"user@example.org"}, ArrivalDate: "Thu, 8 Mar 2005 14:00:00 EDT", ReportedDomain: "example.com", MessageID: "abc@example.com",
				From: "sender@example.com", Subject: "offer",
			},
		},
		{
			name: "arf auth-failure with rfc822-headers",
			msg: &bounce.Message{From: "dmarc@example.net", Parts: []bounce.Part{
				{ContentType: "message/feedback-report", Body: []byte("Feedback-Type: auth-failure\nSource-IP: 192.0.2.9\n")},
				{ContentType: "text/rfc822-headers", Body: []byte("Message-ID: <x@y.example>\nFrom: a@y.example\nTo: b@z.example\n")},
			}},
			want: &bounce.Feedback{
				Type: "auth-failure", SourceIP: "192.0.2.9", MessageID: "x@y.example", From: "a@y.example",
				OriginalRcptTo: []string{"b@z.example"},
			},
		},
		{
			name: "microsoft jmrp",
			msg: &bounce.Message{From: "staff@hotmail.com", Subject: "complaint about message from 192.0.2.222", Parts: []bounce.Part{
				{ContentType: "message/rfc822", Body: []byte("X-HmXmrOriginalRecipient: user@example.org\nFrom: Sender <sender@example.com>\nMessage-ID: <m1@example.com>\nSubject: hi\n")},
			}},
			want: &bounce.Feedback{
				Type: "abuse", SourceIP: "192.0.2.222", OriginalRcptTo: []string{"user@example.org"}, MessageID: "m1@example.com",
				From: "sender@example.com", Subject: "hi",
			},
		},
		{
			name: "apple unsubscribe",
			msg:  &bounce.Message{From: "someone@icloud.com", Subject: "unsubscribe", Headers: []bounce.Header{{Name: "X-Apple-Unsubscribe", Value: "true"}}},
			want: &bounce.Feedback{Type: "opt-out"},
		},
		{name: "read receipt is not feedback", msg: &bounce.Message{Parts: []bounce.Part{{ContentType: "message/disposition-notification", Body: []byte("Disposition: manual-action/MDN-sent-manually; displayed\n")}}}},
		{name: "plain mail", msg: &bounce.Message{From: "a@b.example", Subject: "complaint", Text: "I want to complain."}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := bounce.DetectFeedback(tt.msg)
			if tt.want == nil {
				if got != nil {
					t.Fatalf("DetectFeedback = %+v, want nil", got)
				}
				return
			}
			if got == nil {
				t.Fatal("DetectFeedback = nil")
			}
			if len(got.Evidence) == 0 {
				t.Error("no evidence")
			}
			got.Evidence = nil
			if fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", *tt.want) {
				t.Errorf("DetectFeedback =\n %+v\nwant\n %+v", *got, *tt.want)
			}
		})
	}
}

func ExampleDetect() {
	b := bounce.Detect(&bounce.Message{
		EnvelopeFrom: "<>",
		From:         "mailer-daemon@mx.example.net",
		Subject:      "failure notice",
		Text: "Hi. This is the qmail-send program at mx.example.net.\n" +
			"I'm afraid I wasn't able to deliver your message to the following addresses.\n\n" +
			"<user@example.org>:\nRemote host said: 550 5.1.1 <user@example.org>... User Unknown\n",
	})
	r := b.Recipients[0]
	fmt.Println(b.Format, r.Address, r.Status, r.Severity)
	fmt.Println(b.Evidence[len(b.Evidence)-1])
	// Output:
	// qmail user@example.org 5.1.1 hard
	// text (qmail) recipient user@example.org status 5.1.1
}
