// Command crm-sink is mailpipe's CRM sink: it reads mail.enriched.v1, writes each message to
// the configured connectors idempotently by external id, and records the outcomes on
// mail.crm.v1 and a flat row on mail.lake.v1. Connectors are chosen by configuration and wired
// explicitly in package pipeline. Configuration: MAILPIPE_* environment variables.
package main

import (
	"context"
	"os"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
)

func main() {
	os.Exit(app.Main(pipeline.Service("crm-sink", func(ctx context.Context, cfg pipeline.SinkConfig, d *pipeline.Deps) ([]app.Actor, error) {
		return pipeline.CRMSink(ctx, cfg, d, nil)
	})))
}
