package hubspot_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/crm/hubspot"
	"github.com/mailpipe/mailpipe/pkg/crm/hubspot/hubspottest"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// config returns the config of a connector writing to srv with its private-app token, with the
// defaults envconf would apply.
func config(srv *hubspottest.Server) hubspot.Config {
	return hubspot.Config{
		BaseURL: srv.URL(), Token: srv.Token(), Timeout: 5 * time.Second,
		CreateProperty: true, AssociateContactCompany: true, IDCacheTTL: hubspot.DefaultIDCacheTTL,
	}
}

// oauthConfig is config with the account's OAuth app instead of the private-app token.
func oauthConfig(srv *hubspottest.Server) hubspot.Config {
	cfg := config(srv)
	cfg.Token = ""
	cfg.ClientID, cfg.ClientSecret, cfg.RefreshToken = srv.OAuth()
	return cfg
}

func newConnector(t testing.TB, cfg hubspot.Config, opts ...hubspot.Option) *hubspot.Connector {
	t.Helper()
	c, err := hubspot.New(cfg, discard(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustUpsert(t testing.TB, c *hubspot.Connector, rec *events.Enriched) crm.Result {
	t.Helper()
	res, err := c.Upsert(t.Context(), rec)
	if err != nil {
		t.Fatalf("Upsert(%s): %v", rec.Message.ExternalID, err)
	}
	return res
}

func TestConformance(t *testing.T) {
	crmtest.Run(t, func(t *testing.T) crmtest.Target {
		srv := hubspottest.NewServer(t)
		return srv.Target(newConnector(t, config(srv)))
	})
}

// TestConformanceOAuth runs the suite with an OAuth connector. Under OAuth one 401 is not a
// failure: the connector refreshes the token and resends (TestTokenRefresh). The suite's "401
// is auth" case means credentials HubSpot keeps rejecting, so an injected 401 here also answers
// the resent request.
func TestConformanceOAuth(t *testing.T) {
	crmtest.Run(t, func(t *testing.T) crmtest.Target {
		srv := hubspottest.NewServer(t)
		tg := srv.Target(newConnector(t, oauthConfig(srv)))
		tg.FailNext = func(n, status int, retryAfter string) {
			if status == http.StatusUnauthorized {
				n *= 2
			}
			srv.FailNext(n, status, retryAfter)
		}
		return tg
	})
}

func TestUpsertWritesContactCompanyAndEmail(t *testing.T) {
	// given
	srv := hubspottest.NewServer(t)
	c := newConnector(t, config(srv))
	msg := crmtest.Message("full")

	// when
	res := mustUpsert(t, c, msg)

	// then
	if res.Outcome != crm.OutcomeCreated || res.Attempts != 1 {
		t.Errorf("outcome %q, attempts %d; want created, 1", res.Outcome, res.Attempts)
	}
	contacts, companies := srv.Records(hubspottest.Contacts), srv.Records(hubspottest.Companies)
	if len(contacts) != 1 || len(companies) != 1 || srv.Objects(msg.Message.ExternalID) != 1 {
		t.Fatalf("contacts %d, companies %d, emails %d; want one of each", len(contacts), len(companies), srv.Objects(msg.Message.ExternalID))
	}
	contact, company := contacts[0], companies[0]
	email, _ := srv.Email(msg.Message.ExternalID)
	wantIDs := map[string]string{hubspot.ObjectContact: contact.ID, hubspot.ObjectCompany: company.ID, hubspot.ObjectEmail: email.ID}
	for k, v := range wantIDs {
		if res.ObjectIDs[k] != v {
			t.Errorf("ObjectIDs[%s] = %q, want %q", k, res.ObjectIDs[k], v)
		}
	}
	for _, tt := range []struct {
		obj        hubspottest.Object
		prop, want string
	}{
		{contact, "email", "a@example.com"},
		{contact, "firstname", "Ann"},
		{contact, "lastname", "Example"},
		{company, "domain", "example.com"},
		{company, "name", "Example Inc"},
		{email, "hs_timestamp", "2026-11-23T10:30:00.123Z"},
		{email, "hs_email_direction", "INCOMING_EMAIL"},
		{email, "hs_email_status", "SENT"},
		{email, "hs_email_subject", "Re: Grüße"},
		{email, "hs_email_from_email", "a@example.com"},
		{email, "hs_email_from_firstname", "Ann"},
		{email, "hs_email_to_email", "support+acme@in.example.com"},
		{email, hubspottest.ExternalIDProperty, msg.Message.ExternalID},
	} {
		if got := tt.obj.Properties[tt.prop]; got != tt.want {
			t.Errorf("%s %s = %q, want %q", tt.obj.Type, tt.prop, got, tt.want)
		}
	}
	if text := email.Properties["hs_email_text"]; !strings.HasPrefix(text, "thanks\n> old") ||
		!strings.Contains(text, "- a.pdf (application/pdf, 42 bytes): file:///var/lib/mailpipe/blobs/att/1") {
		t.Errorf("hs_email_text = %q, want the body and the attachment link", text)
	}
	for _, tt := range []struct {
		obj      hubspottest.Object
		toType   string
		wantToID string
	}{
		{email, hubspottest.Contacts, contact.ID},
		{email, hubspottest.Companies, company.ID},
		{contact, hubspottest.Companies, company.ID},
	} {
		if got := tt.obj.Associations[tt.toType]; len(got) != 1 || got[0] != tt.wantToID {
			t.Errorf("%s %s associated with %s %v, want [%s]", tt.obj.Type, tt.obj.ID, tt.toType, got, tt.wantToID)
		}
	}
}

func TestIdempotentReplay(t *testing.T) {
	srv := hubspottest.NewServer(t)
	first := newConnector(t, config(srv))
	msg := crmtest.Message("replay")
	created := mustUpsert(t, first, msg)

	changed := crmtest.Message("replay")
	changed.Message.Subject = "Re: Grüße (edited)"
	for _, tt := range []struct {
		name string
		// fresh connectors have no memory of the first write: a restarted process or a DLQ
		// replay elsewhere, which must find the email through search.
		fresh bool
		rec   *events.Enriched
		want  string
	}{
		{"same process, same message", false, crmtest.Message("replay"), crm.OutcomeUnchanged},
		{"other process, same message", true, crmtest.Message("replay"), crm.OutcomeUnchanged},
		{"other process, changed subject", true, changed, crm.OutcomeUpdated},
		{"other process, changed subject again", true, changed, crm.OutcomeUnchanged},
		{"first process, changed subject", false, changed, crm.OutcomeUpdated},
		{"first process, changed subject again", false, changed, crm.OutcomeUnchanged},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := first
			if tt.fresh {
				c = newConnector(t, config(srv))
			}
			res := mustUpsert(t, c, tt.rec)
			if res.Outcome != tt.want {
				t.Errorf("outcome = %q, want %q", res.Outcome, tt.want)
			}
			for k, id := range created.ObjectIDs {
				if res.ObjectIDs[k] != id {
					t.Errorf("ObjectIDs[%s] = %q, want the first upsert's %q", k, res.ObjectIDs[k], id)
				}
			}
		})
	}
	for typ, want := range map[string]int{hubspottest.Contacts: 1, hubspottest.Companies: 1, hubspottest.Emails: 1} {
		if n := len(srv.Records(typ)); n != want {
			t.Errorf("%s: %d records after replays, want %d", typ, n, want)
		}
	}
	email, _ := srv.Email(msg.Message.ExternalID)
	if got := email.Properties["hs_email_subject"]; got != changed.Message.Subject {
		t.Errorf("subject = %q, want the replayed change %q", got, changed.Message.Subject)
	}
}

func TestReplayWithinSearchLag(t *testing.T) {
	// HubSpot's search index lags writes; a replay from another process within the lag does
	// not find the email, and the unique external id property turns its create into a 409.
	srv := hubspottest.NewServer(t, hubspottest.WithSearchLag(time.Hour))
	msg := crmtest.Message("lag")
	mustUpsert(t, newConnector(t, config(srv)), msg)

	res := mustUpsert(t, newConnector(t, config(srv)), crmtest.Message("lag"))
	if res.Outcome != crm.OutcomeUpdated {
		t.Errorf("outcome = %q, want updated", res.Outcome)
	}
	if n := srv.Objects(msg.Message.ExternalID); n != 1 {
		t.Errorf("emails = %d, want 1", n)
	}
	if n := srv.Calls("PATCH /crm/v3/objects/emails/{id}"); n != 1 {
		t.Errorf("email updates = %d, want 1 (by idProperty after the 409)", n)
	}
}

func TestCompanyNotDuplicatedWithinSearchLag(t *testing.T) {
	for _, tt := range []struct {
		name          string
		ttl           time.Duration
		wantCompanies int
	}{
		// Two senders of one new company, a second apart: the second search misses the
		// company the first message created. HubSpot does not keep domains unique, so only
		// the connector's memory prevents the duplicate.
		{"id cache on", time.Minute, 1},
		{"id cache off shows the hazard", 0, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := hubspottest.NewServer(t, hubspottest.WithSearchLag(time.Hour))
			cfg := config(srv)
			cfg.IDCacheTTL = tt.ttl
			c := newConnector(t, cfg)
			for i := range 2 {
				rec := crmtest.Message(fmt.Sprint("colleague", i))
				rec.Enrichment.Contact.Email = fmt.Sprintf("person%d@example.com", i)
				mustUpsert(t, c, rec)
			}
			if n := len(srv.Records(hubspottest.Companies)); n != tt.wantCompanies {
				t.Errorf("companies = %d, want %d", n, tt.wantCompanies)
			}
		})
	}
}

func TestCompanyFoundByDomain(t *testing.T) {
	srv := hubspottest.NewServer(t)
	older := srv.Seed(hubspottest.Companies, map[string]string{"domain": "example.com", "name": "Example (CRM's name)"})
	srv.Seed(hubspottest.Companies, map[string]string{"domain": "example.com", "name": "Example duplicate"})
	res := mustUpsert(t, newConnector(t, config(srv)), crmtest.Message("known company"))
	if res.ObjectIDs[hubspot.ObjectCompany] != older {
		t.Errorf("company = %s, want the oldest match %s", res.ObjectIDs[hubspot.ObjectCompany], older)
	}
	co, _ := srv.Record(hubspottest.Companies, older)
	if co.Properties["name"] != "Example (CRM's name)" {
		t.Errorf("company name = %q; the connector must not overwrite an existing company", co.Properties["name"])
	}
	if n := len(srv.Records(hubspottest.Companies)); n != 2 {
		t.Errorf("companies = %d, want the 2 seeded", n)
	}
}

func TestFreeMailAndMissingContact(t *testing.T) {
	srv := hubspottest.NewServer(t)
	c := newConnector(t, config(srv))
	rec := crmtest.Message("freemail")
	rec.Enrichment.Contact = &events.Contact{Email: "Someone@Gmail.com", Name: "Someone"}
	rec.Enrichment.Company = &events.Company{Domain: "gmail.com", FreeMail: true}
	res := mustUpsert(t, c, rec)
	if _, ok := res.ObjectIDs[hubspot.ObjectCompany]; ok || len(srv.Records(hubspottest.Companies)) != 0 {
		t.Errorf("a free-mail domain became a company: %v", res.ObjectIDs)
	}
	if ct, _ := srv.Record(hubspottest.Contacts, res.ObjectIDs[hubspot.ObjectContact]); ct.Properties["email"] != "someone@gmail.com" {
		t.Errorf("contact email = %q, want it lower-cased", ct.Properties["email"])
	}

	anon := crmtest.Message("anonymous")
	anon.Enrichment.Contact, anon.Enrichment.Company = nil, nil
	res = mustUpsert(t, c, anon)
	email, _ := srv.Record(hubspottest.Emails, res.ObjectIDs[hubspot.ObjectEmail])
	if len(res.ObjectIDs) != 1 || len(email.Associations) != 0 {
		t.Errorf("ids %v, associations %v; want only an unassociated email", res.ObjectIDs, email.Associations)
	}
}

func TestExternalIDProperty(t *testing.T) {
	for _, tt := range []struct {
		name     string
		create   bool
		define   bool // an admin defined the property beforehand
		unique   bool
		wantErr  failure.Class
		wantGets int
	}{
		{"created on first use", true, false, false, "", 1},
		{"already defined", true, true, true, "", 1},
		{"prerequisite met, no schema calls", false, true, true, "", 0},
		{"prerequisite missing is a permanent error", false, false, false, failure.CRM4xx, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := hubspottest.NewServer(t)
			if tt.define {
				srv.DefineProperty(hubspottest.Emails, hubspottest.ExternalIDProperty, tt.unique)
			}
			cfg := config(srv)
			cfg.CreateProperty = tt.create
			c := newConnector(t, cfg)
			var err error
			for i := range 3 {
				if _, err = c.Upsert(t.Context(), crmtest.Message(fmt.Sprint("prop", i))); err != nil {
					break
				}
			}
			if got := failure.Classify(err); got != tt.wantErr {
				t.Fatalf("class = %q (err %v), want %q", got, err, tt.wantErr)
			}
			if tt.wantErr != "" {
				if !strings.Contains(err.Error(), "mailpipe_external_id' does not exist") {
					t.Errorf("err %v does not name HubSpot's reason", err)
				}
				return
			}
			if n := srv.Calls("GET /crm/v3/properties/emails/{name}"); n != tt.wantGets {
				t.Errorf("property reads = %d, want %d (once per connector)", n, tt.wantGets)
			}
			if !tt.define {
				if n := srv.Calls("POST /crm/v3/properties/emails"); n != 1 {
					t.Errorf("property creations = %d, want 1", n)
				}
			}
		})
	}
}

func TestPropertyWithoutUniqueValues(t *testing.T) {
	// given an account that refuses a unique-value email property
	srv := hubspottest.NewServer(t, hubspottest.WithoutUniqueEmailProperties())
	c := newConnector(t, config(srv))

	// when
	msg := crmtest.Message("not unique")
	mustUpsert(t, c, msg)
	res := mustUpsert(t, newConnector(t, config(srv)), crmtest.Message("not unique"))

	// then the property exists without the flag, and replays still find the email by search
	if n := srv.Calls("POST /crm/v3/properties/emails"); n != 2 {
		t.Errorf("property creations = %d, want 2 (refused with unique values, then without)", n)
	}
	if res.Outcome != crm.OutcomeUnchanged || srv.Objects(msg.Message.ExternalID) != 1 {
		t.Errorf("replay outcome %q, emails %d; want deduped and 1", res.Outcome, srv.Objects(msg.Message.ExternalID))
	}
}

func TestPropertyCreatedWithUniqueValues(t *testing.T) {
	srv := hubspottest.NewServer(t)
	mustUpsert(t, newConnector(t, config(srv)), crmtest.Message("unique"))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL()+"/crm/v3/properties/emails/"+hubspottest.ExternalIDProperty, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+srv.Token())
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var def struct {
		HasUniqueValue bool   `json:"hasUniqueValue"`
		GroupName      string `json:"groupName"`
		Type           string `json:"type"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&def); err != nil {
		t.Fatal(err)
	}
	if !def.HasUniqueValue || def.GroupName != hubspot.PropertyGroup || def.Type != "string" {
		t.Errorf("property definition %+v, want a unique string in group %s", def, hubspot.PropertyGroup)
	}
}

func TestTokenRefresh(t *testing.T) {
	t.Run("401 on an expired token refreshes and resends once", func(t *testing.T) {
		srv := hubspottest.NewServer(t)
		c := newConnector(t, oauthConfig(srv))
		mustUpsert(t, c, crmtest.Message("t1"))
		srv.ExpireTokens()

		res := mustUpsert(t, c, crmtest.Message("t2"))
		if res.Attempts != 2 {
			t.Errorf("Attempts = %d, want 2 (the request resent after the refresh)", res.Attempts)
		}
		if n := srv.Calls("POST /oauth/v1/token"); n != 2 {
			t.Errorf("token requests = %d, want 2", n)
		}
	})

	t.Run("a token about to expire is replaced before use", func(t *testing.T) {
		now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		srv := hubspottest.NewServer(t, hubspottest.WithClock(clock))
		c := newConnector(t, oauthConfig(srv), hubspot.WithClock(clock))
		mustUpsert(t, c, crmtest.Message("p1"))
		mu.Lock()
		now = now.Add(hubspottest.DefaultTokenTTL - 30*time.Second)
		mu.Unlock()

		res := mustUpsert(t, c, crmtest.Message("p2"))
		if res.Attempts != 1 || srv.Calls("POST /oauth/v1/token") != 2 {
			t.Errorf("attempts %d, token requests %d; want 1 and 2 (refreshed ahead, no 401)", res.Attempts, srv.Calls("POST /oauth/v1/token"))
		}
	})

	t.Run("concurrent upserts share one refresh", func(t *testing.T) {
		srv := hubspottest.NewServer(t)
		c := newConnector(t, oauthConfig(srv))
		mustUpsert(t, c, crmtest.Message("c0"))
		srv.ExpireTokens()
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() { mustUpsert(t, c, crmtest.Message(fmt.Sprint("c", i+1))) })
		}
		wg.Wait()
		if n := srv.Calls("POST /oauth/v1/token"); n != 2 {
			t.Errorf("token requests = %d, want 2 (one at start, one shared refresh)", n)
		}
	})

	for _, tt := range []struct {
		name     string
		mutate   func(*hubspot.Config)
		fault    int
		want     failure.Class
		wantText string
	}{
		{"revoked refresh token is auth", func(c *hubspot.Config) { c.RefreshToken = "revoked" }, 0, failure.Auth, "BAD_REFRESH_TOKEN"},
		{"wrong client secret is auth", func(c *hubspot.Config) { c.ClientSecret = "wrong" }, 0, failure.Auth, "BAD_CLIENT_SECRET"},
		{"token endpoint 503 is crm_5xx", nil, http.StatusServiceUnavailable, failure.CRM5xx, "503"},
		{"token endpoint 429 is rate_limited", nil, http.StatusTooManyRequests, failure.RateLimited, "429"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := hubspottest.NewServer(t)
			cfg := oauthConfig(srv)
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			if tt.fault != 0 {
				srv.FailTokenNext(1, tt.fault, "")
			}
			msg := crmtest.Message("token fault")
			_, err := newConnector(t, cfg).Upsert(t.Context(), msg)
			if got := failure.Classify(err); got != tt.want || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("class %q, err %v; want %q mentioning %q", got, err, tt.want, tt.wantText)
			}
			if srv.TotalCalls() != srv.Calls("POST /oauth/v1/token") {
				t.Errorf("API requests were made without a token")
			}
		})
	}

	t.Run("401 with a private-app token is final", func(t *testing.T) {
		srv := hubspottest.NewServer(t)
		cfg := config(srv)
		cfg.Token = "pat-na1-wrong"
		_, err := newConnector(t, cfg).Upsert(t.Context(), crmtest.Message("pat"))
		if failure.Classify(err) != failure.Auth || !strings.Contains(err.Error(), "INVALID_AUTHENTICATION") {
			t.Fatalf("err %v, want auth with HubSpot's category", err)
		}
		if srv.TotalCalls() != 1 {
			t.Errorf("requests = %d, want 1 (nothing to refresh)", srv.TotalCalls())
		}
	})
}

func TestBatchUpsertCoalescesConcurrentContacts(t *testing.T) {
	srv := hubspottest.NewServer(t)
	srv.DefineProperty(hubspottest.Emails, hubspottest.ExternalIDProperty, true)
	cfg := config(srv)
	cfg.CreateProperty = false
	c := newConnector(t, cfg)
	const n = 250
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			rec := crmtest.Message(fmt.Sprint("batch", i))
			// Every fifth message repeats the previous sender, so batches carry duplicate
			// addresses, in other letter cases.
			sender := i
			if i%5 == 4 {
				sender = i - 1
			}
			rec.Enrichment.Contact.Email = fmt.Sprintf("Sender%d@Example.com", sender)
			<-start
			mustUpsert(t, c, rec)
		})
	}
	close(start)
	wg.Wait()
	batches := srv.Calls("POST /crm/v3/objects/contacts/batch/upsert")
	if srv.MaxBatch() > hubspottest.MaxBatchInputs {
		t.Errorf("largest batch = %d, over HubSpot's limit", srv.MaxBatch())
	}
	if batches >= n {
		t.Errorf("batch calls = %d for %d concurrent upserts, want fewer (coalesced)", batches, n)
	}
	t.Logf("%d upserts: %d contact batch calls, largest batch %d", n, batches, srv.MaxBatch())
	if got := len(srv.Records(hubspottest.Emails)); got != n {
		t.Errorf("emails = %d, want %d", got, n)
	}
}

func TestBatchSizeConfigured(t *testing.T) {
	srv := hubspottest.NewServer(t)
	cfg := config(srv)
	cfg.BatchSize = 3
	c := newConnector(t, cfg)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			rec := crmtest.Message(fmt.Sprint("small", i))
			rec.Enrichment.Contact.Email = fmt.Sprintf("p%d@example.com", i)
			mustUpsert(t, c, rec)
		})
	}
	wg.Wait()
	if srv.MaxBatch() > 3 {
		t.Errorf("largest batch = %d, want at most the configured 3", srv.MaxBatch())
	}
}

func TestFakeEnforcement(t *testing.T) {
	for _, tt := range []struct {
		name      string
		opts      []hubspottest.Option
		mutate    func(*events.Enriched)
		upserts   int
		want      failure.Class
		wantAfter bool
		wantText  string
	}{
		{
			name: "rolling request limit is 429 with Retry-After", opts: []hubspottest.Option{hubspottest.WithRateLimit(8, 10*time.Second)},
			upserts: 5, want: failure.RateLimited, wantAfter: true, wantText: "TEN_SECONDLY_ROLLING",
		},
		{
			name: "search limit per second", opts: []hubspottest.Option{hubspottest.WithSearchRateLimit(1)},
			upserts: 3, want: failure.RateLimited, wantAfter: true, wantText: "SECONDLY",
		},
		{
			name: "invalid contact email is crm_4xx", mutate: func(r *events.Enriched) { r.Enrichment.Contact.Email = "not-an-address" },
			upserts: 1, want: failure.CRM4xx, wantText: "INVALID_EMAIL",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := hubspottest.NewServer(t, tt.opts...)
			c := newConnector(t, config(srv))
			var err error
			for i := range tt.upserts {
				rec := crmtest.Message(fmt.Sprint("enforce", i))
				if tt.mutate != nil {
					tt.mutate(rec)
				}
				if _, err = c.Upsert(t.Context(), rec); err != nil {
					break
				}
			}
			if got := failure.Classify(err); got != tt.want {
				t.Fatalf("class = %q (err %v), want %q", got, err, tt.want)
			}
			if d, ok := failure.RetryAfter(err); ok != tt.wantAfter || (ok && d <= 0) {
				t.Errorf("RetryAfter = %v, %v; want present=%v", d, ok, tt.wantAfter)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err %v does not carry %q from HubSpot's body", err, tt.wantText)
			}
		})
	}
}

func TestMissingExternalID(t *testing.T) {
	srv := hubspottest.NewServer(t)
	msg := crmtest.Message("noid")
	msg.Message.ExternalID = ""
	_, err := newConnector(t, config(srv)).Upsert(t.Context(), msg)
	if failure.Classify(err) != failure.Schema || srv.TotalCalls() != 0 {
		t.Fatalf("err = %v, requests = %d; want a schema failure before any request", err, srv.TotalCalls())
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  hubspot.Config
		want []string
	}{
		{"private-app token", hubspot.Config{Token: "pat"}, nil},
		{"oauth", hubspot.Config{ClientID: "id", ClientSecret: "s", RefreshToken: "r"}, nil},
		{"no credentials", hubspot.Config{}, []string{"credentials: set the private-app token"}},
		{"both credentials", hubspot.Config{Token: "pat", ClientID: "id"}, []string{"conflict"}},
		{"partial oauth", hubspot.Config{ClientID: "id", RefreshToken: "r"}, []string{"OAuth needs the client id, the client secret and the refresh token"}},
		{"relative base url", hubspot.Config{Token: "pat", BaseURL: "/api"}, []string{"base url must be"}},
		{"bad property name", hubspot.Config{Token: "pat", ExternalIDProperty: "Mailpipe-ID"}, []string{"external id property"}},
		{"batch too large", hubspot.Config{Token: "pat", BatchSize: 101}, []string{"batch size"}},
		{"negatives", hubspot.Config{Token: "pat", Timeout: -1, IDCacheTTL: -1}, []string{"timeout must not be negative", "id cache ttl"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, want it to contain %q", err, w)
				}
			}
			if _, nerr := hubspot.New(tt.cfg, discard()); nerr == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
	if _, err := hubspot.New(hubspot.Config{Token: "pat"}, nil); err == nil {
		t.Error("New accepted a nil logger")
	}
	c := newConnector(t, hubspot.Config{Token: "pat"})
	if c.Name() != hubspot.DefaultName {
		t.Errorf("Name = %q, want %q", c.Name(), hubspot.DefaultName)
	}
}
