package rules

import (
	"context"
	"fmt"
)

// Band groups scores for reports and for `mailpipe rules simulate`: a change of a few points
// inside a band is noise, a change of band is what people review.
type Band string

// Score bands, lowest first. The thresholds are BandLowMin, BandMediumMin and BandHighMin.
const (
	BandNegative Band = "negative" // score < 0
	BandLow      Band = "low"      // 0 ≤ score < 40
	BandMedium   Band = "medium"   // 40 ≤ score < 70
	BandHigh     Band = "high"     // score ≥ 70
)

// Lower bounds of the bands; this is the one place they are defined.
const (
	BandLowMin    = 0
	BandMediumMin = 40
	BandHighMin   = 70
)

// BandOf returns the band of score.
func BandOf(score int64) Band {
	switch {
	case score < BandLowMin:
		return BandNegative
	case score < BandMediumMin:
		return BandLow
	case score < BandHighMin:
		return BandMedium
	default:
		return BandHigh
	}
}

// Bands returns every band, lowest first, for ordered reports.
func Bands() []Band { return []Band{BandNegative, BandLow, BandMedium, BandHigh} }

// Comparison is one message evaluated by two rule sets. The kind is not part of it: the rules
// read the kind, they do not decide it, so a simulation compares kinds itself.
type Comparison struct {
	Old Result `json:"old"`
	New Result `json:"new"`
}

// Compare evaluates f with both sets. It fails only when ctx ends (see Set.Evaluate).
func Compare(ctx context.Context, old, new *Set, f Facts) (Comparison, error) {
	o, err := old.Evaluate(ctx, f)
	if err != nil {
		return Comparison{}, fmt.Errorf("evaluating the old rules: %w", err)
	}
	n, err := new.Evaluate(ctx, f)
	if err != nil {
		return Comparison{}, fmt.Errorf("evaluating the new rules: %w", err)
	}
	return Comparison{Old: o, New: n}, nil
}

// ScoreDelta is the new score minus the old.
func (c Comparison) ScoreDelta() int64 { return c.New.Score - c.Old.Score }

// BandChanged reports whether the score moved to another band.
func (c Comparison) BandChanged() bool { return c.Old.Band != c.New.Band }

// QueueChanged reports whether the message would go to another queue.
func (c Comparison) QueueChanged() bool { return c.Old.Route.Queue != c.New.Route.Queue }

// SLAChanged reports whether the message would get another SLA.
func (c Comparison) SLAChanged() bool { return c.Old.Route.SLAMinutes != c.New.Route.SLAMinutes }

// ContributionChange is a score rule that contributes differently under the new rules.
type ContributionChange struct {
	Rule string `json:"rule"`
	// Old and New are nil where the rule did not match (or does not exist).
	Old *Contribution `json:"old"`
	New *Contribution `json:"new"`
}

// ContributionChanges lists the rules that started or stopped matching or changed their points
// or reason: those matched under the old rules first, in old file order, then the rules that
// match only under the new rules.
func (c Comparison) ContributionChanges() []ContributionChange {
	newBy := make(map[string]*Contribution, len(c.New.Contributions))
	for i := range c.New.Contributions {
		newBy[c.New.Contributions[i].Rule] = &c.New.Contributions[i]
	}
	var out []ContributionChange
	seen := make(map[string]bool, len(c.Old.Contributions))
	for i := range c.Old.Contributions {
		o := &c.Old.Contributions[i]
		seen[o.Rule] = true
		n := newBy[o.Rule]
		if n == nil || *n != *o {
			out = append(out, ContributionChange{Rule: o.Rule, Old: o, New: n})
		}
	}
	for i := range c.New.Contributions {
		if n := &c.New.Contributions[i]; !seen[n.Rule] {
			out = append(out, ContributionChange{Rule: n.Rule, New: n})
		}
	}
	return out
}

// Changed reports whether anything a reader of the event would see differs: score, band,
// route or contributions.
func (c Comparison) Changed() bool {
	return c.ScoreDelta() != 0 || c.BandChanged() || c.QueueChanged() || c.SLAChanged() ||
		c.Old.Route.Rule != c.New.Route.Rule || len(c.ContributionChanges()) > 0
}

// BandMove is a score band transition.
type BandMove struct{ From, To Band }

// QueueMove is a queue transition.
type QueueMove struct{ From, To string }

// Summary aggregates comparisons over many messages, for the report of a simulation. The zero
// value is ready to use; it is not safe for concurrent use.
type Summary struct {
	// Messages is the number of comparisons added; Changed those with Changed() true.
	Messages, Changed int
	// Bands counts band transitions, unchanged ones included (From == To).
	Bands map[BandMove]int
	// Queues counts queue transitions, unchanged ones included.
	Queues map[QueueMove]int
	// Rules counts, per score rule, the messages whose contribution changed.
	Rules map[string]int
	// NewErrors counts, per rule, the messages on which the new rules had an evaluation error.
	NewErrors map[string]int
}

// Add counts c.
func (s *Summary) Add(c Comparison) {
	if s.Bands == nil {
		s.Bands, s.Queues = map[BandMove]int{}, map[QueueMove]int{}
		s.Rules, s.NewErrors = map[string]int{}, map[string]int{}
	}
	s.Messages++
	if c.Changed() {
		s.Changed++
	}
	s.Bands[BandMove{c.Old.Band, c.New.Band}]++
	s.Queues[QueueMove{c.Old.Route.Queue, c.New.Route.Queue}]++
	for _, ch := range c.ContributionChanges() {
		s.Rules[ch.Rule]++
	}
	for _, e := range c.New.Errors {
		s.NewErrors[e.Rule]++
	}
}
