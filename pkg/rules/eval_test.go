package rules_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/rules"
)

func mustParse(t testing.TB, src string, opts ...rules.Option) *rules.Set {
	t.Helper()
	s, err := rules.Parse("t.yaml", []byte(src), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustDefault(t testing.TB) *rules.Set {
	t.Helper()
	s, err := rules.Default()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lead is a message from a person at a company, clean on every signal.
func lead() rules.Facts {
	return rules.Facts{
		Sender:       rules.Sender{Address: "ann@acme.example", Domain: "acme.example", Name: "Ann"},
		Subject:      "Question",
		Text:         "Hello, could we talk next week?",
		StrippedText: "Hello, could we talk next week?",
		Kind:         "human",
		Auth:         rules.Auth{SPF: "pass", DMARC: "pass", DKIM: []rules.DKIM{{Domain: "acme.example", Result: "pass"}}},
		Route:        rules.RouteFacts{Tenant: "acme", RouteID: "sales"},
		Recipients:   []string{"sales@in.example.com"},
	}
}

func names(cs []rules.Contribution) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Rule
	}
	return out
}

func TestEvaluateDefault(t *testing.T) {
	set := mustDefault(t)
	for _, tt := range []struct {
		name   string
		edit   func(*rules.Facts)
		score  int64
		band   rules.Band
		rules  []string
		queue  string
		sla    int
		errors int
	}{
		{"business sender, nothing else", func(*rules.Facts) {}, 30, rules.BandLow, []string{"business_domain"}, "inbox", 1440, 0},
		{
			"business sender asking about SSO", func(f *rules.Facts) { f.Text = "Do you support SAML SSO?" }, 70, rules.BandHigh,
			[]string{"business_domain", "mentions_security"},
			"ae_priority", 15, 0,
		},
		{
			"SOC 2 in the subject and pricing", func(f *rules.Facts) { f.Subject = "SOC2 report and pricing" }, 95, rules.BandHigh,
			[]string{"business_domain", "mentions_security", "buying_intent"},
			"ae_priority", 15, 0,
		},
		{"free-mail sender asking for a demo", func(f *rules.Facts) {
			f.Sender = rules.Sender{Address: "bob@gmail.com", Domain: "gmail.com", FreeMail: true}
			f.StrippedText = "Can I get a demo?"
		}, 25, rules.BandLow, []string{"buying_intent"}, "inbox", 1440, 0},
		{"RFP attached", func(f *rules.Facts) {
			f.Attachments = []rules.Attachment{{Filename: "ACME-RFP-2027.pdf", ContentType: "application/pdf", Size: 120000}}
		}, 50, rules.BandMedium, []string{"business_domain", "rfp_attached"}, "sales", 240, 0},
		{
			"DMARC and SPF fail", func(f *rules.Facts) { f.Auth.DMARC, f.Auth.SPF = "fail", "fail" }, -40, rules.BandNegative,
			[]string{"business_domain", "dmarc_fail", "spf_fail"},
			"inbox", 1440, 0,
		},
		{
			"newsletter", func(f *rules.Facts) { f.AddHeader("List-Unsubscribe", "<mailto:u@acme.example>") }, 0, rules.BandLow,
			[]string{"business_domain", "bulk_mail"},
			"inbox", 1440, 0,
		},
		{
			"bounce", func(f *rules.Facts) { f.Kind = "bounce" }, -70, rules.BandNegative,
			[]string{"business_domain", "not_a_person"},
			"automated", 0, 0,
		},
		{
			"spam by score", func(f *rules.Facts) { f.SpamScore = 12.5 }, -10, rules.BandNegative,
			[]string{"business_domain", "likely_spam"},
			"spam", 0, 0,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := lead()
			tt.edit(&f)
			got, err := set.Evaluate(t.Context(), f)
			if err != nil {
				t.Fatal(err)
			}
			if got.Score != tt.score || got.Band != tt.band || !slices.Equal(names(got.Contributions), tt.rules) {
				t.Errorf("score %d (%s) from %v, want %d (%s) from %v", got.Score, got.Band, names(got.Contributions), tt.score, tt.band, tt.rules)
			}
			if got.Route.Queue != tt.queue || got.Route.SLAMinutes != tt.sla || got.Route.Rule != tt.queue && tt.queue != "inbox" {
				t.Errorf("route %+v, want queue %s, SLA %d", got.Route, tt.queue, tt.sla)
			}
			if len(got.Errors) != tt.errors || got.Version != set.Version() {
				t.Errorf("errors %v, version %q", got.Errors, got.Version)
			}
			var sum int64
			for _, c := range got.Contributions {
				sum += c.Points
			}
			if sum != got.Score {
				t.Errorf("contributions add up to %d, score is %d", sum, got.Score)
			}
		})
	}
}

func TestEvaluateContributions(t *testing.T) {
	set := mustParse(t, `version: c1
score_rules:
  - name: with_reason
    when: 'sender.domain == "acme.example"'
    points: 30
    reason: known company domain
  - name: without_reason
    when: 'recipients.exists(r, r.startsWith("sales@"))'
    points: -5
  - name: not_matching
    when: 'route.tenant == "other"'
    points: 100
  - name: zero
    when: 'route.route_id == "sales"'
    points: 0
    reason: tags the message without changing the score
`+catchAll)
	got, err := set.Evaluate(t.Context(), lead())
	if err != nil {
		t.Fatal(err)
	}
	want := []rules.Contribution{
		{Rule: "with_reason", Points: 30, Reason: "known company domain"},
		{Rule: "without_reason", Points: -5, Reason: `recipients.exists(r, r.startsWith("sales@"))`}, // the condition explains it
		{Rule: "zero", Points: 0, Reason: "tags the message without changing the score"},
	}
	if !slices.Equal(got.Contributions, want) || got.Score != 25 || got.Version != "c1" {
		t.Errorf("got %+v", got)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `{"rules_version":"c1","score":25,"band":"low","contributions":[` +
		`{"rule":"with_reason","points":30,"reason":"known company domain"},` +
		`{"rule":"without_reason","points":-5,"reason":"recipients.exists(r, r.startsWith(\"sales@\"))"},` +
		`{"rule":"zero","points":0,"reason":"tags the message without changing the score"}],` +
		`"route":{"rule":"default","queue":"inbox","sla_minutes":0}}`
	if string(b) != wantJSON {
		t.Errorf("JSON\n got %s\nwant %s", b, wantJSON)
	}
}

// TestZeroFacts uses every fact on a message that has none of them: no variable is missing and
// empty lists and maps are empty, not errors.
func TestZeroFacts(t *testing.T) {
	set := mustParse(t, `version: z
score_rules:
  - name: all_zero
    when: |
      sender.address == "" && sender.domain == "" && !sender.free_mail && sender.name == "" &&
      subject == "" && text == "" && stripped_text == "" && kind == "" && spam_score == 0.0 &&
      auth.spf == "" && size(auth.dkim) == 0 && auth.dmarc == "" && auth.dmarc_policy == "" &&
      size(attachments) == 0 && !("x" in headers) && size(recipients) == 0 &&
      route.tenant == "" && route.route_id == "" && route.tag == "" && route.rules_set == ""
    points: 7
routes:
  - name: zero
    when: 'score == 7'
    queue: zero
  - name: default
    when: 'true'
    queue: inbox
`)
	got, err := set.Evaluate(t.Context(), rules.Facts{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Errors) != 0 || got.Score != 7 || got.Route.Queue != "zero" {
		t.Fatalf("got %+v", got)
	}
	// A rule without a reason is explained by its condition, on one line.
	if r := got.Contributions[0].Reason; !strings.HasPrefix(r, `sender.address == "" && sender.domain == "" && !sender.free_mail && sender.name == "" && subject == ""`) || strings.Contains(r, "\n") {
		t.Errorf("reason %q", r)
	}
	score, routes := set.RuleNames()
	if !slices.Equal(score, []string{"all_zero"}) || !slices.Equal(routes, []string{"zero", "default"}) {
		t.Errorf("RuleNames() = %v, %v", score, routes)
	}
}

func TestRoutingFirstMatch(t *testing.T) {
	set := mustParse(t, `version: r1
score_rules:
  - name: security
    when: 'subject.matches(r"(?i)security")'
    points: 80
  - name: pricing
    when: 'subject.matches(r"(?i)pricing")'
    points: 45
routes:
  - name: vip_tenant
    when: 'route.tenant == "vip"'
    queue: vip
    sla_minutes: 5
  - name: ae_priority
    when: 'score >= 70'
    queue: ae_priority
    sla_minutes: 15
  - name: sales
    when: 'score >= 40'
    queue: sales
    sla_minutes: 240
  - name: default
    when: 'true'
    queue: inbox
    sla_minutes: 1440
`)
	for _, tt := range []struct {
		subject, tenant string
		want            rules.RouteDecision
	}{
		{"Security and pricing", "acme", rules.RouteDecision{Rule: "ae_priority", Queue: "ae_priority", SLAMinutes: 15}},
		{"Pricing", "acme", rules.RouteDecision{Rule: "sales", Queue: "sales", SLAMinutes: 240}},
		{"Hello", "acme", rules.RouteDecision{Rule: "default", Queue: "inbox", SLAMinutes: 1440}},
		{"Security", "vip", rules.RouteDecision{Rule: "vip_tenant", Queue: "vip", SLAMinutes: 5}}, // earlier route wins over a higher score
	} {
		t.Run(tt.subject+"/"+tt.tenant, func(t *testing.T) {
			f := lead()
			f.Subject, f.Route.Tenant = tt.subject, tt.tenant
			got, err := set.Evaluate(t.Context(), f)
			if err != nil {
				t.Fatal(err)
			}
			if got.Route != tt.want {
				t.Errorf("route %+v, want %+v", got.Route, tt.want)
			}
		})
	}
}

func TestRuntimeErrors(t *testing.T) {
	set := mustParse(t, `version: e1
score_rules:
  - name: priority_header
    when: 'headers["x-priority"][0] == "1"'
    points: 20
  - name: first_attachment_pdf
    when: 'attachments[0].content_type == "application/pdf"'
    points: 10
  - name: business
    when: '!sender.free_mail'
    points: 30
routes:
  - name: by_header
    when: 'headers["x-queue"][0] == "vip"'
    queue: vip
  - name: default
    when: 'true'
    queue: inbox
`)
	t.Run("missing keys", func(t *testing.T) {
		got, err := set.Evaluate(t.Context(), lead())
		if err != nil {
			t.Fatalf("a runtime error in a rule failed the evaluation: %v", err)
		}
		if got.Score != 30 || got.Route.Queue != "inbox" {
			t.Errorf("score %d, queue %s: the failing rules must count as not matched and the rest still run", got.Score, got.Route.Queue)
		}
		want := []string{
			`score rule "priority_header": no such key: x-priority`,
			`score rule "first_attachment_pdf": index out of bounds: 0`,
			`route "by_header": no such key: x-queue`,
		}
		var msgs []string
		for _, e := range got.Errors {
			msgs = append(msgs, e.Error())
		}
		if !slices.Equal(msgs, want) {
			t.Errorf("errors\n got %q\nwant %q", msgs, want)
		}
		b, err := json.Marshal(got.Errors[0])
		if err != nil || string(b) != `{"section":"score_rules","rule":"priority_header","error":"no such key: x-priority"}` {
			t.Errorf("JSON of a RuleError: %s, %v", b, err)
		}
	})
	t.Run("keys present", func(t *testing.T) {
		f := lead()
		f.AddHeader("X-Priority", "1")
		f.AddHeader("X-QUEUE", "vip")
		f.Attachments = []rules.Attachment{{ContentType: "application/pdf"}}
		got, err := set.Evaluate(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		if got.Score != 60 || got.Route.Queue != "vip" || len(got.Errors) != 0 {
			t.Errorf("got %+v", got)
		}
	})
}

func TestCostLimit(t *testing.T) {
	// A pathological condition: a nested loop over many attachments building strings.
	const src = `version: cost
score_rules:
  - name: quadratic
    when: 'attachments.exists(a, attachments.exists(b, (a.filename + b.filename + text).contains("never")))'
    points: 50
  - name: cheap
    when: 'size(attachments) > 0'
    points: 1
` + catchAll
	f := lead()
	f.Text = strings.Repeat("lorem ipsum ", 100000) // 1.2 MB, cut to DefaultMaxTextBytes
	for i := range 3000 {
		f.Attachments = append(f.Attachments, rules.Attachment{Filename: fmt.Sprintf("file-%d.txt", i)})
	}
	for _, tt := range []struct {
		name string
		opts []rules.Option
	}{
		{"default limit", nil},
		{"small limit", []rules.Option{rules.WithCostLimit(1000)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			set := mustParse(t, src, tt.opts...)
			start := time.Now()
			got, err := set.Evaluate(t.Context(), f)
			if err != nil {
				t.Fatal(err)
			}
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("evaluation took %s despite the cost limit", elapsed)
			}
			if len(got.Errors) != 1 || got.Errors[0].Rule != "quadratic" || !strings.Contains(got.Errors[0].Error(), "cost limit exceeded") {
				t.Fatalf("errors %v, want the quadratic rule over its cost limit", got.Errors)
			}
			if got.Score != 1 {
				t.Errorf("score %d: the other rules must still count", got.Score)
			}
		})
	}
}

func TestMaxTextBytes(t *testing.T) {
	const src = `version: t
score_rules:
  - name: text_cut
    when: 'size(text) == 3'
    points: 1
  - name: stripped_whole
    when: 'size(stripped_text) == 6'
    points: 4
  - name: subject_never_cut
    when: 'size(subject) == 10'
    points: 2
` + catchAll
	f := lead()
	f.Text = "ééééé"          // 2 bytes per character; a cut never splits one
	f.StrippedText = "abcdef" // 6 bytes
	f.Subject = strings.Repeat("s", 10)
	for _, tt := range []struct {
		name  string
		opts  []rules.Option
		score int64
	}{
		{"default", nil, 4 + 2},
		{"unbounded", []rules.Option{rules.WithMaxTextBytes(-1)}, 4 + 2},
		{"7 bytes: text cut to 3 characters", []rules.Option{rules.WithMaxTextBytes(7)}, 1 + 4 + 2},
		{"5 bytes: both cut", []rules.Option{rules.WithMaxTextBytes(5)}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mustParse(t, src, tt.opts...).Evaluate(t.Context(), f)
			if err != nil {
				t.Fatal(err)
			}
			if got.Score != tt.score {
				t.Errorf("score %d, want %d (%v)", got.Score, tt.score, got.Contributions)
			}
		})
	}
	if f.Text != "ééééé" {
		t.Error("Evaluate changed the caller's facts")
	}
}

func TestEvaluateContext(t *testing.T) {
	set := mustParse(t, `version: ctx
score_rules:
  - name: slow
    when: 'attachments.exists(a, attachments.exists(b, a.filename == b.filename + "x"))'
    points: 1
`+catchAll, rules.WithCostLimit(1<<62))
	f := lead()
	for i := range 5000 {
		f.Attachments = append(f.Attachments, rules.Attachment{Filename: fmt.Sprint(i)})
	}
	for _, tt := range []struct {
		name string
		ctx  func(context.Context) (context.Context, context.CancelFunc)
		want error
	}{
		{"cancelled before", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return ctx, cancel
		}, context.Canceled},
		{"deadline during a long loop", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 20*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx(t.Context())
			defer cancel()
			start := time.Now()
			_, err := set.Evaluate(ctx, f)
			if !errors.Is(err, tt.want) {
				t.Errorf("Evaluate error = %v, want %v", err, tt.want)
			}
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("Evaluate took %s to notice the context", elapsed)
			}
		})
	}
}

func TestBandOf(t *testing.T) {
	for _, tt := range []struct {
		score int64
		want  rules.Band
	}{
		{-1000, rules.BandNegative},
		{-1, rules.BandNegative},
		{0, rules.BandLow},
		{39, rules.BandLow},
		{40, rules.BandMedium},
		{69, rules.BandMedium},
		{70, rules.BandHigh},
		{5000, rules.BandHigh},
	} {
		if got := rules.BandOf(tt.score); got != tt.want {
			t.Errorf("BandOf(%d) = %s, want %s", tt.score, got, tt.want)
		}
	}
	if got := rules.Bands(); !slices.Equal(got, []rules.Band{rules.BandNegative, rules.BandLow, rules.BandMedium, rules.BandHigh}) {
		t.Errorf("Bands() = %v", got)
	}
}

// BenchmarkEvaluate runs the default rules over a typical inbound lead: a 3 KB body, two
// attachments and a dozen headers.
func BenchmarkEvaluate(b *testing.B) {
	set := mustDefault(b)
	f := lead()
	f.Subject = "Re: Pricing for the enterprise plan"
	f.Text = strings.Repeat("We are evaluating vendors for our support team and need SAML single sign-on. ", 40)
	f.StrippedText = f.Text[:600]
	f.Attachments = []rules.Attachment{{Filename: "requirements.pdf", ContentType: "application/pdf", Size: 80000}, {Filename: "logo.png", ContentType: "image/png", Size: 4000}}
	for _, h := range []string{"Received", "Received", "DKIM-Signature", "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "In-Reply-To", "References"} {
		f.AddHeader(h, "x")
	}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		res, err := set.Evaluate(ctx, f)
		if err != nil || res.Route.Queue != "ae_priority" {
			b.Fatalf("%+v %v", res, err)
		}
	}
}
