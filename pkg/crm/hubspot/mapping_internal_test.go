package hubspot

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/events/eventstest"
)

func sample() *events.Enriched {
	rec, _ := eventstest.Samples()["mail.enriched.v1"].(*events.Enriched)
	return rec
}

func ptr(s string) *string { return &s }

func TestMapContact(t *testing.T) {
	for _, tt := range []struct {
		name    string
		contact *events.Contact
		wantOK  bool
		want    map[string]string
	}{
		{"no usable sender", nil, false, nil},
		{"empty address", &events.Contact{Name: "Ann"}, false, nil},
		{
			"address lower-cased, name split", &events.Contact{Email: " Ann.Example@Example.COM ", Name: "Ann Example"}, true,
			map[string]string{"email": "ann.example@example.com", "firstname": "Ann", "lastname": "Example"},
		},
		{"no name: names not sent", &events.Contact{Email: "a@example.com"}, true, map[string]string{"email": "a@example.com"}},
		{"one word", &events.Contact{Email: "a@example.com", Name: "Cher"}, true, map[string]string{"email": "a@example.com", "firstname": "Cher"}},
		{
			"last, first", &events.Contact{Email: "a@example.com", Name: `"Example, Ann Marie"`}, true,
			map[string]string{"email": "a@example.com", "firstname": "Ann Marie", "lastname": "Example"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := sample()
			rec.Enrichment.Contact = tt.contact
			got, ok := mapContact(rec)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if ok && (!maps.Equal(got.props, tt.want) || got.email != tt.want["email"]) {
				t.Errorf("contact = %q %v, want %v", got.email, got.props, tt.want)
			}
		})
	}
}

func TestMapCompany(t *testing.T) {
	for _, tt := range []struct {
		name    string
		company *events.Company
		wantOK  bool
		want    map[string]string
	}{
		{"unknown", nil, false, nil},
		{"free mail is not a company", &events.Company{Domain: "gmail.com", FreeMail: true}, false, nil},
		{"no domain", &events.Company{Name: "Acme"}, false, nil},
		{
			"full", &events.Company{Domain: "Acme.Example", Name: "Acme", Country: "DE", Size: "250", Industry: "Software"}, true,
			map[string]string{"domain": "acme.example", "name": "Acme", "country": "DE", "numberofemployees": "250"},
		},
		{
			"size band is not an employee count", &events.Company{Domain: "acme.example", Size: "51-200"}, true,
			map[string]string{"domain": "acme.example"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := sample()
			rec.Enrichment.Company = tt.company
			got, ok := mapCompany(rec)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if ok && (!maps.Equal(got.props, tt.want) || got.domain != tt.want["domain"]) {
				t.Errorf("company = %q %v, want %v", got.domain, got.props, tt.want)
			}
		})
	}
}

func TestEmailProperties(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(*events.Enriched)
		want   map[string]string // checked keys only; "" means absent
	}{
		{"sample", nil, map[string]string{
			"mailpipe_external_id": "9f2c",
			"hs_timestamp":         "2026-11-23T10:30:00.123Z",
			"hs_email_direction":   "INCOMING_EMAIL",
			"hs_email_status":      "SENT",
			"hs_email_subject":     "Re: Grüße",
			"hs_email_headers":     `{"from":{"email":"a@example.com","firstName":"Ann","lastName":"Example"},"to":[{"email":"support+acme@in.example.com"}],"cc":[],"bcc":[]}`,
			"hubspot_owner_id":     "",
		}},
		{"numeric owner is set", func(r *events.Enriched) { r.Enrichment.Owner = "123456" }, map[string]string{"hubspot_owner_id": "123456"}},
		{"owner email is not an owner id", func(r *events.Enriched) { r.Enrichment.Owner = "owner@example.com" }, map[string]string{"hubspot_owner_id": ""}},
		{"received time in another zone is written in UTC", func(r *events.Enriched) {
			r.Message.ReceivedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
		}, map[string]string{"hs_timestamp": "2026-01-02T02:04:05.000Z"}},
		{"no from, sender and cc", func(r *events.Enriched) {
			r.Message.From = nil
			r.Message.Sender = &events.Address{Address: "list@example.org", Name: "List"}
			r.Message.Cc = []events.Address{{Address: "c@example.net", Name: "Cee Dee"}}
		}, map[string]string{"hs_email_headers": `{"sender":{"email":"list@example.org","firstName":"List"},"to":[{"email":"support+acme@in.example.com"}],"cc":[{"email":"c@example.net","firstName":"Cee","lastName":"Dee"}],"bcc":[]}`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := sample()
			if tt.mutate != nil {
				tt.mutate(rec)
			}
			got := emailProperties(rec, DefaultExternalIDProperty)
			for k, want := range tt.want {
				if got[k] != want {
					t.Errorf("%s = %q, want %q", k, got[k], want)
				}
			}
			if !json.Valid([]byte(got["hs_email_headers"])) {
				t.Errorf("hs_email_headers is not JSON: %s", got["hs_email_headers"])
			}
			if again := emailProperties(rec, DefaultExternalIDProperty); !maps.Equal(got, again) {
				t.Error("the properties are not deterministic")
			}
		})
	}
}

func TestEmailText(t *testing.T) {
	ref := "s3://bucket/att/2"
	long := strings.Repeat("ü", maxPropertyChars+10)
	for _, tt := range []struct {
		name     string
		msg      events.Parsed
		contains []string
		absent   []string
		cut      bool
	}{
		{"text only", events.Parsed{Text: "hello"}, []string{"hello"}, []string{"Attachments:"}, false},
		{"stripped text when the text is blank", events.Parsed{Text: " \n", StrippedText: "new part"}, []string{"new part"}, nil, false},
		{"attachments listed, inline parts left out", events.Parsed{Text: "see attached", Attachments: []events.Attachment{
			{Filename: "offer.pdf", ContentType: "application/pdf", Size: 1234, BlobRef: &ref},
			{Filename: "logo.png", ContentType: "image/png", Size: 99, BlobRef: ptr("s3://bucket/logo"), Inline: true},
			{Size: 7},
		}}, []string{
			"see attached\n\n-- \nAttachments:\n",
			"- offer.pdf (application/pdf, 1234 bytes): s3://bucket/att/2\n",
			"- (unnamed) (application/octet-stream, 7 bytes): no stored copy\n",
		}, []string{"logo.png"}, false},
		{"long body cut, attachment list kept", events.Parsed{Text: long, Attachments: []events.Attachment{
			{Filename: "a.txt", ContentType: "text/plain", Size: 1, BlobRef: &ref},
		}}, []string{truncatedMark, "- a.txt (text/plain, 1 bytes): s3://bucket/att/2"}, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := emailText(&tt.msg)
			for _, c := range tt.contains {
				if !strings.Contains(got, c) {
					t.Errorf("text lacks %q:\n%.300s", c, got)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(got, a) {
					t.Errorf("text contains %q", a)
				}
			}
			n := utf8.RuneCountInString(got)
			if n > maxPropertyChars || (tt.cut && n != maxPropertyChars) {
				t.Errorf("text is %d characters, limit %d (cut: %v)", n, maxPropertyChars, tt.cut)
			}
			if !utf8.ValidString(got) {
				t.Error("text is not valid UTF-8 after the cut")
			}
		})
	}
}

func TestAttachmentListIsBounded(t *testing.T) {
	atts := make([]events.Attachment, 500)
	for i := range atts {
		atts[i] = events.Attachment{Filename: strings.Repeat("x", 60) + ".bin", BlobRef: ptr("s3://bucket/" + strings.Repeat("y", 40))}
	}
	got := attachmentList(atts)
	if len(got) > maxAttachmentList+64 || !strings.Contains(got, "more\n") {
		t.Errorf("list is %d bytes, want at most about %d with a '… and N more' line", len(got), maxAttachmentList)
	}
}

func TestSameProperties(t *testing.T) {
	want := map[string]string{"hs_timestamp": "2026-11-23T10:30:00.123Z", "hs_email_subject": "hi", "hubspot_owner_id": ""}
	for _, tt := range []struct {
		name string
		have map[string]*string
		same bool
	}{
		{"identical", map[string]*string{"hs_timestamp": ptr("2026-11-23T10:30:00.123Z"), "hs_email_subject": ptr("hi")}, true},
		{"timestamp in milliseconds", map[string]*string{"hs_timestamp": ptr("1795429800123"), "hs_email_subject": ptr("hi")}, true},
		{"timestamp in another layout", map[string]*string{"hs_timestamp": ptr("2026-11-23T10:30:00.123000Z"), "hs_email_subject": ptr("hi")}, true},
		{"other instant", map[string]*string{"hs_timestamp": ptr("2026-11-23T10:30:01Z"), "hs_email_subject": ptr("hi")}, false},
		{"changed subject", map[string]*string{"hs_timestamp": ptr("2026-11-23T10:30:00.123Z"), "hs_email_subject": ptr("ho")}, false},
		{"null subject", map[string]*string{"hs_timestamp": ptr("2026-11-23T10:30:00.123Z"), "hs_email_subject": nil}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameProperties(tt.have, want); got != tt.same {
				t.Errorf("sameProperties = %v, want %v", got, tt.same)
			}
		})
	}
}

func TestSplitName(t *testing.T) {
	for _, tt := range []struct{ in, first, last string }{
		{"", "", ""},
		{"Ann", "Ann", ""},
		{"Ann Marie  Example", "Ann", "Marie Example"},
		{"Example, Ann", "Ann", "Example"},
		{`"Ann Example"`, "Ann", "Example"},
		{"  ", "", ""},
	} {
		if f, l := splitName(tt.in); f != tt.first || l != tt.last {
			t.Errorf("splitName(%q) = %q, %q; want %q, %q", tt.in, f, l, tt.first, tt.last)
		}
	}
}
