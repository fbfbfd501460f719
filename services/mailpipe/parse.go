package main

import (
	"bytes"
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
	"github.com/mailpipe/mailpipe/pkg/blob"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/mailid"
	"github.com/mailpipe/mailpipe/pkg/mime"
	"github.com/mailpipe/mailpipe/pkg/parse"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/thread"
)

// runParse implements `mailpipe parse FILE...`: each file ("-" for stdin) is wrapped in a
// mail.raw.v1 record as ingress would build it and run through the parser stage's own handler,
// so what it prints is exactly the mail.parsed.v1 record the pipeline would produce. As in
// ingress, a message larger than the inline limit is not held in memory: it streams into a blob
// store (a temporary one, removed at exit) and the record carries its ref (claim check), so the
// parser reads it the way the service does.
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
	blobsURL := fs.String("blobs", "", "blob store URL to store attachments in (file:///dir, s3://…); without it they are described, not stored")
	inlineLimit := fs.Int64("inline-limit", 1<<20, "bytes above which a message goes through a temporary blob store, as ingress hands large messages over")
	bench := fs.Duration("bench", 0, "instead of printing records, parse all the files over and over for at least this "+
		"long and print the throughput as JSON (make bench-parsers)")
	warmup := fs.Duration("warmup", time.Second, "with -bench: parse the files for this long first, untimed")
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
	var atts parse.BlobStore
	if *blobsURL != "" {
		st, err := blob.Open(ctx, *blobsURL)
		if err != nil {
			return app.ConfigError(fmt.Errorf("opening the blob store: %w", err))
		}
		defer closeStore(st)
		atts = st
	}
	raws, err := newRawSpool(ctx)
	if err != nil {
		return err
	}
	defer raws.Close()
	p := parse.New(codec, atts, env.Logger, parse.WithRawBlobs(raws.store))
	ids := ingest.NewIDGenerator(nil, nil)
	envelope := events.Envelope{MailFrom: *from, RcptTo: splitList(*to), ClientIP: *clientIP, Source: "smtp"}
	if *bench > 0 {
		return benchParse(ctx, env, p, fs.Args(), stdin, envelope, ids, *warmup, *bench)
	}
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	for _, file := range fs.Args() {
		id, err := ids.New()
		if err != nil {
			return err
		}
		rec, err := readRecord(ctx, file, stdin, *inlineLimit, raws, id, envelope)
		if err != nil {
			return err
		}
		out, err := parseOne(ctx, codec, p, rec)
		if err != nil {
			return fmt.Errorf("parsing %s: %w", file, err)
		}
		if err := enc.Encode(out); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
	}
	return nil
}

// readRecord reads one input into a mail.raw.v1 record: inline up to limit bytes, beyond that
// streamed into the raw spool with the record holding the ref.
func readRecord(ctx context.Context, file string, stdin io.Reader, limit int64, raws *rawSpool, id string, env events.Envelope) (*events.Raw, error) {
	r := stdin
	name := "stdin"
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
		defer func() { _ = f.Close() }()
		r, name = f, file
	}
	// The head is also where the thread headers are read from, so it is never shorter than the
	// largest header block the parser reads.
	head, err := io.ReadAll(io.LimitReader(r, max(limit, mime.DefaultMaxHeaderBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(head)) <= limit {
		return rawRecord(ctx, id, env, head), nil
	}
	sum, body := sha256.New(), thread.NewBodyHasher()
	var n countWriter
	ref, err := raws.store.Put(ctx, "raw/"+id, io.TeeReader(io.MultiReader(bytes.NewReader(head), r), io.MultiWriter(sum, body, &n)))
	if err != nil {
		return nil, fmt.Errorf("spooling %s: %w", name, err)
	}
	rec := &events.Raw{
		ID:         id,
		ReceivedAt: time.Now().UTC().Truncate(time.Microsecond),
		Envelope:   env,
		Size:       int64(n),
		Sha256:     hex.EncodeToString(sum.Sum(nil)),
		RawBlobRef: &ref,
	}
	h := thread.ReadHeaders(head, body.Digest())
	rec.MessageID = mailid.MessageID(h.MessageID)
	tk, _ := thread.Key(ctx, h, nil)
	rec.ThreadKey = tk.Key
	return rec, nil
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// rawSpool is the temporary blob store large inputs stream into, removed by Close.
type rawSpool struct {
	dir   string
	store blob.Store
}

func newRawSpool(ctx context.Context) (*rawSpool, error) {
	dir, err := os.MkdirTemp("", "mailpipe-parse-")
	if err != nil {
		return nil, fmt.Errorf("creating the raw spool: %w", err)
	}
	st, err := blob.Open(ctx, "file://"+dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("opening the raw spool: %w", err)
	}
	return &rawSpool{dir: dir, store: st}, nil
}

func (s *rawSpool) Close() {
	closeStore(s.store)
	_ = os.RemoveAll(s.dir)
}

// closeStore releases what a store holds, for stores that hold something.
func closeStore(st blob.Store) {
	if c, ok := st.(io.Closer); ok {
		_ = c.Close()
	}
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

// readInput reads a whole input file ("-" for stdin) into memory (the benchmark holds its
// corpus in memory).
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
