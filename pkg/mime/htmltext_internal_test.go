package mime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/inbucket/html2text"
)

// htmlTextSeeds exercise every element htmlText treats specially.
var htmlTextSeeds = []string{
	"<p>Hello <b>big</b> world</p><p>Second\r\n  paragraph.</p>",
	"<html><head><title>t</title><style>p{}</style></head><body><div>one<div>two</div></div>three<br>four</body></html>",
	"<h1>Title</h1><h2>Sub\ntitle</h2><h3>Small</h3><ul><li>a</li><li>b <a href=\"mailto:x@y.z\">mail</a></li></ul>",
	"<a href=\"https://e.com\">https://e.com</a> <a href=\" https://f.com \"><img alt=\"logo\" src=x></a><a href=''><img src=y></a>",
	"<blockquote>quoted text that is long enough to be wrapped at seventy-four columns by the renderer, twice over if need be<blockquote>deeper</blockquote>back</blockquote>after",
	"<pre>  keep\n   this </pre><table><tr><th>h</th><td>d</td></tr><tfoot><tr><td>f</td></tr></tfoot></table><script>x()</script>",
	"\ufeff\ufeffbom <strong> spaced </strong>. Next.",
	"<blockquote>" + "wordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordword end</blockquote>",
	"<p>bad \xff\xfe utf-8 \xc3</p><h1>\xff</h1><blockquote>\xfe q</blockquote>",
	"text after</html><p>trailing",
}

// TestHTMLTextMatchesHTML2Text checks htmlText against the renderer it replaces, on the seeds
// and on every HTML body of the shared corpora (nested messages included).
func TestHTMLTextMatchesHTML2Text(t *testing.T) {
	for i, s := range htmlTextSeeds {
		checkHTMLText(t, "seed "+string(rune('0'+i)), s)
	}
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var walk func(name string, m *Message)
	walk = func(name string, m *Message) {
		if m.HTML != "" {
			checkHTMLText(t, name, m.HTML)
			n++
		}
		for _, a := range m.Attachments {
			if a.Message != nil {
				walk(name+" > "+a.Filename, a.Message)
			}
		}
	}
	for _, f := range splitCorpus(t) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := p.Parse(raw); err == nil {
			walk(filepath.Base(f), m)
		}
	}
	t.Logf("%d HTML bodies", n)
}

func checkHTMLText(t *testing.T, name, s string) {
	t.Helper()
	want, err := html2text.FromString(s)
	if err != nil {
		t.Fatalf("%s: html2text: %v", name, err)
	}
	if got := htmlText(s); got != want {
		t.Errorf("%s: htmlText differs from html2text\n got %q\nwant %q", name, truncate([]byte(got), 400), truncate([]byte(want), 400))
	}
}

// FuzzHTMLText checks htmlText against the renderer it replaces.
func FuzzHTMLText(f *testing.F) {
	for _, s := range htmlTextSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := html2text.FromString(s)
		if err != nil {
			t.Skip()
		}
		if got := htmlText(s); got != want {
			t.Fatalf("htmlText differs from html2text\n got %q\nwant %q", got, want)
		}
	})
}
