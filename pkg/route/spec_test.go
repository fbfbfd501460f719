package route_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/route"
)

func TestDecodeYAML(t *testing.T) {
	for _, tt := range []struct {
		name string
		file string
		want []string // Problem.String() prefixes; nil means the file decodes
	}{
		{"good", `
- pattern: support+{tenant}@in.example.com
  crm_targets: [hubspot, webhook]
- id: sales
  pattern: sales@in.example.com
  tenant: acme
  max_size: 1048576
  shadow: true
  allow_senders:
    - "*@customer.example"
  updated_at: 2025-01-01T00:00:00Z
`, nil},
		{"syntax error", "- pattern: [unclosed\n", []string{"(line 1): did not find expected"}},
		{"empty", "", []string{"(line 1): the file holds no routes"}},
		{"not a list", "pattern: a@b.example\n", []string{"(line 1): the file must be a YAML list"}},
		{"item not a mapping", "- a@b.example\n- pattern: x@b.example\n  tenant: t\n", []string{"routes[0] (line 1): a route must be a mapping"}},
		{"unknown field and bad type", `
- pattern: a@b.example
  tennant: acme
- pattern: b@b.example
  tenant: t
  max_size: ten
  crm_targets: hubspot
`, []string{
			"routes[0] (line 3): tennant: unknown field; the fields are id, pattern, tenant",
			"routes[1] (line 6): cannot unmarshal !!str `ten` into int64",
			"routes[1] (line 7): cannot unmarshal !!str `hubspot` into []string",
		}},
		{"duplicate key", "- pattern: a@b.example\n  pattern: c@b.example\n", []string{"routes[0] (line 2): mapping key \"pattern\" already defined"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			entries, err := route.DecodeYAML([]byte(tt.file))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("DecodeYAML: %v", err)
				}
				if len(entries) != 2 || entries[1].Spec.ID != "sales" || entries[1].Spec.MaxSize != 1<<20 || !entries[1].Spec.Shadow ||
					entries[0].Spec.CRMTargets[1] != "webhook" || entries[1].Spec.UpdatedAt != nil {
					t.Fatalf("entries = %+v", entries)
				}
				if l := entries[1].Line; l != 4 {
					t.Errorf("entry line = %d, want 4", l)
				}
				for _, c := range []struct {
					entry int
					field string
					want  int
				}{{1, "tenant", 6}, {1, "allow_senders[0]", 10}, {1, "allow_senders[3]", 9}, {1, "rules_set", 4}, {0, "crm_targets[1]", 3}} {
					if got := entries[c.entry].LineOf(c.field); got != c.want {
						t.Errorf("entries[%d].LineOf(%q) = %d, want %d", c.entry, c.field, got, c.want)
					}
				}
				return
			}
			var ve *route.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error = %v, want *ValidationError", err)
			}
			if len(ve.Problems) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ve.Problems), len(tt.want), err)
			}
			for i, p := range ve.Problems {
				if !strings.HasPrefix(p.String(), tt.want[i]) {
					t.Errorf("problem %d = %q, want prefix %q", i, p.String(), tt.want[i])
				}
			}
		})
	}
}

// A listing written as YAML or JSON reads back as the same routes, so `routes list -o yaml` is an
// import file.
func TestSpecRoundTrip(t *testing.T) {
	r := events.Route{
		ID: "sales", Pattern: "sales@in.example.com", Tenant: "acme", IntegrationKey: "k", Pipeline: "p",
		CRMTargets: []string{"hubspot"}, RulesSet: "r", AllowSenders: []string{"*@x.example"}, MaxSize: 5, Shadow: true,
		Consent:   map[string]bool{"marketing": true, "sales_contact": false},
		UpdatedAt: time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC),
	}
	y, err := yaml.Marshal([]route.Spec{route.SpecOf(r)})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := route.DecodeYAML(y)
	if err != nil {
		t.Fatalf("DecodeYAML of a listing: %v\n%s", err, y)
	}
	back := entries[0].Spec.Route()
	r.UpdatedAt = time.Time{}
	if fmt.Sprint(back) != fmt.Sprint(r) {
		t.Errorf("YAML round trip:\n got %+v\nwant %+v", back, r)
	}

	j, err := json.Marshal(route.SpecOf(events.Route{ID: "x", Pattern: "x@y.example", Tenant: "t"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"x","pattern":"x@y.example","tenant":"t","integration_key":"","pipeline":"","crm_targets":[],"rules_set":"","allow_senders":[],"deny_senders":[],"max_size":0,"shadow":false,"consent":{}}`; string(j) != want {
		t.Errorf("JSON = %s\nwant %s", j, want)
	}
}

// A file with shape problems still yields its entries, so the routes can be checked too and every
// problem reported at once.
func TestDecodeYAMLKeepsEntriesOnError(t *testing.T) {
	entries, err := route.DecodeYAML([]byte("- just a string\n- pattern: a@b.example\n  tennant: t\n  max_size: ten\n"))
	if !errors.Is(err, route.ErrInvalid) {
		t.Fatalf("error = %v, want ErrInvalid", err)
	}
	if len(entries) != 2 || !entries[0].Malformed || entries[1].Malformed || entries[1].Spec.Pattern != "a@b.example" {
		t.Fatalf("entries = %+v", entries)
	}
	if _, err := route.DecodeYAML([]byte("pattern: a@b.example\n")); err == nil {
		t.Fatal("a mapping at the top level decodes")
	}
}
