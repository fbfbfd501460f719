// Command ingress is mailpipe's front door: an SMTP server and an HTTP endpoint for raw MIME
// that answer 250 / 202 only after the message is acknowledged on mail.raw.v1.
// Configuration: MAILPIPE_* environment variables (see docs/configuration.md).
package main

import (
	"os"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
)

func main() { os.Exit(app.Main(pipeline.Service("ingress", pipeline.Ingress))) }
