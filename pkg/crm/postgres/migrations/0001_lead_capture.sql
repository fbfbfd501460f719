-- The lead-capture data model (docs/crm/postgres.md). Every table is scoped by tenant, and every
-- row has a natural key the crm-sink upserts by: company (tenant, domain), contact (tenant,
-- email), lead (tenant, thread_key), message (tenant, external_id), event_log (tenant,
-- dedupe_key). Addresses and domains are stored lower case.

CREATE TABLE company (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant     text NOT NULL,
    domain     text NOT NULL CHECK (domain <> '' AND domain = lower(domain)),
    name       text NOT NULL DEFAULT '',
    size       text NOT NULL DEFAULT '',
    industry   text NOT NULL DEFAULT '',
    country    text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT company_natural_key UNIQUE (tenant, domain)
);

CREATE TABLE contact (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       text NOT NULL,
    email        text NOT NULL CHECK (email <> '' AND email = lower(email)),
    name         text NOT NULL DEFAULT '',
    company_id   bigint REFERENCES company (id) ON DELETE SET NULL,
    role_account boolean NOT NULL DEFAULT false,
    role         text NOT NULL DEFAULT '',
    consent      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contact_natural_key UNIQUE (tenant, email)
);
CREATE INDEX contact_company_id ON contact (company_id);

-- A lead is one inbound conversation (thread) with a prospect; the messages of the thread
-- point to it, and so do the events that answer it.
CREATE TABLE lead (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant           text NOT NULL,
    thread_key       text NOT NULL CHECK (thread_key <> ''),
    contact_id       bigint REFERENCES contact (id) ON DELETE SET NULL,
    company_id       bigint REFERENCES company (id) ON DELETE SET NULL,
    status           text NOT NULL DEFAULT 'new'
                     CHECK (status IN ('new', 'contacted', 'qualified', 'won', 'lost', 'discarded')),
    queue            text NOT NULL DEFAULT '',
    sla_minutes      integer NOT NULL DEFAULT 0,
    owner            text NOT NULL DEFAULT '',
    score            double precision NOT NULL DEFAULT 0,
    first_message_at timestamptz NOT NULL,
    last_message_at  timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT lead_natural_key UNIQUE (tenant, thread_key)
);
CREATE INDEX lead_contact_id ON lead (contact_id);

CREATE TABLE message (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant        text NOT NULL,
    external_id   text NOT NULL CHECK (external_id <> ''),
    mailpipe_id   text NOT NULL DEFAULT '',
    thread_key    text NOT NULL DEFAULT '',
    lead_id       bigint REFERENCES lead (id) ON DELETE SET NULL,
    contact_id    bigint REFERENCES contact (id) ON DELETE SET NULL,
    direction     text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    kind          text NOT NULL DEFAULT '',
    route_id      text NOT NULL DEFAULT '',
    message_id    text NOT NULL DEFAULT '',
    in_reply_to   text NOT NULL DEFAULT '',
    from_address  text NOT NULL DEFAULT '',
    from_name     text NOT NULL DEFAULT '',
    to_addresses  text[] NOT NULL DEFAULT '{}',
    subject       text NOT NULL DEFAULT '',
    body_text     text NOT NULL DEFAULT '',
    stripped_text text NOT NULL DEFAULT '',
    attachments   jsonb NOT NULL DEFAULT '[]',
    spam_score    double precision NOT NULL DEFAULT 0,
    lead_score    double precision NOT NULL DEFAULT 0,
    queue         text NOT NULL DEFAULT '',
    sla_minutes   integer NOT NULL DEFAULT 0,
    sent_at       timestamptz,
    received_at   timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT message_natural_key UNIQUE (tenant, external_id)
);
CREATE INDEX message_lead_id ON message (lead_id, received_at);
CREATE INDEX message_thread ON message (tenant, thread_key);

-- The timeline of a lead. The crm-sink appends message.received (inbound), message.sent
-- (outbound) and lead.created; other systems append their own events (reply.sent, call.logged,
-- status.changed, …). A row with direction 'outbound' and a lead_id is a response to the lead:
-- that is what the time-to-first-response measures. dedupe_key makes appends idempotent.
CREATE TABLE event_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant      text NOT NULL,
    lead_id     bigint REFERENCES lead (id) ON DELETE CASCADE,
    message_id  bigint REFERENCES message (id) ON DELETE SET NULL,
    type        text NOT NULL CHECK (type <> ''),
    direction   text NOT NULL DEFAULT 'internal' CHECK (direction IN ('inbound', 'outbound', 'internal')),
    actor       text NOT NULL DEFAULT '',
    occurred_at timestamptz NOT NULL,
    dedupe_key  text,
    data        jsonb NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_log_dedupe_key UNIQUE (tenant, dedupe_key)
);
CREATE INDEX event_log_lead ON event_log (lead_id, occurred_at);
CREATE INDEX event_log_lead_response ON event_log (lead_id, occurred_at) WHERE direction = 'outbound';

-- Time to first response: for each inbound lead message (inbound, human or unclassified, linked
-- to a lead), the first outbound event of its lead at or after the message arrived. Unanswered
-- messages have NULL first_response_at; sla_breached compares with the queue's SLA (now() for
-- unanswered ones) and is NULL without an SLA.
CREATE VIEW message_first_response AS
SELECT m.id                              AS message_id,
       m.tenant,
       m.external_id,
       m.lead_id,
       m.queue,
       m.sla_minutes,
       m.received_at,
       r.occurred_at                     AS first_response_at,
       r.occurred_at - m.received_at     AS time_to_first_response,
       CASE WHEN m.sla_minutes > 0
            THEN coalesce(r.occurred_at, now()) - m.received_at > make_interval(mins => m.sla_minutes)
       END                               AS sla_breached
FROM message m
LEFT JOIN LATERAL (
    SELECT e.occurred_at
    FROM event_log e
    WHERE e.lead_id = m.lead_id
      AND e.direction = 'outbound'
      AND e.occurred_at >= m.received_at
    ORDER BY e.occurred_at
    LIMIT 1
) r ON true
WHERE m.direction = 'inbound'
  AND m.lead_id IS NOT NULL
  AND m.kind IN ('human', '');
