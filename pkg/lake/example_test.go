package lake_test

import (
	"fmt"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/lake"
)

func ExampleMapper_Rows() {
	m, err := lake.NewMapper("per-deployment-secret-salt")
	if err != nil {
		panic(err)
	}
	received := time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)
	rec := &events.Enriched{Message: events.Parsed{
		ID: "01JB6Y2M3Q7V", ReceivedAt: received,
		From: &events.Address{Address: "ann@example.com", DomainASCII: "example.com"},
	}}
	rows := m.Rows(rec, []events.CRMOutcome{
		{Target: "webhook", Outcome: "created", WrittenAt: received.Add(1500 * time.Millisecond)},
		{Target: "hubspot", Outcome: "deduped", WrittenAt: received.Add(2 * time.Second)},
	})
	for _, row := range rows {
		fmt.Println(row.Target, row.Outcome, row.Targets, row.LatencyMs, row.FromDomain, len(row.FromHash))
	}
	// Output:
	// webhook created [webhook hubspot] 1500 example.com 64
	// hubspot deduped [webhook hubspot] 2000 example.com 64
}
