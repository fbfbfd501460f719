package salesforce

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/events"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

var defaultMapping = mapping{taskStatus: DefaultTaskStatus, files: true}

// TestPlanGolden pins the payloads of the fully populated sample message.
func TestPlanGolden(t *testing.T) {
	p := defaultMapping.build(crmtest.Message("golden"))
	got, err := json.MarshalIndent(map[string]any{
		"account": p.account, "contact": p.contact, "task": p.task, "files": p.files,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "plan.golden.json")
	if *update {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(got)+"\n" {
		t.Errorf("plan differs from %s (run with -update and review the diff):\n%s", golden, got)
	}
}

// MarshalJSON lets the golden file show the writes.
func (w write) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"key": w.key, "fields": w.fields})
}

func TestMapping(t *testing.T) {
	blob := func(s string) *string { return &s }
	for _, tt := range []struct {
		name   string
		m      mapping
		mutate func(*events.Enriched)
		check  func(*testing.T, plan)
	}{
		{
			name:   "free-mail sender has no account",
			mutate: func(r *events.Enriched) { r.Enrichment.Company.FreeMail = true },
			check:  func(t *testing.T, p plan) { wantNil(t, "account", p.account) },
		},
		{
			name:   "no company, no account",
			mutate: func(r *events.Enriched) { r.Enrichment.Company = nil },
			check:  func(t *testing.T, p plan) { wantNil(t, "account", p.account) },
		},
		{
			name:   "company without a name is named by its domain",
			mutate: func(r *events.Enriched) { r.Enrichment.Company = &events.Company{Domain: "Acme.Example"} },
			check: func(t *testing.T, p plan) {
				wantWrite(t, p.account, "acme.example", map[string]any{"Name": "acme.example", "Website": "acme.example"})
			},
		},
		{
			name:   "no contact",
			mutate: func(r *events.Enriched) { r.Enrichment.Contact = nil },
			check:  func(t *testing.T, p plan) { wantNil(t, "contact", p.contact) },
		},
		{
			name: "last name first, with a comma",
			mutate: func(r *events.Enriched) {
				r.Enrichment.Contact = &events.Contact{Email: "Ann@Example.com", Name: "Example,  Ann Marie"}
			},
			check: func(t *testing.T, p plan) {
				wantWrite(t, p.contact, "ann@example.com", map[string]any{"FirstName": "Ann Marie", "LastName": "Example", "Email": "ann@example.com"})
			},
		},
		{
			name:   "one-word name is the last name",
			mutate: func(r *events.Enriched) { r.Enrichment.Contact.Name = `"Madonna"` },
			check: func(t *testing.T, p plan) {
				wantWrite(t, p.contact, "a@example.com", map[string]any{"LastName": "Madonna", "Email": "a@example.com"})
			},
		},
		{
			name: "no name anywhere: the local part",
			mutate: func(r *events.Enriched) {
				r.Enrichment.Contact.Name = ""
				r.Message.From.Name = ""
			},
			check: func(t *testing.T, p plan) {
				wantWrite(t, p.contact, "a@example.com", map[string]any{"LastName": "a", "Email": "a@example.com"})
			},
		},
		{
			name:   "name from the From header when the enricher has none",
			mutate: func(r *events.Enriched) { r.Enrichment.Contact.Name = "" },
			check: func(t *testing.T, p plan) {
				wantWrite(t, p.contact, "a@example.com", map[string]any{"FirstName": "Ann", "LastName": "Example", "Email": "a@example.com"})
			},
		},
		{
			name: "internationalized domain: Email in Punycode, key as normalized",
			mutate: func(r *events.Enriched) {
				r.Enrichment.Contact = &events.Contact{Email: "ann@bücher.example", Name: "Ann B"}
			},
			check: func(t *testing.T, p plan) {
				wantWrite(t, p.contact, "ann@bücher.example", map[string]any{"FirstName": "Ann", "LastName": "B", "Email": "ann@xn--bcher-kva.example"})
			},
		},
		{
			name: "non-ASCII local part: no Email field",
			mutate: func(r *events.Enriched) {
				r.Enrichment.Contact = &events.Contact{Email: "jörg@example.com", Name: "Jörg"}
			},
			check: func(t *testing.T, p plan) {
				wantWrite(t, p.contact, "jörg@example.com", map[string]any{"LastName": "Jörg"})
			},
		},
		{
			name: "address longer than Email's 80 characters",
			mutate: func(r *events.Enriched) {
				r.Enrichment.Contact = &events.Contact{Email: strings.Repeat("x", 80) + "@example.com", Name: "X"}
			},
			check: func(t *testing.T, p plan) {
				if _, ok := p.contact.fields["Email"]; ok {
					t.Errorf("Email set for a %d-character address", len(p.contact.key))
				}
			},
		},
		{
			name: "long names are cut to the field lengths",
			mutate: func(r *events.Enriched) {
				r.Enrichment.Contact.Name = strings.Repeat("é", 50) + " " + strings.Repeat("ü", 100)
			},
			check: func(t *testing.T, p plan) {
				wantLen(t, "FirstName", p.contact.fields["FirstName"], maxFirstName)
				wantLen(t, "LastName", p.contact.fields["LastName"], maxLastName)
			},
		},
		{
			name:   "empty subject",
			mutate: func(r *events.Enriched) { r.Message.Subject = "  " },
			check:  func(t *testing.T, p plan) { wantField(t, p.task, "Subject", "Email: (no subject)") },
		},
		{
			name:   "long subject is cut to 255 characters",
			mutate: func(r *events.Enriched) { r.Message.Subject = strings.Repeat("ß", 300) },
			check:  func(t *testing.T, p plan) { wantLen(t, "Subject", p.task.fields["Subject"], maxSubject) },
		},
		{
			name: "full text when stripping left nothing",
			mutate: func(r *events.Enriched) {
				r.Message.StrippedText = ""
				r.Classification = events.Classification{}
			},
			check: func(t *testing.T, p plan) {
				wantField(t, p.task, "Description", "thanks\n> old\n\n--\nmailpipe message 01JCRMTEST"+p.task.key[:16]+", lead score 0")
			},
		},
		{
			name:   "no body: only the trailer",
			mutate: func(r *events.Enriched) { r.Message.StrippedText, r.Message.Text = "", "" },
			check: func(t *testing.T, p plan) {
				if d := p.task.fields["Description"].(string); !strings.HasPrefix(d, "mailpipe message ") {
					t.Errorf("Description = %q", d)
				}
			},
		},
		{
			name:   "long body is cut so the trailer fits in 32000 characters",
			mutate: func(r *events.Enriched) { r.Message.StrippedText = strings.Repeat("€", 40000) },
			check: func(t *testing.T, p plan) {
				d := p.task.fields["Description"].(string)
				wantLen(t, "Description", d, maxDescription)
				if !strings.HasSuffix(d, "queue sales") {
					t.Errorf("Description lost its trailer: ...%s", d[len(d)-40:])
				}
			},
		},
		{
			name:   "owner that is a user id",
			mutate: func(r *events.Enriched) { r.Enrichment.Owner = "0055g00000AbCdEAAV" },
			check:  func(t *testing.T, p plan) { wantField(t, p.task, "OwnerId", "0055g00000AbCdEAAV") },
		},
		{
			name:   "owner that is an address is not mapped",
			mutate: func(r *events.Enriched) { r.Enrichment.Owner = "rep@example.com" },
			check: func(t *testing.T, p plan) {
				if _, ok := p.task.fields["OwnerId"]; ok {
					t.Error("OwnerId set from an address")
				}
			},
		},
		{
			name: "task status from config",
			m:    mapping{taskStatus: "Waiting on someone else"},
			check: func(t *testing.T, p plan) {
				wantField(t, p.task, "Status", "Waiting on someone else")
				if len(p.files) != 0 {
					t.Errorf("files = %v with files off", p.files)
				}
			},
		},
		{
			name: "attachments: inline and unstored parts are skipped, the rest numbered",
			mutate: func(r *events.Enriched) {
				r.Message.Attachments = []events.Attachment{
					{Filename: "logo.png", BlobRef: blob("s3://b/logo"), Inline: true},
					{Filename: "lost.doc", BlobRef: nil},
					{Filename: "", ContentType: "text/csv", Size: 7, Sha256: "cc", BlobRef: blob("s3://b/2")},
					{Filename: "huge-ref.bin", BlobRef: blob("s3://b/" + strings.Repeat("x", maxContentURL))},
					{Filename: "b.pdf", ContentType: "application/pdf", Size: 9, Sha256: "dd", BlobRef: blob("s3://b/3")},
				}
			},
			check: func(t *testing.T, p plan) {
				if len(p.files) != 2 {
					t.Fatalf("files = %v, want 2", p.files)
				}
				id := p.task.key
				wantWrite(t, &p.files[0], id+"-1", map[string]any{"Title": "attachment 1", "ContentUrl": "s3://b/2", "Description": "text/csv, 7 bytes, sha256 cc"})
				wantWrite(t, &p.files[1], id+"-2", map[string]any{"Title": "b.pdf", "ContentUrl": "s3://b/3", "Description": "application/pdf, 9 bytes, sha256 dd"})
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := crmtest.Message("mapping")
			if tt.mutate != nil {
				tt.mutate(rec)
			}
			m := tt.m
			if m.taskStatus == "" {
				m = defaultMapping
			}
			p := m.build(rec)
			if p.task.key != rec.Message.ExternalID {
				t.Errorf("task key = %q, want the external id", p.task.key)
			}
			tt.check(t, p)
			if again := m.build(rec); !reflect.DeepEqual(again, p) {
				t.Error("build is not deterministic")
			}
		})
	}
}

func wantNil(t *testing.T, what string, w *write) {
	t.Helper()
	if w != nil {
		t.Errorf("%s = %+v, want none", what, *w)
	}
}

func wantWrite(t *testing.T, w *write, key string, fields map[string]any) {
	t.Helper()
	if w == nil {
		t.Fatalf("no write, want key %q", key)
	}
	if w.key != key || !reflect.DeepEqual(w.fields, fields) {
		t.Errorf("write = %q %v, want %q %v", w.key, w.fields, key, fields)
	}
}

func wantField(t *testing.T, w write, field string, want any) {
	t.Helper()
	if got := w.fields[field]; got != want {
		t.Errorf("%s = %#v, want %#v", field, got, want)
	}
}

func wantLen(t *testing.T, field string, v any, n int) {
	t.Helper()
	s, _ := v.(string)
	if got := utf8.RuneCountInString(s); got != n || !utf8.ValidString(s) {
		t.Errorf("%s has %d characters, want %d", field, got, n)
	}
}
