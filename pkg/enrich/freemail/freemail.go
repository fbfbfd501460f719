// Package freemail knows the domains of free-mail providers: an address there belongs to a
// person, not to a company, so the enricher must not create a company for its domain.
//
// The list is small and built in (the large consumer providers and their regional domains);
// a dataset-backed source comes later. Lookups are pure and safe for concurrent use.
package freemail

import "strings"

// Is reports whether domain (ASCII or Unicode, any case, with or without a trailing dot)
// is a free-mail provider's. Subdomains do not count: a tenant domain such as corp.outlook.com
// belongs to an organisation, not to the provider's consumers.
func Is(domain string) bool {
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
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
