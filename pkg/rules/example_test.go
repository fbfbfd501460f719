package rules_test

import (
	"context"
	"fmt"

	"github.com/mailpipe/mailpipe/pkg/rules"
)

func ExampleSet_Evaluate() {
	set, err := rules.Parse("rules.yaml", []byte(`version: 2026-11-23.1
score_rules:
  - name: business_domain
    when: '!sender.free_mail'
    points: 30
    reason: sender domain is not a free-mail provider
  - name: mentions_security
    when: 'text.matches(r"(?i)\b(sso|saml|soc ?2)\b")'
    points: 40
  - name: dmarc_fail
    when: 'auth.dmarc == "fail"'
    points: -50
routes:
  - name: ae_priority
    when: 'score >= 70'
    queue: ae_priority
    sla_minutes: 15
  - name: default
    when: 'true'
    queue: inbox
    sla_minutes: 1440
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := set.Evaluate(context.Background(), rules.Facts{
		Sender: rules.Sender{Address: "ann@acme.example", Domain: "acme.example"},
		Text:   "Do you support SAML?",
		Kind:   "human",
		Auth:   rules.Auth{DMARC: "pass"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("rules %s: score %d (%s) → %s, SLA %d min\n", res.Version, res.Score, res.Band, res.Route.Queue, res.Route.SLAMinutes)
	for _, c := range res.Contributions {
		fmt.Printf("%+4d %s: %s\n", c.Points, c.Rule, c.Reason)
	}
	// Output:
	// rules 2026-11-23.1: score 70 (high) → ae_priority, SLA 15 min
	//  +30 business_domain: sender domain is not a free-mail provider
	//  +40 mentions_security: text.matches(r"(?i)\b(sso|saml|soc ?2)\b")
}

func ExampleParse_errors() {
	_, err := rules.Parse("rules.yaml", []byte(`version: 2026-11-23.1
score_rules:
  - name: x
    when: 'subject'
    points: 10
routes:
  - name: default
    when: 'true'
    queue: inbox
  - name: late
    when: 'score > 50'
    queue: sales
`))
	fmt.Println(err)
	// Output:
	// rules.yaml:4:11: score rule "x": condition must be bool, got string
	// rules.yaml:10:5: route "late": unreachable: route "default" on line 7 matches every message
}
