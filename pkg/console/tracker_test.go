package console

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

const testTrace = "4bf92f3577b34da6a3ce929d0e0e4736"

func newCodec(t *testing.T) *serde.Codec {
	t.Helper()
	c, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// message is a test message with records for every pipeline topic.
type message struct {
	id, externalID, messageID, sender string
	at                                time.Time
}

func testMessage(n int, at time.Time) message {
	return message{
		id:         fmt.Sprintf("01TESTMSG%04d", n),
		externalID: fmt.Sprintf("ext-%04d", n),
		messageID:  fmt.Sprintf("m%d@example.com", n),
		sender:     fmt.Sprintf("Sender%d@Example.com", n),
		at:         at,
	}
}

func (m message) parsed() events.Parsed {
	return events.Parsed{
		ID: m.id, ExternalID: m.externalID, Tenant: "acme", RouteID: "r1", ReceivedAt: m.at, ParsedAt: m.at.Add(time.Second),
		Envelope:  events.Envelope{MailFrom: m.sender, RcptTo: []string{"support@in.example.com"}, Source: "smtp"},
		MessageID: m.messageID, From: &events.Address{Address: strings.ToLower(m.sender), DomainASCII: "example.com"},
		Subject: "Order " + m.id, Text: "SECRET BODY TEXT", HTML: "<p>SECRET BODY HTML</p>", ParseStatus: "ok",
	}
}

func (m message) enriched() events.Enriched {
	return events.Enriched{
		Message:        m.parsed(),
		Classification: events.Classification{Kind: "human", Queue: "support", ClassifiedAt: m.at.Add(2 * time.Second)},
		Enrichment:     events.Enrichment{Contact: &events.Contact{Email: m.sender, Known: true}, EnrichedAt: m.at.Add(3 * time.Second)},
	}
}

func record(t *testing.T, c *serde.Codec, topic string, v any, at time.Time) *kgo.Record {
	t.Helper()
	b, err := c.Encode(topic, v)
	if err != nil {
		t.Fatalf("encoding %s: %v", topic, err)
	}
	return &kgo.Record{
		Topic: topic, Value: b, Timestamp: at,
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-" + testTrace + "-00f067aa0ba902b7-01")}},
	}
}

// records returns m's records on every topic up to the CRM outcome of target "local"; with
// deadTarget, also a failed outcome and the crm-sink dead letter of that target.
func (m message) records(t *testing.T, c *serde.Codec, deadTarget string) []*kgo.Record {
	t.Helper()
	raw := []byte("From: x\r\n\r\nSECRET RAW BODY")
	p := m.parsed()
	e := m.enriched()
	rs := []*kgo.Record{
		record(t, c, kafka.TopicRaw, &events.Raw{ID: m.id, ReceivedAt: m.at, Envelope: p.Envelope, Tenant: "acme", MessageID: m.messageID, Size: int64(len(raw)), Raw: &raw}, m.at),
		record(t, c, kafka.TopicParsed, &p, m.at.Add(time.Second)),
		record(t, c, kafka.TopicClassified, &events.Classified{Message: p, Classification: e.Classification}, m.at.Add(2*time.Second)),
		record(t, c, kafka.TopicEnriched, &e, m.at.Add(3*time.Second)),
		record(t, c, kafka.TopicCRM, &events.CRMOutcome{
			ID: m.id, ExternalID: m.externalID, Tenant: "acme", Target: "local", Outcome: "created",
			ObjectIds: map[string]string{"note": "n-" + m.id}, Attempts: 1, LatencyMs: 4000,
			ReceivedAt: m.at, WrittenAt: m.at.Add(4 * time.Second), RouteID: "r1",
		}, m.at.Add(4*time.Second)),
	}
	if deadTarget != "" {
		rs = append(rs, record(t, c, kafka.TopicCRM, &events.CRMOutcome{
			ID: m.id, ExternalID: m.externalID, Tenant: "acme", Target: deadTarget, Outcome: "failed",
			Error: "target " + deadTarget + " is not configured", ErrorClass: "config", Attempts: 0,
			ReceivedAt: m.at, WrittenAt: m.at.Add(4 * time.Second),
		}, m.at.Add(4*time.Second)))
		orig := rs[3]
		orig.Partition, orig.Offset = 0, 7
		dl := dlq.Build(orig, dlq.Info{
			Stage: "crm-sink", Class: failure.Class("config"), Message: "target " + deadTarget + " is not configured",
			Attempts: 1, FirstFailure: m.at.Add(4 * time.Second), LastFailure: m.at.Add(4 * time.Second), TraceID: testTrace,
		})
		dl.Timestamp = m.at.Add(4 * time.Second)
		rs = append(rs, dl)
	}
	return rs
}

func TestTrackerFollowsAMessage(t *testing.T) {
	c := newCodec(t)
	tr := NewTracker(c, 0, nil)
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	m := testMessage(1, at)
	for i, r := range m.records(t, c, "salesforce") {
		r.Offset = int64(i)
		tr.Add(t.Context(), r)
	}
	if _, bad := tr.Records(); bad != 0 {
		t.Fatalf("%d records not decoded", bad)
	}
	for _, q := range []string{m.id, m.externalID, "<" + m.messageID + ">", " " + strings.ToUpper(m.messageID) + " ", strings.ToUpper(m.sender)} {
		js := tr.Lookup(q)
		if len(js) != 1 {
			t.Fatalf("lookup %q: %d journeys, want 1", q, len(js))
		}
		j := js[0]
		if j.ID != m.id || j.ExternalID != m.externalID || j.MessageID != m.messageID || j.TraceID != testTrace || !j.ReceivedAt.Equal(at) {
			t.Fatalf("lookup %q: journey %+v", q, j)
		}
	}
	j := tr.Lookup(m.id)[0]
	var kinds []string
	for _, e := range j.Events {
		kinds = append(kinds, e.Kind)
		if strings.Contains(e.Detail, "SECRET") {
			t.Errorf("event %s shows a body: %s", e.Kind, e.Detail)
		}
	}
	want := "accepted parsed classified enriched crm crm dead-letter"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if o := j.Outcomes(); o[0].Target != "local" || o[0].ObjectIDs["note"] != "n-"+m.id || o[1].ErrorClass != "config" || !o[1].Failed {
		t.Fatalf("outcomes %+v", o)
	}
	dl := j.DeadLetters()[0]
	if dl.DLQStage != "crm-sink" || dl.ErrorClass != "config" || dl.Topic != kafka.TopicDLQ {
		t.Fatalf("dead letter %+v", dl)
	}
	if s := j.Status(); s != "CRM local: created, salesforce: failed; 1 dead letter(s)" {
		t.Fatalf("status %q", s)
	}
	if j.Subject != "Order "+m.id || j.From != strings.ToLower(m.sender) {
		t.Fatalf("identity %+v", j)
	}
	if len(tr.Lookup("nobody@example.com")) != 0 {
		t.Fatal("unknown key found something")
	}
}

func TestTrackerDeadLetterAlone(t *testing.T) {
	// A parser dead letter: only mail.raw.v1 and mail.dlq.v1 hold the message.
	c := newCodec(t)
	tr := NewTracker(c, 0, nil)
	m := testMessage(2, time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	rs := m.records(t, c, "")
	raw := rs[0]
	raw.Partition, raw.Offset = 1, 3
	dl := dlq.Build(raw, dlq.Info{Stage: "parser", Class: failure.Parse, Message: "bad mime", Attempts: 1, LastFailure: m.at.Add(time.Second)})
	tr.Add(context.Background(), dl)
	js := tr.Lookup(m.messageID)
	if len(js) != 1 || js[0].ID != m.id || js[0].Sender != m.sender {
		t.Fatalf("journeys %+v", js)
	}
	// A dead letter of a parsed record: the From address is in a union.
	p := m.parsed()
	pr := record(t, c, kafka.TopicParsed, &p, m.at)
	tr.Add(t.Context(), dlq.Build(pr, dlq.Info{Stage: "classifier", Class: failure.Internal, Message: "boom", Attempts: 1}))
	if js = tr.Lookup(strings.ToLower(m.sender)); len(js) != 1 || js[0].From != strings.ToLower(m.sender) || len(js[0].DeadLetters()) != 2 {
		t.Fatalf("journeys %+v", js)
	}
	if s := js[0].Status(); s != "dead-lettered by classifier (internal): boom" {
		t.Fatalf("status %q", s)
	}
}

func TestTrackerEvictsTheOldest(t *testing.T) {
	c := newCodec(t)
	tr := NewTracker(c, 2, nil)
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var ms []message
	for i := range 3 {
		m := testMessage(i, at.Add(time.Duration(i)*time.Minute))
		m.sender = "same@example.com"
		ms = append(ms, m)
		for _, r := range m.records(t, c, "") {
			tr.Add(t.Context(), r)
		}
	}
	if tr.Len() != 2 {
		t.Fatalf("len %d, want 2", tr.Len())
	}
	if js := tr.Lookup(ms[0].messageID); len(js) != 0 {
		t.Fatalf("the oldest message is still found: %+v", js)
	}
	js := tr.Lookup("same@example.com")
	if len(js) != 2 || js[0].ID != ms[2].id || js[1].ID != ms[1].id {
		t.Fatalf("sender lookup: %d journeys", len(js))
	}
	tr.mu.RLock()
	defer tr.mu.RUnlock()
	for k, ids := range tr.keys {
		for _, id := range ids {
			if id == ms[0].id {
				t.Fatalf("key %q still maps to the evicted message", k)
			}
		}
	}
}

func TestTrackerLatency(t *testing.T) {
	c := newCodec(t)
	tr := NewTracker(c, 0, nil)
	if l := tr.Latency(); l.N != 0 {
		t.Fatalf("latency of nothing: %+v", l)
	}
	for i := 1; i <= 100; i++ {
		outcome := "created"
		if i%10 == 0 {
			outcome = "failed" // not counted
		}
		tr.Add(t.Context(), record(t, c, kafka.TopicCRM, &events.CRMOutcome{ID: fmt.Sprint(i), Target: "local", Outcome: outcome, LatencyMs: int64(i)}, time.Now()))
	}
	l := tr.Latency()
	if l.N != 90 || l.P50 != 49*time.Millisecond || l.P95 != 95*time.Millisecond || l.P99 != 99*time.Millisecond {
		t.Fatalf("latency %+v", l)
	}
}
