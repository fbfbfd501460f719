package mime

import (
	"reflect"
	"testing"
	"time"
)

func TestParseDate(t *testing.T) {
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	for _, tt := range []struct {
		raw  string
		want time.Time // zero: unparseable
	}{
		{"Mon, 23 Nov 2026 10:30:00 +0000", utc("2026-11-23T10:30:00Z")},
		{"Fri, 19 May 2000 01:06:18 -0400", utc("2000-05-19T05:06:18Z")},
		{"19 May 2000 01:06:18 -0400", utc("2000-05-19T05:06:18Z")},
		{"Tue, 1 Jul 2003 10:52:37 +0200 (CEST)", utc("2003-07-01T08:52:37Z")},
		{"Thu, 13 Feb 1969 23:32:54 EST", utc("1969-02-14T04:32:54Z")},
		{"Thu, 13 Feb 1969 23:32 PDT", utc("1969-02-14T06:32:00Z")},
		{"Thu,29 Apr 2012 23:34:45 +0900", utc("2012-04-29T14:34:45Z")},
		{"Tue, 029 Apr 2019 23:34:45 -0800 (PST)", utc("2019-04-30T07:34:45Z")},
		{"Thursday, April 09, 2003 9:00 AM", utc("2003-04-09T09:00:00Z")},
		{"Mon Jan  2 15:04:05 2006", utc("2006-01-02T15:04:05Z")},
		{"2021-07-22T13:01:39+01:00", utc("2021-07-22T12:01:39Z")},
		{"Wed, 17 Dec 2003 12:00:00 GMT+2:00", utc("2003-12-17T10:00:00Z")},
		{"Wed, 17 Dec 03 12:00:00 +0000 GMT", utc("2003-12-17T12:00:00Z")},
		{"Sat, 1 Jan 2005 10:00:00 +0100 garbage here", utc("2005-01-01T09:00:00Z")},
		{"", time.Time{}},
		{"Whenever", time.Time{}},
		{"%DATE%", time.Time{}},
		{"Pn, 29 paX 2007 21:13:00 +0100", time.Time{}},
	} {
		t.Run(tt.raw, func(t *testing.T) {
			got, ok := parseDate(tt.raw)
			if ok != !tt.want.IsZero() {
				t.Fatalf("parseDate(%q) ok = %v, want %v (got %v)", tt.raw, ok, !ok, got)
			}
			if ok && !got.Equal(tt.want) {
				t.Errorf("parseDate(%q) = %v, want %v", tt.raw, got, tt.want)
			}
			if ok && got.Location() != time.UTC {
				t.Errorf("parseDate(%q) location %v, want UTC", tt.raw, got.Location())
			}
		})
	}
}

func TestMessageIDs(t *testing.T) {
	for _, tt := range []struct {
		name string
		raw  string
		want []string
	}{
		{"one", "<ABC.123@Example.COM>", []string{"ABC.123@example.com"}},
		{"references in order, duplicates dropped", "<a@x> <b@x>\t<a@x>", []string{"a@x", "b@x"}},
		{"folded inside an id", "<very.long.id@\n host.example>", []string{"very.long.id@host.example"}},
		{"without brackets", "a@x, b@y", []string{"a@x", "b@y"}},
		{"free text around", "your message of Mon <m1@x> (sent)", []string{"m1@x"}},
		{"not UTF-8", "<caf\xe9@x>", []string{"café@x"}},
		{"unterminated", "<m1@x", []string{"m1@x"}},
		{"no ids", "none here", nil},
		{"one token without @ is an id", "bare-id", []string{"bare-id"}},
		{"empty", "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := messageIDs(tt.raw); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("messageIDs(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
	if got := firstMessageID("  bare-id-without-at  "); got != "bare-id-without-at" {
		t.Errorf("firstMessageID of a bare id = %q", got)
	}
}

func TestDecodeWords(t *testing.T) {
	for _, tt := range []struct {
		name, raw, want string
		rescued         bool
	}{
		{"plain", "Hello", "Hello", false},
		{"Q word", "=?iso-8859-1?Q?Caf=E9?=", "Café", false},
		{"B word", "=?UTF-8?B?w6TDtsO8?=", "äöü", false},
		{"adjacent words drop the space", "=?UTF-8?Q?a?= =?UTF-8?Q?b?=", "ab", false},
		{"text between words kept", "=?UTF-8?Q?a?= and =?UTF-8?Q?b?=", "a and b", false},
		{"multi-byte char split across words", "=?UTF-8?B?4oI=?= =?UTF-8?B?rA==?=", "€", false},
		{"underscore is a space", "=?UTF-8?Q?Hello_World?=", "Hello World", false},
		{"language suffix", "=?utf-8*en?Q?hi?=", "hi", false},
		{"unknown charset rescued", "=?x-nothing?Q?caf=E9?=", "café", false},
		{"malformed word kept", "=?utf-8?X?abc?=", "=?utf-8?X?abc?=", false},
		{"literal UTF-8 inside a latin-1 word", "=?iso-8859-1?Q?J\xc3\xbcrgen?=", "Jürgen", false},
		{"raw latin-1 outside words", "Gr\xfc\xdfe =?utf-8?Q?x?=", "Grüße x", true},
		{"shift_jis word", "=?ISO-2022-JP?B?GyRCJF4kXyRgJGEkYhsoQg==?=", "まみむめも", false},
		{"UTF-7 word (Outlook)", "=?unicode-1-1-utf-7?Q?Die_Hasen_und_die_Fr+APY-sche?=", "Die Hasen und die Frösche", false},
		{"UTF-7 word", "=?utf-7?Q?+ZeVnLIqe-?=", "日本語", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, rescued := decodeWords(tt.raw)
			if got != tt.want || rescued != tt.rescued {
				t.Errorf("decodeWords(%q) = %q, %v; want %q, %v", tt.raw, got, rescued, tt.want, tt.rescued)
			}
		})
	}
}

func TestParseAddresses(t *testing.T) {
	for _, tt := range []struct {
		name string
		raw  string
		want []Address
		ok   bool
	}{
		{"simple", "Ann <Ann@Example.COM>", []Address{{"ann@example.com", "Ann", "example.com"}}, true},
		{"IDN domain", "user@Bücher.example", []Address{{"user@bücher.example", "", "xn--bcher-kva.example"}}, true},
		{"punycode domain shown in Unicode", "user@xn--bcher-kva.example", []Address{{"user@bücher.example", "", "xn--bcher-kva.example"}}, true},
		{"encoded name", "=?utf-8?Q?J=C3=B6rg?= <j@x.example>", []Address{{"j@x.example", "Jörg", "x.example"}}, true},
		{"list and group", "a@x.example, Team: b@y.example, c@z.example;", []Address{
			{"a@x.example", "", "x.example"}, {"b@y.example", "", "y.example"}, {"c@z.example", "", "z.example"},
		}, true},
		{"empty group", "undisclosed-recipients:;", nil, true},
		{"comments", "Pete(A \\) chap) <pete(his account)@silly.test(his host)>", []Address{{"pete@silly.test", "Pete", "silly.test"}}, true},
		{"local part only", "Mail Delivery Subsystem <MAILER-DAEMON>", []Address{{"mailer-daemon", "Mail Delivery Subsystem", ""}}, true},
		{"bare local part", "postmaster", []Address{{"postmaster", "", ""}}, true},
		{"null address", "MAILER-DAEMON <>", nil, true},
		{"one broken among good", "good@x.example, %TO%, other@y.example", []Address{
			{"good@x.example", "", "x.example"}, {"other@y.example", "", "y.example"},
		}, false},
		{"empty", "", nil, true},
		{"obsolete route and spaced domain (RFC 2822 A.6.1)", "Mary Smith <@machine.tld:mary@example.net>, , jdoe@test   . example", []Address{
			{"mary@example.net", "Mary Smith", "example.net"}, {"jdoe@test.example", "", "test.example"},
		}, true},
		{"obsolete route list", "<@a.example,@b.example:Joe@Example.NET>", []Address{{"joe@example.net", "", "example.net"}}, true},
		{"display name with '@' (not a second mailbox)", "a@x.example, Mikel@Lindsaar <raasdnil@y.example>", []Address{
			{"a@x.example", "", "x.example"}, {"raasdnil@y.example", "Mikel@Lindsaar", "y.example"},
		}, true},
		{"comment after an angle address names it", "<Mailer-Daemon@x.example> (Mail Delivery System)", []Address{
			{"mailer-daemon@x.example", "Mail Delivery System", "x.example"},
		}, true},
		{"comment after a named angle address ignored", "Ann <a@x.example> (work)", []Address{{"a@x.example", "Ann", "x.example"}}, true},
		{"quotes inside an encoded name kept", "=?utf-8?Q?A_=22B=22=22?= <a@x.example>", []Address{{"a@x.example", `A "B""`, "x.example"}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseAddresses(tt.raw)
			if !reflect.DeepEqual(got, tt.want) || ok != tt.ok {
				t.Errorf("parseAddresses(%q) = %+v, %v; want %+v, %v", tt.raw, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestPreprocess(t *testing.T) {
	for _, tt := range []struct {
		name, in, want string
		warn           string
	}{
		{"clean", "From: a@x\n\nbody", "From: a@x\n\nbody", ""},
		{"mbox From_ line", "From a@x Mon Jan 1 00:00:00 2024\nFrom: a@x\n\nb", "From: a@x\n\nb", WarnMboxFromLine},
		{"BSMTP wrapper", "HELO x\nMAIL FROM:<a@x>\nRCPT TO:<b@y>\nDATA\nTo: b@y\n\nb", "To: b@y\n\nb", WarnLeadingJunk},
		{"BSMTP wrapper with its end", "HELO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nTo: b@y\r\n\r\nb\r\n.\r\nQUIT\r\n\r\n", "To: b@y\r\n\r\nb\r\n", WarnLeadingJunk},
		{"leading white space", "   \n  \nSubject: s\n\nb", "Subject: s\n\nb", WarnLeadingJunk},
		{"CR-only line endings", "Subject: s\r\rbody", "Subject: s\n\nbody", WarnLineEndings},
		{"byte-order mark", "\xef\xbb\xbfSubject: s\n\nb", "Subject: s\n\nb", WarnByteOrderMark},
		{"not a message", "// Not an RFC-822 Document", "// Not an RFC-822 Document", ""},
		{"final delimiter not closed", "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\nx\n--b\n", "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\nx\n--b--\n", WarnBoundaryMissing},
		{"final line only looks like a delimiter", "Content-Type: text/plain\n\nthanks\n--j.\n", "Content-Type: text/plain\n\nthanks\n--j.\n", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, warns := preprocess([]byte(tt.in))
			if string(got) != tt.want {
				t.Errorf("preprocess = %q, want %q", got, tt.want)
			}
			if tt.warn != "" && !hasWarning(warns, tt.warn) {
				t.Errorf("warnings %+v lack %s", warns, tt.warn)
			}
			if tt.warn == "" && len(warns) > 0 {
				t.Errorf("unexpected warnings %+v", warns)
			}
		})
	}
}

func TestScanHeaders(t *testing.T) {
	in := "Subject: one\r\n two\r\nX-A : b\r\n:bad\r\nBad Name\x01: x\r\nnot a field\r\nTo: t@x\r\n\r\nbody"
	fields, body, warns := scanHeaders([]byte(in))
	want := []field{
		{name: "Subject", raw: "one two", off: 0},
		{name: "X-A", raw: "b not a field", off: 20},
		{name: "To", raw: "t@x", off: 62},
	}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("fields = %+v, want %+v", fields, want)
	}
	if in[body:] != "body" {
		t.Errorf("body starts at %q", in[body:])
	}
	if len(warns) != 3 {
		t.Errorf("warnings = %+v, want 3 (colon first, bad name, no colon)", warns)
	}
}

func TestNewAddress(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Address
		ok   bool
	}{
		{"Support+ACME@In.Example.COM", Address{"support+acme@in.example.com", "", "in.example.com"}, true},
		{"<user@xn--bcher-kva.example>", Address{"user@bücher.example", "", "xn--bcher-kva.example"}, true},
		{"postmaster", Address{"postmaster", "", ""}, true},
		{"", Address{}, false},
	} {
		got, ok := NewAddress(tt.in, "")
		if got != tt.want || ok != tt.ok {
			t.Errorf("NewAddress(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
