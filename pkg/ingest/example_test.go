package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/blob"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/kafka"
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

func ExampleIngester_AcceptStream() {
	ctx := context.Background()
	codec, err := serde.New(ctx)
	if err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "blobs")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	// Production: blob.Config{URL: "s3://…", Keys: []string{"k1=awskms://…"}}.Open(ctx).
	blobs, err := blob.Open(ctx, "file://"+dir)
	if err != nil {
		panic(err)
	}
	prod := &fakeProducer{}
	in, err := ingest.New(ingest.Config{Domains: []string{"in.example.com"}, InlineLimit: 64 << 10}, ingest.Options{
		Producer: prod, Codec: codec, Logger: slog.New(slog.DiscardHandler), Blobs: blobs,
	})
	if err != nil {
		panic(err)
	}
	// A front-end passes the connection's reader (SMTP DATA, HTTP body): a message above the
	// inline limit streams to the blob store and is never held whole.
	body := strings.NewReader("From: ann@example.org\r\nMessage-ID: <scan@example.org>\r\n\r\n" + strings.Repeat("A", 1<<20))
	env := events.Envelope{MailFrom: "ann@example.org", RcptTo: []string{"support@in.example.com"}, Source: "smtp"}

	res, err := in.AcceptStream(ctx, env, body)
	if err != nil {
		fmt.Println("answer 451/503:", err)
		return
	}
	var rec events.Raw
	if err := codec.Decode(ctx, kafka.TopicRaw, prod.produced()[0].Value, &rec); err != nil {
		panic(err)
	}
	fmt.Println("thread key:", res.ThreadKey)
	fmt.Println("inline:", rec.Raw != nil, "size:", rec.Size)
	fmt.Println("claim check:", strings.HasSuffix(*rec.RawBlobRef, "/raw/"+res.ID))
	// Output:
	// thread key: scan@example.org
	// inline: false size: 1048633
	// claim check: true
}
