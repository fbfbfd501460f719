package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/events"
)

// Directions of a message and an event.
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
	DirectionInternal = "internal"
)

// Event types the connector appends to event_log.
const (
	EventMessageReceived = "message.received"
	EventMessageSent     = "message.sent"
	EventLeadCreated     = "lead.created"
)

// row is an enriched message mapped to the data model, every text cleaned for PostgreSQL.
type row struct {
	tenant, externalID, mailpipeID, threadKey string
	direction, kind, routeID                  string
	messageID, inReplyTo                      string
	fromAddress, fromName                     string
	to                                        []string
	subject, bodyText, strippedText           string
	attachments                               []byte // JSON array
	spamScore, leadScore                      float64
	queue                                     string
	slaMinutes                                int
	owner                                     string
	sentAt                                    *time.Time
	receivedAt                                time.Time
	contact                                   *contactRow // nil for outbound messages and unknown senders
	company                                   *companyRow // nil without a company, for free mail and outbound
	createsLead                               bool
}

type contactRow struct {
	email, name, role string
	roleAccount       bool
	consent           []byte // JSON object
}

type companyRow struct {
	domain, name, size, industry, country string
}

// attachmentJSON is one element of message.attachments.
type attachmentJSON struct {
	Filename    string  `json:"filename"`
	ContentType string  `json:"content_type"`
	Size        int64   `json:"size"`
	Sha256      string  `json:"sha256"`
	BlobRef     *string `json:"blob_ref"`
	Inline      bool    `json:"inline"`
}

// clean makes s storable: PostgreSQL text holds valid UTF-8 without NUL bytes, and a record
// that broke that rule would fail the same way on every retry.
func clean(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// leadKinds are the classifier kinds that open or continue a lead; other kinds (auto_reply,
// bounce, list, notification, spam, feedback_report) are stored and attached to an existing
// lead of their thread, but never create one. An empty kind (no classifier) counts as human.
func leadKind(kind string) bool { return kind == "human" || kind == "" }

// newRow maps rec. A message from one of the outbound domains is the team answering: it has no
// contact or company of its own and creates no lead.
func newRow(rec *events.Enriched, outbound map[string]bool) row {
	m := &rec.Message
	r := row{
		tenant:       clean(m.Tenant),
		externalID:   clean(m.ExternalID),
		mailpipeID:   clean(m.ID),
		threadKey:    clean(m.ThreadKey),
		direction:    DirectionInbound,
		kind:         clean(rec.Classification.Kind),
		routeID:      clean(m.RouteID),
		messageID:    clean(m.MessageID),
		inReplyTo:    clean(m.InReplyTo),
		to:           []string{},
		subject:      clean(m.Subject),
		bodyText:     clean(m.Text),
		strippedText: clean(m.StrippedText),
		spamScore:    rec.Classification.SpamScore,
		leadScore:    rec.Classification.LeadScore,
		queue:        clean(rec.Classification.Queue),
		slaMinutes:   rec.Classification.SLAMinutes,
		owner:        clean(rec.Enrichment.Owner),
		sentAt:       m.Date,
		receivedAt:   m.ReceivedAt.UTC(),
	}
	if r.threadKey == "" {
		// Ingress always sets one (synthetic if need be); this keeps a hand-made record usable.
		r.threadKey = r.externalID
	}
	if f := m.From; f != nil {
		r.fromAddress, r.fromName = clean(strings.ToLower(f.Address)), clean(f.Name)
	}
	for _, a := range m.To {
		r.to = append(r.to, clean(strings.ToLower(a.Address)))
	}
	atts := make([]attachmentJSON, 0, len(m.Attachments))
	for _, a := range m.Attachments {
		j := attachmentJSON{
			Filename: clean(a.Filename), ContentType: clean(a.ContentType), Size: a.Size,
			Sha256: clean(a.Sha256), Inline: a.Inline,
		}
		if a.BlobRef != nil {
			ref := clean(*a.BlobRef)
			j.BlobRef = &ref
		}
		atts = append(atts, j)
	}
	r.attachments, _ = json.Marshal(atts) // plain structs of strings and numbers

	if _, domain, ok := strings.Cut(r.fromAddress, "@"); ok && outbound[domain] {
		r.direction = DirectionOutbound
		return r
	}
	r.createsLead = leadKind(r.kind)
	email, name := "", ""
	if c := rec.Enrichment.Contact; c != nil {
		email, name = c.Email, c.Name
	}
	if email == "" {
		email, name = r.fromAddress, r.fromName
	}
	if email = clean(strings.ToLower(strings.TrimSpace(email))); email != "" {
		cr := &contactRow{email: email, name: clean(strings.TrimSpace(name)), consent: []byte("{}")}
		if c := rec.Enrichment.Contact; c != nil {
			cr.roleAccount, cr.role = c.RoleAccount, clean(c.Role)
			if len(c.Consent) > 0 {
				cr.consent, _ = json.Marshal(c.Consent) // map[string]bool
			}
		}
		r.contact = cr
	}
	if co := rec.Enrichment.Company; co != nil && !co.FreeMail {
		if d := clean(strings.ToLower(strings.TrimSpace(co.Domain))); d != "" {
			r.company = &companyRow{
				domain: d, name: clean(strings.TrimSpace(co.Name)), size: clean(co.Size),
				industry: clean(co.Industry), country: clean(co.Country),
			}
		}
	}
	return r
}

// Upserts. Each DO UPDATE runs only when it changes something (… WHERE old IS DISTINCT FROM
// new), so a replay writes nothing; the final SELECT then returns the existing row. written says
// whether the statement inserted or updated.
const (
	upsertCompany = `
WITH up AS (
    INSERT INTO company AS t (tenant, domain, name, size, industry, country)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT ON CONSTRAINT company_natural_key DO UPDATE SET
        name       = coalesce(nullif(EXCLUDED.name, ''), t.name),
        size       = coalesce(nullif(EXCLUDED.size, ''), t.size),
        industry   = coalesce(nullif(EXCLUDED.industry, ''), t.industry),
        country    = coalesce(nullif(EXCLUDED.country, ''), t.country),
        updated_at = now()
    WHERE (t.name, t.size, t.industry, t.country) IS DISTINCT FROM
          (coalesce(nullif(EXCLUDED.name, ''), t.name), coalesce(nullif(EXCLUDED.size, ''), t.size),
           coalesce(nullif(EXCLUDED.industry, ''), t.industry), coalesce(nullif(EXCLUDED.country, ''), t.country))
    RETURNING t.id, t.xmax = 0 AS inserted
)
SELECT id, inserted, true FROM up
UNION ALL
SELECT id, false, false FROM company WHERE tenant = $1 AND domain = $2 AND NOT EXISTS (SELECT FROM up)`

	upsertContact = `
WITH up AS (
    INSERT INTO contact AS t (tenant, email, name, company_id, role_account, role, consent)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT ON CONSTRAINT contact_natural_key DO UPDATE SET
        name         = coalesce(nullif(EXCLUDED.name, ''), t.name),
        company_id   = coalesce(EXCLUDED.company_id, t.company_id),
        role_account = EXCLUDED.role_account,
        role         = EXCLUDED.role,
        consent      = t.consent || EXCLUDED.consent,
        updated_at   = now()
    WHERE (t.name, t.company_id, t.role_account, t.role, t.consent) IS DISTINCT FROM
          (coalesce(nullif(EXCLUDED.name, ''), t.name), coalesce(EXCLUDED.company_id, t.company_id),
           EXCLUDED.role_account, EXCLUDED.role, t.consent || EXCLUDED.consent)
    RETURNING t.id, t.xmax = 0 AS inserted
)
SELECT id, inserted, true FROM up
UNION ALL
SELECT id, false, false FROM contact WHERE tenant = $1 AND email = $2 AND NOT EXISTS (SELECT FROM up)`

	// The first contact, company, queue and SLA of a lead stick; the owner follows the latest
	// enrichment that names one; the score is the highest seen. The status is sales' to change.
	upsertLead = `
WITH up AS (
    INSERT INTO lead AS t (tenant, thread_key, contact_id, company_id, queue, sla_minutes, owner, score,
                           first_message_at, last_message_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
    ON CONFLICT ON CONSTRAINT lead_natural_key DO UPDATE SET
        contact_id       = coalesce(t.contact_id, EXCLUDED.contact_id),
        company_id       = coalesce(t.company_id, EXCLUDED.company_id),
        queue            = coalesce(nullif(t.queue, ''), EXCLUDED.queue),
        sla_minutes      = coalesce(nullif(t.sla_minutes, 0), EXCLUDED.sla_minutes),
        owner            = coalesce(nullif(EXCLUDED.owner, ''), t.owner),
        score            = greatest(t.score, EXCLUDED.score),
        first_message_at = least(t.first_message_at, EXCLUDED.first_message_at),
        last_message_at  = greatest(t.last_message_at, EXCLUDED.last_message_at),
        updated_at       = now()
    WHERE (t.contact_id, t.company_id, t.queue, t.sla_minutes, t.owner, t.score, t.first_message_at, t.last_message_at)
          IS DISTINCT FROM
          (coalesce(t.contact_id, EXCLUDED.contact_id), coalesce(t.company_id, EXCLUDED.company_id),
           coalesce(nullif(t.queue, ''), EXCLUDED.queue), coalesce(nullif(t.sla_minutes, 0), EXCLUDED.sla_minutes),
           coalesce(nullif(EXCLUDED.owner, ''), t.owner), greatest(t.score, EXCLUDED.score),
           least(t.first_message_at, EXCLUDED.first_message_at), greatest(t.last_message_at, EXCLUDED.last_message_at))
    RETURNING t.id, t.xmax = 0 AS inserted
)
SELECT id, inserted, true FROM up
UNION ALL
SELECT id, false, false FROM lead WHERE tenant = $1 AND thread_key = $2 AND NOT EXISTS (SELECT FROM up)`

	findLead = `SELECT id, contact_id FROM lead WHERE tenant = $1 AND thread_key = $2`

	// lead_id never goes back to NULL: an auto-reply stored before its thread became a lead keeps
	// the lead a replay finds.
	upsertMessage = `
WITH up AS (
    INSERT INTO message AS t (tenant, external_id, mailpipe_id, thread_key, lead_id, contact_id, direction, kind,
                              route_id, message_id, in_reply_to, from_address, from_name, to_addresses, subject,
                              body_text, stripped_text, attachments, spam_score, lead_score, queue, sla_minutes,
                              sent_at, received_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
            $23, $24)
    ON CONFLICT ON CONSTRAINT message_natural_key DO UPDATE SET
        mailpipe_id = EXCLUDED.mailpipe_id, thread_key = EXCLUDED.thread_key,
        lead_id = coalesce(EXCLUDED.lead_id, t.lead_id), contact_id = coalesce(EXCLUDED.contact_id, t.contact_id),
        direction = EXCLUDED.direction, kind = EXCLUDED.kind, route_id = EXCLUDED.route_id,
        message_id = EXCLUDED.message_id, in_reply_to = EXCLUDED.in_reply_to, from_address = EXCLUDED.from_address,
        from_name = EXCLUDED.from_name, to_addresses = EXCLUDED.to_addresses, subject = EXCLUDED.subject,
        body_text = EXCLUDED.body_text, stripped_text = EXCLUDED.stripped_text, attachments = EXCLUDED.attachments,
        spam_score = EXCLUDED.spam_score, lead_score = EXCLUDED.lead_score, queue = EXCLUDED.queue,
        sla_minutes = EXCLUDED.sla_minutes, sent_at = EXCLUDED.sent_at, received_at = EXCLUDED.received_at,
        updated_at = now()
    WHERE (t.mailpipe_id, t.thread_key, t.lead_id, t.contact_id, t.direction, t.kind, t.route_id, t.message_id,
           t.in_reply_to, t.from_address, t.from_name, t.to_addresses, t.subject, t.body_text, t.stripped_text,
           t.attachments, t.spam_score, t.lead_score, t.queue, t.sla_minutes, t.sent_at, t.received_at)
          IS DISTINCT FROM
          (EXCLUDED.mailpipe_id, EXCLUDED.thread_key, coalesce(EXCLUDED.lead_id, t.lead_id),
           coalesce(EXCLUDED.contact_id, t.contact_id), EXCLUDED.direction, EXCLUDED.kind, EXCLUDED.route_id,
           EXCLUDED.message_id, EXCLUDED.in_reply_to, EXCLUDED.from_address, EXCLUDED.from_name,
           EXCLUDED.to_addresses, EXCLUDED.subject, EXCLUDED.body_text, EXCLUDED.stripped_text, EXCLUDED.attachments,
           EXCLUDED.spam_score, EXCLUDED.lead_score, EXCLUDED.queue, EXCLUDED.sla_minutes, EXCLUDED.sent_at,
           EXCLUDED.received_at)
    RETURNING t.id, t.xmax = 0 AS inserted
)
SELECT id, inserted, true FROM up
UNION ALL
SELECT id, false, false FROM message WHERE tenant = $1 AND external_id = $2 AND NOT EXISTS (SELECT FROM up)`

	// An event is appended once per dedupe key; a replay only fills in a lead found since.
	appendEvent = `
INSERT INTO event_log AS t (tenant, lead_id, message_id, type, direction, actor, occurred_at, dedupe_key, data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT ON CONSTRAINT event_log_dedupe_key DO UPDATE SET lead_id = EXCLUDED.lead_id
WHERE t.lead_id IS NULL AND EXCLUDED.lead_id IS NOT NULL`
)

// upsertRow runs one of the upserts above. When a concurrent transaction inserted the row after
// this statement's snapshot was taken, the conflict is seen but the fallback SELECT is not, and
// no row comes back: the statement is run again with a new snapshot.
func upsertRow(ctx context.Context, tx pgx.Tx, sql string, args ...any) (id int64, inserted, written bool, err error) {
	for range 3 {
		err = tx.QueryRow(ctx, sql, args...).Scan(&id, &inserted, &written)
		if !errors.Is(err, pgx.ErrNoRows) {
			return id, inserted, written, err
		}
	}
	return 0, false, false, errNoRow
}

// write stores r in tx and reports what it did.
func (c *Connector) write(ctx context.Context, tx pgx.Tx, r row) (crm.Result, error) {
	ids := map[string]string{}
	wrote := false
	var companyID, contactID, leadID *int64
	if r.company != nil {
		id, _, w, err := upsertRow(ctx, tx, upsertCompany, r.tenant, r.company.domain, r.company.name,
			r.company.size, r.company.industry, r.company.country)
		if err != nil {
			return crm.Result{}, fmt.Errorf("upserting company: %w", err)
		}
		companyID, wrote = &id, wrote || w
		ids[ObjectCompany] = strconv.FormatInt(id, 10)
	}
	if r.contact != nil {
		id, _, w, err := upsertRow(ctx, tx, upsertContact, r.tenant, r.contact.email, r.contact.name, companyID,
			r.contact.roleAccount, r.contact.role, r.contact.consent)
		if err != nil {
			return crm.Result{}, fmt.Errorf("upserting contact: %w", err)
		}
		contactID, wrote = &id, wrote || w
		ids[ObjectContact] = strconv.FormatInt(id, 10)
	}
	leadCreated := false
	if r.createsLead {
		id, inserted, w, err := upsertRow(ctx, tx, upsertLead, r.tenant, r.threadKey, contactID, companyID,
			r.queue, r.slaMinutes, r.owner, r.leadScore, r.receivedAt)
		if err != nil {
			return crm.Result{}, fmt.Errorf("upserting lead: %w", err)
		}
		leadID, leadCreated, wrote = &id, inserted, wrote || w
	} else {
		var id int64
		var leadContact *int64
		err := tx.QueryRow(ctx, findLead, r.tenant, r.threadKey).Scan(&id, &leadContact)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return crm.Result{}, fmt.Errorf("finding the thread's lead: %w", err)
		default:
			leadID = &id
			if contactID == nil {
				contactID = leadContact
			}
		}
	}
	if leadID != nil {
		ids[ObjectLead] = strconv.FormatInt(*leadID, 10)
	}

	msgID, inserted, w, err := upsertRow(ctx, tx, upsertMessage,
		r.tenant, r.externalID, r.mailpipeID, r.threadKey, leadID, contactID, r.direction, r.kind,
		r.routeID, r.messageID, r.inReplyTo, r.fromAddress, r.fromName, r.to, r.subject,
		r.bodyText, r.strippedText, r.attachments, r.spamScore, r.leadScore, r.queue, r.slaMinutes,
		r.sentAt, r.receivedAt)
	if err != nil {
		return crm.Result{}, fmt.Errorf("upserting message: %w", err)
	}
	wrote = wrote || w
	ids[ObjectMessage] = strconv.FormatInt(msgID, 10)

	actor := "mailpipe/" + c.name
	typ, dir := EventMessageReceived, DirectionInbound
	if r.direction == DirectionOutbound {
		typ, dir = EventMessageSent, DirectionOutbound
	}
	data, _ := json.Marshal(map[string]any{"kind": r.kind, "queue": r.queue, "lead_score": r.leadScore})
	events := []struct {
		typ, dir, key string
		occurred      time.Time
		data          []byte
	}{{typ, dir, typ + ":" + r.externalID, r.receivedAt, data}}
	if leadCreated {
		events = append(events, struct {
			typ, dir, key string
			occurred      time.Time
			data          []byte
		}{EventLeadCreated, DirectionInternal, EventLeadCreated + ":" + r.threadKey, r.receivedAt, []byte("{}")})
	}
	for _, e := range events {
		tag, err := tx.Exec(ctx, appendEvent, r.tenant, leadID, msgID, e.typ, e.dir, actor, e.occurred, e.key, e.data)
		if err != nil {
			return crm.Result{}, fmt.Errorf("appending event %s: %w", e.typ, err)
		}
		wrote = wrote || tag.RowsAffected() > 0
	}

	outcome := crm.OutcomeUnchanged
	switch {
	case inserted:
		outcome = crm.OutcomeCreated
	case wrote:
		outcome = crm.OutcomeUpdated
	}
	return crm.Result{Outcome: outcome, ObjectIDs: ids}, nil
}
