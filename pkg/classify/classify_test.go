package classify_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/classify"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/rules"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/spam/rspamd"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

var classifiedAt = time.Date(2026, 11, 23, 10, 31, 0, 0, time.UTC)

func parsed(mailFrom, from string, headers ...string) *events.Parsed {
	d := classifiedAt.Add(-time.Hour)
	p := &events.Parsed{
		ID: "01JB6Y2M3Q7V0000000000000", ThreadKey: "root@example.com", Tenant: "acme",
		ReceivedAt: classifiedAt.Add(-time.Minute), ParsedAt: classifiedAt.Add(-time.Second),
		Envelope:    events.Envelope{MailFrom: mailFrom, RcptTo: []string{"support@in.example.com"}, Source: "smtp"},
		MessageID:   "m1@example.com",
		ExternalID:  "ab",
		Subject:     "hello",
		Date:        &d,
		Text:        "hi",
		ParseStatus: "ok",
		To:          []events.Address{{Address: "support@in.example.com"}},
	}
	if from != "" {
		p.From = &events.Address{Address: from, DomainASCII: from[strings.LastIndexByte(from, '@')+1:]}
	}
	for i := 0; i+1 < len(headers); i += 2 {
		p.Headers = append(p.Headers, events.Header{Name: headers[i], Value: headers[i+1]})
	}
	return p
}

func withText(p *events.Parsed, subject, text string) *events.Parsed {
	p.Subject, p.Text = subject, text
	return p
}

func withPart(p *events.Parsed, contentType, text string) *events.Parsed {
	p.Attachments = append(p.Attachments, events.Attachment{ContentType: contentType, Text: &text})
	return p
}

func newClassifier(t *testing.T, opts ...classify.Option) *classify.Classifier {
	t.Helper()
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c, err := classify.New(codec, slog.New(slog.DiscardHandler), append([]classify.Option{classify.WithClock(func() time.Time { return classifiedAt })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const dsn = "Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; gone@example.org\nAction: failed\nStatus: 5.1.1\n" +
	"Diagnostic-Code: smtp; 550 5.1.1 user unknown\n"

const arf = "Feedback-Type: abuse\nUser-Agent: SomeISP/1.0\nVersion: 1\nSource-IP: 192.0.2.1\n" +
	"Original-Mail-From: <news@example.com>\nOriginal-Rcpt-To: <victim@isp.example>\nReported-Domain: example.com\n"

func TestClassifyKinds(t *testing.T) {
	c := newClassifier(t)
	for _, tt := range []struct {
		name     string
		msg      *events.Parsed
		kind     string
		evidence string
	}{
		{"person", parsed("ann@example.com", "ann@example.com"), classify.KindHuman, "no automation or spam signal"},
		{
			"RFC 3464 bounce", withPart(parsed("", "mailer-daemon@mx.example.net", "Content-Type", `multipart/report; report-type=delivery-status; boundary="b"`),
				"message/delivery-status", dsn),
			classify.KindBounce, "5.1.1",
		},
		{
			"DSN content type without a readable report", parsed("", "x@y.example", "Content-Type", `multipart/report; report-type=Delivery-Status; boundary=a b c`),
			classify.KindBounce, "no recipient could be read",
		},
		{
			"ARF", withPart(parsed("arf@isp.example", "arf@isp.example", "Content-Type", "multipart/report; report-type=feedback-report; boundary=x"),
				"message/feedback-report", arf),
			classify.KindFeedbackReport, "feedback-report",
		},
		{
			"read receipt", parsed("ann@example.com", "ann@example.com", "Content-Type", "multipart/report; report-type=disposition-notification; boundary=x"),
			classify.KindNotification, "report-type=disposition-notification",
		},
		{
			"unreadable notice from MAILER-DAEMON", parsed("", "mailer-daemon@mx.example.net"),
			classify.KindBounce, "from mailer-daemon@mx.example.net",
		},
		{"vacation reply", parsed("", "ann@example.com", "Auto-Submitted", "auto-replied"), classify.KindAutoReply, "Auto-Submitted: auto-replied"},
		{"out of office in German", withText(parsed("bob@example.de", "bob@example.de"), "Abwesenheitsnotiz: Ihre Anfrage", "Ich bin nicht im Büro."), classify.KindAutoReply, "(de)"},
		{
			"auto-generated is a notification", parsed("bot@example.com", "bot@example.com", "Auto-Submitted", "auto-generated; owner-email=x@y"),
			classify.KindNotification, "Auto-Submitted: auto-generated",
		},
		{"Auto-Submitted: no is a person", parsed("ann@example.com", "ann@example.com", "auto-submitted", "No"), classify.KindHuman, "no automation"},
		{
			"mailing list", parsed("list-bounces@lists.example.org", "ann@example.com", "List-Id", "Dev <dev.lists.example.org>"),
			classify.KindList, "header List-Id: Dev <dev.lists.example.org>",
		},
		{"no-reply sender", parsed("bounce@mail.example.com", "no-reply@example.com"), classify.KindNotification, "no-reply sender"},
		{"notification service", parsed("x@github.com", "notifications@github.com"), classify.KindNotification, "no-reply sender"},
		{"null sender without other signal", parsed("", "someone@example.com"), classify.KindNotification, "envelope sender is null"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Classify(t.Context(), tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind != tt.kind || !slices.ContainsFunc(got.Evidence, func(e string) bool { return strings.Contains(e, tt.evidence) }) {
				t.Errorf("Classify = %s %q; want %s with %q", got.Kind, got.Evidence, tt.kind, tt.evidence)
			}
			if !got.ClassifiedAt.Equal(classifiedAt) || got.RulesVersion == "" || got.Queue == "" {
				t.Errorf("classification %+v", got)
			}
		})
	}
}

func TestBounceAndFeedbackDetail(t *testing.T) {
	c := newClassifier(t)
	got, err := c.Classify(t.Context(), withPart(parsed("", "mailer-daemon@mx.example.net",
		"Content-Type", "multipart/report; report-type=delivery-status; boundary=b"), "message/delivery-status", dsn))
	if err != nil {
		t.Fatal(err)
	}
	b := got.Bounce
	if b == nil || b.Recipient != "gone@example.org" || b.Status != "5.1.1" || !b.Hard || b.Severity != "hard" ||
		b.ReportingMta != "mx.example.net" || len(b.Recipients) != 1 || !strings.Contains(b.Diagnostic, "user unknown") {
		t.Fatalf("bounce %+v", b)
	}
	got, err = c.Classify(t.Context(), withPart(parsed("arf@isp.example", "arf@isp.example",
		"Content-Type", "multipart/report; report-type=feedback-report; boundary=x"), "message/feedback-report", arf))
	if err != nil {
		t.Fatal(err)
	}
	f := got.Feedback
	if f == nil || f.Type != "abuse" || f.SourceIP != "192.0.2.1" || f.ReportedDomain != "example.com" ||
		!slices.Contains(f.OriginalRcptTo, "victim@isp.example") || got.Bounce != nil {
		t.Fatalf("feedback %+v", f)
	}
}

func TestSpam(t *testing.T) {
	c := newClassifier(t)
	msg := parsed("ceo@bank.example", "ceo@bank.example")
	msg.From.Name = "security@yourbank.example"
	msg.Authentication = events.Authentication{DMARC: "fail", DMARCPolicy: "reject", SPF: "fail"}
	got, err := c.Classify(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != classify.KindSpam || got.SpamScore < 8 {
		t.Fatalf("kind %s score %v flags %v", got.Kind, got.SpamScore, got.SpamFlags)
	}
	for _, f := range []string{"DMARC_FAIL_REJECT", "SPF_FAIL", "FROM_NAME_SPOOF"} {
		if !slices.ContainsFunc(got.SpamFlags, func(s string) bool { return strings.HasPrefix(s, f) }) {
			t.Errorf("flags %v lack %s", got.SpamFlags, f)
		}
	}
	// A bounce stays a bounce whatever its spam score: the kind says what it is.
	b := withPart(parsed("", "mailer-daemon@mx.example.net", "Content-Type", "multipart/report; report-type=delivery-status; boundary=b"),
		"message/delivery-status", dsn)
	b.Authentication = msg.Authentication
	if got, _ := c.Classify(t.Context(), b); got.Kind != classify.KindBounce {
		t.Fatalf("spammy bounce classified %s", got.Kind)
	}
}

type fakeRspamd struct {
	res *rspamd.Result
	err error
	got rspamd.Envelope
}

func (f *fakeRspamd) Check(_ context.Context, msg []byte, env rspamd.Envelope) (*rspamd.Result, error) {
	f.got = env
	if len(msg) == 0 {
		return nil, errors.New("empty message")
	}
	return f.res, f.err
}

func TestRspamd(t *testing.T) {
	t.Run("score and symbols are added", func(t *testing.T) {
		f := &fakeRspamd{res: &rspamd.Result{
			Score: 9, RequiredScore: 15, Action: "no action",
			Symbols: map[string]rspamd.Symbol{"BAYES_SPAM": {Name: "BAYES_SPAM", Score: 9}},
		}}
		c := newClassifier(t, classify.WithRspamd(f))
		msg := parsed("ann@example.com", "ann@example.com")
		msg.Envelope.ClientIP = "192.0.2.7"
		got, err := c.Classify(t.Context(), msg)
		if err != nil {
			t.Fatal(err)
		}
		if got.SpamScore != 9 || !slices.Contains(got.SpamFlags, "rspamd:BAYES_SPAM(+9)") || got.Kind != classify.KindSpam {
			t.Fatalf("score %v flags %v kind %s", got.SpamScore, got.SpamFlags, got.Kind)
		}
		if f.got.ClientIP != "192.0.2.7" || f.got.MailFrom != "ann@example.com" || f.got.QueueID != msg.ID {
			t.Fatalf("envelope sent %+v", f.got)
		}
	})
	t.Run("rspamd's own verdict makes spam", func(t *testing.T) {
		c := newClassifier(t, classify.WithRspamd(&fakeRspamd{res: &rspamd.Result{Score: 3, RequiredScore: 15, Action: "reject"}}))
		got, _ := c.Classify(t.Context(), parsed("ann@example.com", "ann@example.com"))
		if got.Kind != classify.KindSpam || !slices.Contains(got.Evidence, "rspamd calls it spam") {
			t.Fatalf("kind %s evidence %v", got.Kind, got.Evidence)
		}
	})
	t.Run("a failing rspamd is noted and the stream goes on", func(t *testing.T) {
		c := newClassifier(t, classify.WithRspamd(&fakeRspamd{err: &rspamd.Error{Retryable: true, Err: errors.New("connection refused")}}))
		got, err := c.Classify(t.Context(), parsed("ann@example.com", "ann@example.com"))
		if err != nil {
			t.Fatal(err)
		}
		if got.Kind != classify.KindHuman || !slices.ContainsFunc(got.SpamFlags, func(s string) bool { return strings.HasPrefix(s, "RSPAMD_UNAVAILABLE") }) {
			t.Fatalf("kind %s flags %v", got.Kind, got.SpamFlags)
		}
	})
	t.Run("an ended context is an error", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		c := newClassifier(t, classify.WithRspamd(&fakeRspamd{err: context.Canceled}))
		if _, err := c.Classify(ctx, parsed("ann@example.com", "ann@example.com")); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v; want context.Canceled", err)
		}
	})
}

const leadRules = `version: test-7
score_rules:
  - name: business_domain
    when: 'sender.domain != "" && !sender.free_mail'
    points: 30
    reason: business sender
  - name: mentions_sso
    when: 'text.matches(r"(?i)\bsso\b")'
    points: 40
  - name: not_human
    when: 'kind != "human"'
    points: -100
routes:
  - name: ae_priority
    when: 'score >= 70'
    queue: ae_priority
    sla_minutes: 15
  - name: default
    when: 'true'
    queue: inbox
    sla_minutes: 1440
`

func TestLeadScoring(t *testing.T) {
	set, err := rules.Parse("lead.yaml", []byte(leadRules))
	if err != nil {
		t.Fatal(err)
	}
	h := rules.NewHolder(set, slog.New(slog.DiscardHandler))
	c := newClassifier(t, classify.WithRules(h))
	for _, tt := range []struct {
		name    string
		msg     *events.Parsed
		score   float64
		queue   string
		sla     int
		matched []string
	}{
		{"business sender asking about SSO", withText(parsed("cto@acme.example", "cto@acme.example"), "SSO", "Do you support SSO?"), 70, "ae_priority", 15, []string{"business_domain", "mentions_sso"}},
		{"free-mail sender", withText(parsed("joe@gmail.com", "joe@gmail.com"), "hi", "Do you support SSO?"), 40, "inbox", 1440, []string{"mentions_sso"}},
		{"auto-reply", parsed("", "cto@acme.example", "Auto-Submitted", "auto-replied"), -70, "inbox", 1440, []string{"business_domain", "not_human"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Classify(t.Context(), tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			var rules []string
			var sum float64
			for _, x := range got.LeadContributions {
				rules = append(rules, x.Rule)
				sum += x.Points
			}
			if got.LeadScore != tt.score || sum != tt.score || got.Queue != tt.queue || got.SLAMinutes != tt.sla ||
				got.RulesVersion != "test-7" || !slices.Equal(rules, tt.matched) {
				t.Fatalf("lead %v (%v) queue %s sla %d version %s contributions %+v", got.LeadScore, sum, got.Queue, got.SLAMinutes, got.RulesVersion, got.LeadContributions)
			}
		})
	}
}

func TestHandle(t *testing.T) {
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	c := newClassifier(t, classify.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	in := withPart(parsed("", "mailer-daemon@mx.example.net", "Content-Type", "multipart/report; report-type=delivery-status; boundary=b"),
		"message/delivery-status", dsn)
	v, err := codec.Encode(kafka.TopicParsed, in)
	if err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{
		Topic: kafka.TopicParsed, Key: []byte("root@example.com"), Value: v,
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-01-02-01")}},
	}
	out, err := c.Handle(t.Context(), rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Topic != kafka.TopicClassified || string(out[0].Key) != "root@example.com" ||
		len(out[0].Headers) != 1 || out[0].Headers[0].Key != "traceparent" {
		t.Fatalf("outputs %+v", out)
	}
	var got events.Classified
	if err := codec.Decode(t.Context(), kafka.TopicClassified, out[0].Value, &got); err != nil {
		t.Fatal(err)
	}
	if got.Message.ID != in.ID || got.Message.Subject != in.Subject || got.Message.ExternalID != in.ExternalID {
		t.Errorf("message not passed through: %+v", got.Message)
	}
	cl := got.Classification
	if cl.Kind != classify.KindBounce || cl.Bounce == nil || cl.Bounce.Recipient != "gone@example.org" ||
		!cl.ClassifiedAt.Equal(classifiedAt) || cl.RulesVersion != defaultVersion(t) {
		t.Errorf("classification %+v", cl)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	var counted bool
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == classify.MetricKinds {
				for _, dp := range sum.DataPoints {
					kind, _ := dp.Attributes.Value("kind")
					counted = counted || (kind.AsString() == classify.KindBounce && dp.Value == 1)
				}
			}
		}
	}
	if !counted {
		t.Errorf("%s{kind=bounce} is not 1: %+v", classify.MetricKinds, rm.ScopeMetrics)
	}
}

func TestHandleUndecodable(t *testing.T) {
	c := newClassifier(t)
	out, err := c.Handle(t.Context(), &kgo.Record{Topic: kafka.TopicParsed, Value: []byte{0, 0, 0, 0, 1, 2}})
	if out != nil || failure.Classify(err) != failure.Schema {
		t.Errorf("Handle = %v, %v (class %s); want class schema", out, err, failure.Classify(err))
	}
}

// Handle has the pinned stage.Handler shape.
var _ stage.Handler = (*classify.Classifier)(nil).Handle

func defaultVersion(t *testing.T) string {
	t.Helper()
	set, err := rules.Default()
	if err != nil {
		t.Fatal(err)
	}
	return set.Version()
}
