package route_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/route"
)

func mustSnapshot(t *testing.T, routes ...events.Route) *route.Snapshot {
	t.Helper()
	s, err := route.NewSnapshot(routes)
	if err != nil {
		t.Fatalf("NewSnapshot: %v", err)
	}
	return s
}

func TestResolve(t *testing.T) {
	s := mustSnapshot(t,
		events.Route{ID: "exact-tagged", Pattern: "support+vip@in.example.com", Tenant: "vip"},
		events.Route{ID: "support-tenant", Pattern: "support+{tenant}@in.example.com"},
		events.Route{ID: "support", Pattern: "support@in.example.com", Tenant: "helpdesk"},
		events.Route{ID: "deals", Pattern: "deals+*@in.example.com", Tenant: "sales"},
		events.Route{ID: "sales", Pattern: "sales@in.example.com", Tenant: "sales"},
		events.Route{ID: "all", Pattern: "*@in.example.com", Tenant: "catchall"},
		events.Route{ID: "idn", Pattern: "info@bücher.example", Tenant: "books"},
		events.Route{ID: "other", Pattern: "jobs@other.example", Tenant: "hr"},
	)
	for _, tt := range []struct {
		addr         string
		ok           bool
		id, tenant   string
		tag          string
		kind         route.Kind
		explanations string
	}{
		{addr: "support+vip@in.example.com", ok: true, id: "exact-tagged", tenant: "vip", kind: route.KindExact, explanations: "exact beats plus pattern; no tag for a whole-address route"},
		{addr: "support+acme@in.example.com", ok: true, id: "support-tenant", tenant: "acme", tag: "acme", kind: route.KindPlusTenant},
		{addr: "Support+ACME@IN.Example.com", ok: true, id: "support-tenant", tenant: "acme", tag: "acme", kind: route.KindPlusTenant, explanations: "case-insensitive"},
		{addr: "<support+acme@in.example.com>", ok: true, id: "support-tenant", tenant: "acme", tag: "acme", kind: route.KindPlusTenant},
		{addr: "support+Re:x@in.example.com", ok: true, id: "support", tenant: "helpdesk", tag: "re:x", kind: route.KindExact, explanations: "a tag that is no tenant name falls through to the base address"},
		{addr: "support+a+b@in.example.com", ok: true, id: "support", tenant: "helpdesk", tag: "a+b", kind: route.KindExact, explanations: "the tag starts at the first +"},
		{addr: "support@in.example.com", ok: true, id: "support", tenant: "helpdesk", kind: route.KindExact},
		{addr: "support+@in.example.com", ok: true, id: "support", tenant: "helpdesk", kind: route.KindExact, explanations: "an empty tag matches no plus pattern"},
		{addr: "deals+q3@in.example.com", ok: true, id: "deals", tenant: "sales", tag: "q3", kind: route.KindPlusAny},
		{addr: "deals@in.example.com", ok: true, id: "all", tenant: "catchall", kind: route.KindCatchAll, explanations: "local+* needs a tag"},
		{addr: "sales+emea@in.example.com", ok: true, id: "sales", tenant: "sales", tag: "emea", kind: route.KindExact, explanations: "plus addressing reaches the base route with the tag"},
		{addr: "nobody+x@in.example.com", ok: true, id: "all", tenant: "catchall", tag: "x", kind: route.KindCatchAll},
		{addr: "+x@in.example.com", ok: true, id: "all", tenant: "catchall", kind: route.KindCatchAll},
		{addr: "info@xn--bcher-kva.example", ok: true, id: "idn", tenant: "books", kind: route.KindExact, explanations: "A-label address, U-label route"},
		{addr: "INFO@BÜCHER.example", ok: true, id: "idn", tenant: "books", kind: route.KindExact, explanations: "U-label upper case"},
		{addr: "jobs@other.example.", ok: true, id: "other", tenant: "hr", kind: route.KindExact, explanations: "trailing dot"},
		{addr: "nobody@other.example", ok: false},
		{addr: "support@sub.in.example.com", ok: false, explanations: "no subdomain matching"},
		{addr: "support@example.com", ok: false},
		{addr: "in.example.com", ok: false},
		{addr: "@in.example.com", ok: false},
		{addr: "support@", ok: false},
		{addr: "", ok: false},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			m, ok := s.Resolve(tt.addr)
			if ok != tt.ok {
				t.Fatalf("Resolve(%q) ok = %v, want %v (%s)", tt.addr, ok, tt.ok, tt.explanations)
			}
			if !ok {
				return
			}
			if m.Route.ID != tt.id || m.Tenant != tt.tenant || m.Tag != tt.tag || m.Kind != tt.kind {
				t.Errorf("Resolve(%q) = route %q tenant %q tag %q kind %v; want %q %q %q %v (%s)",
					tt.addr, m.Route.ID, m.Tenant, m.Tag, m.Kind, tt.id, tt.tenant, tt.tag, tt.kind, tt.explanations)
			}
		})
	}
}

func TestResolveEmptyTable(t *testing.T) {
	var tbl route.Table
	if _, ok := tbl.Resolve("support@in.example.com"); ok {
		t.Fatal("the zero Table resolved an address")
	}
	if n := tbl.Load().Len(); n != 0 {
		t.Fatalf("zero Table has %d routes", n)
	}
}

func TestCanonicalProblems(t *testing.T) {
	for _, tt := range []struct {
		name  string
		route events.Route
		want  []string // "field: detail substring", in order
	}{
		{"valid minimal", events.Route{Pattern: "support@in.example.com", Tenant: "acme"}, nil},
		{"valid full", events.Route{
			ID: "support-acme", Pattern: "support@in.example.com", Tenant: "acme", IntegrationKey: "int_1",
			Pipeline: "default", CRMTargets: []string{"hubspot", "webhook", "salesforce", "pipedrive", "postgres", "local"},
			RulesSet: "rules-v3.yaml", AllowSenders: []string{"*@customer.example", "alice@x.example", "*@*.partner.example", "<>"},
			DenySenders: []string{"spam@customer.example"}, MaxSize: 10 << 20, Shadow: true,
		}, nil},
		{"bad pattern", events.Route{Pattern: "support", Tenant: "acme"}, []string{`pattern: "support" has no "@"`}},
		{"empty tenant", events.Route{Pattern: "support@in.example.com"}, []string{"tenant: must not be empty"}},
		{"bad tenant", events.Route{Pattern: "support@in.example.com", Tenant: "Acme Corp"}, []string{`tenant: "Acme Corp": use 1 to 63 lower-case`}},
		{"tenant with placeholder", events.Route{Pattern: "support+{tenant}@in.example.com", Tenant: "acme"}, []string{"tenant: must be empty: the pattern takes the tenant"}},
		{
			"unknown target",
			events.Route{Pattern: "a@b.example", Tenant: "t", CRMTargets: []string{"hubsopt"}},
			[]string{`crm_targets[0]: unknown CRM target "hubsopt"; known targets: hubspot, local, pipedrive, postgres, salesforce, webhook`},
		},
		{
			"target case hint",
			events.Route{Pattern: "a@b.example", Tenant: "t", CRMTargets: []string{"webhook", "HubSpot"}},
			[]string{`crm_targets[1]: unknown CRM target "HubSpot" (did you mean "hubspot"?)`},
		},
		{
			"target twice",
			events.Route{Pattern: "a@b.example", Tenant: "t", CRMTargets: []string{"webhook", "webhook"}},
			[]string{`crm_targets[1]: "webhook" is listed twice`},
		},
		{"negative size", events.Route{Pattern: "a@b.example", Tenant: "t", MaxSize: -1}, []string{"max_size: -1 is negative"}},
		{"consent flag not snake case", events.Route{Pattern: "a@b.example", Tenant: "t", Consent: map[string]bool{"marketing": true, "Sales-Contact": false}}, []string{`consent: flag "Sales-Contact": use 1 to 64`}},
		{"bad id", events.Route{ID: "a b", Pattern: "a@b.example", Tenant: "t"}, []string{`id: "a b": use letters`}},
		{"long id", events.Route{ID: strings.Repeat("a", 129), Pattern: "a@b.example", Tenant: "t"}, []string{"id: is longer than 128"}},
		{"bad pipeline", events.Route{Pattern: "a@b.example", Tenant: "t", Pipeline: "two words"}, []string{"pipeline: \"two words\" contains space"}},
		{
			"bad senders",
			events.Route{Pattern: "a@b.example", Tenant: "t", AllowSenders: []string{"example.com", "a*@x.example"}, DenySenders: []string{"bob@*.x.example", ""}},
			[]string{
				`allow_senders[0]: "example.com" has no "@"`,
				`allow_senders[1]: "a*@x.example": "*" is allowed only`,
				`deny_senders[0]: "bob@*.x.example": a subdomain wildcard needs "*"`,
				"deny_senders[1]: must not be empty",
			},
		},
		{
			"every problem at once",
			events.Route{Pattern: "x@", Tenant: "", MaxSize: -5, CRMTargets: []string{"nope"}},
			[]string{"pattern: the domain is missing", "tenant: must not be empty", "crm_targets[0]: unknown CRM target", "max_size: -5 is negative"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := route.Canonical(tt.route)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Canonical: %v", err)
				}
				return
			}
			var ve *route.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, route.ErrInvalid) {
				t.Fatalf("Canonical error = %v, want a *ValidationError matching ErrInvalid", err)
			}
			if len(ve.Problems) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ve.Problems), len(tt.want), err)
			}
			for i, p := range ve.Problems {
				if p.Index != -1 || !strings.HasPrefix(p.String(), tt.want[i]) {
					t.Errorf("problem %d = %q (index %d), want prefix %q", i, p.String(), p.Index, tt.want[i])
				}
			}
		})
	}
}

func TestCanonicalForm(t *testing.T) {
	got, err := route.Canonical(events.Route{
		Pattern: " Support+{tenant}@Bücher.Example ", AllowSenders: []string{"Alice@Customer.EXAMPLE", "*@*.Partner.example"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Pattern != "support+{tenant}@xn--bcher-kva.example" {
		t.Errorf("pattern = %q", got.Pattern)
	}
	if want := "alice@customer.example,*@*.partner.example"; strings.Join(got.AllowSenders, ",") != want {
		t.Errorf("allow_senders = %q, want %q", got.AllowSenders, want)
	}
	// The default id depends on the canonical pattern only, so spelling does not matter.
	other, err := route.Canonical(events.Route{Pattern: "support+{tenant}@xn--bcher-kva.example"})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID == "" || got.ID != other.ID || !strings.HasPrefix(got.ID, "r-") {
		t.Errorf("default ids %q and %q: want equal, r-prefixed", got.ID, other.ID)
	}
}

func TestSenderPolicy(t *testing.T) {
	s := mustSnapshot(t,
		events.Route{ID: "open", Pattern: "open@in.example.com", Tenant: "t"},
		events.Route{ID: "deny", Pattern: "deny@in.example.com", Tenant: "t", DenySenders: []string{"*@spam.example", "mallory@customer.example", "<>"}},
		events.Route{
			ID: "allow", Pattern: "allow@in.example.com", Tenant: "t",
			AllowSenders: []string{"*@customer.example", "*@*.partner.example", "boss@Bücher.example"},
			DenySenders:  []string{"mallory@customer.example"},
		},
	)
	for _, tt := range []struct {
		rcpt, from string
		want       bool
	}{
		{"open@in.example.com", "anyone@anywhere.example", true},
		{"open@in.example.com", "", true},
		{"deny@in.example.com", "alice@customer.example", true},
		{"deny@in.example.com", "x@SPAM.example", false},
		{"deny@in.example.com", "x@sub.spam.example", true},
		{"deny@in.example.com", "Mallory@customer.example", false},
		{"deny@in.example.com", "", false},
		{"deny@in.example.com", "<>", false},
		{"allow@in.example.com", "alice@customer.example", true},
		{"allow@in.example.com", "mallory@customer.example", false},
		{"allow@in.example.com", "x@eu.partner.example", true},
		{"allow@in.example.com", "x@partner.example", false},
		{"allow@in.example.com", "boss@xn--bcher-kva.example", true},
		{"allow@in.example.com", "x@other.example", false},
		{"allow@in.example.com", "", false},
		{"allow@in.example.com", "not an address", false},
	} {
		t.Run(tt.rcpt+" from "+tt.from, func(t *testing.T) {
			m, ok := s.Resolve(tt.rcpt)
			if !ok {
				t.Fatalf("%s does not resolve", tt.rcpt)
			}
			if got := m.Senders.AllowsSender(tt.from); got != tt.want {
				t.Errorf("AllowsSender(%q) = %v, want %v", tt.from, got, tt.want)
			}
		})
	}
	if m, _ := s.Resolve("open@in.example.com"); m.Senders != nil {
		t.Error("a route without lists has a sender policy")
	}
	a, _ := s.Resolve("allow@in.example.com")
	b, _ := s.Resolve("allow+x@in.example.com")
	if a.Senders != b.Senders {
		t.Error("two matches of one route in one snapshot have different sender policies")
	}
}

func TestNewSnapshotConflicts(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	routes := []events.Route{
		{ID: "b-newer", Pattern: "support@in.example.com", Tenant: "t", UpdatedAt: t0.Add(time.Hour)},
		{ID: "a-older", Pattern: "SUPPORT@in.example.com", Tenant: "t", UpdatedAt: t0},
		{ID: "plus-any", Pattern: "deals+*@in.example.com", Tenant: "t", UpdatedAt: t0},
		{ID: "plus-tenant", Pattern: "deals+{tenant}@in.example.com", UpdatedAt: t0.Add(time.Minute)},
		{ID: "broken", Pattern: "nope", Tenant: "t"},
		{ID: "v", Pattern: "v1@in.example.com", Tenant: "t"},
		{ID: "v", Pattern: "v2@in.example.com", Tenant: "t"}, // a later version replaces the earlier one
		{Pattern: "noid@in.example.com", Tenant: "t"},
	}
	s, err := route.NewSnapshot(routes)
	var ve *route.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("NewSnapshot error = %v, want a *ValidationError", err)
	}
	var got []string
	for _, p := range ve.Problems {
		got = append(got, fmt.Sprintf("%d %s", p.Index, p.Field))
	}
	if want := "0 pattern|3 pattern|4 pattern|7 id"; strings.Join(got, "|") != want {
		t.Errorf("problems at %q, want %q:\n%v", strings.Join(got, "|"), want, err)
	}
	if !strings.Contains(ve.Problems[0].Detail, `already the pattern of route "a-older"`) ||
		!strings.Contains(ve.Problems[1].Detail, `competes with route "plus-any"`) {
		t.Errorf("conflict details do not name the route kept:\n%v", err)
	}
	for addr, id := range map[string]string{"support@in.example.com": "a-older", "deals+x@in.example.com": "plus-any", "v2@in.example.com": "v"} {
		if m, ok := s.Resolve(addr); !ok || m.Route.ID != id {
			t.Errorf("Resolve(%q) = %q, %v; want %q", addr, m.Route.ID, ok, id)
		}
	}
	if _, ok := s.Resolve("v1@in.example.com"); ok {
		t.Error("the replaced version of route v still resolves")
	}
	if s.Len() != 3 {
		t.Errorf("Len = %d, want 3", s.Len())
	}
}

func TestValidateBatch(t *testing.T) {
	current := mustSnapshot(t,
		events.Route{ID: "support", Pattern: "support@in.example.com", Tenant: "t"},
		events.Route{ID: "deals", Pattern: "deals+*@in.example.com", Tenant: "t"},
	)
	for _, tt := range []struct {
		name  string
		batch []events.Route
		want  []string // "index field"
	}{
		{"new routes", []events.Route{{Pattern: "a@in.example.com", Tenant: "t"}, {Pattern: "*@in.example.com", Tenant: "t"}}, nil},
		{"update keeps its pattern", []events.Route{{ID: "support", Pattern: "support@in.example.com", Tenant: "u"}}, nil},
		{"swap patterns in one batch", []events.Route{
			{ID: "support", Pattern: "deals+*@in.example.com", Tenant: "t"},
			{ID: "deals", Pattern: "support@in.example.com", Tenant: "t"},
		}, nil},
		{"taken by another route", []events.Route{{ID: "new", Pattern: "Support@in.example.com", Tenant: "t"}}, []string{"0 pattern"}},
		{"plus kinds compete", []events.Route{{ID: "new", Pattern: "deals+{tenant}@in.example.com"}}, []string{"0 pattern"}},
		{"same pattern twice in the batch", []events.Route{
			{ID: "x", Pattern: "x@in.example.com", Tenant: "t"}, {ID: "y", Pattern: "X@in.example.com", Tenant: "t"},
		}, []string{"1 pattern"}},
		{"same id twice in the batch", []events.Route{
			{ID: "x", Pattern: "x@in.example.com", Tenant: "t"}, {ID: "x", Pattern: "y@in.example.com", Tenant: "t"},
		}, []string{"1 id"}},
		{"every error reported", []events.Route{
			{Pattern: "ok@in.example.com", Tenant: "t"},
			{Pattern: "bad", Tenant: "t"},
			{Pattern: "c@in.example.com", CRMTargets: []string{"nope"}},
		}, []string{"1 pattern", "2 tenant", "2 crm_targets[0]"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := current.ValidateBatch(tt.batch)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("ValidateBatch: %v", err)
				}
				if len(out) != len(tt.batch) {
					t.Fatalf("got %d routes back, want %d", len(out), len(tt.batch))
				}
				return
			}
			var ve *route.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error = %v, want *ValidationError", err)
			}
			var got []string
			for _, p := range ve.Problems {
				got = append(got, fmt.Sprintf("%d %s", p.Index, p.Field))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("problems %q, want %q:\n%v", got, tt.want, err)
			}
		})
	}

	// Validate reports single-route problems without an index.
	_, err := current.Validate(events.Route{ID: "new", Pattern: "support@in.example.com", Tenant: "t"})
	var ve *route.ValidationError
	if !errors.As(err, &ve) || ve.Problems[0].Index != -1 || !strings.HasPrefix(err.Error(), `invalid route: pattern: "support@in.example.com" is already the pattern of route "support"`) {
		t.Errorf("Validate error = %v", err)
	}
}

func TestRoutesOrder(t *testing.T) {
	s := mustSnapshot(t,
		events.Route{ID: "4", Pattern: "*@b.example", Tenant: "t"},
		events.Route{ID: "3", Pattern: "x+*@b.example", Tenant: "t"},
		events.Route{ID: "2", Pattern: "z@b.example", Tenant: "t"},
		events.Route{ID: "1", Pattern: "a@a.example", Tenant: "t"},
	)
	var ids []string
	for _, r := range s.Routes() {
		ids = append(ids, r.ID)
	}
	if got := strings.Join(ids, ","); got != "1,2,3,4" {
		t.Errorf("Routes order = %s, want 1,2,3,4 (domain, then kind, then pattern)", got)
	}
	if r, ok := s.Get("3"); !ok || r.Pattern != "x+*@b.example" {
		t.Errorf("Get(3) = %+v, %v", r, ok)
	}
	if _, ok := s.Get("nope"); ok {
		t.Error("Get(nope) found a route")
	}
}

// TestTableConcurrentSwaps runs readers against a writer that keeps swapping snapshots; under
// -race it proves Resolve never sees a half-built table.
func TestTableConcurrentSwaps(t *testing.T) {
	var tbl route.Table
	a := mustSnapshot(t, events.Route{ID: "a", Pattern: "*@in.example.com", Tenant: "a"})
	b := mustSnapshot(t, events.Route{ID: "b", Pattern: "*@in.example.com", Tenant: "b"}, events.Route{ID: "x", Pattern: "x@in.example.com", Tenant: "b"})
	tbl.Store(a)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				m, ok := tbl.Resolve("x@in.example.com")
				if !ok || (m.Route.ID == "a") != (m.Tenant == "a") || (m.Route.ID == "x") != (m.Tenant == "b") {
					t.Errorf("inconsistent match %+v, %v", m, ok)
					return
				}
			}
		})
	}
	for i := range 2000 {
		if i%2 == 0 {
			tbl.Store(b)
		} else {
			tbl.Store(a)
		}
	}
	close(done)
	wg.Wait()
}

func BenchmarkResolve(b *testing.B) {
	routes := make([]events.Route, 0, 10000)
	for i := range 10000 {
		routes = append(routes, events.Route{ID: fmt.Sprint(i), Pattern: fmt.Sprintf("user%d@d%d.example", i, i%100), Tenant: "t"})
	}
	s, err := route.NewSnapshot(routes)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Resolve("User77+Tag@D77.example"); !ok {
			b.Fatal("no match")
		}
	}
}
