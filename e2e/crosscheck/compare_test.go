package crosscheck_test

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The compared fields, as named in the disagreements list. "parse" is a parser refusing a
// message the other one read.
const (
	fieldParse       = "parse"
	fieldSubject     = "subject"
	fieldFrom        = "from"
	fieldTo          = "to"
	fieldText        = "text"
	fieldAttachments = "attachments"
)

var fields = []string{fieldParse, fieldSubject, fieldFrom, fieldTo, fieldText, fieldAttachments}

// ws collapses every run of white space (Unicode White_Space: spaces, tabs, line breaks, NBSP
// …) to one space and trims the ends. The parsers agree on words but not on line breaks: where
// a body part ends ("\n" or "\n\n"), how folded headers are unfolded, how many blank lines an
// HTML rendering leaves, CRLF or LF.
func ws(s string) string { return strings.Join(strings.Fields(s), " ") }

// compare returns, for each field on which the two records disagree, a short description of
// the difference. A record that could not be read at all disagrees only on "parse".
func compare(mp, peer record) map[string]string {
	diff := map[string]string{}
	if mp.OK != peer.OK {
		diff[fieldParse] = fmt.Sprintf("mailpipe ok=%v (%s), peer ok=%v (%s)", mp.OK, mp.Error, peer.OK, peer.Error)
		return diff
	}
	if !mp.OK {
		return diff
	}
	if a, b := ws(mp.Subject), ws(peer.Subject); a != b {
		diff[fieldSubject] = fmt.Sprintf("mailpipe %q, peer %q", a, b)
	}
	if a, b := fmtFrom(mp.From), fmtFrom(peer.From); a != b {
		diff[fieldFrom] = fmt.Sprintf("mailpipe %s, peer %s", a, b)
	}
	if a, b := fmtAddrs(mp.To), fmtAddrs(peer.To); a != b {
		diff[fieldTo] = fmt.Sprintf("mailpipe %s, peer %s", a, b)
	}
	if !peer.noText {
		if a, b := ws(mp.Text), ws(peer.Text); a != b {
			diff[fieldText] = "mailpipe " + textDiff(a, b)
		}
	}
	if d := compareAttachments(mp.Attachments, peer.Attachments); d != "" {
		diff[fieldAttachments] = d
	}
	return diff
}

// fmtAddr writes a mailbox for comparison: the address lower-cased (mailpipe lower-cases the
// whole address, the peers keep the case as written; case is not significant in practice) and
// the display name with white space collapsed.
func fmtAddr(a addr) string {
	return fmt.Sprintf("%q <%s>", ws(a.Name), strings.ToLower(strings.TrimSpace(a.Address)))
}

func fmtFrom(a *addr) string {
	if a == nil || (a.Address == "" && a.Name == "") {
		return "none"
	}
	return fmtAddr(*a)
}

func fmtAddrs(list []addr) string {
	s := make([]string, 0, len(list))
	for _, a := range list {
		s = append(s, fmtAddr(a))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// compareAttachments compares the attachment lists in order: filename (white space collapsed),
// size and sha256. A size of -1 (not known) matches any size and digest.
func compareAttachments(mp, peer []attachment) string {
	same := len(mp) == len(peer)
	for i := 0; same && i < len(mp); i++ {
		a, b := mp[i], peer[i]
		same = ws(a.Filename) == ws(b.Filename) && (b.Size < 0 || (a.Size == b.Size && a.SHA256 == b.SHA256))
	}
	if same {
		return ""
	}
	return fmt.Sprintf("mailpipe %s, peer %s", fmtAttachments(mp), fmtAttachments(peer))
}

func fmtAttachments(list []attachment) string {
	s := make([]string, 0, len(list))
	for _, a := range list {
		sum := a.SHA256
		if len(sum) > 8 {
			sum = sum[:8]
		}
		s = append(s, fmt.Sprintf("%q %s %d %s", ws(a.Filename), a.ContentType, a.Size, sum))
	}
	return "[" + strings.Join(s, "; ") + "]"
}

// textDiff shows where two normalized texts part: their lengths and some context around the
// first difference.
func textDiff(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	// The bytes before i are the same in both, so backing up to a rune start in a does in b.
	for i > 0 && i < len(a) && !utf8.RuneStart(a[i]) {
		i--
	}
	from := max(0, i-40)
	for from > 0 && !utf8.RuneStart(a[from]) {
		from--
	}
	cut := func(s string) string {
		end := min(len(s), i+80)
		for end < len(s) && !utf8.RuneStart(s[end]) {
			end++
		}
		return s[from:end]
	}
	return fmt.Sprintf("%d chars, peer %d chars, first difference at %d: mailpipe %q, peer %q", len(a), len(b), i, cut(a), cut(b))
}
