// Package crm defines the contract between the crm-sink stage and the systems it writes
// enriched messages to (HubSpot, Salesforce, Pipedrive, Postgres, a signed webhook, and the local
// store `mailpipe dev` uses): the [Connector] interface, the [Result] of one upsert, and the
// mapping of HTTP responses and transport errors to the failure classes the stage retries on or
// dead-letters with.
//
// Implementations live in subpackages (crm/webhook, crm/localstore, …) and are registered
// explicitly by the crm-sink main as a map of [Factory] values, never through init().
// crm/crmtest holds the contract servers and the conformance suite every connector passes.
package crm

import (
	"context"
	"log/slog"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// Outcomes of one upsert. They are the values of the outcome field of mail.crm.v1 and of the
// lake row, so they are part of the wire contract: do not rename them.
const (
	// OutcomeCreated: the target did not hold the message and now does.
	OutcomeCreated = "created"
	// OutcomeUpdated: the target already held an object for the external id and it was updated.
	OutcomeUpdated = "updated"
	// OutcomeUnchanged: the target already held the message's objects as they are (a replay);
	// the connector wrote nothing new.
	OutcomeUnchanged = "unchanged"
	// OutcomeDeduped: the sink's dedupe store knew the message was delivered to the target, so
	// the connector was not called. Connectors return OutcomeUnchanged instead.
	OutcomeDeduped = "deduped"
	// OutcomeShadow: the route is in shadow mode; the write was recorded, not performed.
	OutcomeShadow = "shadow"
	// OutcomeFailed: the write failed. Connectors never return it (they return an error); the
	// sink writes it to mail.crm.v1 and the lake when a target gave up.
	OutcomeFailed = "failed"
)

// Result is what one successful upsert did.
type Result struct {
	// Outcome is one of OutcomeCreated, OutcomeUpdated or OutcomeUnchanged.
	Outcome string
	// ObjectIDs are the CRM object ids written, by object type (e.g. "contact" → "101"). The
	// map is owned by the caller after Upsert returns; nil means none.
	ObjectIDs map[string]string
	// Attempts is the number of calls to the remote system this result took, the successful one
	// included (a connector that refreshes a token and retries reports 2). Zero means one.
	Attempts int
}

// Connector writes enriched messages to one target system.
//
// Upsert must be idempotent by rec.Message.ExternalID: calling it again with the same message
// (after a crash, a rebalance, a retry or a DLQ replay) must leave the target as one call would
// have, and may report OutcomeUnchanged or OutcomeUpdated the second time. That is what makes the
// crm-sink's at-least-once delivery safe.
//
// Upsert returns an error classified with package failure ([ClassifyHTTP] and
// [ClassifyTransport] do that for HTTP connectors): the stage retries retryable classes with
// backoff, honouring a Retry-After, and dead-letters the record with the class otherwise. A
// connector does not retry on its own beyond what one logical call needs (a token refresh); the
// stage owns the retry budget. rec is read-only. Implementations must be safe for concurrent use.
type Connector interface {
	// Name returns the target name: the dedupe namespace, the mail.crm.v1 target field and the
	// metric attribute. It is constant for the connector's lifetime.
	Name() string
	// Upsert writes rec to the target (see the interface doc for idempotency and errors).
	Upsert(ctx context.Context, rec *events.Enriched) (Result, error)
}

// Factory builds a connector. The crm-sink main binds each target's loaded config into a
// factory and keeps them in an explicit map[string]Factory keyed by target name, so adding a
// target is a one-line change in main and there is no registry to import for its side effects:
//
//	factories := map[string]crm.Factory{
//		"webhook": func(ctx context.Context, log *slog.Logger) (crm.Connector, error) {
//			return webhook.New(cfg.Webhook, log)
//		},
//	}
//
// A factory validates its config and returns an error naming what is wrong; it does not dial.
type Factory func(ctx context.Context, log *slog.Logger) (Connector, error)

// Closer is the optional interface of connectors that hold resources (files, pools). The sink's
// owner calls Close once at shutdown, after the last Upsert returned.
type Closer interface {
	Close(ctx context.Context) error
}
