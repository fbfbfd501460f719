package spool_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"github.com/jhillyerd/enmime/v2"

	"github.com/mailpipe/mailpipe/pkg/spool"
)

// ExampleSplit splits a message with an attachment above the threshold, parses the skeleton,
// and finds the spooled part in the parsed tree by its X-Mailpipe-Spooled field.
func ExampleSplit() {
	attachment := bytes.Repeat([]byte("%PDF-1.7 "), 1000) // 9000 bytes
	raw := "From: a@example.com\r\nSubject: report\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n" +
		"--b\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(attachment) + "\r\n--b--\r\n"

	res, err := spool.Split(context.Background(), strings.NewReader(raw), spool.Options{Threshold: 4096})
	if err != nil {
		panic(err)
	}
	defer func() { _ = res.Close() }()

	root, err := enmime.ReadParts(bytes.NewReader(res.Skeleton))
	if err != nil {
		panic(err)
	}
	for c := root.FirstChild; c != nil; c = c.NextSibling {
		for _, v := range c.Header.Values(spool.Header) {
			p, ok := res.Lookup(v)
			if !ok {
				continue // not ours
			}
			rc, err := p.Open()
			if err != nil {
				panic(err)
			}
			body, _ := io.ReadAll(rc)
			_ = rc.Close()
			fmt.Println(c.PartID, c.FileName, p.ContentType, p.Encoding, p.Size, bytes.Equal(body, attachment))
		}
	}
	fmt.Println("message", len(raw), "bytes, skeleton", len(res.Skeleton))
	// Output:
	// 2 r.pdf application/pdf base64 9000 true
	// message 12235 bytes, skeleton 275
}
