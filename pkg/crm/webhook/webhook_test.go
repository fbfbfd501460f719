package webhook_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/crm/webhook"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/events/eventstest"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/netguard"
	"github.com/mailpipe/mailpipe/pkg/webhooksig"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newConnector(t *testing.T, srv *crmtest.Server, mutate func(*webhook.Config), opts ...webhook.Option) *webhook.Connector {
	t.Helper()
	// The test servers listen on loopback, which the SSRF guard refuses by default.
	cfg := webhook.Config{URL: srv.URL() + "/hooks/mail", Secrets: []string{srv.Secret()}, Timeout: 2 * time.Second, AllowPrivate: true}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := webhook.New(cfg, discard(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConformance(t *testing.T) {
	crmtest.Run(t, func(t *testing.T) crmtest.Target {
		srv := crmtest.NewServer(t)
		return srv.Target(newConnector(t, srv, nil))
	})
}

func TestDeliveryHeadersAndBody(t *testing.T) {
	// Both clocks are pinned far from the wall clock, so the test also shows the server checks
	// the timestamp against its own clock.
	now := time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC)
	srvNow := crmtest.NewServer(t, crmtest.WithClock(func() time.Time { return now }))
	c2 := newConnector(t, srvNow, nil, webhook.WithClock(func() time.Time { return now }))

	msg := crmtest.Message("headers")
	res, err := c2.Upsert(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	id := msg.Message.ExternalID
	if res.Outcome != crm.OutcomeCreated || res.Attempts != 1 || res.ObjectIDs[webhook.ObjectType] != id {
		t.Errorf("result = %+v, want created, 1 attempt, object id %s", res, id)
	}
	d, ok := srvNow.Delivery(id)
	if !ok {
		t.Fatalf("no delivery with webhook-id = external id %s; got %+v", id, srvNow.Deliveries())
	}
	if got := d.Header.Get(webhooksig.HeaderTimestamp); got != "1795431600" {
		t.Errorf("webhook-timestamp = %q, want the clock's unix seconds", got)
	}
	if ct := d.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var p webhook.Payload
	if err := json.Unmarshal(d.Body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != webhook.EventType || p.Data.ExternalID != id || p.Data.ID != msg.Message.ID {
		t.Errorf("payload type/ids = %q %q %q", p.Type, p.Data.ExternalID, p.Data.ID)
	}
}

func TestPayloadGolden(t *testing.T) {
	rec, _ := eventstest.Samples()["mail.enriched.v1"].(*events.Enriched)
	got, err := json.MarshalIndent(webhook.NewPayload(rec), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "payload.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("payload differs from %s (run go test ./pkg/crm/webhook -update and review the diff):\n%s", path, got)
	}
	for _, forbidden := range []string{"blob_ref", "file://", "<p>", "html"} {
		if bytes.Contains(got, []byte(forbidden)) {
			t.Errorf("payload contains %q; it must carry neither HTML nor blob-store URLs", forbidden)
		}
	}
}

func TestPayloadEmptyCollectionsAreArrays(t *testing.T) {
	rec := &events.Enriched{Message: events.Parsed{ExternalID: "x"}}
	b, err := json.Marshal(webhook.NewPayload(rec))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"to":[]`, `"cc":[]`, `"attachments":[]`, `"crm_ids":{}`, `"from":null`, `"contact":null`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("payload %s lacks %s", b, want)
		}
	}
}

func TestRedeliveryIsByteIdenticalUnderOneID(t *testing.T) {
	srv := crmtest.NewServer(t)
	c := newConnector(t, srv, nil)
	msg := crmtest.Message("again")
	var bodies [][]byte
	for range 2 {
		if _, err := c.Upsert(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
		d, _ := srv.Delivery(msg.Message.ExternalID)
		bodies = append(bodies, d.Body)
	}
	d, _ := srv.Delivery(msg.Message.ExternalID)
	if d.Count != 2 || len(srv.Deliveries()) != 1 {
		t.Errorf("count = %d, deliveries = %d; want 2 requests under one webhook-id", d.Count, len(srv.Deliveries()))
	}
	if !bytes.Equal(bodies[0], bodies[1]) {
		t.Error("redelivered body differs from the first one")
	}
}

func TestWrongSecretIsAuth(t *testing.T) {
	srv := crmtest.NewServer(t)
	c := newConnector(t, srv, func(cfg *webhook.Config) { cfg.Secrets = []string{crmtest.NewSecret()} })
	_, err := c.Upsert(t.Context(), crmtest.Message("bad"))
	if got := failure.Classify(err); got != failure.Auth {
		t.Fatalf("class = %q (err %v), want auth", got, err)
	}
	if srv.Rejected() != 1 || len(srv.Deliveries()) != 0 {
		t.Errorf("rejected = %d, deliveries = %d; want the server to refuse the signature", srv.Rejected(), len(srv.Deliveries()))
	}
}

func TestSecretRotationSignsWithEverySecret(t *testing.T) {
	oldSecret, newSecret := crmtest.NewSecret(), crmtest.NewSecret()
	for _, tt := range []struct {
		name     string
		receiver string
	}{
		{"receiver still on the old secret", oldSecret},
		{"receiver already on the new secret", newSecret},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := crmtest.NewServer(t, crmtest.WithSecrets(tt.receiver))
			c := newConnector(t, srv, func(cfg *webhook.Config) { cfg.Secrets = []string{newSecret, oldSecret} })
			if _, err := c.Upsert(t.Context(), crmtest.Message("rotate")); err != nil {
				t.Fatal(err)
			}
			d := srv.Deliveries()[0]
			if n := len(strings.Fields(d.Header.Get(webhooksig.HeaderSignature))); n != 2 {
				t.Errorf("signatures = %d, want one per secret", n)
			}
		})
	}
}

func TestStaleTimestampIsRejected(t *testing.T) {
	srv := crmtest.NewServer(t)
	c := newConnector(t, srv, nil, webhook.WithClock(func() time.Time { return time.Now().Add(-time.Hour) }))
	if _, err := c.Upsert(t.Context(), crmtest.Message("stale")); failure.Classify(err) != failure.Auth {
		t.Fatalf("err = %v, want an auth failure for a timestamp outside the tolerance", err)
	}
}

func TestTimeoutIsClassifiedAndRedeliveryDedupes(t *testing.T) {
	srv := crmtest.NewServer(t)
	c := newConnector(t, srv, func(cfg *webhook.Config) { cfg.Timeout = 50 * time.Millisecond })
	msg := crmtest.Message("slow")
	srv.StallNext(1, 300*time.Millisecond)

	_, err := c.Upsert(t.Context(), msg)
	if got := failure.Classify(err); got != failure.Timeout {
		t.Fatalf("class = %q (err %v), want timeout", got, err)
	}
	if _, err := c.Upsert(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	// The stalled request was committed by the receiver after the connector gave up; the retry
	// carried the same webhook-id, so the receiver still holds one object.
	deadline := time.Now().Add(2 * time.Second)
	for {
		d, _ := srv.Delivery(msg.Message.ExternalID)
		if d.Count == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("count = %d, want 2 (stalled + retried)", d.Count)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.Objects(msg.Message.ExternalID); n != 1 {
		t.Errorf("Objects = %d, want 1", n)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	srv := crmtest.NewServer(t)
	redirect := httptest.NewServer(http.RedirectHandler(srv.URL(), http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	c, err := webhook.New(webhook.Config{URL: redirect.URL, Secrets: []string{srv.Secret()}, AllowPrivate: true}, discard())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Upsert(t.Context(), crmtest.Message("redirect"))
	if got := failure.Classify(err); got != failure.CRM4xx {
		t.Fatalf("class = %q (err %v), want crm_4xx for an unfollowed redirect", got, err)
	}
	if srv.Requests() != 0 {
		t.Errorf("the redirect target got %d requests, want 0", srv.Requests())
	}
}

func TestPrivateDestinationIsRefused(t *testing.T) {
	srv := crmtest.NewServer(t)
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		url     string
		cfg     func(*webhook.Config)
		refused bool
	}{
		{"loopback refused by default", srv.URL(), nil, true},
		// The host name is resolved only when dialling; the guard sees the loopback address.
		{"name resolving to loopback refused", "http://localhost:" + u.Port(), nil, true},
		{"another allowed network does not open loopback", srv.URL(), func(c *webhook.Config) { c.AllowNetworks = []string{"10.0.0.0/8"} }, true},
		{"allow private", srv.URL(), func(c *webhook.Config) { c.AllowPrivate = true }, false},
		{"allow loopback networks", srv.URL(), func(c *webhook.Config) { c.AllowNetworks = []string{"127.0.0.0/8", "::1/128"} }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := webhook.Config{URL: tt.url + "/hooks/mail?token=s3cr3t", Secrets: []string{srv.Secret()}, Timeout: 2 * time.Second}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c, err := webhook.New(cfg, discard())
			if err != nil {
				t.Fatal(err)
			}
			before := srv.Requests()
			msg := crmtest.Message(tt.name)
			res, err := c.Upsert(t.Context(), msg)
			seen := srv.Requests() - before
			if !tt.refused {
				if err != nil || res.Outcome != crm.OutcomeCreated || seen != 1 {
					t.Fatalf("Upsert = %+v, %v with %d requests; want delivered once", res, err, seen)
				}
				return
			}
			if !errors.Is(err, netguard.ErrRefused) {
				t.Fatalf("Upsert error = %v, want one wrapping netguard.ErrRefused", err)
			}
			if failure.Retryable(err) || failure.Classify(err) != failure.CRM4xx {
				t.Errorf("class = %q, want crm_4xx (not retryable) for a refused destination", failure.Classify(err))
			}
			if !strings.Contains(err.Error(), "is loopback") || strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error %q should name the loopback address and hide the query", err)
			}
			if seen != 0 {
				t.Errorf("the receiver saw %d requests, want 0", seen)
			}
		})
	}
}

func TestRedirectToPrivateAddressIsNotFollowed(t *testing.T) {
	srv := crmtest.NewServer(t)
	for _, tt := range []struct {
		name     string
		location string
		code     int
	}{
		{"cloud metadata", "http://169.254.169.254/latest/meta-data/", http.StatusFound},
		{"private network", "http://10.0.0.1/admin", http.StatusTemporaryRedirect},
		{"mapped loopback", "http://[::ffff:127.0.0.1]/", http.StatusMovedPermanently},
		// A live receiver on loopback: following would show up as a request there.
		{"loopback receiver", srv.URL() + "/hooks/mail", http.StatusPermanentRedirect},
	} {
		t.Run(tt.name, func(t *testing.T) {
			redirect := httptest.NewServer(http.RedirectHandler(tt.location, tt.code))
			t.Cleanup(redirect.Close)
			// Only the redirecting server's own address is allowed, as an operator would allow
			// one receiver; the redirect must not take the request anywhere else.
			addr := netip.MustParseAddrPort(redirect.Listener.Addr().String()).Addr()
			c, err := webhook.New(webhook.Config{
				URL: redirect.URL, Secrets: []string{srv.Secret()}, AllowNetworks: []string{netip.PrefixFrom(addr, addr.BitLen()).String()},
			}, discard())
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Upsert(t.Context(), crmtest.Message(tt.name))
			if got := failure.Classify(err); got != failure.CRM4xx || errors.Is(err, netguard.ErrRefused) {
				t.Fatalf("class = %q (err %v), want crm_4xx for the unfollowed redirect itself", got, err)
			}
			if want := fmt.Sprintf("HTTP %d", tt.code); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not report the %s answer", err, want)
			}
			if srv.Requests() != 0 {
				t.Errorf("the redirect target got %d requests, want 0", srv.Requests())
			}
		})
	}
}

func TestExplicitClientIsNotGuarded(t *testing.T) {
	// WithHTTPClient hands the transport to the caller; the allow settings do not apply.
	srv := crmtest.NewServer(t)
	c, err := webhook.New(webhook.Config{URL: srv.URL(), Secrets: []string{srv.Secret()}}, discard(), webhook.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Upsert(t.Context(), crmtest.Message("explicit")); err != nil {
		t.Fatalf("Upsert with an explicit client = %v, want delivered", err)
	}
}

func TestTransportErrorHidesQuery(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL + "/hook?token=s3cr3t"
	dead.Close()
	c, err := webhook.New(webhook.Config{URL: url, Secrets: []string{crmtest.NewSecret()}, AllowPrivate: true}, discard())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Upsert(t.Context(), crmtest.Message("dead"))
	if err == nil {
		t.Fatal("Upsert to a closed server succeeded")
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %q leaks the URL query", err)
	}
	if !failure.Retryable(err) {
		t.Errorf("connection refused should be retryable, class %q", failure.Classify(err))
	}
}

func TestMissingExternalID(t *testing.T) {
	srv := crmtest.NewServer(t)
	c := newConnector(t, srv, nil)
	msg := crmtest.Message("noid")
	msg.Message.ExternalID = ""
	_, err := c.Upsert(t.Context(), msg)
	if failure.Classify(err) != failure.Schema || srv.Requests() != 0 {
		t.Fatalf("err = %v, requests = %d; want a schema failure before any request", err, srv.Requests())
	}
}

func TestConfigValidate(t *testing.T) {
	good := crmtest.NewSecret()
	for _, tt := range []struct {
		name string
		cfg  webhook.Config
		want []string
	}{
		{"valid", webhook.Config{URL: "https://hooks.example.com/x", Secrets: []string{good}}, nil},
		{"empty", webhook.Config{}, []string{"url is required", "at least one signing secret"}},
		{"relative url", webhook.Config{URL: "/x", Secrets: []string{good}}, []string{"absolute http or https"}},
		{"ftp url", webhook.Config{URL: "ftp://x/y", Secrets: []string{good}}, []string{"absolute http or https"}},
		{"bad second secret", webhook.Config{URL: "http://x", Secrets: []string{good, "whsec_nope!"}}, []string{"secrets: secret 2"}},
		{"short key", webhook.Config{URL: "http://x", Secrets: []string{"whsec_c2hvcnQ="}}, []string{"secrets: secret 1"}},
		{"negative timeout", webhook.Config{URL: "http://x", Secrets: []string{good}, Timeout: -1}, []string{"timeout must not be negative"}},
		{"allow networks", webhook.Config{URL: "http://x", Secrets: []string{good}, AllowNetworks: []string{"10.20.0.0/16", " fd00:1::/64", "127.0.0.1/32"}}, nil},
		{"bad allow networks", webhook.Config{URL: "http://x", Secrets: []string{good}, AllowNetworks: []string{"10.0.0.0/8", "10.1.2.3", "intranet", "10.0.0.0/33"}}, []string{
			`allow_networks: entry 2 "10.1.2.3" is not a CIDR prefix`,
			`allow_networks: entry 3 "intranet" is not a CIDR prefix`,
			`allow_networks: entry 4 "10.0.0.0/33" is not a CIDR prefix`,
		}},
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
			if _, nerr := webhook.New(tt.cfg, discard()); nerr == nil || !errors.Is(nerr, err) && !strings.Contains(nerr.Error(), tt.want[0]) {
				t.Errorf("New = %v, want the validation error", nerr)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := webhook.New(webhook.Config{URL: "http://x", Secrets: []string{crmtest.NewSecret()}}, discard())
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != webhook.DefaultName {
		t.Errorf("Name = %q, want %q", c.Name(), webhook.DefaultName)
	}
}
