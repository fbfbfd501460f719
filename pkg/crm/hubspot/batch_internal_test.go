package hubspot

import (
	"log/slog"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm/hubspot/hubspottest"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

func TestInvalidContactFailsOnlyItsOwnMessage(t *testing.T) {
	// given a batch of three contacts, one with an address HubSpot rejects
	srv := hubspottest.NewServer(t)
	c, err := New(Config{BaseURL: srv.URL(), Token: srv.Token(), Timeout: 5 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var reqs []*contactReq
	for _, email := range []string{"good1@example.com", "bad@@example", "good2@example.com", "good1@example.com"} {
		reqs = append(reqs, &contactReq{in: contactInput{email: email, props: map[string]string{"email": email}}})
	}

	// when
	c.flushContacts(t.Context(), &call{}, reqs)

	// then the whole batch was refused once, and each input was retried alone
	for _, r := range reqs {
		bad := r.in.email == "bad@@example"
		if got := failure.Classify(r.res.err); bad && got != failure.CRM4xx || !bad && (r.res.err != nil || r.res.id == "") {
			t.Errorf("%s: result %+v, class %q", r.in.email, r.res, got)
		}
	}
	if reqs[0].res.id != reqs[3].res.id {
		t.Errorf("one address got two contacts: %s and %s", reqs[0].res.id, reqs[3].res.id)
	}
	if n := srv.Calls("POST /crm/v3/objects/contacts/batch/upsert"); n != 1+3 {
		t.Errorf("batch calls = %d, want 1 refused batch + 3 single inputs", n)
	}
	if n := len(srv.Records(hubspottest.Contacts)); n != 2 {
		t.Errorf("contacts = %d, want 2", n)
	}
}

func TestIDCache(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newIDCache(time.Minute, func() time.Time { return now })
	c.put("a", "1")
	if id, ok := c.get("a"); !ok || id != "1" {
		t.Fatalf("get = %q, %v", id, ok)
	}
	now = now.Add(2 * time.Minute)
	if _, ok := c.get("a"); ok {
		t.Error("an entry older than the ttl was returned")
	}
	c.put("a", "2")
	c.forget("a")
	if _, ok := c.get("a"); ok {
		t.Error("a forgotten entry was returned")
	}
	for i := range idCacheSize + 10 {
		c.put(string(rune('a'+i%26))+string(rune(i)), "x")
		c.forget("a")
		c.put("a", "3")
	}
	if len(c.m) > idCacheSize || len(c.fifo) > idCacheSize {
		t.Errorf("cache holds %d entries (%d in order), bound %d", len(c.m), len(c.fifo), idCacheSize)
	}
	off := newIDCache(0, time.Now)
	off.put("a", "1")
	if _, ok := off.get("a"); ok {
		t.Error("a zero-ttl cache remembered")
	}
}
