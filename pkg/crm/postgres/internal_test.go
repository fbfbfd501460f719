package postgres

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/events/eventstest"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

func TestEmbeddedMigrations(t *testing.T) {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].version != 1 || ms[0].name != "0001_lead_capture.sql" {
		t.Fatalf("migrations = %+v", ms)
	}
	for i, m := range ms {
		if m.version != int64(i+1) {
			t.Errorf("migration %s has version %d, want %d: versions are consecutive", m.name, m.version, i+1)
		}
	}
}

func TestLoadMigrationsRejectsBadNames(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files fstest.MapFS
		want  string
	}{
		{"no version", fstest.MapFS{"migrations/init.sql": {}}, "NNNN_description.sql"},
		{"zero version", fstest.MapFS{"migrations/0000_x.sql": {}}, "NNNN_description.sql"},
		{"duplicate version", fstest.MapFS{"migrations/0001_a.sql": {}, "migrations/01_b.sql": {}}, "share version 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadMigrations(tt.files)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("loadMigrations = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestSQLStateClass(t *testing.T) {
	for code, want := range map[string]failure.Class{
		"28P01": failure.Auth,     // invalid_password
		"42501": failure.Auth,     // insufficient_privilege
		"23505": failure.CRM4xx,   // unique_violation
		"22021": failure.CRM4xx,   // character_not_in_repertoire
		"40001": failure.CRM5xx,   // serialization_failure
		"40P01": failure.CRM5xx,   // deadlock_detected
		"08006": failure.CRM5xx,   // connection_failure
		"53300": failure.CRM5xx,   // too_many_connections
		"57P01": failure.CRM5xx,   // admin_shutdown
		"3D000": failure.CRM5xx,   // invalid_catalog_name (database being created)
		"57014": failure.Timeout,  // query_canceled
		"42P01": failure.Internal, // undefined_table
		"42601": failure.Internal, // syntax_error
		"XX000": failure.CRM5xx,   // internal_error
		"":      failure.CRM5xx,
	} {
		if got := sqlstateClass(code); got != want {
			t.Errorf("sqlstateClass(%q) = %s, want %s", code, got, want)
		}
	}
}

func TestNewRow(t *testing.T) {
	sample := func() *events.Enriched {
		rec, _ := eventstest.Samples()["mail.enriched.v1"].(*events.Enriched)
		return rec
	}
	outbound := map[string]bool{"acme.example": true}
	for _, tt := range []struct {
		name   string
		mutate func(*events.Enriched)
		check  func(*testing.T, row)
	}{
		{"inbound human with contact and company", nil, func(t *testing.T, r row) {
			if r.direction != DirectionInbound || !r.createsLead || r.contact == nil || r.contact.email != "a@example.com" ||
				r.company == nil || r.company.domain != "example.com" || r.company.name != "Example Inc" {
				t.Errorf("row = %+v", r)
			}
		}},
		{"contact falls back to From", func(m *events.Enriched) {
			m.Enrichment.Contact = nil
			m.Message.From = &events.Address{Address: "Bob@Example.ORG", Name: "Bob"}
		}, func(t *testing.T, r row) {
			if r.contact == nil || r.contact.email != "bob@example.org" || r.contact.name != "Bob" {
				t.Errorf("contact = %+v", r.contact)
			}
		}},
		{"no sender, no contact; still a lead", func(m *events.Enriched) {
			m.Enrichment.Contact, m.Message.From = nil, nil
		}, func(t *testing.T, r row) {
			if r.contact != nil || !r.createsLead {
				t.Errorf("contact %+v, createsLead %v", r.contact, r.createsLead)
			}
		}},
		{"outbound domain", func(m *events.Enriched) {
			m.Message.From = &events.Address{Address: "Sales@ACME.example"}
		}, func(t *testing.T, r row) {
			if r.direction != DirectionOutbound || r.createsLead || r.contact != nil || r.company != nil {
				t.Errorf("row = %+v", r)
			}
		}},
		{"bounce creates no lead", func(m *events.Enriched) { m.Classification.Kind = "bounce" }, func(t *testing.T, r row) {
			if r.createsLead {
				t.Error("a bounce creates a lead")
			}
		}},
		{"empty thread key falls back to the external id", func(m *events.Enriched) { m.Message.ThreadKey = "" }, func(t *testing.T, r row) {
			if r.threadKey != "9f2c" {
				t.Errorf("thread key = %q", r.threadKey)
			}
		}},
		{"text is cleaned", func(m *events.Enriched) { m.Message.StrippedText = "a\x00b\xc3" }, func(t *testing.T, r row) {
			if r.strippedText != "ab\uFFFD" {
				t.Errorf("stripped text = %q", r.strippedText)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := sample()
			if tt.mutate != nil {
				tt.mutate(rec)
			}
			tt.check(t, newRow(rec, outbound))
		})
	}
}
