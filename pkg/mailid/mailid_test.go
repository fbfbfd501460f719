package mailid_test

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/mailpipe/mailpipe/pkg/mailid"
)

func TestMessageID(t *testing.T) {
	for _, tt := range []struct {
		name, raw, want string
	}{
		{"plain", "<1234.5678@mail.example.com>", "1234.5678@mail.example.com"},
		{"surrounding space", "  <abc@example.com>\r\n", "abc@example.com"},
		{"domain lower-cased, local kept", "<CAFx+Y=Q@Mail.GMAIL.com>", "CAFx+Y=Q@mail.gmail.com"},
		{"comment before and after", "(sent by X) <abc@example.com> (trailing)", "abc@example.com"},
		{"nested comment with escaped paren", "(a (b \\) c) d)<abc@example.com>", "abc@example.com"},
		{"folded inside the id", "<abc.\r\n def@example.com>", "abc.def@example.com"},
		{"no brackets", "abc@example.com", "abc@example.com"},
		{"no brackets, no at", "12345", "12345"},
		{"empty", "", ""},
		{"only whitespace", " \t\r\n ", ""},
		{"only comment", "(none)", ""},
		{"empty brackets", "<>", ""},
		{"truncated", "<abc@exa", "abc@exa"},
		{"first of several", "<a@x> <b@y>", "a@x"},
		{"restart on inner <", "<junk<abc@example.com>", "abc@example.com"},
		{"quotes and backslashes dropped", `<"odd\ id"@example.com>`, "oddid@example.com"},
		{"comma dropped", "<a,b@x>", "ab@x"},
		{"non-ascii domain not folded", "<id@ÉXAMPLE.com>", "id@Éxample.com"},
		{"invalid utf-8 kept", "<id\xff@x>", "id\xff@x"},
		{"multiple at signs", "<a@b@C.D>", "a@b@c.d"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := mailid.MessageID(tt.raw); got != tt.want {
				t.Errorf("MessageID(%q) = %q, want %q", tt.raw, got, tt.want)
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
		{"references, folded", "<root@a.example>\r\n <r1@B.example>\r\n\t<r2@c.example>", []string{"root@a.example", "r1@b.example", "r2@c.example"}},
		{"no separators", "<a@x><b@y>", []string{"a@x", "b@y"}},
		{"commas", "<a@x>, <b@y>,<c@z>", []string{"a@x", "b@y", "c@z"}},
		{"garbage between", "foo <a@x> bar, baz <b@y> !!", []string{"a@x", "b@y"}},
		{"bare ids", "a@x b@y, c@z", []string{"a@x", "b@y", "c@z"}},
		{"bare tokens without at are skipped", "see a@x and b@y", []string{"a@x", "b@y"}},
		{"in-reply-to with phrase", `Your message of "Mon, 1 Jan" <a@x>`, []string{"a@x"}},
		{"comment hides id", "<a@x> (<b@y>) <c@z>", []string{"a@x", "c@z"}},
		{"empties skipped", "<> < > <a@x>", []string{"a@x"}},
		{"repeats kept", "<a@x> <a@X>", []string{"a@x", "a@x"}},
		{"nothing", "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := mailid.MessageIDs(tt.raw); !slices.Equal(got, tt.want) {
				t.Errorf("MessageIDs(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

func TestAddress(t *testing.T) {
	for _, tt := range []struct {
		name, raw, want string
	}{
		{"bare", "alice@example.com", "alice@example.com"},
		{"case and space", "  Alice@Example.COM \r\n", "alice@example.com"},
		{"display name", "Alice Doe <Alice@Example.com>", "alice@example.com"},
		{"quoted display name with comma and bracket", `"Doe, Alice <boss>" <alice@example.com>`, "alice@example.com"},
		{"comment", "alice@example.com (Alice Doe)", "alice@example.com"},
		{"first of list", "Alice <a@x.com>, Bob <b@y.com>", "a@x.com"},
		{"group", "team: a@x.com, b@y.com;", "a@x.com"},
		{"empty group", "undisclosed-recipients:;", ""},
		{"mailto", "mailto:Alice@Example.com", "alice@example.com"},
		{"envelope path", "<bounce+123@Lists.Example.org>", "bounce+123@lists.example.org"},
		{"null path", "<>", ""},
		{"plus tag kept", "a+tag@x.com", "a+tag@x.com"},
		{"quoted local part", `"john doe"@x.com`, "johndoe@x.com"},
		{"no domain", "MAILER-DAEMON", "mailer-daemon"},
		{"encoded display name untouched", "=?UTF-8?B?w4lsaXNl?= <elise@x.fr>", "elise@x.fr"},
		{"empty", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := mailid.Address(tt.raw); got != tt.want {
				t.Errorf("Address(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

func TestExternalID(t *testing.T) {
	sum := func(s string) string {
		h := sha256.Sum256([]byte(s))
		return hex.EncodeToString(h[:])
	}
	for _, tt := range []struct {
		name            string
		messageID, from string
		want            string
	}{
		{
			name:      "recipe",
			messageID: "<CAFx1@Mail.Example.com>", from: `"Alice" <Alice@Example.com>`,
			want: sum("CAFx1@mail.example.com\nalice@example.com"),
		},
		{
			// Pinned value (printf 'abc@example.com\nbob@example.org' | sha256sum): changing it
			// re-keys every stored message. Never update it casually.
			name:      "pinned",
			messageID: "<abc@example.com>", from: "bob@example.org",
			want: "9f94b4b6c417d3be9f67bedbe31fa714083d2f60e14c6587b6cdcc10281eb5ea",
		},
		{
			name:      "no message id still defined",
			messageID: "", from: "bob@example.org",
			want: sum("\nbob@example.org"),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := mailid.ExternalID(tt.messageID, tt.from)
			if got != tt.want {
				t.Errorf("ExternalID(%q, %q) = %s, want %s", tt.messageID, tt.from, got, tt.want)
			}
		})
	}
	// Same message, different spellings: one id.
	a := mailid.ExternalID("<abc@EXAMPLE.com>", "Bob <BOB@example.org>")
	b := mailid.ExternalID(" abc@example.com ", "bob@example.org (Bob)")
	if a != b {
		t.Errorf("spellings of one message differ: %s vs %s", a, b)
	}
	// The separator keeps the two parts apart.
	if mailid.ExternalID("a@b", "c@d") == mailid.ExternalID("a@bc", "@d") {
		t.Error("ExternalID is ambiguous across the separator")
	}
}

func FuzzMessageID(f *testing.F) {
	for _, s := range []string{
		"<abc@example.com>", "(c) <a@B>", "<a<b@c>", `<"a\ " "(b)"@d>`, "a@b c@d", "<a,b@c>",
		"<\xff@X>", "(((", "<", ">", `"`, "12345", "x <y@Z> (z) <w@v",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ids := mailid.MessageIDs(raw)
		for _, id := range ids {
			if id == "" {
				t.Fatalf("empty id from %q", raw)
			}
			if strings.ContainsAny(id, `<>()",\`) || strings.IndexFunc(id, unicode.IsSpace) >= 0 {
				t.Fatalf("id %q from %q keeps structure or whitespace", id, raw)
			}
			if again := mailid.MessageID(id); again != id {
				t.Fatalf("not idempotent: %q -> %q -> %q", raw, id, again)
			}
		}
		first := mailid.MessageID(raw)
		if (len(ids) == 0) != (first == "") || (len(ids) > 0 && ids[0] != first) {
			t.Fatalf("MessageID(%q) = %q, MessageIDs = %q", raw, first, ids)
		}
	})
}

func FuzzAddress(f *testing.F) {
	for _, s := range []string{
		"Alice <a@x>", `"a:b"@c`, "x<y:z@w>", "a:b:c@d", `"Doe, J" <j@x>`, "g: a@b;", "<>", "\xff@\xfe",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		a := mailid.Address(raw)
		if again := mailid.Address(a); again != a {
			t.Fatalf("not idempotent: %q -> %q -> %q", raw, a, again)
		}
		if strings.ContainsAny(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("%q keeps ASCII upper case", a)
		}
		if id := mailid.ExternalID(raw, raw); len(id) != 64 {
			t.Fatalf("ExternalID length %d", len(id))
		}
	})
}
