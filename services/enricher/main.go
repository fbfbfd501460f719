// Command enricher is mailpipe's enricher service: it reads mail.classified.v1, adds contact
// and company data, and writes mail.enriched.v1 in Kafka transactions.
// Configuration: MAILPIPE_* environment variables (see docs/configuration.md).
package main

import (
	"os"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
)

func main() { os.Exit(app.Main(pipeline.Service("enricher", pipeline.Enricher))) }
