package salesforce_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest/salesforcefake"
	"github.com/mailpipe/mailpipe/pkg/crm/salesforce"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// key is an RSA key and the PEM file holding it.
type key struct {
	priv *rsa.PrivateKey
	file string
}

// keys are made once by TestMain: 2048-bit generation takes up to a second under -race, and
// the conformance suite starts a server per subtest. keys[1] is "another key".
var keys [2]key

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "salesforce-test-")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	for i := range keys {
		if keys[i], err = writeKey(filepath.Join(dir, "key"+strconv.Itoa(i)+".pem")); err != nil {
			panic(err)
		}
	}
	m.Run()
}

func writeKey(file string) (key, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return key{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return key{}, err
	}
	return key{priv: priv, file: file}, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func newFake(t testing.TB, k key, opts ...salesforcefake.Option) *salesforcefake.Server {
	t.Helper()
	return salesforcefake.New(t, append([]salesforcefake.Option{
		salesforcefake.WithJWTBearer(salesforcefake.DefaultClientID, salesforcefake.DefaultUsername, &k.priv.PublicKey),
	}, opts...)...)
}

// jwtConfig is the JWT bearer config for srv.
func jwtConfig(srv *salesforcefake.Server, k key) salesforce.Config {
	return salesforce.Config{
		LoginURL: srv.LoginURL(), ClientID: srv.ClientID(), Username: srv.Username(),
		PrivateKeyFile: k.file, Timeout: 5 * time.Second,
	}
}

func newConnector(t testing.TB, cfg salesforce.Config, opts ...salesforce.Option) *salesforce.Connector {
	t.Helper()
	c, err := salesforce.New(cfg, discard(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConformanceJWTBearer(t *testing.T) {
	k := keys[0]
	crmtest.Run(t, func(t *testing.T) crmtest.Target {
		srv := newFake(t, k)
		return srv.Target(newConnector(t, jwtConfig(srv, k)))
	})
}

func TestConformanceRefreshToken(t *testing.T) {
	k := keys[0]
	crmtest.Run(t, func(t *testing.T) crmtest.Target {
		srv := newFake(t, k, salesforcefake.WithRefreshToken("consumer-secret", "5Aep-refresh-token"))
		return srv.Target(newConnector(t, salesforce.Config{
			LoginURL: srv.LoginURL(), ClientID: srv.ClientID(),
			ClientSecret: "consumer-secret", RefreshToken: "5Aep-refresh-token",
		}))
	})
}

func TestWritesAccountContactTaskAndFile(t *testing.T) {
	k := keys[0]
	srv := newFake(t, k)
	c := newConnector(t, jwtConfig(srv, k))
	msg := crmtest.Message("full")
	msg.Enrichment.Owner = srv.UserID()

	res, err := c.Upsert(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	// GET + PATCH for the Account; GET by key, GET by Email, PATCH for the Contact; PATCH for
	// the Task; GET + POST for the file.
	if res.Outcome != crm.OutcomeCreated || res.Attempts != 8 {
		t.Errorf("result = %+v, want created after 8 requests", res)
	}
	one := func(sobject string) salesforcefake.Record {
		t.Helper()
		recs := srv.Records(sobject)
		if len(recs) != 1 {
			t.Fatalf("%d %s records, want 1", len(recs), sobject)
		}
		return recs[0]
	}
	acc, con, task, file := one("Account"), one("Contact"), one("Task"), one("ContentVersion")
	wantIDs := map[string]string{"account": acc.ID, "contact": con.ID, "task": task.ID, "content_version.1": file.ID}
	if len(res.ObjectIDs) != len(wantIDs) {
		t.Errorf("ObjectIDs = %v, want %v", res.ObjectIDs, wantIDs)
	}
	for k, v := range wantIDs {
		if res.ObjectIDs[k] != v {
			t.Errorf("ObjectIDs[%s] = %q, want %q", k, res.ObjectIDs[k], v)
		}
	}
	for _, tt := range []struct {
		rec   salesforcefake.Record
		field string
		want  any
	}{
		{acc, "Name", "Example Inc"},
		{acc, "Website", "example.com"},
		{acc, salesforcefake.AccountDomainField, "example.com"},
		{con, "FirstName", "Ann"},
		{con, "LastName", "Example"},
		{con, "Email", "a@example.com"},
		{con, "AccountId", acc.ID},
		{con, salesforcefake.ContactEmailField, "a@example.com"},
		{task, "Subject", "Email: Re: Grüße"},
		{task, "Status", "Completed"},
		{task, "Priority", "Normal"},
		{task, "Type", "Email"},
		{task, "ActivityDate", "2026-11-23"},
		{task, "WhoId", con.ID},
		{task, "WhatId", acc.ID},
		{task, "OwnerId", srv.UserID()},
		{task, "Description", "thanks\n\n--\nmailpipe message " + msg.Message.ID + ", kind human, lead score 12, queue sales"},
		{task, salesforcefake.ExternalIDField, msg.Message.ExternalID},
		{file, "Title", "a.pdf"},
		{file, "ContentUrl", "file:///var/lib/mailpipe/blobs/att/1"},
		{file, "Description", "application/pdf, 42 bytes, sha256 ab"},
		{file, "FirstPublishLocationId", task.ID},
		{file, salesforcefake.ExternalIDField, msg.Message.ExternalID + "-1"},
	} {
		if got := tt.rec.Fields[tt.field]; got != tt.want {
			t.Errorf("%s.%s = %#v, want %#v", tt.rec.Type, tt.field, got, tt.want)
		}
	}
}

func TestIdempotency(t *testing.T) {
	k := keys[0]
	srv := newFake(t, k)
	c := newConnector(t, jwtConfig(srv, k))
	msg := crmtest.Message("twice")

	first, err := c.Upsert(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	// A redelivery of the same message, after someone renamed the Contact in Salesforce.
	con := srv.Records("Contact")[0]
	if _, err := srv.Seed("Task", map[string]any{"Subject": "unrelated"}); err != nil {
		t.Fatal(err)
	}
	second, err := c.Upsert(t.Context(), crmtest.Message("twice"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Outcome != crm.OutcomeCreated || second.Outcome != crm.OutcomeUpdated {
		t.Errorf("outcomes = %s, %s; want created, updated", first.Outcome, second.Outcome)
	}
	// GET Account, GET Contact, PATCH Task, GET file.
	if second.Attempts != 4 {
		t.Errorf("second Attempts = %d, want 4", second.Attempts)
	}
	for k, v := range first.ObjectIDs {
		if second.ObjectIDs[k] != v {
			t.Errorf("ObjectIDs[%s] = %s then %s", k, v, second.ObjectIDs[k])
		}
	}
	for sobject, want := range map[string]int{"Account": 1, "Contact": 1, "Task": 2, "ContentVersion": 1} {
		if n := srv.Count(sobject); n != want {
			t.Errorf("Count(%s) = %d, want %d", sobject, n, want)
		}
	}
	if n := srv.Objects(msg.Message.ExternalID); n != 1 {
		t.Errorf("Objects = %d, want 1", n)
	}
	if after, _ := srv.Record(con.ID); after.Fields["LastName"] != con.Fields["LastName"] {
		t.Errorf("the Contact changed: %v -> %v", con.Fields, after.Fields)
	}
}

func TestExistingContactIsLeftAlone(t *testing.T) {
	k := keys[0]
	srv := newFake(t, k)
	id, err := srv.Seed("Contact", map[string]any{"LastName": "Edited-By-Sales", salesforcefake.ContactEmailField: "a@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	c := newConnector(t, jwtConfig(srv, k))
	res, err := c.Upsert(t.Context(), crmtest.Message("existing"))
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := srv.Record(id)
	if res.ObjectIDs["contact"] != id || rec.Fields["LastName"] != "Edited-By-Sales" || rec.Fields["AccountId"] != nil {
		t.Errorf("contact %s = %v, ObjectIDs %v; want it linked to the Task and unchanged", id, rec.Fields, res.ObjectIDs)
	}
	if task := srv.Records("Task")[0]; task.Fields["WhoId"] != id {
		t.Errorf("Task.WhoId = %v, want %s", task.Fields["WhoId"], id)
	}
}

func TestExistingContactIsAdopted(t *testing.T) {
	k := keys[0]
	for _, tt := range []struct {
		name     string
		seed     []map[string]any
		adopted  bool
		contacts int
	}{
		{
			name:    "one Contact with the address and no key is adopted",
			seed:    []map[string]any{{"LastName": "Sales-Edited", "Email": "A@Example.com"}},
			adopted: true, contacts: 1,
		},
		{
			name:     "two Contacts with the address: neither is adopted",
			seed:     []map[string]any{{"LastName": "One", "Email": "a@example.com"}, {"LastName": "Two", "Email": "a@example.com"}},
			contacts: 3,
		},
		{
			name:     "a Contact keyed to another address is not re-keyed",
			seed:     []map[string]any{{"LastName": "Moved", "Email": "a@example.com", salesforcefake.ContactEmailField: "ann@old.example"}},
			contacts: 2,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFake(t, k)
			var first string
			for i, f := range tt.seed {
				id, err := srv.Seed("Contact", f)
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					first = id
				}
			}
			c := newConnector(t, jwtConfig(srv, k))
			for range 2 {
				if _, err := c.Upsert(t.Context(), crmtest.Message("adopt")); err != nil {
					t.Fatal(err)
				}
			}
			if n := srv.Count("Contact"); n != tt.contacts {
				t.Errorf("Count(Contact) = %d, want %d", n, tt.contacts)
			}
			task := srv.Records("Task")[0]
			rec, _ := srv.Record(first)
			if adopted := task.Fields["WhoId"] == first; adopted != tt.adopted {
				t.Errorf("Task.WhoId = %v, seeded Contact %s; adopted = %v, want %v", task.Fields["WhoId"], first, adopted, tt.adopted)
			}
			if tt.adopted && (rec.Fields[salesforcefake.ContactEmailField] != "a@example.com" || rec.Fields["LastName"] != "Sales-Edited") {
				t.Errorf("adopted Contact = %v, want the key set and nothing else changed", rec.Fields)
			}
		})
	}
}

func TestSessionRenewal(t *testing.T) {
	k := keys[0]
	srv := newFake(t, k)
	c := newConnector(t, jwtConfig(srv, k))
	if _, err := c.Upsert(t.Context(), crmtest.Message("a")); err != nil {
		t.Fatal(err)
	}

	// given every session ended (timeout, revoked token)
	srv.ExpireSessions()
	// when the next upsert runs
	res, err := c.Upsert(t.Context(), crmtest.Message("b"))
	// then it renewed once and sent the rejected request again
	if err != nil {
		t.Fatal(err)
	}
	// Account and Contact exist (GET each), the Task and the file are new (PATCH, GET + POST),
	// and the first GET went twice.
	if srv.Grants() != 2 || res.Attempts != 6 {
		t.Errorf("grants = %d, attempts = %d; want 2 grants and 5 + 1 resent requests", srv.Grants(), res.Attempts)
	}

	// given the session ended again, when 8 upserts run at once, then they share one renewal
	srv.ExpireSessions()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := c.Upsert(t.Context(), crmtest.Message("concurrent"+string(rune('a'+i)))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if srv.Grants() != 3 {
		t.Errorf("grants = %d after a concurrent renewal, want 3", srv.Grants())
	}
}

func TestSecond401IsAuth(t *testing.T) {
	k := keys[0]
	srv := newFake(t, k)
	c := newConnector(t, jwtConfig(srv, k))
	srv.FailNext(2, http.StatusUnauthorized, "")
	_, err := c.Upsert(t.Context(), crmtest.Message("x"))
	if failure.Classify(err) != failure.Auth || !strings.Contains(err.Error(), "INVALID_SESSION_ID") {
		t.Fatalf("err = %v, want auth with the error code", err)
	}
	if srv.Grants() != 2 {
		t.Errorf("grants = %d, want 2 (first token, one renewal)", srv.Grants())
	}
}

func TestTokenErrors(t *testing.T) {
	k, other := keys[0], keys[1]
	for _, tt := range []struct {
		name   string
		cfg    func(*salesforcefake.Server) salesforce.Config
		fault  func(*salesforcefake.Server)
		want   failure.Class
		inText string
	}{
		{
			name: "assertion signed with another key",
			cfg:  func(s *salesforcefake.Server) salesforce.Config { return jwtConfig(s, other) },
			want: failure.Auth, inText: "invalid assertion",
		},
		{
			name: "unknown user",
			cfg: func(s *salesforcefake.Server) salesforce.Config {
				c := jwtConfig(s, k)
				c.Username = "someone@else"
				return c
			},
			want: failure.Auth, inText: "user hasn't approved this consumer",
		},
		{
			name: "wrong audience",
			cfg: func(s *salesforcefake.Server) salesforce.Config {
				c := jwtConfig(s, k)
				c.Audience = "https://test.salesforce.com"
				return c
			},
			want: failure.Auth, inText: "audience is invalid",
		},
		{
			name: "revoked refresh token",
			cfg: func(s *salesforcefake.Server) salesforce.Config {
				return salesforce.Config{LoginURL: s.LoginURL(), ClientID: s.ClientID(), ClientSecret: s.ClientSecret(), RefreshToken: "revoked"}
			},
			want: failure.Auth, inText: "expired access/refresh token",
		},
		{
			name:  "token endpoint unavailable",
			cfg:   func(s *salesforcefake.Server) salesforce.Config { return jwtConfig(s, k) },
			fault: func(s *salesforcefake.Server) { s.FailTokenNext(1, 503, "unavailable") },
			want:  failure.CRM5xx,
		},
		{
			name:  "token endpoint throttles",
			cfg:   func(s *salesforcefake.Server) salesforce.Config { return jwtConfig(s, k) },
			fault: func(s *salesforcefake.Server) { s.FailTokenNext(1, 429, "rate_limited") },
			want:  failure.RateLimited,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFake(t, k)
			if tt.fault != nil {
				tt.fault(srv)
			}
			c := newConnector(t, tt.cfg(srv))
			_, err := c.Upsert(t.Context(), crmtest.Message("token"))
			if failure.Classify(err) != tt.want || !strings.Contains(err.Error(), tt.inText) {
				t.Fatalf("err = %v (class %s), want %s containing %q", err, failure.Classify(err), tt.want, tt.inText)
			}
			if srv.Requests() != 0 {
				t.Errorf("%d API requests without a token", srv.Requests())
			}
		})
	}
}

func TestSalesforceErrors(t *testing.T) {
	k := keys[0]
	for _, tt := range []struct {
		name    string
		opts    []salesforcefake.Option
		mutate  func(*salesforce.Config)
		setup   func(*testing.T, *salesforcefake.Server)
		want    failure.Class
		after   time.Duration
		inText  string
		objects int
	}{
		{
			name: "org request allocation used up",
			opts: []salesforcefake.Option{salesforcefake.WithRequestLimit(2)},
			want: failure.RateLimited, inText: "REQUEST_LIMIT_EXCEEDED",
		},
		{
			name: "403 REQUEST_LIMIT_EXCEEDED with Retry-After",
			setup: func(_ *testing.T, s *salesforcefake.Server) {
				s.Inject(1, salesforcefake.Fault{Status: 403, ErrorCode: "REQUEST_LIMIT_EXCEEDED", Message: "ConcurrentPerOrgLongTxn Limit exceeded.", RetryAfter: "30"})
			},
			want: failure.RateLimited, after: 30 * time.Second,
		},
		{
			name: "row lock contention",
			setup: func(_ *testing.T, s *salesforcefake.Server) {
				s.Inject(1, salesforcefake.Fault{Status: 400, ErrorCode: "UNABLE_TO_LOCK_ROW", Message: "unable to obtain exclusive access to this record"})
			},
			want: failure.CRM5xx, inText: "UNABLE_TO_LOCK_ROW",
		},
		{
			name:   "status outside the org's picklist",
			mutate: func(c *salesforce.Config) { c.TaskStatus = "Done" },
			want:   failure.CRM4xx, inText: "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
		},
		{
			name:   "external id field missing in the org",
			mutate: func(c *salesforce.Config) { c.TaskIDField = "Missing__c" },
			want:   failure.CRM4xx, inText: "Missing__c",
		},
		{
			name:   "contacts keyed by a non-unique Email that matches two",
			mutate: func(c *salesforce.Config) { c.ContactIDField = "Email" },
			setup: func(t *testing.T, s *salesforcefake.Server) {
				for range 2 {
					if _, err := s.Seed("Contact", map[string]any{"LastName": "Twin", "Email": "a@example.com"}); err != nil {
						t.Fatal(err)
					}
				}
			},
			want: failure.CRM4xx, inText: "HTTP 300",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFake(t, k, tt.opts...)
			if tt.setup != nil {
				tt.setup(t, srv)
			}
			cfg := jwtConfig(srv, k)
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			msg := crmtest.Message("errors")
			_, err := newConnector(t, cfg).Upsert(t.Context(), msg)
			if failure.Classify(err) != tt.want || !strings.Contains(err.Error(), tt.inText) {
				t.Fatalf("err = %v (class %s), want %s containing %q", err, failure.Classify(err), tt.want, tt.inText)
			}
			if d, _ := failure.RetryAfter(err); d != tt.after {
				t.Errorf("RetryAfter = %v, want %v", d, tt.after)
			}
			if n := srv.Objects(msg.Message.ExternalID); n != tt.objects {
				t.Errorf("Objects = %d, want %d", n, tt.objects)
			}
		})
	}
}

func TestRecoveryWithoutDuplicates(t *testing.T) {
	k := keys[0]
	dup := salesforcefake.Fault{Status: 400, ErrorCode: "DUPLICATE_VALUE", Message: "duplicate value found: Mailpipe_External_Id__c duplicates value on record with id: 00T"}
	// Requests of a first delivery: 1 GET Account, 2 PATCH Account, 3 GET Contact by key,
	// 4 GET Contact by Email, 5 PATCH Contact, 6 PATCH Task, 7 GET file, 8 POST file.
	for _, tt := range []struct {
		name      string
		at        int
		fault     salesforcefake.Fault
		wantClass failure.Class // "" when the connector recovers within the call
	}{
		{"account committed, answer lost", 2, salesforcefake.Fault{Status: 502, AfterCommit: true}, failure.CRM5xx},
		{"contact committed, answer lost", 5, salesforcefake.Fault{Status: 500, AfterCommit: true}, failure.CRM5xx},
		{"task committed, answer lost", 6, salesforcefake.Fault{Status: 502, AfterCommit: true}, failure.CRM5xx},
		{"file committed, answer lost", 8, salesforcefake.Fault{Status: 504, AfterCommit: true}, failure.CRM5xx},
		{"task insert race inside Salesforce", 6, dup, ""},
		{"file inserted by a concurrent delivery", 8, salesforcefake.Fault{Status: 400, ErrorCode: "DUPLICATE_VALUE", AfterCommit: true}, ""},
		{"session expired midway", 6, salesforcefake.Fault{Status: 401}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFake(t, k)
			c := newConnector(t, jwtConfig(srv, k))
			msg := crmtest.Message(tt.name)
			srv.InjectAt(tt.at, tt.fault)

			_, err := c.Upsert(t.Context(), msg)
			if got := failure.Classify(err); got != tt.wantClass {
				t.Fatalf("first delivery: class %q (err %v), want %q", got, err, tt.wantClass)
			}
			if err != nil {
				if _, err := c.Upsert(t.Context(), msg); err != nil {
					t.Fatalf("redelivery: %v", err)
				}
			}
			for sobject, want := range map[string]int{"Account": 1, "Contact": 1, "Task": 1, "ContentVersion": 1} {
				if n := srv.Count(sobject); n != want {
					t.Errorf("Count(%s) = %d, want %d", sobject, n, want)
				}
			}
		})
	}
}

func TestMissingExternalID(t *testing.T) {
	k := keys[0]
	srv := newFake(t, k)
	msg := crmtest.Message("noid")
	msg.Message.ExternalID = ""
	_, err := newConnector(t, jwtConfig(srv, k)).Upsert(t.Context(), msg)
	if failure.Classify(err) != failure.Schema || srv.TokenRequests() != 0 {
		t.Fatalf("err = %v, token requests %d; want a schema failure before any request", err, srv.TokenRequests())
	}
}

func TestTransportErrorHidesAddress(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	login := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"access_token": "t", "instance_url": deadURL})
	}))
	t.Cleanup(login.Close)
	c := newConnector(t, salesforce.Config{LoginURL: login.URL, ClientID: "c", RefreshToken: "r"})
	_, err := c.Upsert(t.Context(), crmtest.Message("dead"))
	if err == nil {
		t.Fatal("Upsert to a closed instance succeeded")
	}
	if strings.Contains(err.Error(), "example.com") {
		t.Errorf("error %q names the record key", err)
	}
	if !failure.Retryable(err) {
		t.Errorf("connection refused should be retryable, class %q", failure.Classify(err))
	}
}

func TestConfigValidate(t *testing.T) {
	jwt := salesforce.Config{ClientID: "c", Username: "u@x", PrivateKeyFile: "/k.pem"}
	with := func(f func(*salesforce.Config)) salesforce.Config {
		c := jwt
		f(&c)
		return c
	}
	for _, tt := range []struct {
		name string
		cfg  salesforce.Config
		want []string
	}{
		{"jwt", jwt, nil},
		{"refresh token", salesforce.Config{ClientID: "c", RefreshToken: "r", ClientSecret: "s"}, nil},
		{"empty", salesforce.Config{}, []string{"client_id is required", "credentials are required"}},
		{"both flows", with(func(c *salesforce.Config) { c.RefreshToken = "r" }), []string{"not both"}},
		{"jwt without username", with(func(c *salesforce.Config) { c.Username = "" }), []string{"username is required"}},
		{"relative login url", with(func(c *salesforce.Config) { c.LoginURL = "login.salesforce.com" }), []string{"login_url must be an absolute"}},
		{"api version", with(func(c *salesforce.Config) { c.APIVersion = "v62" }), []string{`api_version "v62"`}},
		{"field name", with(func(c *salesforce.Config) { c.TaskIDField = "Mailpipe Id" }), []string{"task_id_field"}},
		{"negative timeout", with(func(c *salesforce.Config) { c.Timeout = -time.Second }), []string{"timeout must not be negative"}},
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
			if _, nerr := salesforce.New(tt.cfg, discard()); nerr == nil || !strings.Contains(nerr.Error(), tt.want[0]) {
				t.Errorf("New = %v, want the validation error", nerr)
			}
		})
	}
}

func TestNewReadsTheKey(t *testing.T) {
	dir := t.TempDir()
	notKey := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(notKey, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, file, want string }{
		{"missing file", filepath.Join(dir, "nope.pem"), "reading private_key_file"},
		{"certificate instead of key", notKey, `"CERTIFICATE" is not an unencrypted private key`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := salesforce.New(salesforce.Config{ClientID: "c", Username: "u", PrivateKeyFile: tt.file}, discard())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := salesforce.New(salesforce.Config{ClientID: "c", RefreshToken: "r"}, nil); err == nil {
		t.Error("New without a logger succeeded")
	}
	c, err := salesforce.New(salesforce.Config{ClientID: "c", RefreshToken: "r"}, discard())
	if err != nil || c.Name() != salesforce.DefaultName {
		t.Errorf("New = %v, %v; want the default name", c, err)
	}
}
