package mime

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/jhillyerd/enmime/v2/mediatype"
)

var quickMediaTypeSeeds = []string{
	"text/plain",
	"text/plain; charset=us-ascii",
	"TEXT/HTML;CHARSET=\"UTF-8\"",
	"multipart/mixed; boundary=\"----=_Part_1_2.3\"",
	"multipart/report; report-type=delivery-status;\tboundary=\"abc def\"",
	"application/pdf; filename=\"a.pdf\"; name=\"a.pdf\"",
	"application/pdf; name=a; Name=b",
	"text/plain; charset=utf-8;",
	"text/plain; charset=utf-8 ;format=flowed",
	"text/plain; name*=utf-8''x",
	"text/plain; name=\"=?utf-8?q?x?=\"",
	"attachment; filename=\"x;y.txt\"",
	"inline",
	"text/plain; charset=\"\"",
	"image/png; name=\"a\\\"b\"",
	"text/plain; charset = utf-8",
	"text/plain; format=flowed; delsp=yes; charset=\"iso-8859-1\"; x=a=b",
}

// FuzzQuickMediaType checks quickMediaType against mediatype.ParseWithOptions wherever it
// answers.
func FuzzQuickMediaType(f *testing.F) {
	for _, s := range quickMediaTypeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkQuickMediaType(t, s)
	})
}

// TestQuickMediaTypeCorpus checks quickMediaType on the seeds and on every Content-Type and
// Content-Disposition value of the shared corpora.
func TestQuickMediaTypeCorpus(t *testing.T) {
	for _, s := range quickMediaTypeSeeds {
		checkQuickMediaType(t, s)
	}
	var n, quick int
	for _, f := range splitCorpus(t) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range mediaTypeValues(raw) {
			n++
			if checkQuickMediaType(t, v) {
				quick++
			}
		}
	}
	t.Logf("%d of %d values parsed by quickMediaType", quick, n)
}

func checkQuickMediaType(t *testing.T, s string) bool {
	t.Helper()
	mtype, params, ok := quickMediaType(s)
	if !ok {
		return false
	}
	if c := cleanMediaType(s); c != s {
		t.Errorf("quickMediaType reads %q, which cleanMediaType changes to %q", s, c)
	}
	wtype, wparams, winvalid, err := mediatype.ParseWithOptions(s, mediatype.ParseOptions{StripMediaTypeInvalidCharacters: true})
	if err != nil || len(winvalid) > 0 || mtype != wtype || !reflect.DeepEqual(params, wparams) {
		t.Errorf("quickMediaType(%q) = %q %v; mediatype: %q %v %v %v", s, mtype, params, wtype, wparams, winvalid, err)
	}
	return true
}

// mediaTypeValues returns the unfolded values of the Content-Type and Content-Disposition
// fields anywhere in raw (parts included), as cleanMediaType passes them on.
func mediaTypeValues(raw []byte) []string {
	var out []string
	lines := strings.Split(string(raw), "\n")
	for i, l := range lines {
		l = strings.TrimRight(l, "\r")
		name, v, ok := strings.Cut(l, ":")
		if !ok || !strings.EqualFold(name, "Content-Type") && !strings.EqualFold(name, "Content-Disposition") {
			continue
		}
		for _, c := range lines[i+1:] {
			c = strings.TrimRight(c, "\r")
			if c == "" || (c[0] != ' ' && c[0] != '\t') {
				break
			}
			v += " " + strings.TrimSpace(c)
		}
		out = append(out, cleanMediaType(strings.TrimSpace(v)))
	}
	return out
}
