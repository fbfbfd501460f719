package mime_test

import (
	"fmt"

	"github.com/mailpipe/mailpipe/pkg/mime"
)

func ExampleParser_Parse() {
	p, err := mime.NewParser(mime.WithLimits(mime.Limits{MaxParts: 100}))
	if err != nil {
		panic(err)
	}
	raw := "From: =?utf-8?Q?J=C3=B6rg?= <Joerg@Example.COM>\r\n" +
		"To: support@in.example.com\r\n" +
		"Subject: Hello\r\n" +
		"Date: Mon, 23 Nov 2026 11:30:00 +0100\r\n" +
		"Message-ID: <M1@Example.COM>\r\n" +
		"\r\n" +
		"Hi there\r\n"
	m, err := p.Parse([]byte(raw))
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Status, m.From.Name, m.From.Address, m.MessageID)
	fmt.Println(m.Date.Format("2006-01-02 15:04 MST"), m.Subject)
	fmt.Printf("%q\n", m.Text)
	// Output:
	// ok Jörg joerg@example.com M1@example.com
	// 2026-11-23 10:30 UTC Hello
	// "Hi there\n"
}
