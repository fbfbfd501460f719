package freemail_test

import (
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
	}
}
