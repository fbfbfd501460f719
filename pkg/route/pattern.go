package route

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// Kind is the kind of an address pattern. Kinds are ordered from most to least specific; an
// address resolves to the matching route of the most specific kind.
type Kind int

// The pattern kinds.
const (
	// KindExact matches one address, "local@domain".
	KindExact Kind = iota + 1
	// KindPlusTenant, "local+{tenant}@domain", matches local+TAG@domain for a tag that is a valid
	// tenant name, and gives the mail the tenant TAG.
	KindPlusTenant
	// KindPlusAny, "local+*@domain", matches local+TAG@domain for any non-empty tag.
	KindPlusAny
	// KindCatchAll, "*@domain", matches every address at domain.
	KindCatchAll
)

// String returns the kind's name as the admin API and the CLI show it.
func (k Kind) String() string {
	switch k {
	case KindExact:
		return "exact"
	case KindPlusTenant:
		return "plus-tenant"
	case KindPlusAny:
		return "plus-any"
	case KindCatchAll:
		return "catch-all"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Placeholders and wildcards in patterns.
const (
	tenantPlaceholder = "{tenant}"
	wildcard          = "*"
	// tagSeparator splits a local part into base and tag at its first occurrence, as Postfix's
	// recipient_delimiter and the large mailbox providers do.
	tagSeparator = '+'
)

// Limits from RFC 5321 4.5.3.1.
const (
	maxLocalLen  = 64
	maxDomainLen = 253
	maxLabelLen  = 63
)

// Pattern is a parsed, canonical address pattern.
type Pattern struct {
	Kind Kind
	// Local is the lower-cased, NFC local part; for plus patterns the part before "+"; empty for
	// a catch-all.
	Local string
	// Domain is the domain in lower-case IDNA A-label (Punycode) form, without a trailing dot.
	Domain string
}

// ParsePattern parses s (see the package doc for the four forms). Surrounding space and angle
// brackets are ignored. The error says what is wrong in words an operator can act on.
func ParsePattern(s string) (Pattern, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if s == "" {
		return Pattern{}, errors.New("must not be empty")
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Pattern{}, fmt.Errorf("%q has no \"@\": write an address, local+{tenant}@domain, local+*@domain or *@domain", s)
	}
	local, domain := s[:at], s[at+1:]
	d, err := canonicalDomain(domain)
	if err != nil {
		return Pattern{}, err
	}
	if local == "" {
		return Pattern{}, fmt.Errorf("%q has no local part: write *@%s for a catch-all", s, d)
	}
	if local == wildcard {
		return Pattern{Kind: KindCatchAll, Domain: d}, nil
	}
	p := Pattern{Kind: KindExact, Domain: d}
	if i := strings.IndexByte(local, tagSeparator); i >= 0 {
		if j := strings.LastIndexByte(local, tagSeparator); j != i && (local[j+1:] == wildcard || local[j+1:] == tenantPlaceholder) {
			return Pattern{}, fmt.Errorf(`%q: a plus pattern's local part must not contain another "+": the tag starts at the first "+"`, s)
		}
		switch tag := local[i+1:]; tag {
		case tenantPlaceholder:
			p.Kind, local = KindPlusTenant, local[:i]
		case wildcard:
			p.Kind, local = KindPlusAny, local[:i]
		default:
			if strings.ContainsAny(tag, "{}") {
				return Pattern{}, fmt.Errorf("%q: the only placeholder is {tenant}, as the whole tag (local+{tenant}@domain)", s)
			}
		}
		if p.Kind != KindExact && local == "" {
			return Pattern{}, fmt.Errorf("%q: a plus pattern needs a local part before \"+\"", s)
		}
	}
	if err := checkLocal(local, p.Kind != KindExact); err != nil {
		return Pattern{}, fmt.Errorf("%q: %w", s, err)
	}
	p.Local = foldLocal(local)
	return p, nil
}

// String returns the canonical form of p, which ParsePattern parses back to p.
func (p Pattern) String() string {
	switch p.Kind {
	case KindPlusTenant:
		return p.Local + "+" + tenantPlaceholder + "@" + p.Domain
	case KindPlusAny:
		return p.Local + "+" + wildcard + "@" + p.Domain
	case KindCatchAll:
		return wildcard + "@" + p.Domain
	}
	return p.Local + "@" + p.Domain
}

// key identifies the set of addresses a pattern matches: two routes with the same key would
// compete for the same mail, so a table holds at most one route per key. Both plus kinds share a
// key, since local+{tenant}@d and local+*@d match the same addresses.
func (p Pattern) key() string {
	switch p.Kind {
	case KindPlusTenant, KindPlusAny:
		return "plus:" + p.Local + "@" + p.Domain
	case KindCatchAll:
		return "all:" + p.Domain
	}
	return "exact:" + p.Local + "@" + p.Domain
}

// checkLocal rejects what cannot be part of a pattern's local part. base is true for the part
// before the tag of a plus pattern, which must not hold another separator: the tag starts at the
// first "+" of an address.
func checkLocal(local string, base bool) error {
	if len(local) > maxLocalLen {
		return fmt.Errorf("the local part is longer than %d bytes", maxLocalLen)
	}
	if !utf8.ValidString(local) {
		return errors.New("the local part is not valid UTF-8")
	}
	if strings.HasPrefix(local, `"`) {
		return errors.New("quoted local parts are not supported")
	}
	if base && strings.IndexByte(local, tagSeparator) >= 0 {
		return errors.New(`a plus pattern's local part must not contain another "+": the tag starts at the first "+"`)
	}
	for _, r := range local {
		switch {
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return errors.New("the local part contains space or control characters")
		case strings.ContainsRune(`"(),:;<>@[\]`, r):
			return fmt.Errorf("the local part contains %q, which needs quoting in an address", r)
		case r == '*':
			return errors.New(`"*" is allowed only as the whole local part (*@domain) or the whole tag (local+*@domain)`)
		case r == '{' || r == '}':
			return errors.New("the only placeholder is {tenant}, as the whole tag (local+{tenant}@domain)")
		}
	}
	return nil
}

// canonicalDomain returns d in lower-case A-label form, or an error saying why it is not a domain
// mailpipe can receive mail for.
func canonicalDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	switch {
	case d == "":
		return "", errors.New("the domain is missing")
	case strings.HasPrefix(d, "["):
		return "", fmt.Errorf("domain %q: address literals are not supported", d)
	case !utf8.ValidString(d):
		return "", fmt.Errorf("domain %q is not valid UTF-8", d)
	case strings.Contains(d, "*"):
		return "", fmt.Errorf("domain %q: wildcard domains are not supported; add a *@domain route for each domain", d)
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("domain %q is not a valid domain name: %w", d, err)
	}
	// The A-label form must be stable, or the same domain could be stored in two spellings.
	if again, err := idna.Lookup.ToASCII(a); err != nil || again != a {
		return "", fmt.Errorf("domain %q has no stable IDNA form", d)
	}
	if len(a) > maxDomainLen {
		return "", fmt.Errorf("domain %q is longer than %d bytes", d, maxDomainLen)
	}
	for label := range strings.SplitSeq(a, ".") {
		if label == "" {
			return "", fmt.Errorf("domain %q has an empty label", d)
		}
		if len(label) > maxLabelLen {
			return "", fmt.Errorf("domain %q has a label longer than %d bytes", d, maxLabelLen)
		}
	}
	return a, nil
}

// lookupDomain is canonicalDomain for addresses being resolved: a domain IDNA refuses is
// lower-cased as it is, which matches no route (every route's domain passed canonicalDomain).
func lookupDomain(d string) string {
	d = strings.TrimSuffix(d, ".")
	if isLowerASCII(d) {
		return d
	}
	if a, err := idna.Lookup.ToASCII(d); err == nil {
		return a
	}
	return strings.ToLower(d)
}

// foldLocal folds a local part for comparison: Unicode NFC, then lower case. ASCII, the common
// case, is lower-cased without allocating when it already is.
func foldLocal(s string) string {
	if isLowerASCII(s) {
		return s
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return strings.ToLower(norm.NFC.String(s))
		}
	}
	return strings.ToLower(s)
}

func isLowerASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// splitAddress splits a recipient ("local@domain", optionally in angle brackets) into its folded
// local part and canonical domain. ok is false when addr is not of that shape.
func splitAddress(addr string) (local, domain string, ok bool) {
	addr = strings.TrimSpace(addr)
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">")
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", false
	}
	return foldLocal(addr[:at]), lookupDomain(addr[at+1:]), true
}
