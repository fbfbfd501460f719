// Package bench measures the ingress service as it runs in production: built without the race
// detector, started as its own OS process on a real Kafka broker and a real redis-server, and
// loaded by clients nobody here wrote (Postfix's smtp-source for SMTP) or by plain net/http
// workers (HTTP). It reports accepted messages per second, checked against the records on
// mail.raw.v1 read with read_committed, the ingress peak RSS (VmHWM) of every run, and what a
// single 50 MiB message does to that peak with a blob store configured.
//
// It is a benchmark, not a timed test: TestBench runs only with MAILPIPE_BENCH=1 (make bench),
// so make test compiles and lints it but never runs it. Each run rewrites RESULTS.md beside this
// file with the figures and the machine they were taken on.
package bench
