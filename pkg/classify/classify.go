// Package classify is the classifier stage handler: it reads an events.Parsed record from
// mail.parsed.v1 and writes an events.Classified record on mail.classified.v1.
//
// For each message it decides
//
//   - the kind, strongest signal first: a feedback report (RFC 5965 ARF, JMRP; pkg/bounce),
//     a bounce (RFC 3464 and the common MTAs' own formats; pkg/bounce) — a delivery report
//     without a failure is a notification —, another multipart/report (read receipts), an
//     automatic reply (RFC 3834 and vendor headers, out-of-office subjects; pkg/autoreply —
//     auto-generated mail is a notification), a mailing list (List-Id, List-Unsubscribe), a
//     notification (no-reply senders, notification services); otherwise spam when the spam
//     score reaches the threshold or rspamd calls it spam, and human when nothing matched.
//     Every decision comes with its evidence;
//   - the spam score and flags: the built-in rules of pkg/spam plus, when configured,
//     rspamd's score and symbols (a failing rspamd is noted, never blocks the stream);
//   - the lead score, its per-rule contributions, the queue and SLA from the rules file
//     (pkg/rules), with the rules version.
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
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/rules"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/spam"
	"github.com/mailpipe/mailpipe/pkg/spam/rspamd"
)

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

// SpamChecker is an external spam scanner; *rspamd.Client implements it.
type SpamChecker interface {
	Check(ctx context.Context, msg []byte, env rspamd.Envelope) (*rspamd.Result, error)
}

// RuleSource gives the rules set in use; *rules.Holder implements it (hot reload).
type RuleSource interface{ Current() *rules.Set }

type options struct {
	now           func() time.Time
	rspamd        SpamChecker
	rules         RuleSource
	spamThreshold float64
	meters        metric.MeterProvider
}

// MetricKinds counts classified records by kind (attribute kind). A batch the stage aborts and
// handles again is counted again: it is a rate, not a ledger.
const MetricKinds = "mailpipe.classify.records"

// WithMeterProvider sets where the classifier's metrics go (default: none).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(o *options) { o.meters = mp })
}

// WithClock sets the clock classified_at is taken from (default time.Now), for tests.
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }

// WithRspamd adds rspamd's verdict to the spam score.
func WithRspamd(c SpamChecker) Option { return optionFunc(func(o *options) { o.rspamd = c }) }

// WithRules scores and routes with the rules set src currently holds (default: the embedded
// default rules).
func WithRules(src RuleSource) Option { return optionFunc(func(o *options) { o.rules = src }) }

// WithSpamThreshold sets the spam score from which a message otherwise human is spam (default
// spam.DefaultThreshold).
func WithSpamThreshold(t float64) Option {
	return optionFunc(func(o *options) { o.spamThreshold = t })
}

// Classifier is the classifier stage handler. It is safe for concurrent use.
type Classifier struct {
	codec *serde.Codec
	log   *slog.Logger
	opts  options
	kinds metric.Int64Counter
}

type fixedRules struct{ s *rules.Set }

func (f fixedRules) Current() *rules.Set { return f.s }

// New returns a classifier; codec and log are required.
func New(codec *serde.Codec, log *slog.Logger, opts ...Option) (*Classifier, error) {
	o := options{now: time.Now, spamThreshold: spam.DefaultThreshold}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.rules == nil {
		set, err := rules.Default()
		if err != nil {
			return nil, fmt.Errorf("compiling the default rules: %w", err)
		}
		o.rules = fixedRules{set}
	}
	if o.meters == nil {
		o.meters = metricnoop.NewMeterProvider()
	}
	kinds, err := o.meters.Meter("github.com/mailpipe/mailpipe/pkg/classify").Int64Counter(MetricKinds,
		metric.WithDescription("Classified records by kind."), metric.WithUnit("{record}"))
	if err != nil {
		return nil, fmt.Errorf("creating metrics: %w", err)
	}
	return &Classifier{codec: codec, log: log, opts: o, kinds: kinds}, nil
}

// Handle is the stage.Handler of the classifier service: one mail.classified.v1 record per
// input, with the input's key and headers. Errors: failure.Schema for an undecodable record,
// failure.Internal for an output that cannot be encoded; a context that ends during rule
// evaluation is returned as is (retryable).
func (c *Classifier) Handle(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	var msg events.Parsed
	if err := c.codec.Decode(ctx, kafka.TopicParsed, rec.Value, &msg); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("decoding parsed record: %w", errors.Join(err, ctx.Err()))
		}
		return nil, failure.Wrap(failure.Schema, fmt.Errorf("decoding parsed record: %w", err))
	}
	cl, err := c.Classify(ctx, &msg)
	if err != nil {
		return nil, err
	}
	out := events.Classified{Message: msg, Classification: cl}
	v, err := c.codec.Encode(kafka.TopicClassified, &out)
	if err != nil {
		return nil, failure.Wrap(failure.Internal, fmt.Errorf("encoding classified record of %s: %w", msg.ID, err))
	}
	c.kinds.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", cl.Kind)))
	c.log.LogAttrs(ctx, slog.LevelDebug, "classified message",
		slog.String("message_id", msg.ID), slog.String("kind", cl.Kind),
		slog.Float64("spam_score", cl.SpamScore), slog.Float64("lead_score", cl.LeadScore), slog.String("queue", cl.Queue))
	return []*kgo.Record{{
		Topic:   kafka.TopicClassified,
		Key:     bytes.Clone(rec.Key),
		Value:   v,
		Headers: slices.Clone(rec.Headers),
	}}, nil
}

// Classify decides the classification of msg (see the package doc). It is the whole of Handle
// but Kafka, shared by `mailpipe classify`. It fails only when ctx ends.
func (c *Classifier) Classify(ctx context.Context, msg *events.Parsed) (events.Classification, error) {
	now := c.opts.now()
	cl := events.Classification{ClassifiedAt: now.UTC()}
	score, flags := spam.Score(msg, now)
	for _, f := range flags {
		cl.SpamFlags = append(cl.SpamFlags, f.String())
	}
	rspamdSpam := false
	if c.opts.rspamd != nil {
		res, err := c.opts.rspamd.Check(ctx, spam.Message(msg), rspamd.Envelope{
			ClientIP: msg.Envelope.ClientIP, Helo: msg.Envelope.Helo, MailFrom: msg.Envelope.MailFrom,
			RcptTo: msg.Envelope.RcptTo, QueueID: msg.ID,
		})
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return cl, fmt.Errorf("checking %s with rspamd: %w", msg.ID, ctx.Err())
			}
			// The built-in score stands alone; the flag tells readers why rspamd is missing.
			cl.SpamFlags = append(cl.SpamFlags, "RSPAMD_UNAVAILABLE: "+err.Error())
			c.log.WarnContext(ctx, "rspamd check failed", slog.String("message_id", msg.ID), slog.Any("error", err))
		case !res.Skipped:
			score += res.Score
			rspamdSpam = res.Spam()
			for _, s := range res.Matched() {
				cl.SpamFlags = append(cl.SpamFlags, fmt.Sprintf("rspamd:%s(%+g)", s.Name, s.Score))
			}
		}
	}
	cl.SpamScore = score

	if v, ok := detectKind(msg); ok {
		cl.Kind, cl.Evidence, cl.Bounce, cl.Feedback = v.kind, v.evidence, v.bounce, v.feedback
	} else if score >= c.opts.spamThreshold || rspamdSpam {
		cl.Kind = KindSpam
		cl.Evidence = []string{fmt.Sprintf("spam score %.1f (threshold %.1f)", score, c.opts.spamThreshold)}
		if rspamdSpam {
			cl.Evidence = append(cl.Evidence, "rspamd calls it spam")
		}
	} else {
		cl.Kind = KindHuman
		cl.Evidence = []string{"no automation or spam signal"}
	}

	set := c.opts.rules.Current()
	res, err := set.Evaluate(ctx, Facts(msg, cl.Kind, score))
	if err != nil {
		return cl, fmt.Errorf("evaluating rules for %s: %w", msg.ID, err)
	}
	cl.RulesVersion = res.Version
	cl.LeadScore = float64(res.Score)
	for _, x := range res.Contributions {
		cl.LeadContributions = append(cl.LeadContributions, events.Contribution{Rule: x.Rule, Points: float64(x.Points), Reason: x.Reason})
	}
	cl.Queue, cl.SLAMinutes = res.Route.Queue, res.Route.SLAMinutes
	for _, e := range res.Errors {
		cl.Evidence = append(cl.Evidence, "rules: "+e.Error())
	}
	return cl, nil
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
