package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/mailid"
	"github.com/mailpipe/mailpipe/pkg/parse"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/thread"
)

// runParse implements `mailpipe parse FILE...`: each file ("-" for stdin) is wrapped in a
// mail.raw.v1 record as ingress would build it and run through the parser stage's own handler,
// so what it prints is exactly the mail.parsed.v1 record the pipeline would produce.
func runParse(ctx context.Context, env app.Env) error {
	return parseFiles(ctx, env, os.Stdin)
}

// parseFiles is runParse with stdin injected, for tests (app.Env carries no input stream).
func parseFiles(ctx context.Context, env app.Env, stdin io.Reader) error {
	fs := flag.NewFlagSet("parse", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	from := fs.String("mail-from", "sender@example.com", "envelope sender (MAIL FROM)")
	to := fs.String("rcpt-to", "support@in.example.com", "envelope recipient(s), comma-separated")
	clientIP := fs.String("client-ip", "127.0.0.1", "client IP address on the envelope")
	if err := fs.Parse(env.Args); err != nil {
		return app.ConfigError(err)
	}
	if fs.NArg() == 0 {
		return app.ConfigError(errors.New("usage: mailpipe parse [flags] FILE… (- for stdin)"))
	}
	// No registry: the CLI encodes and decodes in one process, so deterministic ids suffice.
	codec, err := serde.New(ctx)
	if err != nil {
		return err
	}
	p := parse.New(codec, nil, env.Logger)
	ids := ingest.NewIDGenerator(nil, nil)
	envelope := events.Envelope{MailFrom: *from, RcptTo: splitList(*to), ClientIP: *clientIP, Source: "smtp"}
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	for _, file := range fs.Args() {
		raw, err := readInput(file, stdin)
		if err != nil {
			return err
		}
		id, err := ids.New()
		if err != nil {
			return err
		}
		out, err := parseOne(ctx, codec, p, rawRecord(ctx, id, envelope, raw))
		if err != nil {
			return fmt.Errorf("parsing %s: %w", file, err)
		}
		if err := enc.Encode(out); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
	}
	return nil
}

func readInput(file string, stdin io.Reader) ([]byte, error) {
	if file == "-" {
		raw, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		return raw, nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return raw, nil
}

// rawRecord builds the mail.raw.v1 value ingress would write for raw, with the message inline
// (the parser reads no blob store here). The thread key is derived from the headers alone:
// there is no thread index to consult.
func rawRecord(ctx context.Context, id string, env events.Envelope, raw []byte) *events.Raw {
	sum := sha256.Sum256(raw)
	rec := &events.Raw{
		ID: id,
		// Avro timestamp-micros: truncate so the record decodes to the same instant.
		ReceivedAt: time.Now().UTC().Truncate(time.Microsecond),
		Envelope:   env,
		Size:       int64(len(raw)),
		Sha256:     hex.EncodeToString(sum[:]),
		Raw:        &raw,
	}
	// Headers and body digest are read as ingress reads them, so the thread key (synthetic
	// ones included) is the one ingress would assign. With a nil index Key cannot fail.
	h := thread.FromRaw(raw)
	rec.MessageID = mailid.MessageID(h.MessageID)
	tk, _ := thread.Key(ctx, h, nil)
	rec.ThreadKey = tk.Key
	return rec
}

// parseOne runs in through the parser stage handler and decodes its single output record.
func parseOne(ctx context.Context, codec *serde.Codec, p *parse.Parser, in *events.Raw) (*events.Parsed, error) {
	v, err := codec.Encode(kafka.TopicRaw, in)
	if err != nil {
		return nil, fmt.Errorf("encoding raw record: %w", err)
	}
	recs, err := p.Handle(ctx, &kgo.Record{Topic: kafka.TopicRaw, Key: []byte(in.ThreadKey), Value: v})
	if err != nil {
		return nil, err
	}
	if len(recs) != 1 {
		return nil, fmt.Errorf("parser returned %d records, want 1", len(recs))
	}
	var out events.Parsed
	if err := codec.Decode(ctx, kafka.TopicParsed, recs[0].Value, &out); err != nil {
		return nil, fmt.Errorf("decoding parsed record: %w", err)
	}
	return &out, nil
}
