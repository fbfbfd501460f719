package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/smtp"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
)

// runSend implements `mailpipe send FILE...`: each file is one raw RFC 5322 message, sent over
// SMTP to ingress (default) or POSTed to its HTTP endpoint with --http.
func runSend(ctx context.Context, env app.Env) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	smtpAddr := fs.String("smtp", "127.0.0.1:2525", "ingress SMTP address")
	httpURL := fs.String("http", "", "ingress HTTP base URL, e.g. http://127.0.0.1:8080 (instead of SMTP)")
	apiKey := fs.String("api-key", "", "API key for --http (default $MAILPIPE_API_KEY)")
	from := fs.String("from", "sender@example.com", "envelope sender (MAIL FROM)")
	to := fs.String("to", "support@in.example.com", "envelope recipient(s), comma-separated")
	if err := fs.Parse(env.Args); err != nil {
		return app.ConfigError(err)
	}
	if fs.NArg() == 0 {
		return app.ConfigError(errors.New("usage: mailpipe send [flags] FILE…"))
	}
	if *apiKey == "" {
		*apiKey = env.Getenv("MAILPIPE_API_KEY")
	}
	rcpts := splitList(*to)
	for _, file := range fs.Args() {
		raw, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("reading %s: %w", file, err)
		}
		var reply string
		if *httpURL != "" {
			reply, err = sendHTTP(ctx, *httpURL, *apiKey, *from, rcpts, raw)
		} else {
			err = smtp.SendMail(*smtpAddr, nil, *from, rcpts, crlf(raw))
			reply = "250 accepted"
		}
		if err != nil {
			return fmt.Errorf("sending %s: %w", file, err)
		}
		fmt.Fprintf(env.Stdout, "%s: %s\n", file, reply)
	}
	return nil
}

func sendHTTP(ctx context.Context, base, key, from string, rcpts []string, raw []byte) (string, error) {
	q := url.Values{"mail_from": {from}, "rcpt_to": rcpts}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/v1/messages?"+q.Encode(), bytes.NewReader(raw))
	if err != nil {
		return "", fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "message/rfc822")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("posting message: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("ingress answered %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return fmt.Sprintf("%s %s", resp.Status, bytes.TrimSpace(body)), nil
}

// crlf turns bare LF line endings into CRLF, as SMTP requires; files in the wild use both.
func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}
