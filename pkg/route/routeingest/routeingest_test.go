package routeingest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/route"
	"github.com/mailpipe/mailpipe/pkg/route/kafkaroute"
	"github.com/mailpipe/mailpipe/pkg/route/routeingest"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

func TestResolve(t *testing.T) {
	snap, err := route.NewSnapshot([]events.Route{
		{ID: "support", Pattern: "support+{tenant}@in.example.com", MaxSize: 1 << 20},
		{ID: "deals", Pattern: "deals+*@in.example.com", Tenant: "sales", DenySenders: []string{"*@spam.example"}},
		{ID: "all", Pattern: "*@in.example.com", Tenant: "triage"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var table route.Table
	table.Store(snap)
	r := routeingest.New(&table)
	var _ ingest.Router = r

	for _, tt := range []struct {
		rcpt    string
		ok      bool
		want    ingest.Route // Senders checked separately
		senders bool
	}{
		{"support+acme@in.example.com", true, ingest.Route{ID: "support", Tenant: "acme", Tag: "acme", MaxSize: 1 << 20}, false},
		{"deals+q3@in.example.com", true, ingest.Route{ID: "deals", Tenant: "sales", Tag: "q3"}, true},
		{"anyone@in.example.com", true, ingest.Route{ID: "all", Tenant: "triage"}, false},
		{"anyone@elsewhere.example", false, ingest.Route{}, false},
	} {
		t.Run(tt.rcpt, func(t *testing.T) {
			got, ok := r.Resolve(tt.rcpt)
			if ok != tt.ok {
				t.Fatalf("Resolve ok = %v, want %v", ok, tt.ok)
			}
			if (got.Senders != nil) != tt.senders {
				t.Errorf("Senders = %v, want set: %v", got.Senders, tt.senders)
			}
			got.Senders = nil
			if got != tt.want {
				t.Errorf("Resolve = %+v, want %+v", got, tt.want)
			}
		})
	}

	// Recipients of one route and tag compare equal (one transaction); other tags do not.
	a, _ := r.Resolve("deals+q3@in.example.com")
	b, _ := r.Resolve("Deals+Q3@IN.example.com")
	c, _ := r.Resolve("deals+q4@in.example.com")
	if a != b || a == c {
		t.Errorf("route equality: same tag equal %v (want true), other tag equal %v (want false)", a == b, a == c)
	}
	if a.Senders.AllowsSender("x@spam.example") || !a.Senders.AllowsSender("x@customer.example") {
		t.Error("the sender policy does not apply the route's deny list")
	}
}

// TestSMTPWithRouteTable is ingress as it runs with MAILPIPE_ROUTES_ENABLED: routes written with
// the store onto a (kfake) mail.routes.v1, a follower keeping the table, the SMTP server refusing
// unrouted recipients at RCPT time, and accepted mail recorded with the route's id and tenant.
func TestSMTPWithRouteTable(t *testing.T) {
	ctx := t.Context()
	log := slog.New(slog.DiscardHandler)
	codec, err := serde.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	brokers := kafkatest.NewCluster(t)
	routesTopic, rawTopic := kafkatest.TopicName(t, "mail.routes"), kafkatest.TopicName(t, "mail.raw")
	kafkatest.CreateTopic(t, brokers, routesTopic, 3)
	kafkatest.CreateTopic(t, brokers, rawTopic, 3)
	kcfg := kafka.Config{Brokers: brokers}
	prod, err := kafka.NewProducer(kcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)

	// given routes on the topic before ingress starts
	{
		seed, err := kafkaroute.Open(ctx, kafkaroute.Config{Topic: routesTopic}, kcfg, codec, log)
		if err != nil {
			t.Fatal(err)
		}
		store := startStore(t, seed, prod, codec, log)
		if _, err := store.Import(ctx, []events.Route{
			{ID: "support", Pattern: "support+{tenant}@in.example.com", CRMTargets: []string{"hubspot"}},
			{ID: "sales", Pattern: "sales@in.example.com", Tenant: "acme"},
		}); err != nil {
			t.Fatal(err)
		}
	}

	// and ingress wired to a follower of that topic
	f, err := kafkaroute.Open(ctx, kafkaroute.Config{Enabled: true, Topic: routesTopic}, kcfg, codec, log,
		kafkaroute.WithClientOpts(kgo.FetchMaxWait(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	store := startStore(t, f, prod, codec, log)
	in, err := ingest.New(ingest.Config{Topic: rawTopic}, ingest.Options{Producer: prod, Codec: codec, Logger: log, Router: routeingest.New(f.Table())})
	if err != nil {
		t.Fatal(err)
	}
	addr := startSMTP(t, in, log)

	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }() // after QUIT the server has closed it already
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@customer.example", nil); err != nil {
		t.Fatal(err)
	}

	// when RCPT names unrouted addresses, then 550 5.1.1 (no relay, no catch-all)
	for _, rcpt := range []string{"nobody@in.example.com", "support@in.example.com", "relay@elsewhere.example", "support+-x@in.example.com"} {
		assertNoSuchUser(t, c.Rcpt(rcpt, nil), rcpt)
	}

	// when RCPT names a routed plus-address, then it is accepted and resolves with tag and tenant
	if err := c.Rcpt("Support+Globex@in.example.com", nil); err != nil {
		t.Fatalf("RCPT to a routed plus-address: %v", err)
	}
	if got, _ := in.Resolve("Support+Globex@in.example.com"); got.ID != "support" || got.Tenant != "globex" || got.Tag != "globex" {
		t.Errorf("Resolve = %+v, want route support, tenant globex, tag globex", got)
	}
	sendData(t, c, "Message-ID: <m1@customer.example>\r\nFrom: alice@customer.example\r\nSubject: hi\r\n\r\nhello\r\n")

	// and the record carries the route's id and tenant
	recs := kafkatest.ConsumeAll(t, brokers, rawTopic, 1, 10*time.Second)
	var raw events.Raw
	if err := codec.Decode(ctx, kafka.TopicRaw, recs[0].Value, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Tenant != "globex" || raw.RouteID != "support" || strings.Join(raw.Envelope.RcptTo, ",") != "support+globex@in.example.com" {
		t.Errorf("record tenant %q route %q rcpts %q; want globex, support, support+globex@in.example.com", raw.Tenant, raw.RouteID, raw.Envelope.RcptTo)
	}

	// when a route is added while ingress runs, then its address is accepted at once
	if err := c.Mail("alice@customer.example", nil); err != nil {
		t.Fatal(err)
	}
	assertNoSuchUser(t, c.Rcpt("jobs@in.example.com", nil), "jobs@in.example.com")
	if _, err := store.Create(ctx, events.Route{ID: "jobs", Pattern: "jobs@in.example.com", Tenant: "hr"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("jobs+eng@in.example.com", nil); err != nil {
		t.Fatalf("RCPT after the route was added: %v", err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}

	// when it is deleted, then it is refused again
	if err := store.Delete(ctx, "jobs"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@customer.example", nil); err != nil {
		t.Fatal(err)
	}
	assertNoSuchUser(t, c.Rcpt("jobs@in.example.com", nil), "jobs@in.example.com after delete")
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

func startStore(t *testing.T, f *kafkaroute.Follower, prod kafkaroute.Producer, codec *serde.Codec, log *slog.Logger) *kafkaroute.Store {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f.Run(context.WithoutCancel(t.Context())) }()
	t.Cleanup(func() {
		if err := f.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Errorf("follower Run: %v", err)
		}
	})
	s, err := kafkaroute.NewStore(kafkaroute.StoreOptions{Producer: prod, Codec: codec, Follower: f, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startSMTP(t *testing.T, in *ingest.Ingester, log *slog.Logger) string {
	t.Helper()
	srv, err := smtpd.New(smtpd.Config{}, in, log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

func assertNoSuchUser(t *testing.T, err error, rcpt string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Errorf("RCPT %s: %v, want 550 5.1.1", rcpt, err)
	}
}

func sendData(t *testing.T, c *smtp.Client, msg string) {
	t.Helper()
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprint(w, msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
}
