// Package ingest is the ingress use case: it turns one message received by a front-end (SMTP in
// package smtpd, HTTP in package httpd) into one events.Raw record on mail.raw.v1, and tells the
// front-end whether it may acknowledge the message.
//
// [Ingester.AcceptStream] resolves the recipients to a route, reads the message with bounded
// memory (large messages stream to the blob store: claim check), computes the thread key from
// the header block only, drops a client's retry of a message already recorded, and produces the
// record synchronously. [Ingester.Accept] is the same for a message already in memory. It returns nil only after the broker acknowledged the record (acks=all with the
// idempotent producer, see kafka.NewProducer), so a front-end that answers 250 or 202 on nil and
// a temporary failure otherwise never loses a message: the sender keeps it and retries.
package ingest
