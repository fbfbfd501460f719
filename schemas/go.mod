module github.com/mailpipe/mailpipe/schemas

go 1.26.0
