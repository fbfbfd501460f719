package pipedrive

import (
	"fmt"
	"html"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// Mapping limits. Pipedrive stores the note as HTML; the message text is cut so one activity
// stays readable and list pages stay small. The subject is cut like Pipedrive's own UI does.
const (
	maxNoteText   = 16 << 10
	maxSubjectLen = 255
	noSubject     = "(no subject)"
)

// NoteMarker returns the line every activity note ends with: it carries the message's external
// id and is how a replay finds the activity it wrote before. The marker is plain text so it
// survives Pipedrive's HTML sanitizing and stays searchable by eye.
func NoteMarker(externalID string) string { return "mailpipe-external-id: " + externalID }

// sender is the person an activity is linked to.
type sender struct {
	email string // lower case
	name  string
}

// senderOf picks the sender: the enriched contact, else the From mailbox. The name falls back
// to the address's local part because Pipedrive requires a person name.
func senderOf(rec *events.Enriched) sender {
	var s sender
	if c := rec.Enrichment.Contact; c != nil {
		s = sender{email: c.Email, name: c.Name}
	}
	if f := rec.Message.From; f != nil {
		if s.email == "" {
			s.email = f.Address
		}
		if s.name == "" && strings.EqualFold(s.email, f.Address) {
			s.name = f.Name
		}
	}
	s.email = strings.ToLower(strings.TrimSpace(s.email))
	s.name = strings.TrimSpace(s.name)
	if s.name == "" {
		s.name, _, _ = strings.Cut(s.email, "@")
	}
	return s
}

// company is the organization an activity is linked to.
type company struct {
	domain string
	name   string
}

// organizationOf returns the sender's company, unless there is none or it is a free-mail
// provider (gmail.com is not the sender's employer).
func organizationOf(rec *events.Enriched) (company, bool) {
	c := rec.Enrichment.Company
	if c == nil || c.FreeMail || strings.TrimSpace(c.Domain) == "" {
		return company{}, false
	}
	co := company{domain: strings.ToLower(strings.TrimSpace(c.Domain)), name: strings.TrimSpace(c.Name)}
	if co.name == "" {
		co.name = co.domain
	}
	return co, true
}

// personEmail is one entry of a person's email list.
type personEmail struct {
	Value   string `json:"value"`
	Primary bool   `json:"primary"`
	Label   string `json:"label"`
}

// newPersonBody is the body of POST /v1/persons.
type newPersonBody struct {
	Name  string        `json:"name"`
	Email []personEmail `json:"email"`
	OrgID int64         `json:"org_id,omitempty"`
}

func newPerson(s sender, orgID int64) newPersonBody {
	return newPersonBody{
		Name:  s.name,
		Email: []personEmail{{Value: s.email, Primary: true, Label: "work"}},
		OrgID: orgID,
	}
}

// activityBody is the body of POST /v1/activities and PUT /v1/activities/{id}.
type activityBody struct {
	Subject  string `json:"subject"`
	Type     string `json:"type"`
	Done     int    `json:"done"`
	DueDate  string `json:"due_date"`
	DueTime  string `json:"due_time"`
	PersonID int64  `json:"person_id"`
	OrgID    int64  `json:"org_id,omitempty"`
	UserID   int64  `json:"user_id,omitempty"`
	Note     string `json:"note"`
}

// newActivity maps rec to its activity. An open activity is due when the queue's response SLA
// runs out (at receipt without an SLA); the owner, when the enricher found a Pipedrive user id,
// is the assignee.
func newActivity(rec *events.Enriched, cfg Config, personID, orgID int64) activityBody {
	due := rec.Message.ReceivedAt.UTC()
	if sla := rec.Classification.SLAMinutes; sla > 0 && !cfg.ActivityDone {
		due = due.Add(time.Duration(sla) * time.Minute)
	}
	a := activityBody{
		Subject:  subjectOf(rec.Message.Subject),
		Type:     cfg.ActivityType,
		DueDate:  due.Format(time.DateOnly),
		DueTime:  due.Format("15:04"),
		PersonID: personID,
		OrgID:    orgID,
		Note:     noteHTML(rec, cfg),
	}
	if cfg.ActivityDone {
		a.Done = 1
	}
	if id, err := strconv.ParseInt(strings.TrimSpace(rec.Enrichment.Owner), 10, 64); err == nil && id > 0 {
		a.UserID = id
	}
	return a
}

func subjectOf(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return noSubject
	}
	return truncate(s, maxSubjectLen)
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// noteHTML renders the activity note: who wrote when, the new text of the message, the
// classification, the attachments, and the marker line. Everything from the message is
// escaped.
func noteHTML(rec *events.Enriched, cfg Config) string {
	m := &rec.Message
	var b strings.Builder
	b.WriteString("<p><b>E-mail received</b> ")
	b.WriteString(html.EscapeString(m.ReceivedAt.UTC().Format("2006-01-02 15:04 UTC")))
	if f := m.From; f != nil {
		b.WriteString(" from ")
		if f.Name != "" {
			b.WriteString(html.EscapeString(f.Name) + " ")
		}
		b.WriteString("&lt;" + html.EscapeString(f.Address) + "&gt;")
	}
	b.WriteString("<br>Subject: " + html.EscapeString(m.Subject) + "</p>")

	text := m.StrippedText
	if strings.TrimSpace(text) == "" {
		text = m.Text
	}
	if text = strings.TrimSpace(text); text != "" {
		lines := strings.Split(truncate(text, maxNoteText), "\n")
		for i, l := range lines {
			lines[i] = html.EscapeString(strings.TrimRight(l, "\r"))
		}
		b.WriteString("<p>" + strings.Join(lines, "<br>") + "</p>")
	}

	cl := &rec.Classification
	var facts []string
	if cl.Kind != "" {
		facts = append(facts, "Kind: "+html.EscapeString(cl.Kind))
	}
	facts = append(facts, "Lead score: "+strconv.FormatFloat(cl.LeadScore, 'f', -1, 64))
	if cl.Queue != "" {
		q := "Queue: " + html.EscapeString(cl.Queue)
		if cl.SLAMinutes > 0 {
			q += fmt.Sprintf(" (SLA %d min)", cl.SLAMinutes)
		}
		facts = append(facts, q)
	}
	b.WriteString("<p>" + strings.Join(facts, " · ") + "</p>")

	var atts []string
	for _, a := range m.Attachments {
		if a.Inline {
			continue
		}
		name := attachmentName(a)
		label := html.EscapeString(name)
		if cfg.AttachmentURL != "" && a.Sha256 != "" {
			link := expandLink(cfg.AttachmentURL, a.Sha256, name, m.ID)
			label = `<a href="` + html.EscapeString(link) + `">` + label + "</a>"
		}
		detail := humanSize(a.Size)
		if a.ContentType != "" {
			detail = html.EscapeString(a.ContentType) + ", " + detail
		}
		if cfg.UploadFiles && uploadableAttachment(a, cfg.MaxFileSize) {
			detail += ", in Files"
		}
		atts = append(atts, "<li>"+label+" ("+detail+")</li>")
	}
	if len(atts) > 0 {
		b.WriteString("<p>Attachments:</p><ul>" + strings.Join(atts, "") + "</ul>")
	}
	b.WriteString("<p>" + html.EscapeString(NoteMarker(m.ExternalID)) + "</p>")
	return b.String()
}

// attachmentName is the file name shown and uploaded: the declared one, else one derived from
// the content digest so a replay names it the same.
func attachmentName(a events.Attachment) string {
	if n := strings.TrimSpace(a.Filename); n != "" {
		return n
	}
	if len(a.Sha256) >= 12 {
		return "attachment-" + a.Sha256[:12]
	}
	return "attachment"
}

// expandLink fills the AttachmentURL template.
func expandLink(tpl, sha256, filename, messageID string) string {
	return strings.NewReplacer(
		"{sha256}", url.PathEscape(sha256),
		"{filename}", url.PathEscape(filename),
		"{message_id}", url.PathEscape(messageID),
	).Replace(tpl)
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	default:
		return strconv.FormatInt(n, 10) + " bytes"
	}
}

// upload is one attachment to upload with the files API.
type upload struct {
	ref    string
	name   string
	size   int64
	sha256 string
}

func uploadableAttachment(a events.Attachment, maxSize int64) bool {
	return !a.Inline && a.BlobRef != nil && *a.BlobRef != "" && a.Size <= maxSize
}

// uploadable lists the attachments the files API receives: not inline, stored in the blob
// store, at most maxSize bytes.
func uploadable(rec *events.Enriched, maxSize int64) []upload {
	var out []upload
	for _, a := range rec.Message.Attachments {
		if uploadableAttachment(a, maxSize) {
			out = append(out, upload{ref: *a.BlobRef, name: attachmentName(a), size: a.Size, sha256: a.Sha256})
		}
	}
	return out
}
