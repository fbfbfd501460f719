// Package bounce recognises delivery reports and feedback reports in inbound mail and extracts
// what a CRM needs from them: for a bounce, the bounced recipients with their status code,
// diagnostic, hard or soft severity and reporting MTA; for an RFC 5965 (ARF) feedback report, the
// feedback type and the complained-about message.
//
// Bounces come in two shapes. RFC 3464 delivery status notifications carry a machine-readable
// message/delivery-status part, read with enmime's dsn package (and a lenient reader for the
// malformed ones real MTAs send). Many MTAs and providers still send plain-text notices instead
// (qmail, Exim without DSN, Exchange 2003, Lotus Notes, Yahoo, DragonFly, Amazon SES through SNS,
// …); those are read with per-format text rules. Every decision carries the evidence that made
// it, so `mailpipe classify` can show why a message was called a bounce.
//
// The input is a small [Message] built from the parsed record, not the Kafka event, so the
// package stays a pure domain package (STYLE.md habit 4). Only the envelope sender, top-level
// headers, subject, text/HTML bodies, the report parts and the header section of attached
// messages are read, and each body is read up to [MaxBody] bytes.
//
// Call [Detect] before the auto-reply detector: RFC 3464 notifications carry
// "Auto-Submitted: auto-replied" too.
package bounce
