package route_test

import (
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/route"
)

func TestParsePattern(t *testing.T) {
	for _, tt := range []struct {
		name, in  string
		kind      route.Kind
		canonical string
		err       string // substring of the error; "" means valid
	}{
		{"exact", "support@in.example.com", route.KindExact, "support@in.example.com", ""},
		{"exact is lower-cased", " <Support@IN.Example.COM.> ", route.KindExact, "support@in.example.com", ""},
		{"exact with a tag", "support+acme@in.example.com", route.KindExact, "support+acme@in.example.com", ""},
		{"plus tenant", "support+{tenant}@in.example.com", route.KindPlusTenant, "support+{tenant}@in.example.com", ""},
		{"plus any", "Deals+*@in.example.com", route.KindPlusAny, "deals+*@in.example.com", ""},
		{"catch-all", "*@in.example.com", route.KindCatchAll, "*@in.example.com", ""},
		{"IDN domain to A-label", "info@Bücher.example", route.KindExact, "info@xn--bcher-kva.example", ""},
		{"A-label stays", "*@xn--bcher-kva.example", route.KindCatchAll, "*@xn--bcher-kva.example", ""},
		{"unicode local part NFC and lower", "JOSE\u0301@example.com", route.KindExact, "jos\u00e9@example.com", ""},
		{"empty", "  ", 0, "", "must not be empty"},
		{"no at", "support", 0, "", `has no "@"`},
		{"no local", "@in.example.com", 0, "", "write *@in.example.com for a catch-all"},
		{"no domain", "support@", 0, "", "domain is missing"},
		{"bad domain", "support@-bad.example", 0, "", "not a valid domain name"},
		{"underscore domain", "support@ex_ample.com", 0, "", "not a valid domain name"},
		{"empty label", "support@a..example", 0, "", "empty label"},
		{"wildcard domain", "*@*.example.com", 0, "", "wildcard domains are not supported"},
		{"address literal", "x@[192.0.2.1]", 0, "", "address literals"},
		{"unknown placeholder", "support+{team}@example.com", 0, "", "the only placeholder is {tenant}"},
		{"placeholder in local", "{tenant}@example.com", 0, "", "the only placeholder is {tenant}"},
		{"star inside local", "sup*@example.com", 0, "", `"*" is allowed only`},
		{"star tag prefix", "support+a*@example.com", 0, "", `"*" is allowed only`},
		{"plus without base", "+*@example.com", 0, "", `needs a local part before "+"`},
		{"double plus base", "a+b+*@example.com", 0, "", `must not contain another "+"`},
		{"space", "sup port@example.com", 0, "", "space or control"},
		{"quoted", `"a b"@example.com`, 0, "", "quoted local parts"},
		{"too long local", strings.Repeat("a", 65) + "@example.com", 0, "", "longer than 64"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := route.ParsePattern(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParsePattern(%q) error = %v, want one containing %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePattern(%q): %v", tt.in, err)
			}
			if p.Kind != tt.kind || p.String() != tt.canonical {
				t.Errorf("ParsePattern(%q) = %v %q, want %v %q", tt.in, p.Kind, p, tt.kind, tt.canonical)
			}
			again, err := route.ParsePattern(p.String())
			if err != nil || again != p {
				t.Errorf("canonical form %q does not parse back: %+v, %v", p, again, err)
			}
		})
	}
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"support@in.example.com", "a+{tenant}@b.c", "a+*@b.c", "*@b.c", "x@Bücher.example", "+@", "a@b@c"} {
		f.Add(s, "Support+Acme@IN.example.com")
	}
	f.Fuzz(func(t *testing.T, pattern, addr string) {
		p, err := route.ParsePattern(pattern)
		if err != nil {
			return
		}
		again, err := route.ParsePattern(p.String())
		if err != nil || again != p {
			t.Fatalf("canonical %q of %q does not parse back: %+v, %v", p, pattern, again, err)
		}
		tenant := "t"
		if p.Kind == route.KindPlusTenant {
			tenant = ""
		}
		s, err := route.NewSnapshot(nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.Validate(route.Spec{Pattern: pattern, Tenant: tenant}.Route())
		if err != nil {
			t.Fatalf("valid pattern %q makes an invalid route: %v", pattern, err)
		}
		s, err = route.NewSnapshot([]events.Route{r})
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := s.Resolve(addr); ok && m.Tenant == "" {
			t.Fatalf("Resolve(%q) on %q matched without a tenant: %+v", addr, pattern, m)
		}
	})
}
