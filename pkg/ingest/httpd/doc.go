// Package httpd is the HTTP front-end of ingress: POST /v1/messages takes one raw RFC 5322
// message and hands it to the ingest use case, answering 202 {"id": …, "thread_key": …} only
// after ingest recorded the message on mail.raw.v1.
//
// The envelope comes from query parameters or headers (mail_from, rcpt_to).
//
// # Authentication and tenants
//
// Every credential belongs to a tenant. A request must carry one valid credential, and every
// recipient's route must belong to the credential's tenant (403 otherwise). Recipients accepted
// by the domain list fallback (ingest.DomainRouter, tenant "default", no route id) take any valid
// credential, which keeps single-tenant deployments working as before.
//
// API keys are configured as their SHA-256 per tenant (tenant:hex) and presented as
// "Authorization: Bearer <key>". A request without an Authorization header may instead be signed
// per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature over the raw body)
// with a secret of the tenant that owns the recipients' routes.
//
// A signed request outside the timestamp window gets 401. Inside it, a replayed request is
// recognised by its webhook-id and recorded at most once: a repeat after success is answered as
// a duplicate without being recorded again, a repeat while the first attempt runs gets 503. The
// envelope is not covered by the signature, so this is also what stops a captured request from
// being re-sent to other recipients of the same tenant.
//
// # Errors
//
// Every error is an RFC 9457 problem details object (application/problem+json) with a type
// under [ProblemTypeBase]: 401 missing or bad credential, 403 recipient of another tenant, 400
// bad envelope or message, 413 larger than the configured limit (the body is read through a
// limit, never whole), 503 with Retry-After when the message could not be recorded and the
// sender should retry.
package httpd
