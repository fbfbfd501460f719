package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

const simCurrent = `version: cur-1
score_rules:
  - name: business_domain
    when: 'sender.domain != "" && !sender.free_mail'
    points: 30
routes:
  - name: default
    when: 'true'
    queue: inbox
    sla_minutes: 1440
`

// The new rules add points for SSO and route high scores to the AEs.
const simNew = `version: new-2
score_rules:
  - name: business_domain
    when: 'sender.domain != "" && !sender.free_mail'
    points: 30
  - name: mentions_sso
    when: 'text.matches(r"(?i)\bsso\b")'
    points: 40
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

// TestRulesSimulate replays a topic on the real broker through two rules files: only the
// message the new rules treat differently is printed, and the summary counts the moves.
func TestRulesSimulate(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.TopicName(t, kafka.TopicParsed)
	kafkatest.CreateTopic(t, brokers, topic, 2)
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	msg := func(id, from, text string) *kgo.Record {
		d := time.Now().UTC().Truncate(time.Millisecond)
		p := &events.Parsed{
			ID: id, ThreadKey: id, MessageID: id + "@x", Subject: "s " + id, Text: text, Date: &d, ParseStatus: "ok",
			From:     &events.Address{Address: from, DomainASCII: from[strings.IndexByte(from, '@')+1:]},
			Envelope: events.Envelope{MailFrom: from, RcptTo: []string{"support@in.example.com"}, Source: "smtp"},
			To:       []events.Address{{Address: "support@in.example.com"}},
		}
		v, err := codec.Encode(kafka.TopicParsed, p)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: topic, Key: []byte(id), Value: v}
	}
	kafkatest.Produce(t, brokers,
		msg("m1", "cto@acme.example", "Do you support SSO?"),       // 30 → 70: ae_priority
		msg("m2", "joe@gmail.com", "Do you support SSO?"),          // 0 → 40: band low → medium, queue unchanged
		msg("m3", "ann@acme.example", "Please resend the invoice"), // unchanged
	)
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env, out, errs := testEnv("simulate", "--rules", write("new.yaml", simNew), "--current", write("cur.yaml", simCurrent),
		"--topic", topic, "--since", "1h", "--brokers", strings.Join(brokers, ","), "--idle", "5s")
	if err := runRules(t.Context(), env); err != nil {
		t.Fatalf("simulate: %v\n%s", err, errs)
	}
	text := out.String()
	var changed []simulatedLine
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var l simulatedLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatal(err)
		}
		changed = append(changed, l)
	}
	ids := map[string]simulatedLine{}
	for _, l := range changed {
		ids[l.ID] = l
	}
	if len(changed) != 2 || ids["m1"].New.Queue != "ae_priority" || ids["m1"].Old.Queue != "inbox" ||
		ids["m2"].New.Score != 40 || ids["m2"].Old.Score != 0 {
		t.Fatalf("changed lines %+v\noutput:\n%s", changed, text)
	}
	for _, want := range []string{"rules cur-1 → new-2: 3 messages, 2 would change", "inbox → ae_priority: 1", "mentions_sso: 2"} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}
}

func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte(simNew), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(strings.Replace(simNew, "points: 40", "points: forty", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	env, out, _ := testEnv("check", good)
	if err := runRules(t.Context(), env); err != nil || !strings.Contains(out.String(), "version new-2, 2 score rules, 2 routes: ok") {
		t.Fatalf("check good: %v %q", err, out)
	}
	env, _, _ = testEnv("check", bad)
	err := runRules(t.Context(), env)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:8:") {
		t.Fatalf("check bad: %v; want an error pointing at line 8", err)
	}
}
