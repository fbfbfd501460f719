package rules_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/rules"
)

const oldRules = `version: old
score_rules:
  - name: business
    when: '!sender.free_mail'
    points: 30
  - name: security
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

// newRules gives security more points and a reason, drops nothing, adds a rule that fails on
// messages without the header, and shortens the inbox SLA.
const newRules = `version: new
score_rules:
  - name: business
    when: '!sender.free_mail'
    points: 30
  - name: security
    when: 'text.matches(r"(?i)\b(sso|saml)\b")'
    points: 45
    reason: mentions SSO or SAML
  - name: urgent
    when: 'headers["x-priority"][0] == "1"'
    points: 10
routes:
  - name: ae_priority
    when: 'score >= 70'
    queue: ae_priority
    sla_minutes: 15
  - name: default
    when: 'true'
    queue: inbox
    sla_minutes: 720
`

func TestCompare(t *testing.T) {
	old, cur := mustParse(t, oldRules), mustParse(t, newRules)
	for _, tt := range []struct {
		name                     string
		text                     string
		free                     bool
		delta                    int64
		band, queue, sla, change bool
		rules                    []string
	}{
		{"SSO lead: more points, same band and queue", "need sso", false, 5, false, false, false, true, []string{"security"}},
		{"SAML lead: new match moves band and queue", "need saml", false, 45, true, true, true, true, []string{"security"}},
		{"plain business mail: only the SLA changes", "hello", false, 0, false, false, true, true, nil},
		{"free-mail SSO: more points inside medium", "sso?", true, 5, false, false, true, true, []string{"security"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := lead()
			f.Text, f.Sender.FreeMail = tt.text, tt.free
			c, err := rules.Compare(t.Context(), old, cur, f)
			if err != nil {
				t.Fatal(err)
			}
			if c.ScoreDelta() != tt.delta || c.BandChanged() != tt.band || c.QueueChanged() != tt.queue ||
				c.SLAChanged() != tt.sla || c.Changed() != tt.change {
				t.Errorf("delta %d band %v queue %v sla %v changed %v; old %+v new %+v",
					c.ScoreDelta(), c.BandChanged(), c.QueueChanged(), c.SLAChanged(), c.Changed(), c.Old, c.New)
			}
			var changed []string
			for _, ch := range c.ContributionChanges() {
				changed = append(changed, ch.Rule)
			}
			if !slices.Equal(changed, tt.rules) {
				t.Errorf("contribution changes %v, want %v", changed, tt.rules)
			}
			if c.Old.Version != "old" || c.New.Version != "new" || len(c.New.Errors) != 1 {
				t.Errorf("versions %s→%s, new errors %v", c.Old.Version, c.New.Version, c.New.Errors)
			}
		})
	}

	t.Run("same rules change nothing", func(t *testing.T) {
		c, err := rules.Compare(t.Context(), old, old, lead())
		if err != nil || c.Changed() || len(c.ContributionChanges()) != 0 {
			t.Errorf("Compare(old, old) = %+v, %v", c, err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := rules.Compare(ctx, old, cur, lead()); !errors.Is(err, context.Canceled) {
			t.Errorf("Compare error = %v", err)
		}
	})
}

func TestContributionChanges(t *testing.T) {
	c := rules.Comparison{
		Old: rules.Result{Contributions: []rules.Contribution{{Rule: "a", Points: 1}, {Rule: "b", Points: 2}, {Rule: "c", Points: 3, Reason: "x"}}},
		New: rules.Result{Contributions: []rules.Contribution{{Rule: "d", Points: 4}, {Rule: "c", Points: 3, Reason: "y"}, {Rule: "a", Points: 1}}},
	}
	got := c.ContributionChanges()
	want := []rules.ContributionChange{
		{Rule: "b", Old: &c.Old.Contributions[1]},
		{Rule: "c", Old: &c.Old.Contributions[2], New: &c.New.Contributions[1]},
		{Rule: "d", New: &c.New.Contributions[0]},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ContributionChanges() = %+v, want %+v", got, want)
	}
}

func TestSummary(t *testing.T) {
	old, cur := mustParse(t, oldRules), mustParse(t, newRules)
	var s rules.Summary
	for _, text := range []string{"need sso", "need saml", "hello", "hello"} {
		f := lead()
		f.Text = text
		c, err := rules.Compare(t.Context(), old, cur, f)
		if err != nil {
			t.Fatal(err)
		}
		s.Add(c)
	}
	if s.Messages != 4 || s.Changed != 4 {
		t.Errorf("messages %d changed %d", s.Messages, s.Changed)
	}
	wantBands := map[rules.BandMove]int{{rules.BandHigh, rules.BandHigh}: 1, {rules.BandLow, rules.BandHigh}: 1, {rules.BandLow, rules.BandLow}: 2}
	wantQueues := map[rules.QueueMove]int{{"ae_priority", "ae_priority"}: 1, {"inbox", "ae_priority"}: 1, {"inbox", "inbox"}: 2}
	if !maps.Equal(s.Bands, wantBands) || !maps.Equal(s.Queues, wantQueues) {
		t.Errorf("bands %v queues %v", s.Bands, s.Queues)
	}
	if !maps.Equal(s.Rules, map[string]int{"security": 2}) || !maps.Equal(s.NewErrors, map[string]int{"urgent": 4}) {
		t.Errorf("rules %v new errors %v", s.Rules, s.NewErrors)
	}
}
