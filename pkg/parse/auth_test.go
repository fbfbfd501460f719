package parse_test

import (
	"fmt"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/mailauth"
	"github.com/mailpipe/mailpipe/pkg/mailauth/mailauthtest"
	"github.com/mailpipe/mailpipe/pkg/parse"
)

// With a verifier, the parser fills the authentication section from the envelope (client IP
// 192.0.2.7, MAIL FROM bounce+x@example.com) and the From domain; without one it stays empty.
func TestHandleAuthentication(t *testing.T) {
	codec := newCodec(t)
	for _, tt := range []struct {
		name               string
		txt                map[string][]string
		wantSPF, wantDMARC string
		wantPolicy         string
	}{
		{
			name: "spf pass aligned with the From domain",
			txt: map[string][]string{
				"example.com":        {"v=spf1 ip4:192.0.2.0/24 -all"},
				"_dmarc.example.com": {"v=DMARC1; p=reject"},
			},
			wantSPF: "pass", wantDMARC: "pass", wantPolicy: "reject",
		},
		{
			name: "spf fail and dmarc fail",
			txt: map[string][]string{
				"example.com":        {"v=spf1 ip4:198.51.100.0/24 -all"},
				"_dmarc.example.com": {"v=DMARC1; p=quarantine"},
			},
			wantSPF: "fail", wantDMARC: "fail", wantPolicy: "quarantine",
		},
		{
			name:    "no records",
			txt:     map[string][]string{},
			wantSPF: "none", wantDMARC: "none",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, err := mailauth.New(mailauth.Config{Resolver: &mailauthtest.Resolver{TXT: tt.txt}})
			if err != nil {
				t.Fatal(err)
			}
			p := parse.New(codec, nil, discard(), parse.WithAuth(v))
			got := decodeParsed(t, codec, must(p.Handle(t.Context(), record(t, codec, rawEvent(message)))))
			a := got.Authentication
			if a.SPF != tt.wantSPF || a.DMARC != tt.wantDMARC || a.DMARCPolicy != tt.wantPolicy {
				t.Fatalf("authentication = spf %q dmarc %q policy %q; want %q %q %q",
					a.SPF, a.DMARC, a.DMARCPolicy, tt.wantSPF, tt.wantDMARC, tt.wantPolicy)
			}
		})
	}
	t.Run("without a verifier nothing is checked", func(t *testing.T) {
		got := decodeParsed(t, codec, must(parse.New(codec, nil, discard()).Handle(t.Context(), record(t, codec, rawEvent(message)))))
		if a := got.Authentication; a.SPF != "" || a.DMARC != "" || len(a.DKIM) != 0 {
			t.Fatalf("authentication = %+v; want empty", a)
		}
	})
}

// Signatures beyond the verifier's cap are not verified: the record says so with a severe
// warning and a partial status, and still lists every signature.
func TestHandleDKIMSignatureCap(t *testing.T) {
	codec := newCodec(t)
	sig := "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s%d; h=from; bh=AAAA; b=AAAA\r\n"
	var hdr string
	for i := range 3 {
		hdr += fmt.Sprintf(sig, i)
	}
	for _, tt := range []struct {
		max         int
		wantWarning bool
	}{{max: 1, wantWarning: true}, {max: 3, wantWarning: false}} {
		t.Run(fmt.Sprintf("cap %d", tt.max), func(t *testing.T) {
			v, err := mailauth.New(mailauth.Config{Resolver: &mailauthtest.Resolver{}, MaxDKIMSignatures: tt.max})
			if err != nil {
				t.Fatal(err)
			}
			p := parse.New(codec, nil, discard(), parse.WithAuth(v))
			got := decodeParsed(t, codec, must(p.Handle(t.Context(), record(t, codec, rawEvent(hdr+message)))))
			if n := len(got.Authentication.DKIM); n != 3 {
				t.Fatalf("%d DKIM results; want 3", n)
			}
			has := false
			for _, w := range got.Warnings {
				has = has || (w.Name == parse.WarnLimitDKIM && w.Severe)
			}
			if has != tt.wantWarning || (got.ParseStatus == "partial") != tt.wantWarning {
				t.Fatalf("warning %s present = %v, status %q; want warning %v", parse.WarnLimitDKIM, has, got.ParseStatus, tt.wantWarning)
			}
		})
	}
}
