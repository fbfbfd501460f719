package route_test

import (
	"fmt"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/route"
)

func ExampleTable_Resolve() {
	snap, err := route.NewSnapshot([]events.Route{
		{ID: "support", Pattern: "support+{tenant}@in.example.com", CRMTargets: []string{"hubspot"}},
		{ID: "sales", Pattern: "sales@in.example.com", Tenant: "acme"},
		{ID: "rest", Pattern: "*@in.example.com", Tenant: "triage"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	var table route.Table // shared by every reader; a follower swaps snapshots in
	table.Store(snap)
	for _, rcpt := range []string{"Support+Globex@in.example.com", "sales+emea@in.example.com", "jobs@in.example.com", "x@elsewhere.example"} {
		m, ok := table.Resolve(rcpt)
		if !ok {
			fmt.Printf("%s: no route (550 5.1.1)\n", rcpt)
			continue
		}
		fmt.Printf("%s: route %s, tenant %s, tag %q\n", rcpt, m.Route.ID, m.Tenant, m.Tag)
	}
	// Output:
	// Support+Globex@in.example.com: route support, tenant globex, tag "globex"
	// sales+emea@in.example.com: route sales, tenant acme, tag "emea"
	// jobs@in.example.com: route rest, tenant triage, tag ""
	// x@elsewhere.example: no route (550 5.1.1)
}

func ExampleDecodeYAML() {
	_, err := route.DecodeYAML([]byte(`
- pattern: support+{tenant}@in.example.com
- pattern: sales@in.example.com
  tennant: acme
`))
	fmt.Println(err)
	// Output:
	// invalid route: routes[1] (line 4): tennant: unknown field; the fields are id, pattern, tenant, integration_key, pipeline, crm_targets, rules_set, allow_senders, deny_senders, max_size, shadow, consent, updated_at
}
