package companydb_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/enrich/companydb"
)

// FuzzLoad: no panic; rows problems come with a DB, other errors without; every company found
// is looked up by its own domain.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("domain,name\nacme.com,Acme\n,x\n"), true)
	f.Add([]byte("\uFEFFDomain;Name\n\"a\"b\",c\n"), true)
	f.Add([]byte(`{"domain":"acme.com","size":12}`+"\n"+`{"domain":1}`+"\nnot json\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, csv bool) {
		format := companydb.JSONL
		if csv {
			format = companydb.CSV
		}
		db, err := companydb.Load(bytes.NewReader(data), format)
		if _, rows := errors.AsType[*companydb.RowsError](err); (db == nil) != (err != nil && !rows) {
			t.Fatalf("Load = %v, %v: a DB must come with no error or a RowsError", db, err)
		}
		if db == nil {
			return
		}
		_, _ = db.Lookup("a.b.acme.com")
	})
}
