package mime

import (
	"errors"
	"net/mail"
	"regexp"
	"strings"

	"github.com/jhillyerd/enmime/v2"
	"golang.org/x/net/idna"
)

// parseAddresses reads the mailboxes of one address header value (raw, not decoded; group
// members included). ok is false when some of the value could not be read; what could be read
// is still returned.
func parseAddresses(raw string) (addrs []Address, ok bool) {
	raw, _ = validUTF8(raw)
	if strings.TrimSpace(raw) == "" {
		return nil, true
	}
	if list, ok := quickAddressList(raw); ok && !splitDisplayName(raw, list) {
		return mailboxes(raw, list), true
	}
	list, err := enmime.ParseAddressList(raw)
	if err == nil && !splitDisplayName(raw, list) {
		return mailboxes(raw, list), true
	}
	if errors.Is(err, mail.ErrHeaderNotPresent) {
		return nil, true // e.g. "undisclosed-recipients:;"
	}
	// net/mail does not allow comments inside an addr-spec (RFC 5322 CFWS); drop them.
	if err != nil {
		if list, err := enmime.ParseAddressList(stripComments(raw)); err == nil && !splitDisplayName(raw, list) {
			return mailboxes(raw, list), true
		}
	}
	// Salvage item by item: one broken mailbox must not cost the others.
	ok = true
	for _, item := range splitAddressList(stripComments(raw)) {
		if strings.TrimSpace(item) == "" {
			continue
		}
		if l, err := enmime.ParseAddressList(item); err == nil && !splitDisplayName(item, l) {
			addrs = append(addrs, mailboxes(item, l)...)
			continue
		}
		switch n, st := looseMailbox(item); st {
		case mailboxFound:
			addrs = append(addrs, n)
		case mailboxNone:
			ok = false
		}
	}
	return addrs, ok
}

// quickAddressList reads the address lists of the plainest forms, which are most of them, as
// enmime.ParseAddressList does, without net/mail's parser: comma-separated items that are an
// addr-spec ("local@domain") or a display name and an angle address, the name a run of atoms
// or a quoted string of printable ASCII without quotes or backslashes; dot-atom local parts
// and domains; spaces only between tokens. ok is false for anything else (comments, groups,
// encoded words, 8-bit bytes, ...). FuzzQuickAddressList holds it to enmime's result.
func quickAddressList(s string) ([]*mail.Address, bool) {
	if strings.Contains(s, "=?") {
		return nil, false // encoded words: net/mail's decoder
	}
	var out []*mail.Address
	i := 0
	for {
		i = skipSpaces(s, i)
		if j, ok := dotAtomAddr(s, i); ok && (j == len(s) || s[j] == ',' || s[j] == ' ') {
			out = append(out, &mail.Address{Address: s[i:j]})
			i = j
		} else {
			var name string
			switch {
			case i < len(s) && s[i] == '"':
				k := i + 1
				for k < len(s) && s[k] != '"' {
					if c := s[k]; c == '\\' || c < 0x20 || c > 0x7e {
						return nil, false
					}
					k++
				}
				if k == len(s) {
					return nil, false
				}
				name, i = s[i+1:k], k+1
			case i < len(s) && s[i] != '<':
				start := i
				for i < len(s) && s[i] != '<' {
					k := atextEnd(s, i)
					if k == i {
						return nil, false
					}
					if i = k; i < len(s) && s[i] == ' ' {
						i = skipSpaces(s, i)
						if i < len(s) && s[i] != '<' && s[i-2] == ' ' {
							return nil, false // net/mail joins the words with one space
						}
					}
				}
				name = strings.TrimRight(s[start:i], " ")
			}
			i = skipSpaces(s, i)
			if i == len(s) || s[i] != '<' {
				return nil, false
			}
			j, ok := dotAtomAddr(s, i+1)
			if !ok || j == len(s) || s[j] != '>' {
				return nil, false
			}
			out = append(out, &mail.Address{Name: name, Address: s[i+1 : j]})
			i = j + 1
		}
		i = skipSpaces(s, i)
		if i == len(s) {
			return out, true
		}
		if s[i] != ',' {
			return nil, false
		}
		i++
	}
}

// dotAtomAddr returns the end of the addr-spec of dot-atoms ("a.b@c.d") at s[i:].
func dotAtomAddr(s string, i int) (int, bool) {
	at, ok := dotAtomEnd(s, i)
	if !ok || at == len(s) || s[at] != '@' {
		return 0, false
	}
	return dotAtomEnd(s, at+1)
}

// dotAtomEnd returns the end of the dot-atom at s[i:]: atoms of atext joined by single dots.
func dotAtomEnd(s string, i int) (int, bool) {
	for {
		k := atextEnd(s, i)
		if k == i {
			return 0, false
		}
		if k == len(s) || s[k] != '.' {
			return k, true
		}
		i = k + 1
	}
}

// atextEnd returns the end of the run of RFC 5322 atext at s[i:].
func atextEnd(s string, i int) int {
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return i
		}
	}
	return i
}

func skipSpaces(s string, i int) int {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	return i
}

// splitDisplayName reports whether enmime read more mailboxes from raw than raw has items: its
// lenient fallback turns an unquoted display name that contains '@' ("Mikel@Lindsaar
// <raasdnil@gmail.com>") into a mailbox of its own. looseMailbox reads such an item right.
func splitDisplayName(raw string, list []*mail.Address) bool {
	if len(list) < 2 || !strings.Contains(raw, "<") {
		return false
	}
	n := 0
	for _, item := range splitAddressList(stripComments(raw)) {
		if strings.TrimSpace(item) != "" {
			n++
		}
	}
	return len(list) > n
}

// angleCommentRE matches a mailbox written as an angle address followed by a comment and no
// display name: "<mailer-daemon@example.com> (Mail Delivery System)".
var angleCommentRE = regexp.MustCompile(`^\s*<[^<>]*>\s*\((.*)\)\s*$`)

// mailboxes normalizes what enmime read from raw. A mailbox without a display name but with a
// comment after its angle address takes the comment as its name, as net/mail already does for
// "addr (Name)": both are the RFC 822 way of naming the sender, and bounces still use them.
func mailboxes(raw string, list []*mail.Address) []Address {
	var items []string
	if strings.Contains(raw, "(") {
		items = splitAddressList(raw)
		if len(items) != len(list) {
			items = nil
		}
	}
	var out []Address
	for i, a := range list {
		name := a.Name
		if name == "" && items != nil {
			if m := angleCommentRE.FindStringSubmatch(items[i]); m != nil {
				name, _ = decodeWords(strings.TrimSpace(m[1]))
			}
		}
		if n, good := normalizeMailbox(a.Address, name); good {
			out = append(out, n)
		}
	}
	return out
}

// stripComments removes RFC 5322 comments (nested parentheses) outside quoted strings.
func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	quoted, depth := false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
			continue
		case c == '"' && depth == 0:
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
			continue
		case c == ')' && depth > 0:
			depth--
			continue
		}
		if depth == 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// splitAddressList splits at commas that are outside quotes, comments and angle brackets, and
// drops group syntax ("name:" prefixes and ";").
func splitAddressList(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, angle, comment := false, 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(c)
			i++
			cur.WriteByte(s[i])
			continue
		case c == '"' && comment == 0:
			quoted = !quoted
		case quoted:
		case c == '(':
			comment++
		case c == ')' && comment > 0:
			comment--
		case comment > 0:
		case c == '<':
			angle++
		case c == '>' && angle > 0:
			angle--
		case angle == 0 && (c == ',' || c == ';'):
			out = append(out, cur.String())
			cur.Reset()
			continue
		case angle == 0 && c == ':':
			cur.Reset() // group name
			continue
		}
		cur.WriteByte(c)
	}
	return append(out, cur.String())
}

var (
	angleAddrRE = regexp.MustCompile(`<\s*([^<>\s]*?)\s*>`)
	bareAddrRE  = regexp.MustCompile(`[^\s<>()",;:\[\]]+@[^\s<>()",;:]+`)
	atomRE      = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
	// localRE is the bare local part accepted without brackets ("postmaster"): stricter than
	// an atom, so that stray words of a broken header are not taken for addresses.
	localRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// obsSpaceRE matches white space around the dots and '@' of an obsolete addr-spec.
	obsSpaceRE = regexp.MustCompile(`\s*([.@])\s*`)
)

// Results of looseMailbox.
const (
	mailboxNone  = iota // nothing that looks like an address
	mailboxFound        // an address
	mailboxNull         // the null address "<>" (bounces): nothing to report, nothing wrong
)

// looseMailbox finds one address in a mailbox that net/mail refused: unquoted specials in the
// display name, 8-bit bytes, stray brackets, or a local part without a domain ("postmaster",
// "Mail Delivery Subsystem <MAILER-DAEMON>"), which bounces carry.
func looseMailbox(item string) (Address, int) {
	var addr, name string
	if !strings.ContainsAny(item, "<>\"") {
		// RFC 5322 obs-local-part / obs-domain allow white space around the dots and the
		// '@' ("jdoe@test   . example"); read such a bare addr-spec as one address.
		if c := obsSpaceRE.ReplaceAllString(strings.TrimSpace(item), "$1"); strings.Count(c, "@") == 1 && !strings.ContainsAny(c, " \t") {
			item = c
		}
	}
	if m := angleAddrRE.FindStringSubmatchIndex(item); m != nil {
		addr = item[m[2]:m[3]]
		name = item[:m[0]] + item[m[1]:]
		if addr == "" {
			return Address{}, mailboxNull
		}
		// RFC 5322 obs-angle-addr: a source route before the address
		// ("<@relay.example,@b.example:mary@example.net>") is not part of it.
		if strings.HasPrefix(addr, "@") {
			if i := strings.LastIndexByte(addr, ':'); i >= 0 {
				addr = addr[i+1:]
			}
		}
		if !strings.Contains(addr, "@") && !atomRE.MatchString(addr) {
			return Address{}, mailboxNone
		}
	} else if m := bareAddrRE.FindStringIndex(item); m != nil {
		addr = item[m[0]:m[1]]
		name = item[:m[0]] + item[m[1]:]
	} else if t := strings.TrimSpace(item); localRE.MatchString(t) {
		addr = t
	} else {
		return Address{}, mailboxNone
	}
	name = strings.Trim(strings.TrimSpace(name), `"' `)
	name, _ = decodeWords(name)
	if n, ok := normalizeMailbox(addr, name); ok {
		return n, mailboxFound
	}
	return Address{}, mailboxNone
}

// normalizeMailbox lower-cases the address, decodes an IDN domain to Unicode and computes its
// ASCII (Punycode) form. ok is false for an empty address.
func normalizeMailbox(addr, name string) (Address, bool) {
	addr = strings.TrimSpace(strings.Trim(strings.TrimSpace(addr), "<>"))
	if strings.Contains(name, "=?") {
		// net/mail leaves words it cannot decode (8-bit bytes inside, bad padding) as they are.
		name, _ = decodeWords(name)
	}
	name, _ = validUTF8(strings.TrimSpace(name))
	// A quoted string left whole by a lenient parse; quotes that are part of the name (an
	// encoded word may hold them: `ФГУП "СибНИА"`) stay.
	if len(name) >= 2 && name[0] == '"' && name[len(name)-1] == '"' {
		name = strings.TrimSpace(name[1 : len(name)-1])
	}
	if addr == "" {
		return Address{}, false
	}
	addr, _ = validUTF8(addr)
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || at == len(addr)-1 {
		return Address{Address: strings.ToLower(addr), Name: name}, true
	}
	local := strings.ToLower(addr[:at])
	ascii, uni := domainForms(addr[at+1:])
	return Address{Address: local + "@" + uni, Name: name, DomainASCII: ascii}, true
}

// domainForms returns the ASCII (Punycode) and Unicode forms of a domain, lower case. Address
// literals ([192.0.2.1]) and domains IDNA refuses are returned lower-cased as they are.
func domainForms(d string) (ascii, uni string) {
	d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
	if d == "" || strings.HasPrefix(d, "[") || plainDomain(d) {
		return d, d
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		if a, err = idna.Punycode.ToASCII(d); err != nil {
			a = d
		}
	}
	a = strings.ToLower(a)
	u, err := idna.Punycode.ToUnicode(a)
	if err != nil {
		u = d
	}
	return a, strings.ToLower(u)
}

// plainDomain reports whether IDNA leaves d, a lower-case domain, as it is both ways: labels
// of 1 to 63 letters, digits and inner hyphens, none of them Punycode ("xn--"), which is what
// nearly every address has. (FuzzDomainForms holds it to the IDNA result.)
func plainDomain(d string) bool {
	if len(d) > 253 {
		return false
	}
	start := 0
	for i := 0; i <= len(d); i++ {
		if i < len(d) && d[i] != '.' {
			c := d[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
			continue
		}
		label := d[start:i]
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
			len(label) >= 4 && label[2] == '-' && label[3] == '-' {
			return false
		}
		start = i + 1
	}
	return true
}

// NewAddress normalizes a bare address (an SMTP envelope path, "local@domain" with or without
// angle brackets) and a display name the way Parse normalizes header mailboxes: lower case, the
// domain in Unicode in Address and in Punycode in DomainASCII. ok is false for an empty address.
func NewAddress(addr, name string) (a Address, ok bool) {
	return normalizeMailbox(addr, name)
}
