// Command classifier is mailpipe's classifier service: it reads mail.parsed.v1, decides each
// message's kind and scores, and writes mail.classified.v1 in Kafka transactions.
// Configuration: MAILPIPE_* environment variables (see docs/configuration.md).
package main

import (
	"os"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
)

func main() { os.Exit(app.Main(pipeline.Service("classifier", pipeline.Classifier))) }
