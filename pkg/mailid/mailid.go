// Package mailid normalizes the identifiers mailpipe keys everything on: Message-IDs (RFC 5322
// msg-id), e-mail addresses, and the external id derived from both. It is pure: no I/O, no
// clock, and results never change with the Go version (case folding is ASCII-only, so Unicode
// table updates cannot move an id).
//
// # Message-ID
//
// MessageID and MessageIDs accept header values as they arrive, including folded lines,
// comments, missing angle brackets and garbage between ids, and return ids in the form
// "id-left@id-right" without angle brackets:
//
//   - comments "(…)" outside quoted strings are removed (nesting and backslash escapes honoured;
//     an unclosed comment runs to the end);
//   - every <…> pair yields one id; an unclosed "<" at the end (a truncated header) yields the
//     rest; a "<" inside an open id restarts it;
//   - when the value has no "<" at all, each whitespace- or comma-separated token containing "@"
//     is an id (mailers that drop the brackets), and a value that is one token is an id even
//     without "@";
//   - all whitespace and control characters inside an id are removed (RFC 5322 allows none;
//     folding puts them there), and so are the characters that only structure a header
//     (quotes, backslashes, parentheses, angle brackets, commas), which real ids never contain;
//   - the part after the last "@" (the domain) is lower-cased; the part before it is kept as is,
//     because RFC 5322 gives id-left no case rules and generators treat it as opaque, so two
//     ids differing only in the case of id-left may be different messages.
//
// Normalization is idempotent: MessageID(MessageID(x)) == MessageID(x).
//
// # Address
//
// Address reduces one address header value (From, Sender, Reply-To, an envelope path) to
// "local@domain" lower-cased: the display name, comments, angle brackets, quotes, a "mailto:" or
// group "name:" prefix and all whitespace go; only the first address of a list is kept. Lower-casing
// the local part is not RFC-exact (it is case-sensitive in theory) but matches every real
// mailbox provider, and an id must not split on "Alice@" vs "alice@".
//
// # External id
//
// ExternalID is the idempotency key for one message everywhere (Redis dedupe, CRM upserts,
// Postgres unique constraints, webhook ids). Its exact byte recipe is
//
//	hex(sha256( MessageID(messageID) || 0x0A || Address(sender) ))
//
// as 64 lower-case hex digits, where both strings are taken as their UTF-8 bytes. Other
// implementations (the Python lake tooling, SQL backfills) must reproduce exactly this.
package mailid

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ExternalID returns the message's idempotency key; see the package doc for the byte recipe.
//
// sender should be the first address of the From header (the author), not the SMTP envelope
// MAIL FROM, which forwarders rewrite (SRS) and bounces leave empty, so ingress and parser both
// arrive at the same id. A message without a Message-ID must be given a synthetic one
// (thread.SyntheticID) first: with an empty messageID every id-less message from a sender would
// share one external id.
func ExternalID(messageID, sender string) string {
	h := sha256.New()
	h.Write([]byte(MessageID(messageID)))
	h.Write([]byte{'\n'})
	h.Write([]byte(Address(sender)))
	return hex.EncodeToString(h.Sum(nil))
}

// MessageID returns the first Message-ID in raw, normalized, or "" when raw holds none.
func MessageID(raw string) string {
	ids := MessageIDs(raw)
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

// MessageIDs returns every Message-ID in raw (a References or In-Reply-To value), normalized,
// in order, skipping empty ones. Repeats are kept; the caller decides what they mean.
func MessageIDs(raw string) []string {
	s := stripComments(raw)
	var ids []string
	add := func(id string) {
		if id = cleanID(id); id != "" {
			ids = append(ids, id)
		}
	}
	if !strings.Contains(s, "<") {
		toks := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || isSpace(r) })
		if len(toks) == 1 {
			add(toks[0]) // a lone token is an id even without "@"
			return ids
		}
		for _, tok := range toks {
			if strings.Contains(tok, "@") {
				add(tok)
			}
		}
		return ids
	}
	start := -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '<':
			start = i + 1 // a "<" inside an open id restarts it
		case '>':
			if start >= 0 {
				add(s[start:i])
				start = -1
			}
		}
	}
	if start >= 0 {
		add(s[start:])
	}
	return ids
}

// cleanID removes whitespace, controls and structural characters and lower-cases the domain.
func cleanID(id string) string {
	id = removeRunes(id, func(r rune) bool { return isSpace(r) || strings.ContainsRune(structural, r) })
	if at := strings.LastIndexByte(id, '@'); at >= 0 {
		id = id[:at+1] + asciiLower(id[at+1:])
	}
	return id
}

// Address returns raw's first address normalized (see the package doc), or "" when there is
// none, as in "undisclosed-recipients:;".
func Address(raw string) string {
	s := firstOfList(stripComments(raw))
	if i := indexOutsideQuotes(s, '<'); i >= 0 {
		s = s[i+1:]
		if j := strings.IndexByte(s, '>'); j >= 0 {
			s = s[:j]
		}
	}
	s = removeRunes(s, func(r rune) bool { return isSpace(r) || strings.ContainsRune(structural+";", r) })
	// A group name or "mailto:" prefix: drop everything up to the last colon before the "@".
	at := strings.IndexByte(s, '@')
	if at < 0 {
		at = len(s)
	}
	if i := strings.LastIndexByte(s[:at], ':'); i >= 0 {
		s = s[i+1:]
	}
	return asciiLower(s)
}

// firstOfList cuts s at the first comma outside quotes and angle brackets.
func firstOfList(s string) string {
	inQuote, inAngle := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == '<':
			inAngle = true
		case c == '>':
			inAngle = false
		case c == ',' && !inAngle:
			return s[:i]
		}
	}
	return s
}

// indexOutsideQuotes returns the index of the first c outside a quoted string, or -1.
func indexOutsideQuotes(s string, c byte) int {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch {
		case inQuote && s[i] == '\\':
			i++
		case s[i] == '"':
			inQuote = !inQuote
		case !inQuote && s[i] == c:
			return i
		}
	}
	return -1
}

// stripComments removes RFC 5322 comments outside quoted strings. Nested comments and
// quoted-pairs are honoured; an unclosed comment runs to the end; a stray ")" is kept.
func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	depth, inQuote := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case depth > 0:
			switch c {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				b.WriteByte(' ') // a comment separates tokens, like whitespace
			}
		case inQuote:
			b.WriteByte(c)
			if c == '\\' && i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			} else if c == '"' {
				inQuote = false
			}
		case c == '"':
			inQuote = true
			b.WriteByte(c)
		case c == '(':
			depth = 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// structural are the characters that only give a header value its structure (quoting,
// comments, brackets, list separators). They are dropped from normalized ids and addresses, which
// also makes normalization idempotent: a second pass finds no structure left to interpret.
const structural = "\"\\()<>,"

// removeRunes drops the runes for which drop is true, keeping invalid UTF-8 bytes unchanged (raw
// 8-bit headers must not collapse into U+FFFD). Dropping can join two stray bytes into a valid
// rune that drop also rejects ("\xc2 \x9d" becomes U+009D, a control), so it repeats until
// nothing changes; each pass shortens the string, and real headers need one or two.
func removeRunes(s string, drop func(rune) bool) string {
	for {
		out := removeRunesOnce(s, drop)
		if len(out) == len(s) {
			return out
		}
		s = out
	}
}

func removeRunesOnce(s string, drop func(rune) bool) string {
	// Most ids and addresses have nothing to drop: return s itself then.
	for i := 0; ; {
		if i == len(s) {
			return s
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r != utf8.RuneError || size != 1) && drop(r) {
			break
		}
		i += size
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r != utf8.RuneError || size != 1) && drop(r) {
			i += size
			continue
		}
		b.WriteString(s[i : i+size])
		i += size
	}
	return b.String()
}

func isSpace(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

// asciiLower lower-cases ASCII letters only, so ids do not depend on Unicode tables.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
