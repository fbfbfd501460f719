package pipedrive

import (
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/events/eventstest"
)

func sample() *events.Enriched {
	rec, _ := eventstest.Samples()["mail.enriched.v1"].(*events.Enriched)
	return rec
}

func TestSenderOf(t *testing.T) {
	for _, tt := range []struct {
		name    string
		contact *events.Contact
		from    *events.Address
		want    sender
	}{
		{"enriched contact wins", &events.Contact{Email: "Ann@Example.com", Name: "Ann"}, &events.Address{Address: "x@y.z", Name: "X"}, sender{"ann@example.com", "Ann"}},
		{"contact without a name takes the From name of the same address", &events.Contact{Email: "ann@example.com"}, &events.Address{Address: "ann@example.com", Name: "Ann E."}, sender{"ann@example.com", "Ann E."}},
		{"contact without a name ignores another From's name", &events.Contact{Email: "ann@example.com"}, &events.Address{Address: "list@example.org", Name: "A List"}, sender{"ann@example.com", "ann"}},
		{"no contact falls back to From", nil, &events.Address{Address: "bob@example.org", Name: "Bob"}, sender{"bob@example.org", "Bob"}},
		{"no name at all uses the local part", nil, &events.Address{Address: "carol@example.org"}, sender{"carol@example.org", "carol"}},
		{"no sender", nil, nil, sender{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := sample()
			rec.Enrichment.Contact, rec.Message.From = tt.contact, tt.from
			if got := senderOf(rec); got != tt.want {
				t.Errorf("senderOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNewActivity(t *testing.T) {
	received := time.Date(2026, 11, 23, 23, 45, 0, 0, time.UTC)
	for _, tt := range []struct {
		name    string
		cfg     Config
		mutate  func(*events.Enriched)
		want    activityBody
		noteHas []string
	}{
		{
			name: "open activity due at the end of the SLA, across midnight",
			cfg:  Config{ActivityType: "email"},
			want: activityBody{Subject: "Re: Grüße", Type: "email", DueDate: "2026-11-24", DueTime: "00:45", PersonID: 3, OrgID: 4},
		},
		{
			name: "done activity is dated at receipt",
			cfg:  Config{ActivityType: "call", ActivityDone: true},
			want: activityBody{Subject: "Re: Grüße", Type: "call", Done: 1, DueDate: "2026-11-23", DueTime: "23:45", PersonID: 3, OrgID: 4},
		},
		{
			name:   "no SLA: due at receipt; numeric owner assigns the user",
			cfg:    Config{ActivityType: "email"},
			mutate: func(r *events.Enriched) { r.Classification.SLAMinutes = 0; r.Enrichment.Owner = " 42 " },
			want:   activityBody{Subject: "Re: Grüße", Type: "email", DueDate: "2026-11-23", DueTime: "23:45", PersonID: 3, OrgID: 4, UserID: 42},
		},
		{
			name:   "an e-mail owner is not a Pipedrive user id",
			cfg:    Config{ActivityType: "email"},
			mutate: func(r *events.Enriched) { r.Enrichment.Owner = "owner@example.com" },
			want:   activityBody{Subject: "Re: Grüße", Type: "email", DueDate: "2026-11-24", DueTime: "00:45", PersonID: 3, OrgID: 4},
		},
		{
			name:   "empty subject",
			cfg:    Config{ActivityType: "email"},
			mutate: func(r *events.Enriched) { r.Message.Subject = " \t" },
			want:   activityBody{Subject: "(no subject)", Type: "email", DueDate: "2026-11-24", DueTime: "00:45", PersonID: 3, OrgID: 4},
		},
		{
			name: "message HTML is escaped, stripped text preferred, text kept otherwise",
			cfg:  Config{ActivityType: "email"},
			mutate: func(r *events.Enriched) {
				r.Message.StrippedText = ""
				r.Message.Text = "<script>x</script>\r\nline two"
				r.Message.From.Name = "Eve <evil>"
			},
			want:    activityBody{Subject: "Re: Grüße", Type: "email", DueDate: "2026-11-24", DueTime: "00:45", PersonID: 3, OrgID: 4},
			noteHas: []string{"&lt;script&gt;x&lt;/script&gt;<br>line two", "Eve &lt;evil&gt; &lt;a@example.com&gt;"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := sample()
			rec.Message.ReceivedAt = received
			if tt.mutate != nil {
				tt.mutate(rec)
			}
			got := newActivity(rec, tt.cfg, 3, 4)
			note := got.Note
			got.Note = ""
			if got != tt.want {
				t.Errorf("newActivity =\n%+v\nwant\n%+v", got, tt.want)
			}
			for _, s := range append(tt.noteHas, NoteMarker(rec.Message.ExternalID)) {
				if !strings.Contains(note, s) {
					t.Errorf("note lacks %q:\n%s", s, note)
				}
			}
			if strings.Contains(note, "<script>") {
				t.Errorf("note carries unescaped HTML:\n%s", note)
			}
		})
	}
}

func TestNoteBounds(t *testing.T) {
	rec := sample()
	rec.Message.StrippedText = strings.Repeat("ü", maxNoteText) // two bytes each
	rec.Message.Subject = strings.Repeat("s", 300)
	a := newActivity(rec, Config{ActivityType: "email"}, 1, 0)
	if len(a.Note) > maxNoteText+1024 {
		t.Errorf("note is %d bytes, want the text cut to %d", len(a.Note), maxNoteText)
	}
	if !strings.Contains(a.Note, "ü…</p>") {
		t.Error("cut text does not end with an ellipsis on a rune boundary")
	}
	if len(a.Subject) > maxSubjectLen || !strings.HasSuffix(a.Subject, "…") {
		t.Errorf("subject is %d bytes (%q…), want at most %d ending in an ellipsis", len(a.Subject), a.Subject[:10], maxSubjectLen)
	}
	if !strings.HasSuffix(a.Note, "<p>"+NoteMarker(rec.Message.ExternalID)+"</p>") {
		t.Error("the note does not end with the marker line")
	}
}

func TestOrganizationOf(t *testing.T) {
	for _, tt := range []struct {
		name    string
		company *events.Company
		want    company
		ok      bool
	}{
		{"company", &events.Company{Domain: " Example.COM ", Name: "Example Inc"}, company{"example.com", "Example Inc"}, true},
		{"unnamed", &events.Company{Domain: "example.com"}, company{"example.com", "example.com"}, true},
		{"free mail", &events.Company{Domain: "gmail.com", FreeMail: true}, company{}, false},
		{"no domain", &events.Company{Name: "Nameless"}, company{}, false},
		{"none", nil, company{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := sample()
			rec.Enrichment.Company = tt.company
			got, ok := organizationOf(rec)
			if got != tt.want || ok != tt.ok {
				t.Errorf("organizationOf = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestMemoForgetsAndStaysBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := newMemo(time.Minute, 3, func() time.Time { return now })
	m.put("a", 1)
	if id, ok := m.get("a"); !ok || id != 1 {
		t.Fatalf("get(a) = %d, %v", id, ok)
	}
	now = now.Add(time.Minute)
	if _, ok := m.get("a"); ok {
		t.Error("get(a) after the TTL found the entry")
	}
	for i, k := range []string{"b", "c", "d", "e"} {
		m.put(k, int64(i))
	}
	if len(m.m) > 3 {
		t.Errorf("memo holds %d entries, want at most 3", len(m.m))
	}
	if _, ok := m.get("e"); !ok {
		t.Error("the newest entry was evicted")
	}
}
