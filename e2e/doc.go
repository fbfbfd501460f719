// Package e2e holds mailpipe's end-to-end tests: every service built and run as its own OS
// process against a real Kafka broker and a real redis-server, fed by real SMTP clients (swaks)
// and read by a signature-checking webhook receiver and by Kafka clients nobody here wrote (kcat).
// It is its own module so unit runs never start the heavy stack.
package e2e
