module github.com/mailpipe/mailpipe/e2e

go 1.26.0

require (
	github.com/mailpipe/mailpipe/pkg v0.0.0
	github.com/mailpipe/mailpipe/schemas v0.0.0
)

replace (
	github.com/mailpipe/mailpipe/pkg => ../pkg
	github.com/mailpipe/mailpipe/schemas => ../schemas
)
