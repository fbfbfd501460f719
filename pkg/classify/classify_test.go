package classify_test

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/classify"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

var classifiedAt = time.Date(2026, 11, 23, 10, 31, 0, 0, time.UTC)

func parsed(mailFrom, from string, headers ...string) *events.Parsed {
	p := &events.Parsed{
		ID: "01JB6Y2M3Q7V0000000000000", ThreadKey: "root@example.com", Tenant: "acme",
		ReceivedAt: classifiedAt.Add(-time.Minute), ParsedAt: classifiedAt.Add(-time.Second),
		Envelope:    events.Envelope{MailFrom: mailFrom, RcptTo: []string{"support@in.example.com"}, Source: "smtp"},
		MessageID:   "m1@example.com",
		ExternalID:  "ab",
		Subject:     "hello",
		Text:        "hi",
		ParseStatus: "ok",
	}
	if from != "" {
		p.From = &events.Address{Address: from, DomainASCII: from[strings.LastIndexByte(from, '@')+1:]}
	}
	for i := 0; i+1 < len(headers); i += 2 {
		p.Headers = append(p.Headers, events.Header{Name: headers[i], Value: headers[i+1]})
	}
	return p
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		name     string
		msg      *events.Parsed
		kind     string
		evidence string
	}{
		{"person", parsed("ann@example.com", "ann@example.com"), classify.KindHuman, "no automation signal"},
		{
			"DSN", parsed("", "mailer-daemon@mx.example.net", "Content-Type", `multipart/report; report-type=delivery-status; boundary="b"`),
			classify.KindBounce, "content-type multipart/report; report-type=delivery-status",
		},
		{
			"DSN with unquoted report type in a broken header", parsed("", "x@y.example", "Content-Type", `multipart/report; report-type=Delivery-Status; boundary=a b c`),
			classify.KindBounce, "content-type multipart/report; report-type=delivery-status",
		},
		{
			"ARF", parsed("arf@isp.example", "arf@isp.example", "Content-Type", "multipart/report; report-type=feedback-report; boundary=x"),
			classify.KindFeedbackReport, "report-type=feedback-report",
		},
		{
			"read receipt", parsed("ann@example.com", "ann@example.com", "Content-Type", "multipart/report; report-type=disposition-notification; boundary=x"),
			classify.KindNotification, "report-type=disposition-notification",
		},
		{
			"non-DSN bounce from MAILER-DAEMON with Auto-Submitted", parsed("", "mailer-daemon@mx.example.net", "Auto-Submitted", "auto-replied"),
			classify.KindBounce, "from mailer-daemon@mx.example.net",
		},
		{"vacation reply", parsed("", "ann@example.com", "Auto-Submitted", "auto-replied"), classify.KindAutoReply, "header Auto-Submitted: auto-replied"},
		{
			"auto-generated with parameters", parsed("bot@example.com", "bot@example.com", "Auto-Submitted", "auto-generated; owner-email=x@y"),
			classify.KindAutoReply, "header Auto-Submitted: auto-generated; owner-email=x@y",
		},
		{"Auto-Submitted: no is a person", parsed("ann@example.com", "ann@example.com", "auto-submitted", "No"), classify.KindHuman, "no automation signal"},
		{"null sender", parsed("", "someone@example.com"), classify.KindBounce, "envelope sender is null"},
		{"null sender without From", parsed("", ""), classify.KindBounce, "envelope sender is null"},
		{
			"mailing list", parsed("list-bounces@lists.example.org", "ann@example.com", "List-Id", "Dev <dev.lists.example.org>"),
			classify.KindList, "header List-Id: Dev <dev.lists.example.org>",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := classify.Classify(tt.msg)
			if got.Kind != tt.kind || !slices.ContainsFunc(got.Evidence, func(e string) bool { return strings.Contains(e, tt.evidence) }) {
				t.Errorf("Classify = %s %q; want %s with %q", got.Kind, got.Evidence, tt.kind, tt.evidence)
			}
			if got.RulesVersion != classify.RulesVersion || got.Bounce != nil || got.SpamScore != 0 {
				t.Errorf("classification %+v", got)
			}
		})
	}
}

func TestHandle(t *testing.T) {
	// given
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := classify.New(codec, slog.New(slog.DiscardHandler), classify.WithClock(func() time.Time { return classifiedAt }))
	in := parsed("", "mailer-daemon@mx.example.net", "Content-Type", "multipart/report; report-type=delivery-status; boundary=b")
	v, err := codec.Encode(kafka.TopicParsed, in)
	if err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{
		Topic: kafka.TopicParsed, Key: []byte("root@example.com"), Value: v,
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-01-02-01")}},
	}

	// when
	out, err := c.Handle(t.Context(), rec)
	// then
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
	if got.Classification.Kind != classify.KindBounce || !got.Classification.ClassifiedAt.Equal(classifiedAt) ||
		got.Classification.RulesVersion != "builtin-0" {
		t.Errorf("classification %+v", got.Classification)
	}
}

func TestHandleUndecodable(t *testing.T) {
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := classify.New(codec, slog.New(slog.DiscardHandler))
	out, err := c.Handle(t.Context(), &kgo.Record{Topic: kafka.TopicParsed, Value: []byte{0, 0, 0, 0, 1, 2}})
	if out != nil || failure.Classify(err) != failure.Schema {
		t.Errorf("Handle = %v, %v (class %s); want class schema", out, err, failure.Classify(err))
	}
}

// Handle has the pinned stage.Handler shape.
var _ stage.Handler = (*classify.Classifier)(nil).Handle
