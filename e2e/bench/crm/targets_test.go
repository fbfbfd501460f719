package crm

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest/salesforcefake"
	"github.com/mailpipe/mailpipe/pkg/crm/hubspot"
	"github.com/mailpipe/mailpipe/pkg/crm/hubspot/hubspottest"
	"github.com/mailpipe/mailpipe/pkg/crm/pipedrive"
	"github.com/mailpipe/mailpipe/pkg/crm/pipedrive/pipedrivetest"
	"github.com/mailpipe/mailpipe/pkg/crm/salesforce"
	"github.com/mailpipe/mailpipe/pkg/crm/webhook"
	"github.com/mailpipe/mailpipe/pkg/webhooksig"
)

// requestTimeout bounds one request of a connector. It is generous: under -race and eight
// workers a contract server answers in milliseconds, and a timeout would only hide a hang.
const requestTimeout = 30 * time.Second

// kind is one object type a target holds after the passes, keyed by its natural key.
type kind struct {
	name     string
	stored   int // objects the target holds
	distinct int // distinct keys among them
	want     int // distinct keys the corpus calls for
}

// duplicates is how many stored objects repeat a key another one holds.
func (k kind) duplicates() int { return k.stored - k.distinct }

// tally counts the objects of one kind and their distinct keys.
func tally(name string, want int, keys []string) kind {
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		seen[strings.ToLower(k)] = true
	}
	return kind{name: name, stored: len(keys), distinct: len(seen), want: want}
}

// system is a target's backend with fresh state: connect builds a connector to it (called once
// per pass, so the replay comes from a fresh connector, as after a restart, and in-process id
// caches cannot hide a duplicate), count reads back what it holds.
type system struct {
	connect func(t *testing.T) crm.Connector
	count   func(t *testing.T) []kind
}

// target is one connector under measurement.
type target struct {
	name string
	// about says what stands in for the real system, for CRM.md.
	about string
	open  func(t *testing.T, c corpus) system
}

// moreTargets are the targets of files that are built only when the module has what they need:
// postgres_test.go registers the Postgres target once e2e/go.mod requires pgx (see that file).
var moreTargets []func() target

func targets() []target {
	out := []target{hubspotTarget(), salesforceTarget(), pipedriveTarget(), webhookTarget()}
	for _, t := range moreTargets {
		out = append(out, t())
	}
	return out
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// closeAtEnd closes connectors that hold resources (the Postgres pool) when the test ends.
func closeAtEnd(t *testing.T, c crm.Connector) crm.Connector {
	if cl, ok := c.(crm.Closer); ok {
		t.Cleanup(func() { _ = cl.Close(t.Context()) })
	}
	return c
}

func must[T crm.Connector](t *testing.T, c T, err error) crm.Connector {
	t.Helper()
	if err != nil {
		t.Fatalf("building the connector: %v", err)
	}
	return closeAtEnd(t, c)
}

func hubspotTarget() target {
	return target{
		name: "hubspot",
		about: "pkg/crm/hubspot/hubspottest: an in-memory HubSpot account (CRM v3/v4: contact batch upsert, " +
			"company and email search, creates, default associations, the unique external-id email property) " +
			"with no rate limit, no search-index lag and no injected faults",
		open: func(t *testing.T, c corpus) system {
			srv := hubspottest.NewServer(t)
			return system{
				connect: func(t *testing.T) crm.Connector {
					conn, err := hubspot.New(hubspot.Config{
						BaseURL: srv.URL(), Token: srv.Token(), Timeout: requestTimeout,
						CreateProperty: true, AssociateContactCompany: true, IDCacheTTL: hubspot.DefaultIDCacheTTL,
					}, discard())
					return must(t, conn, err)
				},
				count: func(*testing.T) []kind {
					keys := func(typ, prop string) []string {
						var out []string
						for _, o := range srv.Records(typ) {
							out = append(out, o.Properties[prop])
						}
						return out
					}
					return []kind{
						tally("emails", len(c.msgs), keys(hubspottest.Emails, hubspottest.ExternalIDProperty)),
						tally("contacts", c.senders, keys(hubspottest.Contacts, "email")),
						tally("companies", c.companies, keys(hubspottest.Companies, "domain")),
					}
				},
			}
		},
	}
}

func salesforceTarget() target {
	return target{
		name: "salesforce",
		about: "pkg/crm/crmtest/salesforcefake: an in-memory Salesforce org behind a login server (refresh-token grant) " +
			"and an instance server (sObject upserts by External ID with the describe field rules), " +
			"with no request allocation limit and no injected faults",
		open: func(t *testing.T, c corpus) system {
			srv := salesforcefake.New(t, salesforcefake.WithRefreshToken("bench-consumer-secret", "5Aep-bench-refresh-token"))
			return system{
				connect: func(t *testing.T) crm.Connector {
					conn, err := salesforce.New(salesforce.Config{
						LoginURL: srv.LoginURL(), ClientID: srv.ClientID(),
						ClientSecret: "bench-consumer-secret", RefreshToken: "5Aep-bench-refresh-token", Timeout: requestTimeout,
					}, discard())
					return must(t, conn, err)
				},
				count: func(*testing.T) []kind {
					keys := func(sobject, field string) []string {
						var out []string
						for _, r := range srv.Records(sobject) {
							s, _ := r.Fields[field].(string)
							out = append(out, s)
						}
						return out
					}
					return []kind{
						tally("tasks", len(c.msgs), keys("Task", salesforcefake.ExternalIDField)),
						tally("contacts", c.senders, keys("Contact", salesforcefake.ContactEmailField)),
						tally("accounts", c.companies, keys("Account", salesforcefake.AccountDomainField)),
						tally("files", c.files, keys("ContentVersion", salesforcefake.ExternalIDField)),
					}
				},
			}
		},
	}
}

// orgDomainField is the key of the organization custom field holding the domain, shaped as
// Pipedrive makes them (40 hex digits).
const orgDomainField = "9a1c3e5f7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a"

// noteMarker finds the external id the pipedrive connector writes into every activity note.
var noteMarker = regexp.MustCompile(regexp.QuoteMeta(pipedrive.NoteMarker("")) + `([0-9a-f]{64})`)

func pipedriveTarget() target {
	return target{
		name: "pipedrive",
		about: "pkg/crm/pipedrive/pipedrivetest: an in-memory Pipedrive company (API v1: person and organization search " +
			"and creation, activities listed per person, API-token auth) with no rate limit, no search-index lag and no " +
			"injected faults; organizations are keyed by a domain custom field",
		open: func(t *testing.T, c corpus) system {
			srv := pipedrivetest.NewServer(t)
			return system{
				connect: func(t *testing.T) crm.Connector {
					conn, err := pipedrive.New(pipedrive.Config{
						BaseURL: srv.URL(), APIToken: srv.APIToken(), OrgDomainField: orgDomainField, Timeout: requestTimeout,
					}, discard())
					return must(t, conn, err)
				},
				count: func(*testing.T) []kind {
					var acts, persons, orgs []string
					for _, a := range srv.Activities() {
						// An activity without a marker is counted under an empty key: it is an
						// object nobody can find again, which a replay would duplicate.
						id := ""
						if m := noteMarker.FindStringSubmatch(a.Note); m != nil {
							id = m[1]
						}
						acts = append(acts, id)
					}
					for _, p := range srv.Persons() {
						persons = append(persons, strings.Join(p.Emails, ","))
					}
					for _, o := range srv.Organizations() {
						orgs = append(orgs, o.Fields[orgDomainField])
					}
					return []kind{tally("activities", len(c.msgs), acts), tally("persons", c.senders, persons), tally("organizations", c.companies, orgs)}
				},
			}
		},
	}
}

// receiver is a webhook endpoint as a careful customer writes one: it verifies the Standard
// Webhooks signature, stores each delivery once by webhook-id, answers 2xx to a redelivery
// without storing it again, and counts what it saw.
type receiver struct {
	verifier *webhooksig.Verifier

	mu          sync.Mutex
	stored      map[string][]byte // webhook-id → body of the first delivery
	redelivered int               // deliveries of an id already stored
	changed     int               // redeliveries whose body differs from the stored one
	rejected    int               // requests failing the signature check
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading body", http.StatusBadRequest)
		return
	}
	if err := rc.verifier.VerifyHeader(r.Header, body); err != nil {
		rc.mu.Lock()
		rc.rejected++
		rc.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	id := r.Header.Get(webhooksig.HeaderID)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if prev, ok := rc.stored[id]; ok {
		rc.redelivered++
		if !bytes.Equal(prev, body) {
			rc.changed++
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	rc.stored[id] = body
	w.WriteHeader(http.StatusNoContent)
}

func webhookTarget() target {
	return target{
		name: "webhook",
		about: "a local httptest receiver in this package that verifies every Standard Webhooks signature with " +
			"pkg/webhooksig and stores deliveries once by webhook-id; objects are the stored deliveries, and a " +
			"duplicate is a message stored under a second id or redelivered with a different body",
		open: func(t *testing.T, c corpus) system {
			secret, err := webhooksig.GenerateSecret()
			if err != nil {
				t.Fatal(err)
			}
			v, err := webhooksig.NewVerifier([]webhooksig.Secret{secret})
			if err != nil {
				t.Fatal(err)
			}
			rc := &receiver{verifier: v, stored: map[string][]byte{}}
			srv := httptest.NewServer(rc)
			t.Cleanup(srv.Close)
			return system{
				connect: func(t *testing.T) crm.Connector {
					conn, err := webhook.New(webhook.Config{
						URL: srv.URL + "/hooks/mail", Secrets: []string{secret.Encode()}, Timeout: requestTimeout,
						// The receiver is on loopback, which the connector's SSRF guard refuses
						// unless told this target is a trusted local one.
						AllowPrivate: true,
					}, discard())
					return must(t, conn, err)
				},
				count: func(t *testing.T) []kind {
					rc.mu.Lock()
					defer rc.mu.Unlock()
					if rc.rejected != 0 {
						t.Errorf("webhook receiver rejected %d deliveries for their signature", rc.rejected)
					}
					ids := make([]string, 0, len(rc.stored)+rc.changed)
					for id := range rc.stored {
						ids = append(ids, id)
					}
					// A redelivery with another body would be a second version of the message
					// the receiver cannot tell from the first: count it as a duplicate.
					for range rc.changed {
						ids = append(ids, ids[0])
					}
					// The replay redelivers every message once; the receiver must have seen each.
					if rc.redelivered != len(c.msgs) {
						t.Errorf("webhook receiver saw %d redeliveries, want %d (one per replayed message)", rc.redelivered, len(c.msgs))
					}
					return []kind{tally("deliveries", len(c.msgs), ids)}
				},
			}
		},
	}
}
