package route

import (
	"errors"
	"fmt"
	"strings"
)

// NullSender is the sender pattern that matches the null reverse-path (MAIL FROM:<>), which
// bounces and other delivery notifications use.
const NullSender = "<>"

// canonicalSender checks one allow/deny sender pattern and returns its canonical form. The forms
// are an exact address (alice@example.com), every sender at a domain (*@example.com), every
// sender at any subdomain of a domain (*@*.example.com, not example.com itself), and
// [NullSender].
func canonicalSender(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == NullSender {
		return s, nil
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if s == "" {
		return "", errors.New("must not be empty (write <> for the null sender of bounces)")
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", fmt.Errorf("%q has no \"@\": write alice@example.com, *@example.com or *@*.example.com", s)
	}
	local, domain := s[:at], s[at+1:]
	sub := false
	if rest, ok := strings.CutPrefix(domain, "*."); ok {
		sub, domain = true, rest
	}
	d, err := canonicalDomain(domain)
	if err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	if sub {
		if local != wildcard {
			return "", fmt.Errorf("%q: a subdomain wildcard needs \"*\" as the local part (*@*.%s)", s, d)
		}
		return "*@*." + d, nil
	}
	if local == wildcard {
		return "*@" + d, nil
	}
	if local == "" {
		return "", fmt.Errorf("%q has no local part: write *@%s for every sender there", s, d)
	}
	if strings.HasPrefix(local, `"`) {
		return "", fmt.Errorf("%q: quoted local parts are not supported", s)
	}
	for _, r := range local {
		if r == '*' {
			return "", fmt.Errorf("%q: \"*\" is allowed only as the whole local part (*@domain)", s)
		}
		if r <= ' ' || r == 0x7f || strings.ContainsRune(`"(),:;<>@[\]`, r) {
			return "", fmt.Errorf("%q: the local part contains %q, which needs quoting in an address", s, r)
		}
	}
	return foldLocal(local) + "@" + d, nil
}

// SenderPolicy is a route's allow and deny lists, compiled. A sender is refused when it matches
// a deny pattern; otherwise it is accepted when the allow list is empty or it matches an allow
// pattern. A SenderPolicy is immutable and safe for concurrent use.
type SenderPolicy struct {
	allow, deny senderSet
}

// AllowsSender reports whether the route accepts mail from the envelope sender from (a bare
// address or "" / "<>" for the null sender). An address that cannot be parsed matches only an
// empty allow list.
func (p *SenderPolicy) AllowsSender(from string) bool {
	if p == nil {
		return true
	}
	if p.deny.matches(from) {
		return false
	}
	return p.allow.empty() || p.allow.matches(from)
}

// compileSenders builds the policy of canonical allow and deny lists; nil when both are empty.
func compileSenders(allow, deny []string) *SenderPolicy {
	if len(allow) == 0 && len(deny) == 0 {
		return nil
	}
	return &SenderPolicy{allow: newSenderSet(allow), deny: newSenderSet(deny)}
}

type senderSet struct {
	null     bool
	exact    map[string]struct{}
	domains  map[string]struct{}
	suffixes []string // ".example.com" for *@*.example.com
}

func newSenderSet(patterns []string) senderSet {
	s := senderSet{exact: map[string]struct{}{}, domains: map[string]struct{}{}}
	for _, p := range patterns {
		switch {
		case p == NullSender:
			s.null = true
		case strings.HasPrefix(p, "*@*."):
			s.suffixes = append(s.suffixes, p[len("*@*"):])
		case strings.HasPrefix(p, "*@"):
			s.domains[p[len("*@"):]] = struct{}{}
		default:
			s.exact[p] = struct{}{}
		}
	}
	return s
}

func (s senderSet) empty() bool {
	return !s.null && len(s.exact) == 0 && len(s.domains) == 0 && len(s.suffixes) == 0
}

func (s senderSet) matches(from string) bool {
	from = strings.TrimSpace(from)
	if from == "" || from == NullSender {
		return s.null
	}
	local, domain, ok := splitAddress(from)
	if !ok {
		return false
	}
	if _, ok := s.exact[local+"@"+domain]; ok {
		return true
	}
	if _, ok := s.domains[domain]; ok {
		return true
	}
	for _, suf := range s.suffixes {
		if strings.HasSuffix(domain, suf) {
			return true
		}
	}
	return false
}
