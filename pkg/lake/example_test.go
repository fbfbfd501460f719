package lake_test

import (
	"fmt"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/lake"
)

func ExampleMapper_Row() {
	m, err := lake.NewMapper("per-deployment-secret-salt")
	if err != nil {
		panic(err)
	}
	received := time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)
	rec := &events.Enriched{Message: events.Parsed{
		ID: "01JB6Y2M3Q7V", ReceivedAt: received,
		From: &events.Address{Address: "ann@example.com", DomainASCII: "example.com"},
	}}
	row := m.Row(rec, []events.CRMOutcome{
		{Target: "webhook", Outcome: "created", WrittenAt: received.Add(1500 * time.Millisecond)},
		{Target: "hubspot", Outcome: "deduped", WrittenAt: received.Add(2 * time.Second)},
	})
	fmt.Println(row.Outcome, row.Targets, row.LatencyMs, row.FromDomain, len(row.FromHash))
	// Output: deduped [webhook hubspot] 2000 example.com 64
}
