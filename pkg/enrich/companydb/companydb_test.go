package companydb_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/enrich/companydb"
)

// The two testdata files hold the same rows, good and bad, one as CSV and one as JSON lines.
func TestLoadFile(t *testing.T) {
	for _, tt := range []struct {
		file string
		bad  []string // the reported problems, in order
	}{
		{
			file: "companies.csv",
			bad: []string{
				"line 5: domain: no domain",
				`line 6: domain: "not a domain" is not a domain name`,
				"line 7: domain acme.com is already given on line 2; the first row is kept",
				"line 9: 2 fields; the header row has 6",
				`line 10: extraneous or missing " in quoted-field`,
			},
		},
		{
			file: "companies.jsonl",
			bad: []string{
				"line 5: domain: no domain",
				`line 6: domain: "not a domain" is not a domain name`,
				"line 7: domain acme.com is already given on line 1; the first row is kept",
				"line 9: size: [1,2] is neither a string nor a number",
				"line 10: not a JSON object with string fields",
			},
		},
	} {
		t.Run(tt.file, func(t *testing.T) {
			db, err := companydb.LoadFile(filepath.Join("testdata", tt.file))
			rows, ok := errors.AsType[*companydb.RowsError](err)
			if !ok {
				t.Fatalf("LoadFile error = %v; want a *RowsError", err)
			}
			if len(rows.Problems) != len(tt.bad) {
				t.Errorf("problems:\n%v\nwant %d", rows, len(tt.bad))
			}
			for i, want := range tt.bad {
				if i < len(rows.Problems) && !strings.HasPrefix(rows.Problems[i].String(), want) {
					t.Errorf("problem %d = %q, want prefix %q", i, rows.Problems[i], want)
				}
			}
			if !strings.Contains(err.Error(), tt.file) {
				t.Errorf("error %q does not name the file", err)
			}
			if db.Len() != 5 {
				t.Errorf("Len = %d, want the 5 good rows", db.Len())
			}
			for _, lk := range []struct {
				domain string
				want   companydb.Company
			}{
				{"acme.com", companydb.Company{Domain: "acme.com", Name: "Acme Corp", Size: "51-200", Industry: "Manufacturing", Country: "US"}},
				{"ACME.com.", companydb.Company{Domain: "acme.com", Name: "Acme Corp", Size: "51-200", Industry: "Manufacturing", Country: "US"}},
				// a subdomain maps to its registrable parent …
				{"mail.acme.com", companydb.Company{Domain: "acme.com", Name: "Acme Corp", Size: "51-200", Industry: "Manufacturing", Country: "US"}},
				// … unless the dataset has a row for it or for a nearer parent
				{"eu.acme.com", companydb.Company{Domain: "eu.acme.com", Name: "Acme Europe GmbH", Size: "11-50", Industry: "Manufacturing", Country: "DE"}},
				{"mx1.eu.acme.com", companydb.Company{Domain: "eu.acme.com", Name: "Acme Europe GmbH", Size: "11-50", Industry: "Manufacturing", Country: "DE"}},
				// multi-label public suffix; www. and a numeric size in the file
				{"london.globex.co.uk", companydb.Company{Domain: "globex.co.uk", Name: "Globex", Size: "1000", Industry: "Energy", Country: "GB"}},
				{"initech.example", companydb.Company{Domain: "initech.example", Name: "Initech, Inc.", Size: "201-500", Industry: "Software", Country: "US"}},
				// IDN: either spelling finds the row
				{"bücher.example", companydb.Company{Domain: "xn--bcher-kva.example", Name: "Bücher GmbH", Size: "5", Industry: "Retail", Country: "DE"}},
				{"xn--bcher-kva.example", companydb.Company{Domain: "xn--bcher-kva.example", Name: "Bücher GmbH", Size: "5", Industry: "Retail", Country: "DE"}},
			} {
				got, ok := db.Lookup(lk.domain)
				if !ok || got != lk.want {
					t.Errorf("Lookup(%q) = %+v, %v; want %+v", lk.domain, got, ok, lk.want)
				}
			}
			for _, miss := range []string{"co.uk", "other.co.uk", "acme.org", "com", "", "not a domain", "short.example", "broken.example"} {
				if got, ok := db.Lookup(miss); ok {
					t.Errorf("Lookup(%q) = %+v; want no company", miss, got)
				}
			}
		})
	}
}

func TestLoadFatal(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name, file, content, want string
	}{
		{"no domain column", "c.csv", "name,size\nAcme,1\n", "has no domain column"},
		{"unknown extension", "c.xlsx", "", "unknown format"},
		{"missing file", "missing.csv", "", "opening the company dataset"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			if tt.content != "" {
				if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			db, err := companydb.LoadFile(path)
			if db != nil || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadFile = %v, %v; want no DB and an error with %q", db, err, tt.want)
			}
			if _, ok := errors.AsType[*companydb.RowsError](err); ok {
				t.Errorf("a fatal error is a RowsError: %v", err)
			}
		})
	}
}

func TestLoadEmpty(t *testing.T) {
	for _, f := range []companydb.Format{companydb.CSV, companydb.JSONL} {
		db, err := companydb.Load(strings.NewReader(""), f)
		if err != nil || db.Len() != 0 {
			t.Errorf("Load(empty, %d) = %v, %v", f, db, err)
		}
	}
}

func TestRowsErrorIsShort(t *testing.T) {
	var b strings.Builder
	b.WriteString("domain\n")
	for range 25 {
		b.WriteString("-\n")
	}
	_, err := companydb.Load(strings.NewReader(b.String()), companydb.CSV)
	msg := err.Error()
	if !strings.HasPrefix(msg, "25 bad rows left out\nline 2:") || !strings.HasSuffix(msg, "… and 15 more") {
		t.Errorf("error =\n%s", msg)
	}
}

func TestRegistrable(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"eu.acme.com", "acme.com"},
		{"acme.com", "acme.com"},
		{"Mail.ACME.com.", "acme.com"},
		{"a.b.globex.co.uk", "globex.co.uk"},
		{"shop.bücher.example", "bücher.example"},
		{"shop.xn--bcher-kva.example", "bücher.example"},
		{"co.uk", "co.uk"},
		{"localhost", "localhost"},
	} {
		if got := companydb.Registrable(tt.in); got != tt.want {
			t.Errorf("Registrable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
