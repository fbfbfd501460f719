package bounce

import (
	"regexp"
	"strings"
)

// severity decides hard or soft for one recipient, from the most to the least reliable signal:
//
//  1. a success action (delivered, relayed, expanded) → none;
//  2. the enhanced status code's class: 5.x.x hard, 4.x.x soft, 2.x.x none (RFC 3463);
//  3. an SMTP reply code at the start of the diagnostic: 5xx hard, 4xx soft (RFC 5321);
//  4. the diagnostic's wording, from [softPhrases] and [hardPhrases] (soft first: "mailbox
//     full" must win over the "permanent error" boilerplate some MTAs wrap it in);
//  5. the notice itself: a delay warning is soft, anything else that returned the message is
//     hard.
func severity(action, status, diag string, delayNotice bool) Severity {
	switch action {
	case "delivered", "relayed", "expanded":
		return NoFailure
	}
	if s := classOf(status); s != "" {
		return s
	}
	if s := classOf(statusCode(diag)); s != "" {
		return s
	}
	if m := replyCodeRe.FindStringSubmatch(diag); m != nil {
		if m[1] == "5" {
			return Hard
		}
		return Soft
	}
	if softPhrases.MatchString(diag) {
		return Soft
	}
	if hardPhrases.MatchString(diag) {
		return Hard
	}
	if action == "delayed" || delayNotice {
		return Soft
	}
	return Hard
}

func classOf(status string) Severity {
	switch {
	case strings.HasPrefix(status, "5."):
		return Hard
	case strings.HasPrefix(status, "4."):
		return Soft
	case strings.HasPrefix(status, "2."):
		return NoFailure
	}
	return ""
}

var (
	// replyCodeRe finds the first SMTP reply code in a diagnostic ("smtp; 550 …", "550-…",
	// "Remote host said: 421 …", "<<< 550 …", "ResponseCode 421"): three digits standing alone.
	replyCodeRe = regexp.MustCompile(`(?:^|[\s:;<>\[\](])([45])\d\d(?:[\s\-:,)\]]|$)`)

	// softPhrases are causes that may go away: a full mailbox, a queue that expired after
	// temporary failures, a delay or deferral, a network problem.
	softPhrases = regexp.MustCompile(`(?i)mailbox (is )?full|mail ?folder is full|over ?quota|quota exceeded|` +
		`exceed(ed|s) (the )?(storage|quota|local limit)|mailbox exceeded|insufficient (system )?storage|` +
		`retry time ?out|timeout exceeded|expired|giving up|too long|multiple retries|` +
		`failed \d+ attempts|failing for a long time|for the last \d+ seconds|` +
		`temporar|try again later|deferred|delayed|will be retried|network error|timed out|` +
		`connection (refused|reset)|resources temporarily`)

	// hardPhrases are causes that will not go away by themselves.
	hardPhrases = regexp.MustCompile(`(?i)user unknown|unknown user|no such (user|mailbox|address)|` +
		`not found|does not exist|doesn't exist|doesn't have|unknown (host|domain)|host unknown|` +
		`no mx|mx (or srv )?record|domain does not|unrouteable|invalid|not listed|` +
		`not a member|rejected|blacklisted|blocked|denied|account (is )?(locked|disabled)|` +
		`disabled|not recognized|recipient not|no longer|has moved|malformed|` +
		`permanent|could not find`)
)

// delayNoticeRe matches notices that only warn about a delay; their recipients are soft
// unless a code says otherwise.
var delayNoticeRe = regexp.MustCompile(`(?i)\bdelay|warning|will be retried|still being retried|` +
	`could not send mail for past|do not need to resend`)

func isDelayNotice(in *input) bool {
	if delayNoticeRe.MatchString(in.m.Subject) {
		return true
	}
	head := in.report
	if len(head) > 600 {
		head = head[:600]
	}
	return strings.Contains(strings.ToLower(head), "has been delayed") ||
		strings.Contains(strings.ToLower(head), "warning message only")
}
