package hubspot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// HubSpot-defined association type ids (associationCategory HUBSPOT_DEFINED) of the email
// engagement's associations, from the v4 associations reference.
const (
	AssocEmailToContact = 198
	AssocEmailToCompany = 186
)

// Email engagement property values the connector sets. An inbound message logged to the CRM is
// INCOMING_EMAIL with status SENT (it was delivered).
const (
	emailDirection = "INCOMING_EMAIL"
	emailStatus    = "SENT"
)

// maxPropertyChars is HubSpot's limit on the length of a text property value (65,536
// characters); the email text is cut to it.
const maxPropertyChars = 65536

// maxAttachmentList bounds the attachment block of the email text, so a message with hundreds
// of parts keeps room for its text.
const maxAttachmentList = 8192

// timestampLayout is the UTC form HubSpot accepts for datetime properties (hs_timestamp).
const timestampLayout = "2006-01-02T15:04:05.000Z"

// truncatedMark ends an email text that was cut to fit maxPropertyChars.
const truncatedMark = "\n[… cut by mailpipe: the text exceeds HubSpot's property limit]"

// contactInput is one input of a contacts batch upsert keyed by email.
type contactInput struct {
	email string
	props map[string]string
}

// companyInput is a company to find by domain or create.
type companyInput struct {
	domain string
	props  map[string]string
}

// mapContact returns the contact of rec's sender, keyed by its lower-case address. There is
// none when the enricher found no usable sender. Names are sent only when known, so an upsert
// never blanks a name the CRM has.
func mapContact(rec *events.Enriched) (contactInput, bool) {
	ct := rec.Enrichment.Contact
	if ct == nil {
		return contactInput{}, false
	}
	email := strings.ToLower(strings.TrimSpace(ct.Email))
	if email == "" {
		return contactInput{}, false
	}
	props := map[string]string{"email": email}
	first, last := splitName(ct.Name)
	if first != "" {
		props["firstname"] = first
	}
	if last != "" {
		props["lastname"] = last
	}
	return contactInput{email: email, props: props}, true
}

// mapCompany returns the sender's company. A free-mail domain is not a company. The properties
// are only set when the company is created: the CRM's own data wins over the enrichment
// dataset's. Industry is not mapped (HubSpot's industry is an enumeration the dataset's values
// do not match), and the size only when it is an employee count.
func mapCompany(rec *events.Enriched) (companyInput, bool) {
	co := rec.Enrichment.Company
	if co == nil || co.FreeMail {
		return companyInput{}, false
	}
	domain := strings.ToLower(strings.TrimSpace(co.Domain))
	if domain == "" {
		return companyInput{}, false
	}
	props := map[string]string{"domain": domain}
	if co.Name != "" {
		props["name"] = co.Name
	}
	if co.Country != "" {
		props["country"] = co.Country
	}
	if n, err := strconv.ParseUint(strings.TrimSpace(co.Size), 10, 32); err == nil && n > 0 {
		props["numberofemployees"] = strconv.FormatUint(n, 10)
	}
	return companyInput{domain: domain, props: props}, true
}

// emailProperties returns the properties of rec's email engagement; extIDProp carries the
// external id. The result is deterministic for a message, which is what lets a replay compare
// it with what HubSpot holds.
func emailProperties(rec *events.Enriched, extIDProp string) map[string]string {
	m := &rec.Message
	props := map[string]string{
		extIDProp:            m.ExternalID,
		"hs_timestamp":       m.ReceivedAt.UTC().Format(timestampLayout),
		"hs_email_direction": emailDirection,
		"hs_email_status":    emailStatus,
		"hs_email_subject":   m.Subject,
		"hs_email_text":      emailText(m),
		"hs_email_headers":   emailHeaders(m),
	}
	if isOwnerID(rec.Enrichment.Owner) {
		props["hubspot_owner_id"] = rec.Enrichment.Owner
	}
	return props
}

// isOwnerID reports whether owner is a HubSpot owner id (digits); the enrichment's owner may be
// an email address, which HubSpot would reject.
func isOwnerID(owner string) bool {
	if owner == "" || len(owner) > 20 {
		return false
	}
	for _, r := range owner {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// emailText is the plain-text body followed by the attachments as a list of links to their
// blob-store copies (no file is uploaded to HubSpot), cut to HubSpot's property limit. The
// attachment list is kept whole; the body is cut.
func emailText(m *events.Parsed) string {
	body := m.Text
	if strings.TrimSpace(body) == "" {
		body = m.StrippedText
	}
	list := attachmentList(m.Attachments)
	room := maxPropertyChars - utf8.RuneCountInString(list)
	if utf8.RuneCountInString(body) > room {
		body = cutRunes(body, room-utf8.RuneCountInString(truncatedMark)) + truncatedMark
	}
	return body + list
}

// attachmentList renders the non-inline attachments, one per line with name, type, size and
// blob reference. Inline parts (logos, signature images) are left out. It is empty when there
// are none.
func attachmentList(atts []events.Attachment) string {
	var lines []string
	for _, a := range atts {
		if a.Inline {
			continue
		}
		name := a.Filename
		if name == "" {
			name = "(unnamed)"
		}
		ctype := a.ContentType
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		link := "no stored copy"
		if a.BlobRef != nil && *a.BlobRef != "" {
			link = *a.BlobRef
		}
		lines = append(lines, fmt.Sprintf("- %s (%s, %d bytes): %s", name, ctype, a.Size, link))
	}
	if len(lines) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n\n-- \nAttachments:\n")
	for i, l := range lines {
		if b.Len()+len(l) > maxAttachmentList {
			fmt.Fprintf(&b, "- … and %d more\n", len(lines)-i)
			break
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// cutRunes returns the first n runes of s (all of s when shorter; "" for n <= 0).
func cutRunes(s string, n int) string {
	if n <= 0 {
		return ""
	}
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

// headerAddress is one address of hs_email_headers.
type headerAddress struct {
	Email     string `json:"email"`
	FirstName string `json:"firstName,omitempty"`
	LastName  string `json:"lastName,omitempty"`
}

// emailHeaderValue is the JSON HubSpot reads from hs_email_headers to fill the read-only
// hs_email_from_* and hs_email_to_* properties.
type emailHeaderValue struct {
	From   *headerAddress  `json:"from,omitempty"`
	Sender *headerAddress  `json:"sender,omitempty"`
	To     []headerAddress `json:"to"`
	Cc     []headerAddress `json:"cc"`
	Bcc    []headerAddress `json:"bcc"`
}

// emailHeaders returns hs_email_headers for m: from, sender, to and cc (bcc is never known
// to a recipient and stays empty).
func emailHeaders(m *events.Parsed) string {
	v := emailHeaderValue{
		From: headerAddr(m.From), Sender: headerAddr(m.Sender),
		To: headerAddrs(m.To), Cc: headerAddrs(m.Cc), Bcc: []headerAddress{},
	}
	b, err := json.Marshal(v)
	if err != nil {
		// Strings and slices of them always encode.
		return "{}"
	}
	return string(b)
}

func headerAddr(a *events.Address) *headerAddress {
	if a == nil || a.Address == "" {
		return nil
	}
	first, last := splitName(a.Name)
	return &headerAddress{Email: a.Address, FirstName: first, LastName: last}
}

func headerAddrs(as []events.Address) []headerAddress {
	out := make([]headerAddress, 0, len(as))
	for i := range as {
		if h := headerAddr(&as[i]); h != nil {
			out = append(out, *h)
		}
	}
	return out
}

// splitName splits a display name into first and last name: "Last, First" by the comma,
// otherwise the first word is the first name and the rest the last name.
func splitName(name string) (first, last string) {
	name = strings.Join(strings.Fields(strings.Trim(name, `"' `)), " ")
	if name == "" {
		return "", ""
	}
	if l, f, ok := strings.Cut(name, ","); ok {
		return strings.TrimSpace(f), strings.TrimSpace(l)
	}
	f, l, _ := strings.Cut(name, " ")
	return f, l
}

// sameProperties reports whether have already holds every value of want. Timestamps are
// compared as instants, because HubSpot may return them in another layout.
func sameProperties(have map[string]*string, want map[string]string) bool {
	for k, w := range want {
		h, ok := have[k]
		if !ok || h == nil {
			if w == "" {
				continue
			}
			return false
		}
		if *h == w {
			continue
		}
		if k == "hs_timestamp" && sameInstant(*h, w) {
			continue
		}
		return false
	}
	return true
}

func sameInstant(a, b string) bool {
	ta, errA := parseTimestamp(a)
	tb, errB := parseTimestamp(b)
	return errA == nil && errB == nil && ta.Equal(tb)
}

// parseTimestamp reads a HubSpot datetime value: RFC 3339 or Unix milliseconds.
func parseTimestamp(s string) (time.Time, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// digest identifies a set of property values, to tell whether this process already wrote them.
func digest(props map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(props)) {
		fmt.Fprintf(h, "%d:%s=%d:%s;", len(k), k, len(props[k]), props[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
