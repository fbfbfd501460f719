package pipedrive_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/crm/pipedrive"
	"github.com/mailpipe/mailpipe/pkg/crm/pipedrive/pipedrivetest"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// domainField is an organization custom field key as Pipedrive makes them (40 hex digits).
const domainField = "4f2d0a8c1e7b9d3f5a6c8e0b2d4f6a8c0e2b4d6f"

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// tokenConfig is a connector config for srv with its API token.
func tokenConfig(srv *pipedrivetest.Server) pipedrive.Config {
	return pipedrive.Config{
		BaseURL:        srv.URL(),
		APIToken:       srv.APIToken(),
		OrgDomainField: domainField,
		Timeout:        2 * time.Second,
	}
}

// oauthConfig is a connector config for srv with a fresh OAuth token pair.
func oauthConfig(srv *pipedrivetest.Server) pipedrive.Config {
	access, refresh := srv.IssueTokens()
	id, secret := srv.ClientCredentials()
	return pipedrive.Config{
		BaseURL:      srv.URL(),
		AccessToken:  access,
		RefreshToken: refresh,
		ClientID:     id,
		ClientSecret: secret,
		TokenURL:     srv.TokenURL(),
		Timeout:      2 * time.Second,
	}
}

func newConnector(t testing.TB, cfg pipedrive.Config, opts ...pipedrive.Option) *pipedrive.Connector {
	t.Helper()
	c, err := pipedrive.New(cfg, discard(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConformance(t *testing.T) {
	crmtest.Run(t, func(t *testing.T) crmtest.Target {
		srv := pipedrivetest.NewServer(t)
		return srv.Target(newConnector(t, tokenConfig(srv)))
	})
}

func TestMessageMapsToPersonOrganizationAndActivity(t *testing.T) {
	srv := pipedrivetest.NewServer(t)
	c := newConnector(t, tokenConfig(srv))
	msg := crmtest.Message("mapping")
	msg.Enrichment.Owner = "17"

	res, err := c.Upsert(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}

	persons, orgs, acts := srv.Persons(), srv.Organizations(), srv.Activities()
	if len(persons) != 1 || len(orgs) != 1 || len(acts) != 1 {
		t.Fatalf("persons, organizations, activities = %d, %d, %d; want one each", len(persons), len(orgs), len(acts))
	}
	p, o, a := persons[0], orgs[0], acts[0]
	if p.Name != "Ann Example" || len(p.Emails) != 1 || p.Emails[0] != "a@example.com" || p.OrgID != o.ID {
		t.Errorf("person = %+v, want Ann Example <a@example.com> in organization %d", p, o.ID)
	}
	if o.Name != "Example Inc" || o.Fields[domainField] != "example.com" {
		t.Errorf("organization = %+v, want Example Inc with the domain field", o)
	}
	// Received 2026-11-23 10:30 UTC; the sales queue's SLA is 60 minutes.
	want := pipedrivetest.Activity{
		ID: a.ID, Subject: "Re: Grüße", Type: "email", DueDate: "2026-11-23", DueTime: "11:30",
		PersonID: p.ID, OrgID: o.ID, UserID: 17, Note: a.Note,
	}
	if a != want {
		t.Errorf("activity = %+v\nwant %+v", a, want)
	}
	for _, s := range []string{"thanks", "Ann Example &lt;a@example.com&gt;", "Lead score: 12", "Queue: sales (SLA 60 min)", "a.pdf", pipedrive.NoteMarker(msg.Message.ExternalID)} {
		if !strings.Contains(a.Note, s) {
			t.Errorf("note lacks %q:\n%s", s, a.Note)
		}
	}
	if strings.Contains(a.Note, "file://") {
		t.Errorf("note carries a blob ref:\n%s", a.Note)
	}
	wantIDs := map[string]string{
		pipedrive.ObjectPerson:       fmt.Sprint(p.ID),
		pipedrive.ObjectOrganization: fmt.Sprint(o.ID),
		pipedrive.ObjectActivity:     fmt.Sprint(a.ID),
	}
	if res.Outcome != crm.OutcomeCreated || res.Attempts != 1 || fmt.Sprint(res.ObjectIDs) != fmt.Sprint(wantIDs) {
		t.Errorf("result = %+v, want created, 1 attempt, ids %v", res, wantIDs)
	}
}

func TestOrganizationRules(t *testing.T) {
	for _, tt := range []struct {
		name     string
		field    string
		company  *events.Company
		wantOrgs int
		wantName string
	}{
		{"free-mail domain is no organization", domainField, &events.Company{Domain: "gmail.com", FreeMail: true}, 0, ""},
		{"no company is no organization", domainField, nil, 0, ""},
		{"unnamed company is named after its domain", domainField, &events.Company{Domain: "Acme.io"}, 1, "acme.io"},
		{"without a domain field the name is the key", "", &events.Company{Domain: "acme.io", Name: "Acme"}, 1, "Acme"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pipedrivetest.NewServer(t)
			cfg := tokenConfig(srv)
			cfg.OrgDomainField = tt.field
			c := newConnector(t, cfg)
			for i := range 2 { // the second message must find the first one's organization
				msg := crmtest.Message(fmt.Sprint(tt.name, i))
				msg.Enrichment.Company = tt.company
				res, err := c.Upsert(t.Context(), msg)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := res.ObjectIDs[pipedrive.ObjectOrganization]; ok != (tt.wantOrgs > 0) {
					t.Errorf("ObjectIDs = %v, organization present = %v, want %v", res.ObjectIDs, ok, tt.wantOrgs > 0)
				}
			}
			orgs := srv.Organizations()
			if len(orgs) != tt.wantOrgs {
				t.Fatalf("organizations = %+v, want %d", orgs, tt.wantOrgs)
			}
			if tt.wantOrgs > 0 && orgs[0].Name != tt.wantName {
				t.Errorf("organization name = %q, want %q", orgs[0].Name, tt.wantName)
			}
			if acts := srv.Activities(); len(acts) != 2 || (tt.wantOrgs == 0 && acts[0].OrgID != 0) {
				t.Errorf("activities = %+v, want 2, linked to the organization only when there is one", acts)
			}
		})
	}
}

func TestReplayCreatesNothingNew(t *testing.T) {
	// given
	srv := pipedrivetest.NewServer(t)
	c := newConnector(t, tokenConfig(srv))
	msg := crmtest.Message("replay")

	// when
	first, err := c.Upsert(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	second, err := newConnector(t, tokenConfig(srv)).Upsert(t.Context(), crmtest.Message("replay"))
	if err != nil {
		t.Fatal(err)
	}

	// then: a fresh connector (a restarted crm-sink) finds all three objects again
	if first.Outcome != crm.OutcomeCreated || second.Outcome != crm.OutcomeUpdated {
		t.Errorf("outcomes = %s, %s; want created, updated", first.Outcome, second.Outcome)
	}
	if fmt.Sprint(first.ObjectIDs) != fmt.Sprint(second.ObjectIDs) {
		t.Errorf("object ids differ: %v then %v", first.ObjectIDs, second.ObjectIDs)
	}
	acts := srv.Activities()
	if len(srv.Persons()) != 1 || len(srv.Organizations()) != 1 || len(acts) != 1 {
		t.Fatalf("persons, organizations, activities = %d, %d, %d; want one each", len(srv.Persons()), len(srv.Organizations()), len(acts))
	}
	if acts[0].Updates != 1 {
		t.Errorf("activity updates = %d, want 1 (the replay rewrites it)", acts[0].Updates)
	}
	if n := srv.Calls("POST /v1/activities"); n != 1 {
		t.Errorf("POST /v1/activities calls = %d, want 1", n)
	}
}

func TestOneSenderManyMessages(t *testing.T) {
	for _, tt := range []struct {
		name string
		lag  time.Duration
	}{
		{"search index up to date", 0},
		// Pipedrive's search trails writes: the second message does not find the person the
		// first created, and the connector's memory of recent creations bridges the gap.
		{"search index lagging", time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pipedrivetest.NewServer(t, pipedrivetest.WithSearchLag(tt.lag))
			c := newConnector(t, tokenConfig(srv))
			const n = 8
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					if _, err := c.Upsert(t.Context(), crmtest.Message(fmt.Sprint("sender-", i))); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if p, o, a := len(srv.Persons()), len(srv.Organizations()), len(srv.Activities()); p != 1 || o != 1 || a != n {
				t.Errorf("persons, organizations, activities = %d, %d, %d; want 1, 1, %d", p, o, a, n)
			}
		})
	}
}

func TestReplayFindsActivityBeyondFirstPage(t *testing.T) {
	srv := pipedrivetest.NewServer(t)
	c := newConnector(t, tokenConfig(srv))
	pipedrive.SetActivityPageSize(c, 20)
	const n = 50 // three pages of person activities
	for i := range n {
		if _, err := c.Upsert(t.Context(), crmtest.Message(fmt.Sprint("page-", i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, seed := range []string{"page-0", "page-25", fmt.Sprint("page-", n-1)} {
		res, err := c.Upsert(t.Context(), crmtest.Message(seed))
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome != crm.OutcomeUpdated {
			t.Errorf("replay of %s: outcome %s, want updated", seed, res.Outcome)
		}
	}
	if got := len(srv.Activities()); got != n {
		t.Errorf("activities = %d, want %d", got, n)
	}
}

func TestTokenRefresh(t *testing.T) {
	t.Run("a refused access token is refreshed once and the request repeated", func(t *testing.T) {
		srv := pipedrivetest.NewServer(t)
		c := newConnector(t, oauthConfig(srv))
		if _, err := c.Upsert(t.Context(), crmtest.Message("before")); err != nil {
			t.Fatal(err)
		}
		for round := 1; round <= 2; round++ {
			// Each refresh rotates the refresh token: the second round only works with the
			// one the first round received.
			srv.ExpireAccessTokens()
			res, err := c.Upsert(t.Context(), crmtest.Message(fmt.Sprint("after-", round)))
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if res.Attempts != 2 {
				t.Errorf("round %d: Attempts = %d, want 2 (refused, refreshed, repeated)", round, res.Attempts)
			}
			if got := srv.Refreshes(); got != round {
				t.Errorf("refreshes = %d, want %d", got, round)
			}
		}
	})

	t.Run("a refresh token alone fetches the first access token", func(t *testing.T) {
		srv := pipedrivetest.NewServer(t)
		cfg := oauthConfig(srv)
		cfg.AccessToken = ""
		res, err := newConnector(t, cfg).Upsert(t.Context(), crmtest.Message("first"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Attempts != 1 || srv.Refreshes() != 1 || srv.Rejected() != 0 {
			t.Errorf("attempts %d, refreshes %d, rejected %d; want 1, 1, 0", res.Attempts, srv.Refreshes(), srv.Rejected())
		}
	})

	t.Run("an access token about to expire is refreshed before use", func(t *testing.T) {
		now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		srv := pipedrivetest.NewServer(t, pipedrivetest.WithClock(clock), pipedrivetest.WithTokenTTL(30*time.Minute))
		cfg := oauthConfig(srv)
		cfg.AccessToken = "" // the connector learns the expiry from its own refresh
		c := newConnector(t, cfg, pipedrive.WithClock(clock))
		if _, err := c.Upsert(t.Context(), crmtest.Message("one")); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		now = now.Add(29*time.Minute + 30*time.Second)
		mu.Unlock()
		if _, err := c.Upsert(t.Context(), crmtest.Message("two")); err != nil {
			t.Fatal(err)
		}
		if srv.Refreshes() != 2 || srv.Rejected() != 0 {
			t.Errorf("refreshes %d, rejected %d; want 2, 0 (no request with an expired token)", srv.Refreshes(), srv.Rejected())
		}
	})

	t.Run("concurrent requests share one refresh", func(t *testing.T) {
		srv := pipedrivetest.NewServer(t)
		c := newConnector(t, oauthConfig(srv))
		srv.ExpireAccessTokens()
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				if _, err := c.Upsert(t.Context(), crmtest.Message(fmt.Sprint("c-", i))); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if got := srv.Refreshes(); got != 1 {
			t.Errorf("refreshes = %d, want 1", got)
		}
	})

	for _, tt := range []struct {
		name   string
		mutate func(*pipedrive.Config)
		want   failure.Class
	}{
		{"a revoked refresh token is auth", func(c *pipedrive.Config) { c.RefreshToken = "rt-revoked" }, failure.Auth},
		{"wrong client credentials are auth", func(c *pipedrive.Config) { c.ClientSecret = "wrong" }, failure.Auth},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pipedrivetest.NewServer(t)
			cfg := oauthConfig(srv)
			tt.mutate(&cfg)
			srv.ExpireAccessTokens()
			_, err := newConnector(t, cfg).Upsert(t.Context(), crmtest.Message("refused"))
			if got := failure.Classify(err); got != tt.want {
				t.Fatalf("class = %q (err %v), want %q", got, err, tt.want)
			}
		})
	}

	t.Run("a failing token endpoint is retryable", func(t *testing.T) {
		tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "upstream down", http.StatusServiceUnavailable)
		}))
		t.Cleanup(tokenSrv.Close)
		srv := pipedrivetest.NewServer(t)
		cfg := oauthConfig(srv)
		cfg.TokenURL = tokenSrv.URL
		srv.ExpireAccessTokens()
		_, err := newConnector(t, cfg).Upsert(t.Context(), crmtest.Message("down"))
		if got := failure.Classify(err); got != failure.CRM5xx {
			t.Fatalf("class = %q (err %v), want crm_5xx", got, err)
		}
	})
}

func TestErrorClassification(t *testing.T) {
	for _, tt := range []struct {
		name      string
		opts      []pipedrivetest.Option
		mutate    func(*pipedrive.Config)
		msg       func(*events.Enriched)
		before    func(*pipedrivetest.Server)
		want      failure.Class
		wantAfter time.Duration
		wantText  string
	}{
		{
			name:   "a wrong API token is auth, without a refresh",
			mutate: func(c *pipedrive.Config) { c.APIToken = "wrong" },
			want:   failure.Auth, wantText: "unauthorized access",
		},
		{
			name:   "an unknown activity type is a validation error",
			mutate: func(c *pipedrive.Config) { c.ActivityType = "carrier_pigeon" },
			want:   failure.CRM4xx, wantText: "Activity type",
		},
		{
			name: "429 from the rate limiter carries its Retry-After",
			opts: []pipedrivetest.Option{pipedrivetest.WithRateLimit(2, time.Hour)},
			want: failure.RateLimited, wantAfter: time.Hour,
		},
		{
			name: "429 without Retry-After waits for x-ratelimit-reset",
			before: func(s *pipedrivetest.Server) {
				s.Inject(1, pipedrivetest.Fault{Status: 429, Header: http.Header{"X-Ratelimit-Reset": {"2"}, "X-Ratelimit-Remaining": {"0"}}})
			},
			want: failure.RateLimited, wantAfter: 2 * time.Second,
		},
		{
			name:   "a 5xx storm is crm_5xx",
			before: func(s *pipedrivetest.Server) { s.FailNext(5, http.StatusBadGateway, "") },
			want:   failure.CRM5xx,
		},
		{
			name: "a message without a sender is crm_4xx",
			msg: func(m *events.Enriched) {
				m.Enrichment.Contact = nil
				m.Message.From = nil
			},
			want: failure.CRM4xx, wantText: "no sender",
		},
		{
			name: "a message without an external id is schema",
			msg:  func(m *events.Enriched) { m.Message.ExternalID = "" },
			want: failure.Schema,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pipedrivetest.NewServer(t, tt.opts...)
			cfg := tokenConfig(srv)
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			if tt.before != nil {
				tt.before(srv)
			}
			msg := crmtest.Message("fault")
			if tt.msg != nil {
				tt.msg(msg)
			}
			_, err := newConnector(t, cfg).Upsert(t.Context(), msg)
			if got := failure.Classify(err); got != tt.want {
				t.Fatalf("class = %q (err %v), want %q", got, err, tt.want)
			}
			if d, _ := failure.RetryAfter(err); d != tt.wantAfter {
				t.Errorf("RetryAfter = %v, want %v", d, tt.wantAfter)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q lacks %q", err, tt.wantText)
			}
			if strings.Contains(err.Error(), srv.APIToken()) {
				t.Errorf("error %q leaks the API token", err)
			}
		})
	}
}

func TestTransportErrorHidesAPIToken(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	base := dead.URL
	dead.Close()
	c := newConnector(t, pipedrive.Config{BaseURL: base, APIToken: "s3cr3t-token"})
	_, err := c.Upsert(t.Context(), crmtest.Message("dead"))
	if err == nil {
		t.Fatal("Upsert against a closed server succeeded")
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %q leaks the API token", err)
	}
}

// blobs is an in-memory BlobGetter.
type blobs map[string][]byte

func (b blobs) Get(_ context.Context, ref string) (io.ReadCloser, error) {
	data, ok := b[ref]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", ref, fs.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func TestFilesUpload(t *testing.T) {
	ref := func(s string) *string { return &s }
	store := blobs{"file:///b/1": []byte("%PDF-1.7 quote"), "file:///b/2": bytes.Repeat([]byte("x"), 2048)}
	msg := func() *events.Enriched {
		m := crmtest.Message("files")
		m.Message.Attachments = []events.Attachment{
			{Filename: "quote.pdf", ContentType: "application/pdf", Size: 14, Sha256: "aa11", BlobRef: ref("file:///b/1")},
			{Filename: "logo.png", ContentType: "image/png", Size: 10, Inline: true, BlobRef: ref("file:///b/3")},
			{Filename: "big.bin", Size: 2048, Sha256: "bb22", BlobRef: ref("file:///b/2")},
			{Filename: "gone.txt", Size: 3, Sha256: "cc33", BlobRef: ref("file:///b/missing")},
			{Filename: "unstored.txt", Size: 3, Sha256: "dd44"},
		}
		return m
	}
	srv := pipedrivetest.NewServer(t)
	cfg := tokenConfig(srv)
	cfg.UploadFiles = true
	cfg.MaxFileSize = 1024
	c := newConnector(t, cfg, pipedrive.WithBlobs(store))

	first, err := c.Upsert(t.Context(), msg())
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Upsert(t.Context(), msg())
	if err != nil {
		t.Fatal(err)
	}

	files := srv.Files()
	if len(files) != 1 {
		t.Fatalf("files = %+v, want only quote.pdf (inline, too large, missing and unstored ones are not uploaded)", files)
	}
	f, act := files[0], srv.Activities()[0]
	if f.Name != "quote.pdf" || f.Size != 14 || f.ActivityID != act.ID || f.PersonID != act.PersonID || f.OrgID != act.OrgID {
		t.Errorf("file = %+v, want quote.pdf linked to activity %+v", f, act)
	}
	if first.ObjectIDs[pipedrive.ObjectFiles] != fmt.Sprint(f.ID) || second.ObjectIDs[pipedrive.ObjectFiles] != fmt.Sprint(f.ID) {
		t.Errorf("file ids = %q then %q, want %d both times", first.ObjectIDs[pipedrive.ObjectFiles], second.ObjectIDs[pipedrive.ObjectFiles], f.ID)
	}
	for _, s := range []string{"quote.pdf (application/pdf, 14 bytes, in Files)", "big.bin (2.0 KiB)", "unstored.txt"} {
		if !strings.Contains(act.Note, s) {
			t.Errorf("note lacks %q:\n%s", s, act.Note)
		}
	}
	if strings.Contains(act.Note, "logo.png") {
		t.Errorf("note lists the inline part:\n%s", act.Note)
	}
}

func TestFilesNeedTheBlobStore(t *testing.T) {
	_, err := pipedrive.New(pipedrive.Config{APIToken: "t", UploadFiles: true}, discard())
	if err == nil || !strings.Contains(err.Error(), "WithBlobs") {
		t.Fatalf("New = %v, want an error naming WithBlobs", err)
	}
}

func TestAttachmentLinks(t *testing.T) {
	srv := pipedrivetest.NewServer(t)
	cfg := tokenConfig(srv)
	cfg.AttachmentURL = "https://files.example.com/att/{sha256}/{filename}"
	msg := crmtest.Message("links")
	msg.Message.Attachments[0].Filename = "Q3 offer.pdf"
	if _, err := newConnector(t, cfg).Upsert(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	want := `<a href="https://files.example.com/att/ab/Q3%20offer.pdf">Q3 offer.pdf</a>`
	if note := srv.Activities()[0].Note; !strings.Contains(note, want) {
		t.Errorf("note lacks %s:\n%s", want, note)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  pipedrive.Config
		want []string
	}{
		{"api token", pipedrive.Config{APIToken: "t"}, nil},
		{"oauth with refresh", pipedrive.Config{RefreshToken: "r", ClientID: "i", ClientSecret: "s"}, nil},
		{"oauth access token only", pipedrive.Config{AccessToken: "a"}, nil},
		{"no credentials", pipedrive.Config{}, []string{"api_token or an OAuth"}},
		{"both credentials", pipedrive.Config{APIToken: "t", AccessToken: "a"}, []string{"exclusive"}},
		{"refresh without client", pipedrive.Config{RefreshToken: "r"}, []string{"client_id and client_secret"}},
		{
			"bad urls",
			pipedrive.Config{APIToken: "t", BaseURL: "api.pipedrive.com", TokenURL: "ftp://x", AttachmentURL: "/att/{sha256}"},
			[]string{"base_url", "token_url", "attachment_url"},
		},
		{"negatives", pipedrive.Config{APIToken: "t", Timeout: -1, MaxFileSize: -1}, []string{"timeout", "max_file_size"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != (len(tt.want) > 0) {
				t.Fatalf("Validate = %v, want errors %v", err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v, lacks %q", err, w)
				}
			}
		})
	}
}

func TestNewRequiresLogger(t *testing.T) {
	if _, err := pipedrive.New(pipedrive.Config{APIToken: "t"}, nil); err == nil {
		t.Fatal("New without a logger succeeded")
	}
}

func TestNameDefaultsAndOverrides(t *testing.T) {
	srv := pipedrivetest.NewServer(t)
	if got := newConnector(t, tokenConfig(srv)).Name(); got != pipedrive.DefaultName {
		t.Errorf("Name = %q, want %q", got, pipedrive.DefaultName)
	}
	cfg := tokenConfig(srv)
	cfg.Name = "pipedrive-eu"
	c := newConnector(t, cfg)
	// Known ids are looked up under the target name.
	msg := crmtest.Message("known")
	if _, err := c.Upsert(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	p := srv.Persons()[0]
	msg2 := crmtest.Message("known-2")
	msg2.Enrichment.Contact.Email = "other@example.com"
	msg2.Enrichment.CRMIds = map[string]string{"pipedrive-eu.person": fmt.Sprint(p.ID)}
	if _, err := c.Upsert(t.Context(), msg2); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Persons()); n != 1 {
		t.Errorf("persons = %d, want 1: the known person id skips search and create", n)
	}
	if n := srv.Calls("GET /v1/persons/search"); n != 1 {
		t.Errorf("person searches = %d, want 1", n)
	}
}

func TestCancelledWaitIsNotAnError(t *testing.T) {
	srv := pipedrivetest.NewServer(t)
	c := newConnector(t, tokenConfig(srv))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.Upsert(ctx, crmtest.Message("cancel"))
	if !errors.Is(err, context.Canceled) || failure.Classify(err) != failure.Unknown {
		t.Fatalf("err = %v (class %q), want context.Canceled, unclassified", err, failure.Classify(err))
	}
}

// BenchmarkUpsert reports upserts per second against the contract server. Every iteration is a
// new message, from one of 1024 senders at 64 companies, so it measures the first-write path:
// two searches (one per object found), the activity listing, and the creates.
func BenchmarkUpsert(b *testing.B) {
	for _, tt := range []struct {
		name     string
		parallel bool
	}{{"sequential", false}, {"parallel", true}} {
		b.Run(tt.name, func(b *testing.B) {
			srv := pipedrivetest.NewServer(b)
			c := newConnector(b, tokenConfig(srv))
			var seq atomic.Int64
			upsert := func() error {
				i := seq.Add(1)
				m := crmtest.Message(fmt.Sprint("bench-", i))
				m.Enrichment.Contact.Email = fmt.Sprintf("lead%d@company%d.example", i%1024, i%64)
				m.Enrichment.Company.Domain = fmt.Sprintf("company%d.example", i%64)
				_, err := c.Upsert(context.Background(), m)
				return err
			}
			start := time.Now()
			if tt.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := upsert(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for b.Loop() {
					if err := upsert(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "upserts/s")
		})
	}
}
