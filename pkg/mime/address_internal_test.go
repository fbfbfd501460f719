package mime

import (
	"net/mail"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/jhillyerd/enmime/v2"
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

var quickAddressSeeds = []string{
	"a@b.c", "John Doe <john@example.com>", `"Doe, John" <j.doe@example.com>, x@y.z`,
	"a@b.c,d@e.f", "<mailer-daemon@example.com>", "John  Doe <j@d.e>", "j@d.e (John)",
	"undisclosed-recipients:;", "John Q. Public <jqp@x.y>", "=?utf-8?q?x?= <a@b.c>",
	"a..b@c.d", ".a@b.c", "a@b", "a@[1.2.3.4]", "Name<a@b.c>", `"" <a@b.c>`, "a@b.c ,",
	"x <a@b.c> y", "a b@c.d", "a@b.c <d@e.f>", "Mikel@Lindsaar <raasdnil@gmail.com>",
}

// FuzzQuickAddressList checks quickAddressList against enmime.ParseAddressList.
func FuzzQuickAddressList(f *testing.F) {
	for _, s := range quickAddressSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkQuickAddressList(t, s)
	})
}

// TestQuickAddressListCorpus checks quickAddressList on the address fields of the corpora.
func TestQuickAddressListCorpus(t *testing.T) {
	var n, quick int
	for _, f := range splitCorpus(t) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fields, _, _ := scanHeaders(raw)
		for _, name := range []string{"From", "Sender", "Reply-To", "To", "Cc"} {
			for _, v := range fieldSet(fields).all(name) {
				n++
				if checkQuickAddressList(t, v) {
					quick++
				}
			}
		}
	}
	t.Logf("%d of %d address fields read by quickAddressList", quick, n)
}

func checkQuickAddressList(t *testing.T, s string) bool {
	t.Helper()
	got, ok := quickAddressList(s)
	if !ok {
		return false
	}
	want, err := enmime.ParseAddressList(s)
	if err != nil {
		t.Errorf("quickAddressList(%q) = %v; enmime: %v", s, addrList(got), err)
		return true
	}
	if !reflect.DeepEqual(addrList(got), addrList(want)) {
		t.Errorf("quickAddressList(%q) = %v; enmime: %v", s, addrList(got), addrList(want))
	}
	return true
}

func addrList(l []*mail.Address) []mail.Address {
	out := make([]mail.Address, len(l))
	for i, a := range l {
		out[i] = *a
	}
	return out
}
