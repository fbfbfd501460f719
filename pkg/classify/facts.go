package classify

import (
	"github.com/mailpipe/mailpipe/pkg/enrich/freemail"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/rules"
)

// Facts maps a parsed record, its kind and spam score onto what rule conditions see (what the
// classifier evaluates its rules over; `mailpipe rules simulate` uses it too).
func Facts(msg *events.Parsed, kind string, spamScore float64) rules.Facts {
	f := rules.Facts{
		Subject:      msg.Subject,
		Text:         msg.Text,
		StrippedText: msg.StrippedText,
		Kind:         kind,
		SpamScore:    spamScore,
		Auth: rules.Auth{
			SPF: msg.Authentication.SPF, DMARC: msg.Authentication.DMARC, DMARCPolicy: msg.Authentication.DMARCPolicy,
		},
		Route:      rules.RouteFacts{Tenant: msg.Tenant, RouteID: msg.RouteID, Tag: msg.RouteTag},
		Recipients: msg.Envelope.RcptTo,
	}
	if a := msg.From; a != nil {
		domain := a.DomainASCII
		f.Sender = rules.Sender{Address: a.Address, Domain: domain, Name: a.Name, FreeMail: domain != "" && freemail.Is(domain)}
	}
	for _, d := range msg.Authentication.DKIM {
		f.Auth.DKIM = append(f.Auth.DKIM, rules.DKIM{Domain: d.Domain, Selector: d.Selector, Result: d.Result})
	}
	for _, a := range msg.Attachments {
		f.Attachments = append(f.Attachments, rules.Attachment{Filename: a.Filename, ContentType: a.ContentType, Size: a.Size})
	}
	for _, h := range msg.Headers {
		f.AddHeader(h.Name, h.Value)
	}
	return f
}
