package crm

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/mailid"
)

// Shape of the generated mail. The numbers are what a mid-sized inbound sales/support address
// sees: a few hundred correspondents, most of them at a few dozen companies, some on free mail.
const (
	companyCount  = 50
	senderCount   = 400
	freeMailShare = 0.15 // of senders
	replyShare    = 0.4  // of messages: replies into an open thread
	openThreads   = 200  // replies go to one of the most recent threads
	fileEvery     = 5    // every fifth message carries a stored attachment
	tenant        = "bench"
	inbox         = "sales@in.example.com"
)

var (
	companyWords = []string{
		"acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne", "wonka", "tyrell",
		"cyberdyne", "soylent", "aperture", "blackmesa", "gringotts", "monarch", "oscorp", "pied-piper", "prestige", "sterling",
		"duff", "krusty", "nakatomi", "omni", "rekall", "massive", "virtucon", "zorg", "bluth", "dunder",
		"vehement", "spacely", "cogswell", "gekko", "wernham", "ollivander", "paper-street", "los-pollos", "bubba-gump", "genco",
		"ingen", "weyland", "yutani", "tessier", "hanso", "dharma", "abstergo", "kaibacorp", "shinra", "veidt",
	}
	tlds          = []string{".com", ".io", ".de", ".co.uk", ".fr", ".nl", ".com.au", ".es"}
	countries     = map[string]string{".com": "US", ".io": "US", ".de": "DE", ".co.uk": "GB", ".fr": "FR", ".nl": "NL", ".com.au": "AU", ".es": "ES"}
	sizes         = []string{"11-50", "51-200", "201-500", "1001-5000", "250", "40"}
	industries    = []string{"Software", "Manufacturing", "Retail", "Logistics", "Finance", "Healthcare"}
	freeMail      = []string{"gmail.com", "outlook.com", "yahoo.com", "gmx.de", "proton.me"}
	firstNames    = []string{"Ann", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal", "Lena", "Marta", "Nils", "Olga", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Victor", "Wei", "Yusuf", "Zoë"}
	lastNames     = []string{"Adams", "Bauer", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hansen", "Ivanova", "Jansen", "Kowalski", "Lopez", "Müller", "Nowak", "O'Brien", "Petrov", "Rossi", "Schmidt", "Tanaka", "Weber"}
	subjects      = []string{"Pricing for %d seats", "Question about the API limits", "Invoice %d", "Demo next week?", "Renewal of contract %d", "Integration with our ERP", "Support ticket %d: login fails", "Partnership proposal", "Quote request: %d units", "Data processing agreement"}
	mailerDomains = []string{"mail.gmail.com", "EUR01.prod.outlook.com", "mx.example.net", "smtp.mailgun.org"}
)

// company is one sender domain.
type company struct {
	domain, name, country, size, industry string
	free                                  bool
}

// sender is one correspondent.
type sender struct {
	email, name string
	co          *company
}

// corpus is a generated message stream and what a connector must end up holding for it.
type corpus struct {
	msgs []*events.Enriched
	// Distinct keys of the stream, the expected object counts: external ids, sender addresses,
	// non-free-mail company domains, thread keys and stored (non-inline) attachments.
	senders, companies, threads, files int
}

// newCorpus generates n distinct messages, deterministic from seed.
func newCorpus(seed uint64, n int) corpus {
	rng := rand.New(rand.NewPCG(seed, 0x6d61696c70697065))
	companies := make([]*company, 0, companyCount+len(freeMail))
	for i := range companyCount {
		tld := tlds[rng.IntN(len(tlds))]
		w := companyWords[i%len(companyWords)]
		companies = append(companies, &company{
			domain: w + tld, name: titleCase(w) + " " + []string{"Inc", "GmbH", "Ltd", "SA", "BV"}[rng.IntN(5)],
			country: countries[tld], size: sizes[rng.IntN(len(sizes))], industry: industries[rng.IntN(len(industries))],
		})
	}
	for _, d := range freeMail {
		companies = append(companies, &company{domain: d, free: true})
	}
	senders := make([]sender, 0, senderCount)
	seen := map[string]bool{}
	for len(senders) < senderCount {
		first, last := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
		var co *company
		if rng.Float64() < freeMailShare {
			co = companies[companyCount+rng.IntN(len(freeMail))]
		} else {
			// Skewed: a few companies write a lot, most a little, as in real inboxes.
			co = companies[int(float64(companyCount)*rng.Float64()*rng.Float64())]
		}
		local := asciiLocal(first) + "." + asciiLocal(last)
		if co.free {
			local += fmt.Sprint(rng.IntN(100))
		}
		email := local + "@" + co.domain
		if seen[email] {
			continue
		}
		seen[email] = true
		senders = append(senders, sender{email: email, name: first + " " + last, co: co})
	}

	type thread struct {
		root, subject string
		refs          []string
		from          sender
	}
	var threads []*thread
	base := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	c := corpus{msgs: make([]*events.Enriched, 0, n)}
	usedSenders, usedCompanies := map[string]bool{}, map[string]bool{}
	for i := range n {
		at := base.Add(time.Duration(i)*47*time.Second + time.Duration(rng.IntN(30))*time.Second)
		mid := fmt.Sprintf("%s.%d.%016x@%s", at.Format("20060102150405"), i, rng.Uint64(), mailerDomains[rng.IntN(len(mailerDomains))])
		var th *thread
		var from sender
		if len(threads) > 0 && rng.Float64() < replyShare {
			th = threads[max(0, len(threads)-openThreads)+rng.IntN(min(len(threads), openThreads))]
			from = th.from
			if !from.co.free && rng.IntN(3) == 0 {
				// A colleague of the first sender joins the thread.
				for _, s := range senders[rng.IntN(len(senders)):] {
					if s.co == from.co {
						from = s
						break
					}
				}
			}
		} else {
			from = senders[rng.IntN(len(senders))]
			subject := subjects[rng.IntN(len(subjects))]
			if strings.Contains(subject, "%d") {
				subject = fmt.Sprintf(subject, 10+rng.IntN(990))
			}
			th = &thread{root: mid, subject: subject, from: from}
			threads = append(threads, th)
			c.threads++
		}
		rec := message(i, mid, at, th.root, th.subject, th.refs, from, i%fileEvery == 0)
		if mid != th.root {
			th.refs = append(th.refs, mid)
		} else {
			th.refs = []string{mid}
		}
		c.msgs = append(c.msgs, rec)
		if i%fileEvery == 0 {
			c.files++
		}
		if !usedSenders[from.email] {
			usedSenders[from.email] = true
			c.senders++
		}
		if !from.co.free && !usedCompanies[from.co.domain] {
			usedCompanies[from.co.domain] = true
			c.companies++
		}
	}
	return c
}

// message builds message i of a thread: a reply when mid is not the root (refs then holds the
// thread's earlier ids, oldest first).
func message(i int, mid string, at time.Time, root, subject string, refs []string, from sender, withFile bool) *events.Enriched {
	addr := &events.Address{Address: from.email, Name: from.name, DomainASCII: from.co.domain}
	parsed := events.Parsed{
		ID:         fmt.Sprintf("01JC%022d", i),
		ExternalID: mailid.ExternalID(mid, from.email),
		ThreadKey:  root, Tenant: tenant, RouteID: "sales",
		ReceivedAt: at.Add(2 * time.Second), ParsedAt: at.Add(3 * time.Second),
		Envelope: events.Envelope{
			MailFrom: from.email, RcptTo: []string{inbox}, ClientIP: "192.0.2.10", Helo: "mx." + from.co.domain, Source: "smtp",
			TLS: &events.TLSInfo{Version: "TLS1.3", Cipher: "TLS_AES_128_GCM_SHA256"},
		},
		MessageID: mid, From: addr, To: []events.Address{{Address: inbox, DomainASCII: "in.example.com"}},
		Subject: subject, Date: &at, DateRaw: at.Format(time.RFC1123Z),
		Authentication: events.Authentication{SPF: "pass", DMARC: "pass"},
		Headers:        []events.Header{{Name: "Subject", Value: subject}, {Name: "Message-ID", Value: "<" + mid + ">"}},
		ParseStatus:    "ok", RawSize: 3000 + int64(i%5000), RawSha256: fmt.Sprintf("%064x", i),
	}
	body := fmt.Sprintf("Hello,\n\nabout %q: could you send us the details by Friday?\n\nBest regards,\n%s\n", subject, from.name)
	if mid != root {
		parsed.Subject = "Re: " + subject
		parsed.InReplyTo = refs[len(refs)-1]
		parsed.References = append([]string(nil), refs...)
		parsed.StrippedText = fmt.Sprintf("Thanks, that helps. One more question (message %d).", i)
		parsed.Text = parsed.StrippedText + "\n\n> " + strings.ReplaceAll(body, "\n", "\n> ")
	} else {
		parsed.StrippedText = body
		parsed.Text = body
	}
	parsed.HTML = "<p>" + strings.ReplaceAll(parsed.Text, "\n", "<br>") + "</p>"
	parsed.HTMLSanitized = parsed.HTML
	if withFile {
		ref := fmt.Sprintf("file:///var/lib/mailpipe/blobs/att/%d", i)
		parsed.Attachments = []events.Attachment{{
			Filename: fmt.Sprintf("quote-%d.pdf", i), ContentType: "application/pdf", SniffedType: "application/pdf",
			Size: 24_000 + int64(i), Sha256: fmt.Sprintf("%064x", i+1), BlobRef: &ref,
		}}
	}
	co := &events.Company{Domain: from.co.domain, FreeMail: from.co.free}
	if !from.co.free {
		co.Name, co.Country, co.Size, co.Industry = from.co.name, from.co.country, from.co.size, from.co.industry
	}
	return &events.Enriched{
		Message: parsed,
		Classification: events.Classification{
			Kind: "human", Evidence: []string{"no auto headers"}, LeadScore: float64(i % 40), Queue: "sales", SLAMinutes: 240,
			RulesVersion: "v1", ClassifiedAt: at.Add(4 * time.Second),
		},
		Enrichment: events.Enrichment{
			Contact:    &events.Contact{Email: from.email, Name: from.name},
			Company:    co,
			Sources:    []events.EnrichmentSource{{Name: "freemail", Status: "ok", DurationMs: 1}},
			EnrichedAt: at.Add(5 * time.Second),
		},
	}
}

func titleCase(w string) string {
	parts := strings.Split(w, "-")
	for i, p := range parts {
		parts[i] = strings.ToUpper(p[:1]) + p[1:]
	}
	return strings.Join(parts, " ")
}

// asciiLocal turns a name into a mailbox local part: lower case ASCII, as people pick them.
func asciiLocal(name string) string {
	r := strings.NewReplacer("é", "e", "ë", "e", "ü", "ue", "ö", "oe", "í", "i", "'", "")
	return strings.ToLower(r.Replace(name))
}
