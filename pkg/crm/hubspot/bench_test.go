package hubspot_test

import (
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/crm/hubspot/hubspottest"
	"github.com/mailpipe/mailpipe/pkg/events"
)

var replayN = flag.Int("replay-n", 500, "messages TestReplayTwiceCreatesNothingNew writes and replays (docs/crm/hubspot.md quotes 10000)")

// corpusMessage returns message i of a synthetic stream: its own external id, one of 1000
// senders spread over 100 companies, and every tenth sender on a free-mail domain.
func corpusMessage(i int) *events.Enriched {
	rec := crmtest.Message(fmt.Sprint("corpus-", i))
	sender, company := i%1000, i%100
	rec.Enrichment.Contact.Email = fmt.Sprintf("user%d@corp%d.example", sender, company)
	rec.Enrichment.Company = &events.Company{Domain: fmt.Sprintf("corp%d.example", company), Name: fmt.Sprintf("Corp %d", company)}
	if sender%10 == 0 {
		rec.Enrichment.Contact.Email = fmt.Sprintf("user%d@freemail.example", sender)
		rec.Enrichment.Company = &events.Company{Domain: "freemail.example", FreeMail: true}
	}
	return rec
}

// run upserts messages [0, n) with the given number of workers and counts the outcomes.
func run(tb testing.TB, c crm.Connector, n, workers int) map[string]int {
	var next atomic.Int64
	var mu sync.Mutex
	outcomes := map[string]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				res, err := c.Upsert(tb.Context(), corpusMessage(i))
				if err != nil {
					tb.Errorf("Upsert(%d): %v", i, err)
					return
				}
				mu.Lock()
				outcomes[res.Outcome]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return outcomes
}

// BenchmarkUpsert reports upserts per second against the contract server (no rate limit, no
// network), for new messages: contact batch upsert, company search or memory, association,
// email search and create.
func BenchmarkUpsert(b *testing.B) {
	for _, workers := range []int{1, 16} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			srv := hubspottest.NewServer(b)
			c := newConnector(b, config(srv))
			b.ResetTimer()
			run(b, c, b.N, workers)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "upserts/s")
			b.ReportMetric(float64(srv.TotalCalls())/float64(b.N), "requests/upsert")
		})
	}
}

// TestReplayTwiceCreatesNothingNew writes -replay-n messages, replays them all in the same
// process and again from a fresh one (a restart, a DLQ replay elsewhere), and checks that HubSpot
// holds exactly one email per message and one contact and company per sender and domain.
func TestReplayTwiceCreatesNothingNew(t *testing.T) {
	n := *replayN
	srv := hubspottest.NewServer(t)
	first := newConnector(t, config(srv))
	for _, pass := range []struct {
		name string
		c    crm.Connector
		want string
	}{
		{"first delivery", first, crm.OutcomeCreated},
		{"replay in the same process", first, crm.OutcomeUnchanged},
		{"replay from a fresh process", newConnector(t, config(srv)), crm.OutcomeUnchanged},
	} {
		start := time.Now()
		outcomes := run(t, pass.c, n, 16)
		t.Logf("%s: %d messages in %v (%.0f upserts/s): %v", pass.name, n, time.Since(start).Round(time.Millisecond),
			float64(n)/time.Since(start).Seconds(), outcomes)
		if outcomes[pass.want] != n {
			t.Errorf("%s: outcomes %v, want %d %s", pass.name, outcomes, n, pass.want)
		}
	}
	emails := srv.Records(hubspottest.Emails)
	seen := map[string]bool{}
	duplicates := 0
	for _, e := range emails {
		id := e.Properties[hubspottest.ExternalIDProperty]
		if seen[id] {
			duplicates++
		}
		seen[id] = true
	}
	t.Logf("after 3 passes of %d messages: %d emails, %d duplicates, %d contacts, %d companies",
		n, len(emails), duplicates, len(srv.Records(hubspottest.Contacts)), len(srv.Records(hubspottest.Companies)))
	if duplicates != 0 || len(seen) != n {
		t.Errorf("emails: %d distinct external ids, %d duplicates; want %d and 0", len(seen), duplicates, n)
	}
	if got, want := len(srv.Records(hubspottest.Contacts)), min(n, 1000); got != want {
		t.Errorf("contacts = %d, want %d", got, want)
	}
	if got, want := len(srv.Records(hubspottest.Companies)), min(n, 100)-min(n, 100)/10; got != want {
		t.Errorf("companies = %d, want %d (free-mail senders have none)", got, want)
	}
}
