// Package pipeline measures the whole pipeline as it runs in production: the five services
// (ingress, parser, classifier, enricher, crm-sink) built without the race detector, each its
// own OS process, on a real Kafka broker and a real redis-server on the same machine, loaded
// over SMTP at fixed rates with several connections and a realistic size mix.
//
// Each run measures two modes side by side with the same binaries and the same five Kafka
// hops: "noop", where the four Kafka→Kafka stages run with MAILPIPE_STAGE_NOOP=true and copy
// every record unchanged (the ceiling: transactions and broker round trips, no work), and
// "real", the pipeline as deployed with the local-store CRM connector. For every rate it reports
// the accepted messages/s, the end-to-end latency from the SMTP 250 to the mail.crm.v1 record
// (p50/p95/p99), the consumer lag trend, CPU per process and peak RSS; then it searches for the
// highest rate held for a minute without the lag growing, and takes a CPU profile of every
// service in the real mode at that rate.
//
// Settings, each a MAILPIPE_BENCH_PIPELINE_* variable: RATES (100,500,1000,2000), STEP (30s per
// fixed rate), HOLD (60s per search run), SEARCH (3 search runs per mode), DRAIN (90s), CONNS (64
// SMTP connections), PROFILE (20s), MODES (noop,real), CRM (webhook or localstore), BROKERS (use
// that broker instead of a fresh one), KAFKA_PROPERTIES (extra broker settings, comma-separated,
// for experiments), PROFILES (a directory that keeps the profiles), OUT (write the report there).
//
// It is a benchmark, not a timed test: TestBenchPipeline runs only with MAILPIPE_BENCH=1 (make
// bench-pipeline), so make test compiles and lints it but never runs it. Each run rewrites
// PIPELINE.md in e2e/bench, keeping the hand-written notes below its notes marker.
package pipeline
