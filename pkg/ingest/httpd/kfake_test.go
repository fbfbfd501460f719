package httpd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/mailgun/mailguntest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/sendgrid/sendgridtest"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// newCodec parses the embedded schemas once for the whole test binary (slow under -race).
var newCodec = sync.OnceValues(func() (*serde.Codec, error) { return serde.New(context.Background()) })

// domainTable resolves as fakeAccepter does, as the ingest Router.
type domainTable struct{}

func (domainTable) Resolve(rcpt string) (ingest.Route, bool) { return (&fakeAccepter{}).Resolve(rcpt) }

// providerServer serves httpd over a real ingest.Ingester producing to topic on brokers.
func providerServer(t *testing.T, brokers []string, topic string, cfg httpd.Config) *httptest.Server {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	codec, err := newCodec()
	if err != nil {
		t.Fatal(err)
	}
	prod, err := kafka.NewProducer(kafka.Config{Brokers: brokers}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	in, err := ingest.New(ingest.Config{Topic: topic}, ingest.Options{Producer: prod, Codec: codec, Logger: log, Router: domainTable{}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpd.New(cfg, in, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// TestProvidersRecordOnKafka posts a signed SendGrid and a signed Mailgun message through a real
// server and a real Ingester on an in-process Kafka cluster: each is answered 200 and is on
// mail.raw.v1 with the tenant and route of its recipient and the message bytes unchanged. With
// a topic the broker does not have, nothing is acknowledged and both providers get 503, the
// answer that makes them retry.
func TestProvidersRecordOnKafka(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	topic := kafkatest.TopicName(t, "mail.raw")
	kafkatest.CreateTopic(t, brokers, topic, 1)
	sg, err := sendgridtest.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	mgKey := mustMailgunKey(t, "mg-acme-key")
	cfg := httpd.Config{
		SendGridPublicKeys: []string{"acme:" + sg.PublicKey()},
		MailgunSigningKeys: []string{"acme:mg-acme-key"},
		AcceptTimeout:      2 * time.Second,
	}
	sgMsg := []byte("From: ann@example.org\r\nMessage-ID: <sg1@example.org>\r\n\r\nvia SendGrid \xe9\r\n")
	mgMsg := []byte("From: bob@example.org\r\nMessage-ID: <mg1@example.org>\r\n\r\nvia Mailgun\r\n")
	requests := func(srv *httptest.Server) []*http.Request {
		t.Helper()
		sgReq, err := sg.NewRequest(t.Context(), srv.URL+httpd.PathSendGrid,
			sendgridtest.Post{Raw: sgMsg, From: "ann@example.org", To: []string{rcptAcme}, SenderIP: "203.0.113.9"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		mgReq, err := mailguntest.NewRequest(t.Context(), srv.URL+httpd.PathMailgun,
			mailguntest.Post{Raw: mgMsg, Recipient: rcptAcme, Sender: "bob@example.org", Timestamp: time.Now(), Token: "tok-kfake"}, mgKey)
		if err != nil {
			t.Fatal(err)
		}
		return []*http.Request{sgReq, mgReq}
	}

	// given a server whose ingest produces to an existing topic
	srv := providerServer(t, brokers, topic, cfg)
	// when both providers post
	for _, req := range requests(srv) {
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ ID, ThreadKey string }
		err = json.NewDecoder(res.Body).Decode(&body)
		_ = res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK || body.ID == "" {
			t.Fatalf("%s: status %d, body %+v (%v), want 200 with the record id", req.URL.Path, res.StatusCode, body, err)
		}
	}
	// then both records are on the topic
	codec, _ := newCodec()
	recs := kafkatest.ConsumeAll(t, brokers, topic, 2, 10*time.Second)
	if len(recs) != 2 {
		t.Fatalf("consumed %d records, want 2", len(recs))
	}
	wantRaw := map[string][]byte{"203.0.113.9": sgMsg, "127.0.0.1": mgMsg}
	for _, r := range recs {
		var got events.Raw
		if err := codec.Decode(t.Context(), kafka.TopicRaw, r.Value, &got); err != nil {
			t.Fatal(err)
		}
		if got.Tenant != "acme" || got.RouteID != "acme-support" || got.Envelope.Source != "http" || got.Raw == nil ||
			!bytes.Equal(*got.Raw, wantRaw[got.Envelope.ClientIP]) {
			t.Errorf("record = tenant %q route %q envelope %+v raw %q, want tenant acme, route acme-support and the posted bytes",
				got.Tenant, got.RouteID, got.Envelope, deref(got.Raw))
		}
	}

	// given a server whose topic does not exist, so no produce is acknowledged
	srv = providerServer(t, brokers, kafkatest.TopicName(t, "missing"), cfg)
	for _, req := range requests(srv) {
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		// then each provider is told to retry
		checkAnswer(t, res, want{status: 503, problem: "unavailable"})
		_ = res.Body.Close()
	}
}

func deref(b *[]byte) []byte {
	if b == nil {
		return nil
	}
	return *b
}
