package mailauth_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailpipe/mailpipe/pkg/mailauth"
	"github.com/mailpipe/mailpipe/pkg/mailauth/mailauthtest"
)

var _ mailauth.Resolver = (*mailauthtest.Resolver)(nil)

const message = "From: Alice <alice@example.com>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: hello\r\n" +
	"Authentication-Results: mx.mailpipe.test; spf=pass smtp.mailfrom=example.com\r\n" +
	"Authentication-Results: evil.example; dkim=pass header.d=bank.example\r\n" +
	"Authentication-Results: MX.Mailpipe.Test 1;\r\n dmarc=pass\r\n" +
	"\r\n" +
	"Hi Bob,\r\nsee you.\r\n"

type key struct {
	priv ed25519.PrivateKey
	txt  string
}

func newKey(t *testing.T) key {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key{priv: priv, txt: "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}
}

func sign(t *testing.T, msg, domain, selector string, k key) string {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{
		Domain:     domain,
		Selector:   selector,
		Signer:     k.priv,
		HeaderKeys: []string{"From", "To", "Subject"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func newVerifier(t *testing.T, r *mailauthtest.Resolver, maxSigs int) *mailauth.Verifier {
	t.Helper()
	v, err := mailauth.New(mailauth.Config{
		Resolver:           r,
		MaxDKIMSignatures:  maxSigs,
		TrustedAuthServIDs: []string{"mx.mailpipe.test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyDKIM(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	signed := sign(t, message, "example.com", "s1", k1)
	twice := sign(t, signed, "example.org", "s2", k2)
	thrice := sign(t, twice, "example.net", "s3", k2)
	fixture := func() *mailauthtest.Resolver {
		return &mailauthtest.Resolver{TXT: map[string][]string{
			"s1._domainkey.example.com": {k1.txt},
			"s2._domainkey.example.org": {k2.txt},
			"s3._domainkey.example.net": {k2.txt},
		}}
	}
	tests := []struct {
		name    string
		raw     string
		resolve func(*mailauthtest.Resolver)
		maxSigs int
		want    []mailauth.DKIMResult
	}{
		{name: "pass", raw: signed, want: []mailauth.DKIMResult{{Domain: "example.com", Selector: "s1", Result: "pass"}}},
		{name: "unsigned", raw: message, want: []mailauth.DKIMResult{}},
		{
			name: "tampered header", raw: strings.Replace(signed, "Subject: hello", "Subject: hellO", 1),
			want: []mailauth.DKIMResult{{Domain: "example.com", Selector: "s1", Result: "fail"}},
		},
		{
			name: "tampered body", raw: strings.Replace(signed, "see you", "send money", 1),
			want: []mailauth.DKIMResult{{Domain: "example.com", Selector: "s1", Result: "fail"}},
		},
		{
			name: "missing key", raw: signed,
			resolve: func(r *mailauthtest.Resolver) { delete(r.TXT, "s1._domainkey.example.com") },
			want:    []mailauth.DKIMResult{{Domain: "example.com", Selector: "s1", Result: "permerror"}},
		},
		{
			name: "dns temporary failure", raw: signed,
			resolve: func(r *mailauthtest.Resolver) {
				r.Temporary = map[string]bool{"s1._domainkey.example.com": true}
			},
			want: []mailauth.DKIMResult{{Domain: "example.com", Selector: "s1", Result: "temperror"}},
		},
		{
			name: "every signature", raw: twice,
			want: []mailauth.DKIMResult{
				{Domain: "example.org", Selector: "s2", Result: "pass"},
				{Domain: "example.com", Selector: "s1", Result: "pass"},
			},
		},
		{
			name: "signatures past the cap", raw: thrice, maxSigs: 2,
			want: []mailauth.DKIMResult{
				{Domain: "example.net", Selector: "s3", Result: "pass"},
				{Domain: "example.org", Selector: "s2", Result: "pass"},
				{Domain: "example.com", Selector: "s1", Result: "permerror"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fixture()
			if tt.resolve != nil {
				tt.resolve(r)
			}
			got := newVerifier(t, r, tt.maxSigs).Verify(t.Context(), mailauth.Input{Raw: []byte(tt.raw)})
			if !slices.Equal(got.DKIM, tt.want) {
				t.Errorf("DKIM = %+v, want %+v", got.DKIM, tt.want)
			}
		})
	}
}

func TestVerifySPF(t *testing.T) {
	r := &mailauthtest.Resolver{TXT: map[string][]string{
		"example.com":  {"v=spf1 ip4:192.0.2.0/24 -all"},
		"example.org":  {"v=spf1 ip4:192.0.2.0/24 ~all"},
		"example.net":  {"v=spf1 ?all"},
		"broken.test":  {"v=spf1 bogus:x -all"},
		"unrelated.io": {"not spf"},
	}}
	tests := []struct {
		name, ip, mailFrom, helo, want string
	}{
		{name: "pass", ip: "192.0.2.7", mailFrom: "alice@example.com", want: "pass"},
		{name: "pass ipv4-mapped", ip: "::ffff:192.0.2.7", mailFrom: "alice@example.com", want: "pass"},
		{name: "fail", ip: "198.51.100.1", mailFrom: "alice@example.com", want: "fail"},
		{name: "softfail", ip: "198.51.100.1", mailFrom: "alice@example.org", want: "softfail"},
		{name: "neutral", ip: "198.51.100.1", mailFrom: "alice@example.net", want: "neutral"},
		{name: "no record", ip: "198.51.100.1", mailFrom: "alice@nowhere.test", want: "none"},
		{name: "no spf record", ip: "198.51.100.1", mailFrom: "alice@unrelated.io", want: "none"},
		{name: "permerror", ip: "198.51.100.1", mailFrom: "alice@broken.test", want: "permerror"},
		{name: "null sender uses helo", ip: "192.0.2.7", helo: "example.com", want: "pass"},
		{name: "no client ip", mailFrom: "alice@example.com", want: ""},
	}
	v := newVerifier(t, r, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := mailauth.Input{Raw: []byte(message), MailFrom: tt.mailFrom, Helo: tt.helo}
			if tt.ip != "" {
				in.ClientIP = netip.MustParseAddr(tt.ip)
			}
			if got := v.Verify(t.Context(), in).SPF; got != tt.want {
				t.Errorf("SPF = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestVerifyDMARC(t *testing.T) {
	k := newKey(t)
	signed := sign(t, message, "example.com", "s1", k)
	signedSub := sign(t, message, "mail.example.com", "s1", k)
	signedOther := sign(t, message, "other.test", "s1", k)
	r := &mailauthtest.Resolver{TXT: map[string][]string{
		"s1._domainkey.example.com":      {k.txt},
		"s1._domainkey.mail.example.com": {k.txt},
		"s1._domainkey.other.test":       {k.txt},
		"_dmarc.example.com":             {"v=DMARC1; p=reject; sp=quarantine"},
		"_dmarc.strict.test":             {"v=DMARC1; p=reject; adkim=s; aspf=s"},
		"_dmarc.broken.test":             {"v=DMARC1; p=bogus"},
		"example.com":                    {"v=spf1 ip4:192.0.2.0/24 -all"},
		"bounce.example.com":             {"v=spf1 ip4:192.0.2.0/24 -all"},
		"strict.test":                    {"v=spf1 -all"},
	}}
	tests := []struct {
		name, raw, from, mailFrom, ip string
		wantResult, wantPolicy        string
	}{
		{name: "pass by aligned dkim", raw: signed, from: "example.com", ip: "198.51.100.1", wantResult: "pass", wantPolicy: "reject"},
		{name: "pass by relaxed dkim", raw: signedSub, from: "example.com", wantResult: "pass", wantPolicy: "reject"},
		{name: "pass by relaxed spf", raw: message, from: "example.com", mailFrom: "b@bounce.example.com", ip: "192.0.2.1", wantResult: "pass", wantPolicy: "reject"},
		{name: "fail with reject", raw: message, from: "example.com", mailFrom: "a@example.com", ip: "198.51.100.1", wantResult: "fail", wantPolicy: "reject"},
		{name: "fail unaligned dkim", raw: signedOther, from: "example.com", wantResult: "fail", wantPolicy: "reject"},
		{name: "organizational record without sp uses p", raw: signedSub, from: "sub.strict.test", wantResult: "fail", wantPolicy: "reject"},
		{name: "strict requires exact domain", raw: signed, from: "strict.test", wantResult: "fail", wantPolicy: "reject"},
		{name: "subdomain policy from organizational domain", raw: signedSub, from: "mail.example.com", wantResult: "pass", wantPolicy: "quarantine"},
		{name: "none without record", raw: signed, from: "nowhere.test", wantResult: "none"},
		{name: "permerror on bad record", raw: signed, from: "broken.test", wantResult: "permerror"},
		{name: "from domain taken from header", raw: signed, wantResult: "pass", wantPolicy: "reject"},
	}
	v := newVerifier(t, r, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := mailauth.Input{Raw: []byte(tt.raw), FromDomain: tt.from, MailFrom: tt.mailFrom}
			if tt.ip != "" {
				in.ClientIP = netip.MustParseAddr(tt.ip)
			}
			got := v.Verify(t.Context(), in)
			if got.DMARC != tt.wantResult || got.DMARCPolicy != tt.wantPolicy {
				t.Errorf("DMARC = %q/%q, want %q/%q (spf %q, dkim %+v)", got.DMARC, got.DMARCPolicy, tt.wantResult, tt.wantPolicy, got.SPF, got.DKIM)
			}
		})
	}
}

func TestVerifyReceivedResults(t *testing.T) {
	tests := []struct {
		name    string
		trusted []string
		want    []string
	}{
		{name: "trusted kept, untrusted dropped", trusted: []string{"mx.mailpipe.test"}, want: []string{
			"mx.mailpipe.test; spf=pass smtp.mailfrom=example.com",
			"MX.Mailpipe.Test 1; dmarc=pass",
		}},
		{name: "none trusted", want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := mailauth.New(mailauth.Config{Resolver: &mailauthtest.Resolver{}, TrustedAuthServIDs: tt.trusted})
			if err != nil {
				t.Fatal(err)
			}
			got := v.Verify(t.Context(), mailauth.Input{Raw: []byte(message)})
			if !slices.Equal(got.ReceivedResults, tt.want) {
				t.Errorf("ReceivedResults = %q, want %q", got.ReceivedResults, tt.want)
			}
			a := got.Authentication()
			if !slices.Equal(a.ReceivedResults, tt.want) || a.DKIM == nil {
				t.Errorf("Authentication() = %+v", a)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []mailauth.Config{{}, {Resolver: &mailauthtest.Resolver{}, MaxDKIMSignatures: -1}} {
		if _, err := mailauth.New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
}
