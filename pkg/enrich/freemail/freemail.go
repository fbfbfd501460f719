// Package freemail knows the domains of free-mail providers: an address there belongs to a
// person, not to a company, so the enricher must not create a company for its domain.
//
// The built-in list holds the large consumer providers and their regional domains. Operators
// extend it (or take entries out) with a [List] read from a file, one domain per line (see
// [Parse]). Lookups are pure and safe for concurrent use.
package freemail

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/net/idna"
)

// Is reports whether domain (ASCII or Unicode, any case, with or without a trailing dot)
// is on the built-in list. Subdomains do not count: a tenant domain such as corp.outlook.com
// belongs to an organisation, not to the provider's consumers.
func Is(domain string) bool { return builtin(normalize(domain)) }

// List is the built-in list with an operator's additions and removals. The zero value and a
// nil *List are the built-in list. A List is immutable once built, so it is safe for
// concurrent use.
type List struct {
	added   map[string]bool
	removed map[string]bool
}

// Is reports whether domain is a free-mail provider's on l: added by the file, or built in
// and not removed by it. Domains are compared as Is compares them.
func (l *List) Is(domain string) bool {
	d := normalize(domain)
	if l == nil {
		return builtin(d)
	}
	if l.removed[d] {
		return false
	}
	return l.added[d] || builtin(d)
}

// Changes returns how many domains the file added and removed.
func (l *List) Changes() (added, removed int) {
	if l == nil {
		return 0, 0
	}
	return len(l.added), len(l.removed)
}

// Parse reads an operator's list: one domain per line, extending the built-in list. A line
// "!domain" takes a built-in domain out (for a provider the operator treats as companies).
// Blank lines and everything after '#' are ignored. Domains may be Unicode or Punycode, any
// case. Every bad line is reported with its number, joined; the list is not used then.
//
//	# extra providers for our market
//	mail.ee
//	!gmx.de   # we sell to GMX's business customers
func Parse(r io.Reader) (*List, error) {
	l := &List{added: map[string]bool{}, removed: map[string]bool{}}
	sc := bufio.NewScanner(r)
	var errs []error
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		remove := strings.HasPrefix(line, "!")
		d := normalize(strings.TrimPrefix(line, "!"))
		if err := check(d); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %q: %w", n, line, err))
			continue
		}
		if remove {
			l.removed[d] = true
			delete(l.added, d)
		} else {
			l.added[d] = true
			delete(l.removed, d)
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("reading the list: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return l, nil
}

// LoadFile reads an operator's list from path (see [Parse]); errors name the file.
func LoadFile(path string) (*List, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the free-mail list: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only: nothing to flush
	l, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("free-mail list %s: %w", path, err)
	}
	return l, nil
}

// check reports what is wrong with a normalized domain from a list file.
func check(d string) error {
	switch {
	case d == "":
		return errors.New("no domain")
	case strings.ContainsAny(d, " \t@/:"):
		return errors.New("not a domain name (write the bare domain, e.g. mail.example)")
	case !strings.Contains(d, "."):
		return errors.New("not a domain name: it has no dot")
	}
	return nil
}

// normalize lower-cases domain, trims space and a trailing dot, and turns a Unicode domain into
// its ASCII (Punycode) form, the form the list is kept in.
func normalize(domain string) string {
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			if a, err := idna.Lookup.ToASCII(d); err == nil {
				return a
			}
			return d
		}
	}
	return d
}

// builtin reports whether the normalized domain d is on the built-in list.
func builtin(d string) bool {
	switch d {
	case
		// Google, Microsoft, Apple, Yahoo, AOL
		"gmail.com", "googlemail.com",
		"outlook.com", "hotmail.com", "live.com", "msn.com", "passport.com",
		"hotmail.co.uk", "hotmail.fr", "hotmail.de", "hotmail.it", "hotmail.es",
		"outlook.de", "outlook.fr", "live.co.uk", "live.fr", "live.de",
		"icloud.com", "me.com", "mac.com",
		"yahoo.com", "ymail.com", "rocketmail.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de",
		"yahoo.it", "yahoo.es", "yahoo.co.jp", "yahoo.com.br", "yahoo.co.in",
		"aol.com", "aim.com",
		// Privacy-focused and other international providers
		"proton.me", "protonmail.com", "protonmail.ch", "pm.me", "tutanota.com", "tuta.io",
		"zoho.com", "zohomail.com", "mail.com", "email.com", "gmx.com", "gmx.net", "gmx.de",
		"gmx.at", "gmx.ch", "web.de", "t-online.de", "freenet.de", "posteo.de", "mailbox.org",
		"orange.fr", "wanadoo.fr", "free.fr", "laposte.net", "sfr.fr",
		"libero.it", "virgilio.it", "tiscali.it",
		"mail.ru", "inbox.ru", "list.ru", "bk.ru", "yandex.ru", "yandex.com", "ya.ru", "rambler.ru",
		"qq.com", "foxmail.com", "163.com", "126.com", "yeah.net", "sina.com", "sohu.com",
		"naver.com", "daum.net", "hanmail.net",
		"rediffmail.com", "seznam.cz", "wp.pl", "o2.pl", "interia.pl", "onet.pl",
		"uol.com.br", "bol.com.br", "terra.com.br",
		"hushmail.com", "fastmail.com", "fastmail.fm", "gmx.us":
		return true
	}
	return false
}
