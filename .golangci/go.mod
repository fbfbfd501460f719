// The ruleguard rules are their own module so that the dsl import resolves for golangci-lint's
// gocritic without adding a dependency to the product modules. Not part of go.work.
module github.com/mailpipe/mailpipe/.golangci

go 1.26.0

require github.com/quasilyte/go-ruleguard/dsl v0.3.23 // indirect
