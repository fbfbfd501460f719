// Package companydb maps a domain to a company from a dataset the operator provides: a CSV or
// JSON-lines file with the columns domain, name, size, industry and country.
//
// Lookups fall back from a subdomain to its parents down to the registrable domain (the public
// suffix plus one label, from golang.org/x/net/publicsuffix), so mail from eu.acme.com finds the
// row for acme.com, while a row for eu.acme.com itself, if the dataset has one, wins. A loaded
// [DB] is immutable and safe for concurrent use.
package companydb

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// Company is one row of the dataset. Domain is the row's domain in normalized form (lower-case
// ASCII, see [Normalize]); the other fields are as the dataset gives them, trimmed.
type Company struct {
	Domain   string `json:"domain"`
	Name     string `json:"name"`
	Size     string `json:"size"`
	Industry string `json:"industry"`
	Country  string `json:"country"`
}

// Format is a dataset's file format.
type Format int

// Formats [Load] reads.
const (
	// CSV has a header row naming the columns (any order, any case; domain is required, unknown
	// columns are ignored) and one company per row, RFC 4180 quoting.
	CSV Format = iota + 1
	// JSONL has one JSON object per line with the keys domain, name, size, industry and country
	// (size may be a number or a string; unknown keys are ignored). Blank lines are skipped.
	JSONL
)

// FormatOf returns the format of a file from its extension: .csv, or .jsonl / .ndjson.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return CSV, nil
	case ".jsonl", ".ndjson":
		return JSONL, nil
	}
	return 0, fmt.Errorf("company dataset %s: unknown format: name the file *.csv or *.jsonl", path)
}

// Problem is a dataset row that was left out.
type Problem struct {
	// Line is the 1-based line of the row in the file.
	Line int
	// Detail says what is wrong.
	Detail string
}

func (p Problem) String() string { return fmt.Sprintf("line %d: %s", p.Line, p.Detail) }

// RowsError lists the rows of a dataset that were left out. Load returns it together with a
// usable DB holding the other rows: one bad row in a dataset of millions must not stop the
// enricher, but the operator must hear about it.
type RowsError struct {
	Problems []Problem
}

// Error lists up to ten problems, one per line, and how many more there are.
func (e *RowsError) Error() string {
	const shown = 10
	var b strings.Builder
	fmt.Fprintf(&b, "%d bad rows left out", len(e.Problems))
	for i, p := range e.Problems {
		if i == shown {
			fmt.Fprintf(&b, "\n… and %d more", len(e.Problems)-shown)
			break
		}
		b.WriteString("\n" + p.String())
	}
	return b.String()
}

// DB is a loaded dataset.
type DB struct {
	byDomain map[string]Company
}

// Len returns the number of companies in db.
func (db *DB) Len() int {
	if db == nil {
		return 0
	}
	return len(db.byDomain)
}

// Lookup returns the company for domain (Unicode or ASCII, any case): the row for the domain
// itself, else for its nearest parent, up to its registrable domain. A nil DB finds nothing.
func (db *DB) Lookup(domain string) (Company, bool) {
	if db.Len() == 0 {
		return Company{}, false
	}
	d, err := Normalize(domain)
	if err != nil {
		return Company{}, false
	}
	stop := registrable(d)
	for {
		if c, ok := db.byDomain[d]; ok {
			return c, true
		}
		if d == stop {
			return Company{}, false
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return Company{}, false
		}
		d = d[i+1:]
	}
}

// Normalize returns domain in the form the dataset is keyed by: lower-case ASCII (Punycode for
// IDN), without surrounding space, a trailing dot or a leading "www.". It fails for what is not
// a domain name with at least two labels.
func Normalize(domain string) (string, error) {
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	d = strings.TrimPrefix(d, "www.")
	if d == "" {
		return "", errors.New("no domain")
	}
	if strings.ContainsAny(d, " \t@/:") {
		return "", fmt.Errorf("%q is not a domain name (write the bare domain, e.g. acme.com)", domain)
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("%q is not a domain name: %w", domain, err)
	}
	if !strings.Contains(a, ".") {
		return "", fmt.Errorf("%q is not a domain name: it has no dot", domain)
	}
	return a, nil
}

// Registrable returns the registrable domain of domain (eu.acme.co.uk → acme.co.uk) as
// lower-case Unicode, the form mail.enriched.v1 carries company domains in. A domain that has
// none (a public suffix itself, or not a domain name) is returned lower-cased as it is.
func Registrable(domain string) string {
	d, err := Normalize(domain)
	if err != nil {
		return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	}
	u, err := idna.Lookup.ToUnicode(registrable(d))
	if err != nil {
		return d
	}
	return u
}

// Unicode returns a domain (such as Company.Domain) in lower-case Unicode form; a domain that
// is not valid IDN is returned lower-cased as it is.
func Unicode(domain string) string {
	d := strings.ToLower(domain)
	u, err := idna.Lookup.ToUnicode(d)
	if err != nil {
		return d
	}
	return u
}

// registrable is Registrable on a normalized domain, in ASCII.
func registrable(d string) string {
	r, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return r
}

// LoadFile reads the dataset at path in the format its extension names (see [FormatOf]). Errors
// are as for [Load] and name the file.
func LoadFile(path string) (*DB, error) {
	format, err := FormatOf(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the company dataset: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only: nothing to flush
	db, err := Load(f, format)
	if err != nil {
		err = fmt.Errorf("company dataset %s: %w", path, err)
	}
	return db, err
}

// Load reads a dataset. Rows that cannot be used (no or an invalid domain, a domain already
// given by an earlier row, a malformed line) are left out and reported in a *[RowsError]
// returned together with the DB of the other rows; check it with errors.As. Any other error
// (unreadable input, a CSV without a domain column) comes with a nil DB.
func Load(r io.Reader, format Format) (*DB, error) {
	l := loader{db: &DB{byDomain: map[string]Company{}}, first: map[string]int{}}
	var err error
	switch format {
	case CSV:
		err = l.csv(r)
	case JSONL:
		err = l.jsonl(r)
	default:
		err = fmt.Errorf("unknown dataset format %d", format)
	}
	if err != nil {
		return nil, err
	}
	if len(l.problems) > 0 {
		return l.db, &RowsError{Problems: l.problems}
	}
	return l.db, nil
}

type loader struct {
	db       *DB
	first    map[string]int // domain → line that gave it
	problems []Problem
}

func (l *loader) bad(line int, format string, args ...any) {
	l.problems = append(l.problems, Problem{Line: line, Detail: fmt.Sprintf(format, args...)})
}

// add checks a row and keeps it.
func (l *loader) add(line int, c Company) {
	d, err := Normalize(c.Domain)
	if err != nil {
		l.bad(line, "domain: %s", err.Error())
		return
	}
	if prev, ok := l.first[d]; ok {
		l.bad(line, "domain %s is already given on line %d; the first row is kept", d, prev)
		return
	}
	c.Domain = d
	c.Name = strings.TrimSpace(c.Name)
	c.Size = strings.TrimSpace(c.Size)
	c.Industry = strings.TrimSpace(c.Industry)
	c.Country = strings.TrimSpace(c.Country)
	l.first[d] = line
	l.db.byDomain[d] = c
}

var bom = []byte("\uFEFF")

func (l *loader) csv(r io.Reader) error {
	br := bufio.NewReader(r)
	if b, err := br.Peek(len(bom)); err == nil && bytes.Equal(b, bom) {
		_, _ = br.Discard(len(bom))
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1 // rows with a wrong column count are reported, not fatal
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil // an empty dataset is valid
	}
	if err != nil {
		return fmt.Errorf("reading the header row: %w", err)
	}
	cols := map[string]int{}
	for i, h := range header {
		cols[strings.ToLower(strings.TrimSpace(h))] = i
	}
	if _, ok := cols["domain"]; !ok {
		return fmt.Errorf("the header row %q has no domain column (columns: domain, name, size, industry, country)", strings.Join(header, ","))
	}
	field := func(rec []string, name string) string {
		if i, ok := cols[name]; ok && i < len(rec) {
			return rec[i]
		}
		return ""
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if pe, ok := errors.AsType[*csv.ParseError](err); ok {
			// encoding/csv resumes at the next record after a parse error.
			l.bad(pe.StartLine, "%s", pe.Err.Error())
			continue
		}
		if err != nil {
			return fmt.Errorf("reading the dataset: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			l.bad(line, "%d fields; the header row has %d", len(rec), len(header))
			continue
		}
		l.add(line, Company{
			Domain: field(rec, "domain"), Name: field(rec, "name"), Size: field(rec, "size"),
			Industry: field(rec, "industry"), Country: field(rec, "country"),
		})
	}
}

// jsonRow is a JSONL row; size may be a number.
type jsonRow struct {
	Domain   string          `json:"domain"`
	Name     string          `json:"name"`
	Size     json.RawMessage `json:"size"`
	Industry string          `json:"industry"`
	Country  string          `json:"country"`
}

func (l *loader) jsonl(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		b := bytes.TrimSpace(sc.Bytes())
		if n == 1 {
			b = bytes.TrimPrefix(b, bom)
		}
		if len(b) == 0 {
			continue
		}
		var row jsonRow
		if err := json.Unmarshal(b, &row); err != nil {
			l.bad(n, "not a JSON object with string fields: %s", err.Error())
			continue
		}
		size, err := jsonSize(row.Size)
		if err != nil {
			l.bad(n, "size: %s", err.Error())
			continue
		}
		l.add(n, Company{Domain: row.Domain, Name: row.Name, Size: size, Industry: row.Industry, Country: row.Country})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the dataset: %w", err)
	}
	return nil
}

// jsonSize reads a size given as a string, a number or null.
func jsonSize(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		if _, err := strconv.ParseFloat(n.String(), 64); err == nil {
			return n.String(), nil
		}
	}
	return "", fmt.Errorf("%s is neither a string nor a number", raw)
}
