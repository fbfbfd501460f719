package mime

import (
	"strings"
	"testing"

	"golang.org/x/net/idna"
)

// FuzzDomainForms checks domainForms' shortcut for plain domains against IDNA.
func FuzzDomainForms(f *testing.F) {
	for _, s := range []string{"example.com", "EXAMPLE.org.", "a-b.c", "-a.b", "a..b", "xn--bcher-kva.ch", "ab--c.d", "123.45", "x.y-", "bücher.de", "a_b.c", strings.Repeat("a", 64) + ".com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
		if d == "" || strings.HasPrefix(d, "[") || !plainDomain(d) {
			return
		}
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			t.Fatalf("plainDomain(%q) but IDNA refuses it: %v", d, err)
		}
		u, err := idna.Punycode.ToUnicode(strings.ToLower(a))
		if err != nil || strings.ToLower(a) != d || strings.ToLower(u) != d {
			t.Fatalf("plainDomain(%q) but IDNA gives %q, %q (%v)", d, a, u, err)
		}
	})
}
