package freemail_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/enrich/freemail"
)

func TestIs(t *testing.T) {
	for _, tt := range []struct {
		domain string
		want   bool
	}{
		{"gmail.com", true},
		{"GMail.COM.", true},
		{" yahoo.co.jp ", true},
		{"gmx.de", true},
		{"qq.com", true},
		{"163.com", true},
		{"proton.me", true},
		{"example.com", false},
		{"corp.outlook.com", false},
		{"", false},
	} {
		if got := freemail.Is(tt.domain); got != tt.want {
			t.Errorf("Is(%q) = %v, want %v", tt.domain, got, tt.want)
		}
		var nilList *freemail.List
		if got := nilList.Is(tt.domain); got != tt.want {
			t.Errorf("nil List.Is(%q) = %v, want %v", tt.domain, got, tt.want)
		}
	}
}

func TestParseExtendsTheBuiltInList(t *testing.T) {
	l, err := freemail.Parse(strings.NewReader(`# regional providers
mail.ee
  Seznam.CZ.   # already built in: harmless
!gmx.de        # treated as companies here
bücher-mail.example
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		domain string
		want   bool
	}{
		{"mail.ee", true},                    // added
		{"MAIL.EE.", true},                   // any spelling
		{"sub.mail.ee", false},               // subdomains never count
		{"gmail.com", true},                  // built in, kept
		{"gmx.de", false},                    // built in, removed
		{"bücher-mail.example", true},        // Unicode in the file and in the lookup
		{"xn--bcher-mail-9db.example", true}, // and its Punycode form
		{"acme.example", false},
	} {
		if got := l.Is(tt.domain); got != tt.want {
			t.Errorf("Is(%q) = %v, want %v", tt.domain, got, tt.want)
		}
	}
	if a, r := l.Changes(); a != 3 || r != 1 {
		t.Errorf("Changes() = %d, %d; want 3 added, 1 removed", a, r)
	}
}

func TestParseReportsBadLines(t *testing.T) {
	_, err := freemail.Parse(strings.NewReader("mail.ee\nlocalhost\n\nuser@mail.ee\n!\nhttps://mail.example/\n"))
	if err == nil {
		t.Fatal("Parse accepted bad lines")
	}
	for _, want := range []string{`line 2: "localhost"`, `line 4: "user@mail.ee"`, `line 5: "!": no domain`, `line 6: "https://mail.example/"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "line 1") {
		t.Errorf("error %q blames the good line 1", err)
	}
}

func TestLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "freemail.txt")
	if err := os.WriteFile(path, []byte("mail.ee\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := freemail.LoadFile(path)
	if err != nil || !l.Is("mail.ee") {
		t.Fatalf("LoadFile = %v, %v", l, err)
	}
	if _, err := freemail.LoadFile(filepath.Join(t.TempDir(), "missing.txt")); err == nil {
		t.Error("LoadFile of a missing file succeeded")
	}
}

// FuzzParse: no panic, and a list comes with no error.
func FuzzParse(f *testing.F) {
	f.Add("mail.ee\n!gmx.de # x\n\nbücher.example\n")
	f.Add("!\n@\nlocalhost\n")
	f.Fuzz(func(t *testing.T, data string) {
		l, err := freemail.Parse(strings.NewReader(data))
		if (l == nil) == (err == nil) {
			t.Fatalf("Parse = %v, %v", l, err)
		}
		if l != nil {
			_ = l.Is("gmail.com")
		}
	})
}
