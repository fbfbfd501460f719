// Package parsers compares the speed of mailpipe's parser with two independent JavaScript MIME
// parsers, mailparser and postal-mime (pinned in scripts/node), on the shared corpora.
//
// Each parser runs in its own OS process pinned to one core (taskset; GOMAXPROCS=1 for Go):
// mailpipe as `mailpipe parse -bench`, built without the race detector, which runs the parser
// stage's own transformation (parse.Parser.Parse: the MIME parse and the whole mail.parsed.v1
// record, attachments hashed, no Kafka and no blob store), and the peers as
// scripts/node/bench-peers.mjs with their default full parse. Every process reads the corpus
// into memory, warms up, then parses the whole corpus over and over for a fixed wall time and
// reports messages/s and MB/s.
//
// It is a benchmark, not a timed test: TestBenchParsers runs only with MAILPIPE_BENCH=1 (make
// bench-parsers), so make test compiles it but never runs it. Each run rewrites PARSERS.md in
// e2e/bench with the figures, the ratios and the machine they were taken on.
package parsers
