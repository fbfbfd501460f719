// Package httpd is the HTTP front-end of ingress: it takes raw RFC 5322 messages over HTTP and
// hands each to the ingest use case, answering success only after ingest recorded the message on
// mail.raw.v1.
//
// # Endpoints
//
//   - POST /v1/messages ([Path]): the body is the raw message; the envelope comes from query
//     parameters or headers (mail_from, rcpt_to). Answers 202 {"id": …, "thread_key": …}.
//   - POST /v1/inbound/sendgrid ([PathSendGrid]): SendGrid Inbound Parse with "POST the raw, full
//     MIME message" on (multipart/form-data; the message in the email field, the SMTP envelope as
//     JSON in the envelope field). Answers 200.
//   - POST /v1/inbound/mailgun/mime ([PathMailgun]): a Mailgun route action
//     forward("https://…/v1/inbound/mailgun/mime"); Mailgun posts raw MIME (body-mime) because the
//     URL ends in "mime". Answers 200.
//
// A message recognised as a retry of one already recorded is answered with the same success
// code and "duplicate": true, and is not recorded again.
//
// # Authentication and tenants
//
// Every credential belongs to a tenant (or to several, when the same key is configured for
// each). A request must carry one valid credential, and every recipient's route must belong to
// one tenant of the credential (403 otherwise). Recipients accepted by the domain list fallback
// (ingest.DomainRouter: tenant "default", no route id) take any valid credential, which keeps
// single-tenant deployments working as before.
//
//   - API keys, configured as their SHA-256 per tenant (tenant:hex). /v1/messages takes
//     "Authorization: Bearer <key>"; the provider endpoints also take the key as the password of
//     HTTP Basic credentials, the form a key in a URL's userinfo (https://any:KEY@host/…) takes.
//   - HMAC signatures on /v1/messages per Standard Webhooks (webhook-id, webhook-timestamp,
//     webhook-signature over the raw body) with per-tenant whsec_ secrets, for requests without
//     an Authorization header. Only the secrets of the tenant owning the recipients' routes are
//     tried (all tenants' for the domain fallback), which bounds the work an unsigned request
//     can cause.
//   - SendGrid's signed Inbound Parse posts (ECDSA P-256) and Mailgun's webhook signature
//     (HMAC-SHA256 over timestamp and token), with keys per tenant; see the subpackages sendgrid
//     and mailgun for what each provider documents and what it leaves open.
//
// A signed request outside its timestamp window gets 401. Inside it, a replayed request is
// recognised by its id (webhook-id, Mailgun's token, or the digest of SendGrid's signed
// content) in a [ReplayStore] and recorded at most once: a repeat after success is answered as
// a duplicate, a repeat while the first attempt runs gets 503, a repeat after a failure is
// recorded. This is what stops a captured request from being re-sent with another envelope
// (Standard Webhooks does not sign the query) or another message (Mailgun does not sign it).
//
// # Errors
//
// Every error is an RFC 9457 problem details object (application/problem+json) with a type
// under [ProblemTypeBase]: 401 missing or bad credential, 403 recipient of another tenant or a
// sender the recipient's route refuses (ingest.Route.Senders), 400 bad envelope, form or
// message, 413 larger than [Config].MaxBodyBytes or the route's MaxSize (the body is read
// through a limit; /v1/messages with an API key streams it to ingest, never whole), 415 not the provider's form, 503 with Retry-After when the message could
// not be recorded and the sender should retry. The Mailgun endpoint answers every permanent
// rejection with 406 instead, the only code on which Mailgun stops retrying without taking the
// post as delivered; the problem type still names the reason.
package httpd
