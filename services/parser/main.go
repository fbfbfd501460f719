// Command parser is mailpipe's parser service: it reads mail.raw.v1, parses each message
// (MIME, addresses, charsets, attachments to the blob store) and writes mail.parsed.v1 in Kafka
// transactions. Configuration: MAILPIPE_* environment variables (see docs/configuration.md).
package main

import (
	"os"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
)

func main() { os.Exit(app.Main(pipeline.Service("parser", pipeline.Parser))) }
