package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

func ExampleIDGenerator() {
	// A fixed clock and entropy source give reproducible ids; production passes nil for both.
	now := func() time.Time { return time.UnixMilli(1469918176385) }
	g := ingest.NewIDGenerator(now, bytes.NewReader(make([]byte, 10)))
	a, _ := g.New()
	b, _ := g.New() // same millisecond: the random part counts up
	fmt.Println(a)
	fmt.Println(b)
	// Output:
	// 01ARYZ6S410000000000000000
	// 01ARYZ6S410000000000000001
}

func ExampleIngester_Accept() {
	ctx := context.Background()
	codec, err := serde.New(ctx)
	if err != nil {
		panic(err)
	}
	// Production passes a *kgo.Client from kafka.NewProducer (acks=all, idempotent).
	prod := &fakeProducer{}
	in, err := ingest.New(ingest.Config{Domains: []string{"in.example.com"}}, ingest.Options{
		Producer: prod,
		Codec:    codec,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	raw := []byte("From: ann@example.org\r\nMessage-ID: <q1@example.org>\r\nIn-Reply-To: <root@example.org>\r\n\r\nHi\r\n")
	env := events.Envelope{MailFrom: "ann@example.org", RcptTo: []string{"Support@in.example.com"}, Source: "http"}

	res, err := in.Accept(ctx, env, raw)
	if err != nil {
		fmt.Println("answer 451/503:", err) // the sender keeps the message and retries
		return
	}
	fmt.Println("thread key:", res.ThreadKey)
	fmt.Println("record key:", string(prod.produced()[0].Key))
	// Output:
	// thread key: root@example.org
	// record key: root@example.org
}
