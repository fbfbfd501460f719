package pipeline

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/stage"
)

// noopHandler is the benchmark-only handler of MAILPIPE_STAGE_NOOP: it forwards each input
// record to output unchanged (key, value bytes and headers; the producer picks partition,
// offset and timestamp), so `make bench-pipeline` can measure the ceiling of the same five
// Kafka hops, transactions included, with no work in the stages. Never turn it on in a
// deployment: the parser, classifier and enricher then pass raw messages through untouched and
// the crm-sink writes nothing to any CRM, only the copied record to mail.crm.v1.
func noopHandler(output string) stage.Handler {
	return func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		// The value and key are shared, not copied: the handler contract makes them read-only,
		// and the producer only reads them.
		hs := make([]kgo.RecordHeader, len(rec.Headers))
		copy(hs, rec.Headers)
		return []*kgo.Record{{Topic: output, Key: rec.Key, Value: rec.Value, Headers: hs}}, nil
	}
}
