// Package classify is the classifier stage handler: it reads an events.Parsed record from
// mail.parsed.v1 and writes an events.Classified record on mail.classified.v1.
//
// This is the pass-through classifier. It decides the kind only from signals that need no
// judgement, in this order, and records the signal as evidence:
//
//  1. a multipart/report body: delivery-status → bounce, feedback-report → feedback_report,
//     other report types (read receipts) → notification;
//  2. a null envelope sender (bounces are sent with MAIL FROM:<>) together with a From of
//     MAILER-DAEMON or postmaster → bounce;
//  3. an Auto-Submitted header other than "no" (RFC 3834) → auto_reply;
//  4. any other null envelope sender → bounce;
//  5. a List-Id header (RFC 2919) → list;
//  6. otherwise → human.
//
// Spam scoring, DSN detail (pkg/dsn), vendor auto-reply detection (pkg/autoreply) and the rules
// file (lead score, queue, SLA) come later; until then the spam and lead scores are zero, the
// bounce detail is null and RulesVersion is [RulesVersion].
package classify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	stdmime "mime"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// RulesVersion is written to every classification made by the built-in rules.
const RulesVersion = "builtin-0"

// Kinds. The values are part of mail.classified.v1 (see its schema).
const (
	KindHuman          = "human"
	KindAutoReply      = "auto_reply"
	KindBounce         = "bounce"
	KindFeedbackReport = "feedback_report"
	KindList           = "list"
	KindNotification   = "notification"
	KindSpam           = "spam"
)

// Option configures a [Classifier].
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	now func() time.Time
}

// WithClock sets the clock classified_at is taken from (default time.Now), for tests.
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }

// Classifier is the classifier stage handler. It is safe for concurrent use.
type Classifier struct {
	codec *serde.Codec
	log   *slog.Logger
	now   func() time.Time
}

// New returns a classifier; codec and log are required.
func New(codec *serde.Codec, log *slog.Logger, opts ...Option) *Classifier {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	return &Classifier{codec: codec, log: log, now: o.now}
}

// Handle is the stage.Handler of the classifier service: one mail.classified.v1 record per
// input, with the input's key and headers. Errors: failure.Schema for an undecodable record,
// failure.Internal for an output that cannot be encoded.
func (c *Classifier) Handle(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	var msg events.Parsed
	if err := c.codec.Decode(ctx, kafka.TopicParsed, rec.Value, &msg); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("decoding parsed record: %w", errors.Join(err, ctx.Err()))
		}
		return nil, failure.Wrap(failure.Schema, fmt.Errorf("decoding parsed record: %w", err))
	}
	out := events.Classified{Message: msg, Classification: Classify(&msg)}
	out.Classification.ClassifiedAt = c.now().UTC()
	v, err := c.codec.Encode(kafka.TopicClassified, &out)
	if err != nil {
		return nil, failure.Wrap(failure.Internal, fmt.Errorf("encoding classified record of %s: %w", msg.ID, err))
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "classified message",
		slog.String("message_id", msg.ID), slog.String("kind", out.Classification.Kind))
	return []*kgo.Record{{
		Topic:   kafka.TopicClassified,
		Key:     bytes.Clone(rec.Key),
		Value:   v,
		Headers: slices.Clone(rec.Headers),
	}}, nil
}

// Classify applies the built-in rules (see the package doc) to msg. ClassifiedAt is left zero
// for the caller to set.
func Classify(msg *events.Parsed) events.Classification {
	kind, evidence := kindOf(msg)
	return events.Classification{Kind: kind, Evidence: evidence, RulesVersion: RulesVersion}
}

func kindOf(msg *events.Parsed) (string, []string) {
	if mt, params, ok := contentType(msg); ok && mt == "multipart/report" {
		rt := strings.ToLower(params["report-type"])
		ev := []string{"content-type multipart/report; report-type=" + rt}
		switch rt {
		case "delivery-status":
			return KindBounce, ev
		case "feedback-report":
			return KindFeedbackReport, ev
		default:
			return KindNotification, ev
		}
	}
	nullSender := msg.Envelope.MailFrom == "" || msg.Envelope.MailFrom == "<>"
	if nullSender && msg.From != nil && isDaemon(msg.From.Address) {
		return KindBounce, []string{"envelope sender is null", "from " + msg.From.Address}
	}
	if v, ok := header(msg, "Auto-Submitted"); ok {
		if kw := strings.ToLower(strings.TrimSpace(strings.SplitN(v, ";", 2)[0])); kw != "no" && kw != "" {
			return KindAutoReply, []string{"header Auto-Submitted: " + v}
		}
	}
	if nullSender {
		return KindBounce, []string{"envelope sender is null"}
	}
	if v, ok := header(msg, "List-Id"); ok {
		return KindList, []string{"header List-Id: " + v}
	}
	return KindHuman, []string{"no automation signal"}
}

// isDaemon reports whether addr's local part names a mail system rather than a person.
func isDaemon(addr string) bool {
	local, _, _ := strings.Cut(strings.ToLower(addr), "@")
	switch local {
	case "mailer-daemon", "postmaster", "mail-daemon", "maildaemon":
		return true
	}
	return false
}

// header returns the first value of the named top-level header.
func header(msg *events.Parsed, name string) (string, bool) {
	for _, h := range msg.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

// contentType returns the message's top-level media type (lower case) and parameters.
func contentType(msg *events.Parsed) (string, map[string]string, bool) {
	v, ok := header(msg, "Content-Type")
	if !ok {
		return "", nil, false
	}
	mt, params, err := stdmime.ParseMediaType(v)
	if err != nil {
		// A broken parameter must not hide the type: take what is before the first ';'.
		mt = strings.ToLower(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]))
		params = map[string]string{}
		if i := strings.Index(strings.ToLower(v), "report-type="); i >= 0 {
			f := strings.FieldsFunc(v[i+len("report-type="):], func(r rune) bool { return r == ';' || r == ' ' })
			if len(f) > 0 {
				params["report-type"] = strings.Trim(f[0], `"'`)
			}
		}
	}
	return mt, params, true
}
