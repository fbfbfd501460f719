// Package role recognises role accounts: addresses such as info@, sales@, support@ or
// noreply@ that a team, a function or a machine reads rather than one person. A CRM should not
// create a person from them, and lead routing treats them differently.
//
// Recognition is a table lookup on the local part, so it is pure, allocation-light and safe for
// concurrent use.
package role

import "strings"

// Roles, as written to Contact.role on mail.enriched.v1.
const (
	Info          = "info"
	Sales         = "sales"
	Support       = "support"
	NoReply       = "noreply"
	Admin         = "admin"
	Postmaster    = "postmaster"
	Billing       = "billing"
	HR            = "hr"
	Marketing     = "marketing"
	Legal         = "legal"
	Security      = "security"
	Notifications = "notifications"
)

// Of returns the role of addr (an address or a bare local part) and true when it is a role
// account, or "" and false for a person's mailbox. The local part is read case-insensitively,
// without a +tag, without the separators '.', '-' and '_' and without trailing digits, so
// "No-Reply+42@", "do_not_reply@" and "support2@" are recognised. Local parts beginning with
// noreply or donotreply ("noreply-7f3a@") are no-reply senders too.
func Of(addr string) (string, bool) {
	local := addr
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local = local[:i]
	}
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
	}
	local = strings.Trim(local, `"`)
	var b strings.Builder
	b.Grow(len(local))
	for _, r := range strings.ToLower(local) {
		switch r {
		case '.', '-', '_':
		default:
			b.WriteRune(r)
		}
	}
	key := strings.TrimRight(b.String(), "0123456789")
	if r, ok := table[key]; ok {
		return r, true
	}
	for _, p := range noReplyPrefixes {
		if strings.HasPrefix(key, p) {
			return NoReply, true
		}
	}
	return "", false
}

// noReplyPrefixes catch generated no-reply senders such as noreply-7f3a@ or donotreply.billing@.
var noReplyPrefixes = [...]string{"noreply", "donotreply", "dontreply"}

// table maps a normalized local part to its role. Entries are exact matches: a prefix match
// would take anna@ for an a… role or support.jane@ for support. Names in the main languages of
// the corpus (German, French, Spanish, Portuguese) sit next to the English ones.
//
// It is never written after initialisation.
var table = func() map[string]string {
	m := map[string]string{}
	add := func(role string, locals ...string) {
		for _, l := range locals {
			m[l] = role
		}
	}
	add(Info, "info", "information", "infos", "contact", "contacts", "contactus", "hello", "hi",
		"hey", "enquiries", "enquiry", "inquiries", "inquiry", "general", "office", "mail", "email",
		"team", "welcome", "reception", "kontakt", "contato", "contacto", "bonjour", "hola")
	add(Sales, "sales", "sale", "vertrieb", "ventas", "ventes", "vendas", "bizdev", "business",
		"partners", "partner", "partnerships", "orders", "order", "quotes", "quote", "purchasing",
		"procurement", "shop", "store", "commercial", "verkauf")
	add(Support, "support", "help", "helpdesk", "service", "services", "customerservice",
		"customersupport", "customercare", "care", "servicedesk", "feedback", "techsupport", "tech",
		"kundenservice", "soporte", "suporte", "assistance", "itsupport", "success", "customersuccess")
	add(NoReply, "noreply", "donotreply", "dontreply", "notreply", "noresponse", "bounce", "bounces")
	add(Admin, "admin", "administrator", "administration", "root", "webmaster", "hostmaster",
		"sysadmin", "it", "ops", "devops", "dns")
	add(Postmaster, "postmaster", "mailerdaemon", "mailer", "mailadmin")
	add(Billing, "billing", "bill", "bills", "invoice", "invoices", "invoicing", "accounts",
		"accounting", "accountspayable", "accountsreceivable", "ap", "ar", "finance", "payments",
		"payment", "rechnung", "rechnungen", "buchhaltung", "facturation", "factures", "facturacion",
		"tax")
	add(HR, "hr", "jobs", "job", "careers", "career", "recruiting", "recruitment", "recruiter",
		"talent", "hiring", "people", "humanresources", "apply", "applications", "payroll",
		"karriere", "bewerbung", "rh", "empleo")
	add(Marketing, "marketing", "press", "media", "pr", "news", "newsletter", "newsletters",
		"events", "social", "community", "comms", "communications", "presse", "prensa")
	add(Legal, "legal", "privacy", "compliance", "gdpr", "dpo", "dataprotection", "datenschutz",
		"copyright", "dmca", "trademark", "juridique")
	add(Security, "security", "abuse", "soc", "cert", "csirt", "phishing", "spam", "fraud")
	add(Notifications, "notifications", "notification", "notify", "alerts", "alert", "updates",
		"automated", "system", "robot", "bot", "daemon", "calendar", "reminders", "digest")
	return m
}()
