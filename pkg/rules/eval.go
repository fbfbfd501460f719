package rules

import (
	"context"
	"fmt"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
)

// Result is what a rules set made of one message: the score, why, and where it goes.
type Result struct {
	// Version is the rules file's version.
	Version string `json:"rules_version"`
	// Score is the sum of the points of the score rules that matched.
	Score int64 `json:"score"`
	// Band is the score's band (see BandOf).
	Band Band `json:"band"`
	// Contributions are the score rules that matched, in file order; their points sum to Score.
	Contributions []Contribution `json:"contributions"`
	// Route is the first route whose condition matched. A valid set always ends with a
	// catch-all, so it is always set.
	Route RouteDecision `json:"route"`
	// Errors are the conditions that failed to evaluate, in file order; each counted as not
	// matched. Empty on a clean evaluation.
	Errors []RuleError `json:"errors,omitempty"`
}

// Contribution is what one matched score rule added.
type Contribution struct {
	// Rule is the score rule's name.
	Rule string `json:"rule"`
	// Points it added; may be negative.
	Points int64 `json:"points"`
	// Reason is the rule's reason, or its condition when it has none.
	Reason string `json:"reason"`
}

// RouteDecision is the route a message was given.
type RouteDecision struct {
	// Rule is the route's name.
	Rule string `json:"rule"`
	// Queue is the queue the message goes to.
	Queue string `json:"queue"`
	// SLAMinutes is the response SLA in minutes; 0 means none.
	SLAMinutes int `json:"sla_minutes"`
}

// Evaluate runs every score rule over f, adds up the points of those that matched, then gives
// the score to the routes and picks the first that matches.
//
// A condition that fails at runtime (a missing map key, the cost limit) is recorded in
// Result.Errors and counts as not matched; the other rules still run. Evaluate returns an error
// only when ctx ends before it finished, so that a stage can retry instead of recording a
// partial score. It is safe to call concurrently.
func (s *Set) Evaluate(ctx context.Context, f Facts) (Result, error) {
	act := newActivation(&f, s.adapter, s.cfg.maxText)
	res := Result{Version: s.version, Contributions: make([]Contribution, 0, len(s.score))}
	for i := range s.score {
		r := &s.score[i]
		ok, err := eval(ctx, r.prg, act)
		if err != nil {
			if ctx.Err() != nil {
				return Result{}, fmt.Errorf("evaluating rules %s: %w", s.version, context.Cause(ctx))
			}
			res.Errors = append(res.Errors, RuleError{Section: SectionScore, Rule: r.name, Err: err})
			continue
		}
		if ok {
			res.Score += r.points
			res.Contributions = append(res.Contributions, Contribution{Rule: r.name, Points: r.points, Reason: r.reason})
		}
	}
	res.Band = BandOf(res.Score)
	act.score = types.Int(res.Score)
	for i := range s.routes {
		r := &s.routes[i]
		ok := r.always
		if !ok {
			var err error
			ok, err = eval(ctx, r.prg, act)
			if err != nil {
				if ctx.Err() != nil {
					return Result{}, fmt.Errorf("evaluating rules %s: %w", s.version, context.Cause(ctx))
				}
				res.Errors = append(res.Errors, RuleError{Section: SectionRoutes, Rule: r.name, Err: err})
				continue
			}
		}
		if ok {
			res.Route = RouteDecision{Rule: r.name, Queue: r.queue, SLAMinutes: r.sla}
			break
		}
	}
	return res, nil
}

// eval runs one condition. cel-go turns its own panics (cost limit, interrupts) into errors;
// the recover is for anything else, because one odd message must not stop the stream.
func eval(ctx context.Context, prg cel.Program, act *activation) (matched bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			matched, err = false, fmt.Errorf("condition panicked: %v", p)
		}
	}()
	out, _, err := prg.ContextEval(ctx, act)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("condition returned %s, not bool", out.Type())
	}
	return bool(b), nil
}
