// Package crm measures the CRM connectors (pkg/crm/hubspot, salesforce, pipedrive, postgres and
// webhook) against their contract servers, a real PostgreSQL and a local signature-checking
// webhook receiver, for the two figures: upserts per second per connector, and the
// duplicate count after every message was delivered twice (which must be 0).
//
// The messages come from a deterministic generator (corpus_test.go): distinct Message-IDs whose
// external ids are computed with pkg/mailid, a few hundred senders spread over about fifty
// company domains and a handful of free-mail providers, and threads with replies, so contacts
// and companies repeat across messages the way real inbound mail makes them repeat.
//
// TestReplayTwiceNoDuplicates runs in make test on a small corpus. The Postgres target needs the
// PostgreSQL server make test starts (MAILPIPE_TEST_POSTGRES_DSN) and fails without it; it is
// built only once e2e/go.mod requires pgx (see postgres_test.go). TestBenchCRM is a
// benchmark, not a timed test: it runs only with MAILPIPE_BENCH=1 (make bench-crm) and rewrites
// CRM.md in e2e/bench with the figures and the machine they were taken on.
package crm
