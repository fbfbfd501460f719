// Package reply extracts the new part of an e-mail reply: the text a person wrote, without the
// quoted history and the signature (what Mailgun calls stripped-text). It is pure text
// processing, with no I/O, so every stage can use it.
package reply

import (
	"regexp"
	"strings"
)

// Attribution lines ("On <date>, <name> wrote:") of Gmail, Thunderbird and Apple Mail, and their
// German, French and Spanish translations. French puts a (narrow) no-break space before the colon.
var attributionRE = regexp.MustCompile(`^(?:` +
	`On\s.{1,300}\swrote:` +
	`|Am\s.{1,300}\sschrieb\s?.{0,300}:` +
	`|Le\s.{1,300}\sa\sécrit[ \x{00A0}\x{202F}]?:` +
	`|El\s.{1,300}\sescribió:` +
	`)$`)

// historyRE matches lines after which everything is quoted history that clients do not prefix
// with '>': Outlook's original-message banner (and its translations) and its underscore rule.
var historyRE = regexp.MustCompile(`(?i)^(?:` +
	`-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|mensaje original)\s*-{2,}` +
	`|_{30,}` +
	`)$`)

// signatureRE matches lines from which on the rest is a signature: the RFC 3676 delimiter
// ("-- ", often sent without its space) and the footers of mobile and webmail clients.
var signatureRE = regexp.MustCompile(`^(?:` +
	`--` +
	`|Sent from (?:my |Mail for |Yahoo Mail|Outlook).{0,60}` +
	`|Get Outlook for (?:iOS|Android).{0,80}` +
	`|Von meinem .{1,40} gesendet` +
	`|Envoyé de mon .{1,40}` +
	`|Enviado desde mi .{1,40}` +
	`)$`)

// Outlook's header block: From, then Sent/Date, To and Subject within a few lines; Outlook's
// plain-text rendering may set the names in bold (*From:*).
var (
	headerFromRE    = regexp.MustCompile(`(?i)^\*?(?:from|von|de)\s?:\*?\s`)
	headerDateRE    = regexp.MustCompile(`(?i)^\*?(?:sent|date|gesendet|datum|envoyé|enviado|fecha)\s?:`)
	headerSubjectRE = regexp.MustCompile(`(?i)^\*?(?:subject|betreff|objet|asunto)\s?:`)
)

// headerBlockSpan is how many lines after From: the Outlook header block may reach Subject:
// (From, Sent, To, Cc, Subject, and a wrapped To or Cc).
const headerBlockSpan = 8

// Strip returns the new part of the reply text: quoted lines ('>') are dropped, and the text is
// cut at the first attribution line that is not followed by quoted lines, Outlook history
// marker or header block, signature delimiter or mobile footer. Line endings become "\n", runs
// of blank lines one blank line, and leading and trailing white space is trimmed. The result is
// never longer than text.
func Strip(text string) string {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	lines := strings.Split(text, "\n")
	kept := make([]string, 0, len(lines))
	for i := 0; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], " \t")
		trimmed := strings.TrimLeft(line, " \t")
		if strings.HasPrefix(trimmed, ">") {
			continue
		}
		if n := attribution(lines, i); n > 0 {
			// An attribution above quoted lines (bottom or interleaved posting) only introduces
			// them: drop it and keep reading. Above unquoted history it ends the new text.
			if quotedNext(lines, i+n) {
				i += n - 1
				continue
			}
			break
		}
		if history(trimmed) || signature(trimmed) || headerBlock(lines, i) {
			break
		}
		if trimmed == "" && (len(kept) == 0 || kept[len(kept)-1] == "") {
			continue
		}
		kept = append(kept, line)
	}
	return strings.TrimSpace(strings.Join(kept, "\n"))
}

// attribution returns the number of lines (1 or 2) of the attribution line starting at
// lines[i], or 0.
func attribution(lines []string, i int) int {
	line := strings.TrimSpace(lines[i])
	if len(line) > 400 || !attributionStart(line) {
		return 0
	}
	if attributionRE.MatchString(line) {
		return 1
	}
	if i+1 < len(lines) {
		next := strings.TrimSpace(lines[i+1])
		if next != "" && len(next) < 400 && attributionRE.MatchString(line+" "+next) {
			return 2
		}
	}
	return 0
}

// quotedNext reports whether the first non-blank line from lines[i] on is quoted.
func quotedNext(lines []string, i int) bool {
	for ; i < len(lines); i++ {
		t := strings.TrimSpace(lines[i])
		if t != "" {
			return strings.HasPrefix(t, ">")
		}
	}
	return false
}

// headerBlock reports whether an Outlook header block (From:, Sent: or Date:, Subject:) starts
// at lines[i].
func headerBlock(lines []string, i int) bool {
	if !headerFrom(strings.TrimSpace(lines[i])) {
		return false
	}
	var date bool
	for j := i + 1; j < len(lines) && j <= i+headerBlockSpan; j++ {
		t := strings.TrimSpace(lines[j])
		switch {
		case headerDateRE.MatchString(t):
			date = true
		case headerSubjectRE.MatchString(t):
			return date
		}
	}
	return false
}

// Strip tests every line against the patterns above; the tests below are what a line must
// start with for each to match, so that most lines cost a byte comparison instead of a
// regular expression.

// attributionStart reports whether line starts an attribution (on one or two lines): On, Am,
// Le or El and white space (\s).
func attributionStart(line string) bool {
	if len(line) < 3 || !reSpace(line[2]) {
		return false
	}
	switch line[:2] {
	case "On", "Am", "Le", "El":
		return true
	}
	return false
}

// history is historyRE.MatchString(line): its lines start with '-' or '_'.
func history(line string) bool {
	return line != "" && (line[0] == '-' || line[0] == '_') && historyRE.MatchString(line)
}

// signature is signatureRE.MatchString(line): its lines start with "--" or a capital S, G, V
// or E.
func signature(line string) bool {
	if line == "" {
		return false
	}
	switch line[0] {
	case '-', 'S', 'G', 'V', 'E':
		return signatureRE.MatchString(line)
	}
	return false
}

// headerFrom is headerFromRE.MatchString(line): its lines start with f, v or d in either case,
// after an optional '*' (none of these letters has another case fold).
func headerFrom(line string) bool {
	name := line
	if name != "" && name[0] == '*' {
		name = name[1:]
	}
	if name == "" {
		return false
	}
	switch name[0] {
	case 'f', 'F', 'v', 'V', 'd', 'D':
		return headerFromRE.MatchString(line)
	}
	return false
}

// reSpace is the \s of package regexp: ASCII white space.
func reSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }
