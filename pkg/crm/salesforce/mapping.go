package salesforce

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// Field lengths from describe() of the standard objects; longer values are 400 STRING_TOO_LONG.
const (
	maxAccountName  = 255
	maxWebsite      = 255
	maxFirstName    = 40
	maxLastName     = 80
	maxEmail        = 80
	maxSubject      = 255
	maxDescription  = 32000
	maxTitle        = 255
	maxVersionDesc  = 1000
	maxContentURL   = 1300
	maxExternalID   = 255
	taskSubjectHead = "Email: "
)

// write is one sObject write: the External ID value keying it and the fields sent. Reference
// fields (AccountId, WhoId, WhatId, FirstPublishLocationId) are added when the ids are known.
type write struct {
	key    string
	fields map[string]any
}

// plan is what one message becomes in Salesforce.
type plan struct {
	account *write  // nil without a company domain, or for free-mail domains
	contact *write  // nil without a sender contact
	task    write   // always
	files   []write // one per stored, non-inline attachment
}

// mapping holds the config the mapping depends on.
type mapping struct {
	taskStatus string
	files      bool
}

// build maps rec to its writes. It is deterministic: the same record gives the same writes, so
// a redelivery writes the same values under the same keys.
func (m mapping) build(rec *events.Enriched) plan {
	var p plan
	msg := &rec.Message

	if co := rec.Enrichment.Company; co != nil && !co.FreeMail && co.Domain != "" {
		domain := strings.ToLower(co.Domain)
		name := co.Name
		if name == "" {
			name = domain
		}
		p.account = &write{key: domain, fields: map[string]any{
			"Name":    clip(name, maxAccountName),
			"Website": clip(domain, maxWebsite),
		}}
	}

	if ct := rec.Enrichment.Contact; ct != nil && ct.Email != "" && len(ct.Email) <= maxExternalID {
		addr := strings.ToLower(ct.Email)
		name := ct.Name
		if name == "" && msg.From != nil && strings.EqualFold(msg.From.Address, addr) {
			name = msg.From.Name
		}
		first, last := splitName(name)
		if last == "" {
			last, _, _ = strings.Cut(addr, "@")
		}
		fields := map[string]any{"LastName": clip(last, maxLastName)}
		if first != "" {
			fields["FirstName"] = clip(first, maxFirstName)
		}
		if e, ok := emailField(addr); ok {
			fields["Email"] = e
		}
		p.contact = &write{key: addr, fields: fields}
	}

	subject := strings.TrimSpace(msg.Subject)
	if subject == "" {
		subject = "(no subject)"
	}
	task := map[string]any{
		"Subject":     clip(taskSubjectHead+subject, maxSubject),
		"Description": description(rec),
		"Status":      m.taskStatus,
		"Priority":    "Normal",
		"Type":        "Email",
	}
	if !msg.ReceivedAt.IsZero() {
		task["ActivityDate"] = msg.ReceivedAt.UTC().Format(time.DateOnly)
	}
	if owner := rec.Enrichment.Owner; isUserID(owner) {
		task["OwnerId"] = owner
	}
	p.task = write{key: msg.ExternalID, fields: task}

	if m.files {
		n := 0
		for _, a := range msg.Attachments {
			if a.Inline || a.BlobRef == nil || *a.BlobRef == "" || utf8.RuneCountInString(*a.BlobRef) > maxContentURL {
				continue
			}
			n++
			title := a.Filename
			if title == "" {
				title = "attachment " + strconv.Itoa(n)
			}
			p.files = append(p.files, write{
				key: msg.ExternalID + "-" + strconv.Itoa(n),
				fields: map[string]any{
					"Title":       clip(title, maxTitle),
					"ContentUrl":  *a.BlobRef,
					"Description": clip(fmt.Sprintf("%s, %d bytes, sha256 %s", a.ContentType, a.Size, a.Sha256), maxVersionDesc),
				},
			})
		}
	}
	return p
}

// description is the Task body: the reply's new text (the full text when stripping left
// nothing), cut to fit, and a trailer naming the message and its classification.
func description(rec *events.Enriched) string {
	body := strings.TrimSpace(rec.Message.StrippedText)
	if body == "" {
		body = strings.TrimSpace(rec.Message.Text)
	}
	parts := []string{"mailpipe message " + rec.Message.ID}
	cl := rec.Classification
	if cl.Kind != "" {
		parts = append(parts, "kind "+cl.Kind)
	}
	parts = append(parts, "lead score "+strconv.FormatFloat(cl.LeadScore, 'g', -1, 64))
	if cl.Queue != "" {
		parts = append(parts, "queue "+cl.Queue)
	}
	trailer := strings.Join(parts, ", ")
	if body == "" {
		return clip(trailer, maxDescription)
	}
	trailer = "\n\n--\n" + trailer
	return clip(body, maxDescription-utf8.RuneCountInString(trailer)) + trailer
}

// splitName splits a display name into first and last name: "Last, First" by the comma,
// otherwise the last word is the last name.
func splitName(name string) (first, last string) {
	name = strings.Trim(strings.TrimSpace(name), `"'`)
	if l, f, ok := strings.Cut(name, ","); ok {
		return strings.Join(strings.Fields(f), " "), strings.Join(strings.Fields(l), " ")
	}
	words := strings.Fields(name)
	switch len(words) {
	case 0:
		return "", ""
	case 1:
		return "", words[0]
	}
	return strings.Join(words[:len(words)-1], " "), words[len(words)-1]
}

// emailField returns addr as Salesforce's Email field accepts it: ASCII (an internationalized
// domain in Punycode) and at most 80 characters. A non-ASCII local part has no such form; the
// Contact is then written without Email (its External ID field still holds the address).
func emailField(addr string) (string, bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "", false
	}
	domain, err := idna.Lookup.ToASCII(addr[at+1:])
	if err != nil {
		return "", false
	}
	e := addr[:at] + "@" + domain
	for i := range len(e) {
		if e[i] >= utf8.RuneSelf {
			return "", false
		}
	}
	return e, len(e) <= maxEmail
}

// isUserID reports whether s looks like a Salesforce User id (key prefix 005, 15 or 18
// alphanumerics): only such an owner can be a Task's OwnerId.
func isUserID(s string) bool {
	if (len(s) != 15 && len(s) != 18) || !strings.HasPrefix(s, "005") {
		return false
	}
	for _, r := range s {
		alnum := r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !alnum {
			return false
		}
	}
	return true
}

// clip cuts s to at most n characters.
func clip(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n])
}
