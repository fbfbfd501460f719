package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/classify"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/parse"
	"github.com/mailpipe/mailpipe/pkg/rules"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/spam/rspamd"
)

// runClassify implements `mailpipe classify FILE... [--rules FILE]`: each message goes through
// the parser's and the classifier's own code (parse, then classify; no Kafka) and the
// mail.classified.v1 record is printed as JSON, for people checking why a message was
// classified as it was.
func runClassify(ctx context.Context, env app.Env) error {
	fs := flag.NewFlagSet("classify", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	from := fs.String("mail-from", "sender@example.com", "envelope sender (MAIL FROM); empty for the null sender")
	to := fs.String("rcpt-to", "support@in.example.com", "envelope recipient(s), comma-separated")
	clientIP := fs.String("client-ip", "127.0.0.1", "client IP address on the envelope")
	rulesFile := fs.String("rules", "", "rules file (default: the embedded default rules)")
	rspamdURL := fs.String("rspamd", env.Getenv("MAILPIPE_RSPAMD_URL"), "rspamd URL whose verdict is added (default $MAILPIPE_RSPAMD_URL)")
	if err := fs.Parse(env.Args); err != nil {
		return app.ConfigError(err)
	}
	if fs.NArg() == 0 {
		return app.ConfigError(errors.New("usage: mailpipe classify [flags] FILE… (- for stdin)"))
	}
	var opts []classify.Option
	if *rulesFile != "" {
		set, err := rules.LoadFile(*rulesFile)
		if err != nil {
			return app.ConfigError(fmt.Errorf("rules file: %w", err))
		}
		opts = append(opts, classify.WithRules(rules.NewHolder(set, env.Logger)))
	}
	if *rspamdURL != "" {
		r, err := rspamd.New(*rspamdURL)
		if err != nil {
			return app.ConfigError(err)
		}
		opts = append(opts, classify.WithRspamd(r))
	}
	codec, err := serde.New(ctx)
	if err != nil {
		return err
	}
	c, err := classify.New(codec, env.Logger, opts...)
	if err != nil {
		return err
	}
	raws, err := newRawSpool(ctx)
	if err != nil {
		return err
	}
	defer raws.Close()
	p := parse.New(codec, nil, env.Logger, parse.WithRawBlobs(raws.store))
	ids := ingest.NewIDGenerator(nil, nil)
	envelope := events.Envelope{MailFrom: *from, RcptTo: splitList(*to), ClientIP: *clientIP, Source: "smtp"}
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	for _, file := range fs.Args() {
		id, err := ids.New()
		if err != nil {
			return err
		}
		rec, err := readRecord(ctx, file, os.Stdin, 1<<20, raws, id, envelope)
		if err != nil {
			return err
		}
		parsed, err := parseOne(ctx, codec, p, rec)
		if err != nil {
			return fmt.Errorf("parsing %s: %w", file, err)
		}
		cl, err := c.Classify(ctx, parsed)
		if err != nil {
			return fmt.Errorf("classifying %s: %w", file, err)
		}
		if err := enc.Encode(events.Classified{Message: *parsed, Classification: cl}); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
	}
	return nil
}
